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
