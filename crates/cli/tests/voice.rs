//! `nodus call` as a person uses it, on node processes: a call to a contact rings in
//! `nodus msg inbox --follow`, is answered, carries speech from a file into a
//! recording, hangs up after `--for` and lands in both histories with its quality;
//! mistakes get errors that say what to do; a node killed with `kill -9` mid-call
//! keeps the call in its history (interrupted), and the other side's call ends as
//! dropped instead of hanging on.

mod common;
#[path = "../../voice/tests/common/mod.rs"]
mod speech;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "{}{}", stdout(o), stderr(o));
}

/// Alice and Bob, each other's contacts, both running.
fn contacts(a: &Path, b: &Path) -> (Running, Running) {
    init_at(a, "127.0.62.1");
    init_at(b, "127.0.63.1");
    let (na, nb) = (up(a), up(b));
    connect(a, b);
    let code = stdout(&nodus(a, &["msg", "invite"])).trim().to_string();
    ok(&nodus(b, &["msg", "add", &code, "--name", "alice"]));
    let code = stdout(&nodus(b, &["msg", "invite"])).trim().to_string();
    ok(&nodus(a, &["msg", "add", &code, "--name", "bob"]));
    (na, nb)
}

fn history(d: &Path) -> Vec<Value> {
    json(&nodus(d, &["--json", "call", "history"]))
        .as_array()
        .unwrap()
        .clone()
}

fn calls(d: &Path) -> Vec<Value> {
    json(&nodus(d, &["--json", "call", "list"]))
        .as_array()
        .unwrap()
        .clone()
}

/// Lines a child prints on stdout, as they come.
fn lines(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

#[test]
fn a_call_rings_in_the_inbox_carries_speech_and_lands_in_both_histories() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let (_na, _nb) = contacts(&a, &b);
    let input = speech::speech(dir.path());
    let heard = dir.path().join("heard.wav");

    // A person's mistakes, each with what to do next.
    fails_saying(&nodus(&a, &["call", "nobody"]), "nodus msg add");
    fails_saying(&nodus(&b, &["call", "answer"]), "no call is ringing");
    fails_saying(
        &nodus(&a, &["call", "bob", "--input", "missing.wav"]),
        "no such file",
    );
    fails_saying(&nodus(&a, &["call", "hangup"]), "nodus call list");

    let mut inbox = Command::new(BIN)
        .arg("--data-dir")
        .arg(&b)
        .args(["msg", "inbox", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let inbox_lines = lines(&mut inbox);
    // (Started before or after the inbox listens, the call shows there: a ringing call
    // is listed when the inbox starts following.)
    let caller = Command::new(BIN)
        .arg("--data-dir")
        .arg(&a)
        .args(["call", "bob", "--for", "9", "--input"])
        .arg(&input)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rang = inbox_lines
        .recv_timeout(Duration::from_secs(30))
        .expect("the call shows in bob's inbox");
    assert!(rang.contains("alice is calling"), "{rang}");
    let _ = inbox.kill();
    let _ = inbox.wait();
    ok(&nodus(
        &b,
        &[
            "call",
            "answer",
            "--detach",
            "--record",
            heard.to_str().unwrap(),
        ],
    ));
    let done = caller.wait_with_output().unwrap();
    let said = stderr(&done);
    assert!(done.status.success(), "{said}");
    assert!(
        said.contains("answered") && said.contains("ended: completed"),
        "{said}"
    );

    wait_for("bob's side of the call ended", || {
        history(&b)
            .first()
            .is_some_and(|c| c["outcome"] == "completed")
    });
    let (ha, hb) = (history(&a), history(&b));
    for (h, with, way) in [(&ha[0], "bob", "outgoing"), (&hb[0], "alice", "incoming")] {
        assert_eq!(
            (h["name"].as_str(), h["direction"].as_str()),
            (Some(with), Some(way))
        );
        assert!(h["duration_ms"].as_u64().unwrap() >= 9000, "{h}");
        assert!(h["quality"]["received"].as_u64().unwrap() > 400, "{h}");
    }
    let table = stdout(&nodus(&b, &["call", "history"]));
    assert!(
        table.contains("alice") && table.contains("completed") && table.contains("loss"),
        "{table}"
    );
    let score = speech::pesq(&input, &heard);
    println!("PESQ {score} through two node processes");
    assert!(score > 3.5, "PESQ {score}");
    assert!(calls(&a).is_empty() && calls(&b).is_empty());
}

#[test]
fn a_node_killed_mid_call_keeps_it_and_the_other_side_is_not_left_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let (_na, mut nb) = contacts(&a, &b);
    let id = stdout(&nodus(&a, &["call", "bob", "--detach"]))
        .trim()
        .to_string();
    wait_for("bob's phone rings", || {
        calls(&b).first().is_some_and(|c| c["state"] == "ringing")
    });
    ok(&nodus(&b, &["call", "answer", "--detach"]));
    wait_for("the call is on, on a route", || {
        calls(&a)
            .first()
            .is_some_and(|c| c["state"] == "active" && c["route"].is_string())
    });

    nb.child.kill().unwrap(); // SIGKILL
    nb.child.wait().unwrap();
    let _nb = up(&b);
    let kept = history(&b);
    assert_eq!(kept[0]["id"], id.as_str());
    assert_eq!(kept[0]["outcome"], "interrupted");
    // Alice hears nothing any more: her side ends the call as dropped.
    wait_for("alice's call is dropped", || {
        history(&a)
            .first()
            .is_some_and(|c| c["outcome"] == "dropped")
    });
    assert!(calls(&a).is_empty());
}

/// A PulseAudio server of the test's own: a null sink (the speaker) whose monitor is
/// the default source (the microphone), on a socket in `dir`. Killed on drop.
struct Pulse {
    child: std::process::Child,
    socket: String,
    home: std::path::PathBuf,
}

impl Drop for Pulse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pulse {
    fn start(dir: &Path) -> Pulse {
        let home = dir.join("pulse");
        std::fs::create_dir_all(&home).unwrap();
        // ALSA's default device is PulseAudio's (what cpal opens).
        std::fs::write(
            home.join(".asoundrc"),
            "pcm.!default { type pulse }\nctl.!default { type pulse }\n",
        )
        .unwrap();
        let socket = home.join("native").display().to_string();
        let child = Command::new("pulseaudio")
            .args([
                "--daemonize=no",
                "--exit-idle-time=-1",
                "-n",
                "--use-pid-file=no",
                "--disable-shm=yes",
                "--load=module-null-sink sink_name=nodus_call rate=48000",
                &format!("--load=module-native-protocol-unix socket={socket} auth-anonymous=1"),
            ])
            .env("HOME", &home)
            .env("XDG_RUNTIME_DIR", &home)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pulseaudio (scripts/test installs it)");
        let p = Pulse {
            child,
            socket: format!("unix:{socket}"),
            home,
        };
        wait_for("the PulseAudio server", || {
            p.command("pactl")
                .arg("info")
                .output()
                .is_ok_and(|o| o.status.success())
        });
        p
    }

    fn env(&self) -> Vec<(&str, &str)> {
        vec![
            ("PULSE_SERVER", self.socket.as_str()),
            ("HOME", self.home.to_str().unwrap()),
        ]
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.envs(self.env());
        c
    }
}

#[test]
fn a_call_through_pulseaudios_null_sink_exercises_the_sound_devices() {
    let dir = tempfile::tempdir().unwrap();
    let pulse = Pulse::start(dir.path());
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    init_at(&a, "127.0.64.1");
    init_at(&b, "127.0.65.1");
    let (_na, _nb) = (up(&a), up_with_env(&b, &pulse.env()));
    connect(&a, &b);
    let code = stdout(&nodus(&a, &["msg", "invite"])).trim().to_string();
    ok(&nodus(&b, &["msg", "add", &code, "--name", "alice"]));
    let code = stdout(&nodus(&b, &["msg", "invite"])).trim().to_string();
    ok(&nodus(&a, &["msg", "add", &code, "--name", "bob"]));
    let input = speech::speech(dir.path());
    let (speaker, echo) = (dir.path().join("speaker.wav"), dir.path().join("echo.wav"));

    // What Bob's speaker plays, as the sink's monitor hears it.
    let mut monitor = pulse
        .command("parecord")
        .args([
            "-d",
            "nodus_call.monitor",
            "--rate=16000",
            "--channels=1",
            "--format=s16le",
            "--file-format=wav",
        ])
        .arg(&speaker)
        .spawn()
        .expect("parecord (pulseaudio-utils)");
    // Alice speaks from a file and records; Bob's node uses the sound devices: her
    // speech plays into the null sink, and Bob's microphone (the sink's monitor) sends
    // it back to her.
    let caller = Command::new(BIN)
        .arg("--data-dir")
        .arg(&a)
        .args(["call", "bob", "--for", "12", "--input"])
        .arg(&input)
        .arg("--record")
        .arg(&echo)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("bob's phone rings", || {
        calls(&b).first().is_some_and(|c| c["state"] == "ringing")
    });
    ok(&nodus(&b, &["call", "answer", "--device", "--detach"]));
    let done = caller.wait_with_output().unwrap();
    assert!(done.status.success(), "{}", stderr(&done));
    let _ = Command::new("kill")
        .arg("-INT")
        .arg(monitor.id().to_string())
        .status();
    let _ = monitor.wait();
    wait_for("the recordings", || echo.exists() && speaker.exists());

    let played = speech::pesq(&input, &speaker);
    let echoed = speech::pesq(&input, &echo);
    println!("PESQ of Bob's speaker {played}, of what his microphone sent back {echoed}");
    assert!(played > 2.5, "the speaker played the speech: PESQ {played}");
    assert!(
        echoed > 2.0,
        "the microphone carried it back: PESQ {echoed}"
    );
}
