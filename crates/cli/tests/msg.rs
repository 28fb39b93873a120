//! `nodus msg` as a person uses it: separate node processes, kill -9 and restart.

mod common;

#[allow(unused_imports)]
use common::*;
use std::path::Path;
use std::process::Command;

fn history(dir: &Path, with: &str) -> Vec<serde_json::Value> {
    let o = nodus(dir, &["--json", "msg", "history", with]);
    if !o.status.success() {
        return Vec::new();
    }
    json(&o).as_array().cloned().unwrap_or_default()
}

fn incoming(dir: &Path, with: &str) -> Vec<String> {
    history(dir, with)
        .iter()
        .filter(|m| m["outgoing"] == false)
        .map(|m| m["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A data dir whose node has no listener and is reached only through `relay`.
fn hide_behind(dir: &Path, relay: &Path) {
    let addr = p2p_addr(relay);
    let config = format!(
        "[p2p]\nlisten = []\nbootstrap = [\"{addr}\"]\nrelays = [\"{addr}\"]\nmdns = false\n"
    );
    write_config(dir, config).unwrap();
}

/// `a` calls `b` bob and `b` calls `a` alice, from each other's invite codes; returns
/// bob's code.
fn make_contacts(a: &Path, b: &Path) -> String {
    let mut code = String::new();
    for (from, to, name) in [(a, b, "alice"), (b, a, "bob")] {
        code = stdout(&nodus(from, &["msg", "invite"])).trim().to_string();
        let o = nodus(to, &["msg", "add", &code, "--name", name]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    code
}

/// Bob cannot be dialed: he is reached through c, which relays for him and keeps his
/// mail. kill -9 of Bob, then of Alice and of c: after restarts every message arrives,
/// once, in order.
#[test]
fn messages_survive_kill_9_of_sender_recipient_and_relay() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    init_at(&a, "127.0.45.1");
    init_at(&b, "127.0.46.1");
    init_at(&c, "127.0.47.1");
    // A relay must announce an address for its reservations to carry one.
    let relay_config = std::fs::read_to_string(c.join("config.toml")).unwrap();
    write_config(
        &c,
        relay_config.replace("[p2p]\n", "[p2p]\nadvertise_listen_addrs = true\n"),
    )
    .unwrap();
    let mut nc = up(&c);
    hide_behind(&b, &c);
    let mut na = up(&a);
    let mut nb = up(&b);
    connect(&a, &c);
    let code = make_contacts(&a, &b);
    let o = nodus(&a, &["msg", "send", "bob", "m0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_for("m0", || incoming(&b, "alice") == ["m0"]);
    // Adding again renames, and says so; an empty name is refused.
    let o = nodus(&a, &["msg", "add", &code, "--name", " "]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("the name is empty"), "{}", stderr(&o));
    let o = nodus(&a, &["msg", "add", &code, "--name", "bobby"]);
    assert!(
        stdout(&o).starts_with("renamed bob to bobby"),
        "{}",
        stdout(&o)
    );
    let o = nodus(&a, &["msg", "add", &code, "--name", "bob"]);
    assert!(
        stdout(&o).starts_with("renamed bobby to bob"),
        "{}",
        stdout(&o)
    );

    wait_for("bob's reservation on the relay", || {
        let status = json(&nodus(&b, &["--json", "status"]));
        status["listen_addrs"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    });
    let status = json(&nodus(&b, &["--json", "status"]));
    let addrs = status["listen_addrs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !addrs.is_empty()
            && addrs
                .iter()
                .all(|a| a.as_str().unwrap_or_default().contains("p2p-circuit")),
        "bob is reachable through the relay only: {status}"
    );
    // The recipient dies; the sender's messages go to the mailbox (c).
    nb.child.kill().unwrap();
    nb.child.wait().unwrap();
    for m in ["m1", "m2"] {
        assert!(nodus(&a, &["msg", "send", "bob", m]).status.success());
    }
    wait_for("m1 and m2 to be stored", || {
        history(&a, "bob")
            .iter()
            .filter(|m| m["state"] == "stored")
            .count()
            == 2
    });
    // One more, and the sender dies the moment its send returns; then the mailbox dies.
    assert!(nodus(&a, &["msg", "send", "bob", "m3"]).status.success());
    na.child.kill().unwrap();
    na.child.wait().unwrap();
    nc.child.kill().unwrap();
    nc.child.wait().unwrap();

    // The relay comes back (on a new port) with the mail it held; the recipient comes
    // back behind it and fetches it.
    let _nc = up(&c);
    hide_behind(&b, &c);
    let _nb = up(&b);
    wait_for("m1 and m2 from the restarted mailbox", || {
        let got = incoming(&b, "alice");
        got.len() >= 3 && got[..3] == ["m0", "m1", "m2"]
    });
    // The sender comes back and delivers what was still in its outbox.
    let _na = up(&a);
    connect(&a, &c);
    wait_for("m3 from the restarted sender", || {
        incoming(&b, "alice").len() >= 4
    });
    assert_eq!(incoming(&b, "alice"), ["m0", "m1", "m2", "m3"]);
    wait_for("every message delivered", || {
        history(&a, "bob")
            .iter()
            .all(|m| m["state"] == "delivered" || m["state"] == "read")
    });
}

/// The messaging benchmark's plumbing with tiny sizes: it prints its table. Timing is
/// never asserted.
#[test]
fn bench_msg_prints_its_table() {
    let o = Command::new(BIN)
        .args([
            "bench",
            "msg",
            "--small",
            "50",
            "--large",
            "3",
            "--round-trips",
            "5",
            "--file-mib",
            "1",
        ])
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    for row in [
        "direct, 100 B",
        "one relay, 64 KiB",
        "direct, 1 MiB file",
        "one relay, 1 MiB file",
        "reroute after the relay dies",
        "stored messages",
    ] {
        assert!(out.contains(row), "{row} missing:\n{out}");
    }
}

fn metric(dir: &Path, name: &str) -> f64 {
    let token = std::fs::read_to_string(dir.join("api.cookie")).unwrap();
    let (_, metrics) = api_get(dir, "/metrics", Some(token.trim()));
    metrics
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The file of the last message from `with`, as `nodus msg history` shows it.
fn last_file(dir: &Path, with: &str) -> Option<serde_json::Value> {
    history(dir, with)
        .into_iter()
        .rev()
        .find(|m| m["outgoing"] == false)
        .and_then(|m| m["files"].get(0).cloned())
}

/// `nodus msg send --file` a 24 MiB file; the recipient is killed with -9 partway
/// (the sender serves at 4 MiB/s so that "partway" is certain). Restarted, it asks
/// from where its synced progress ended, not from the start, and `nodus msg save`
/// writes the sender's exact bytes.
#[test]
fn a_file_download_resumes_after_kill_9_of_the_recipient() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    init_at(&a, "127.0.48.1");
    init_at(&b, "127.0.49.1");
    let config = std::fs::read_to_string(a.join("config.toml")).unwrap();
    write_config(&a, format!("{config}[msg]\nfile_upload_limit_kib = 4096\n")).unwrap();
    let _na = up(&a);
    let mut nb = up(&b);
    connect(&b, &a);
    make_contacts(&a, &b);

    let size = 24 << 20;
    let mut bytes = vec![0u8; size];
    rand::fill(&mut bytes[..]);
    let clip = dir.path().join("clip.mp4");
    std::fs::write(&clip, &bytes).unwrap();
    let o = nodus(
        &a,
        &[
            "--json",
            "msg",
            "send",
            "bob",
            "the clip",
            "--file",
            clip.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let sent = json(&o);
    let hash = sent["files"][0]["hash"].as_str().unwrap().to_string();
    assert_eq!(sent["files"][0]["name"], "clip.mp4");
    assert_eq!(sent["files"][0]["mime"], "video/mp4");

    let received = |f: &Option<serde_json::Value>| {
        f.as_ref().and_then(|f| f["received"].as_u64()).unwrap_or(0)
    };
    wait_for("a quarter of the file on b", || {
        received(&last_file(&b, "alice")) >= (size / 4) as u64
    });
    nb.child.kill().unwrap();
    nb.child.wait().unwrap();
    assert_eq!(metric(&a, "nodus_msg_files_resumed_total"), 0.0);

    let _nb = up(&b);
    let before = last_file(&b, "alice").expect("the file is still listed");
    assert_eq!(before["state"], "downloading");
    assert!(
        received(&Some(before.clone())) >= (size / 4) as u64,
        "{before}"
    );
    connect(&b, &a);
    wait_for("the rest of the file", || {
        last_file(&b, "alice").is_some_and(|f| f["state"] == "done")
    });
    assert_eq!(
        metric(&a, "nodus_msg_files_resumed_total"),
        1.0,
        "b asked for the rest, from where its synced progress ended"
    );
    let out = dir.path().join("saved.mp4");
    let o = nodus(
        &b,
        &["msg", "save", &hash, "--output", out.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        std::fs::read(&out).unwrap() == bytes,
        "the saved bytes are the sender's"
    );
    // Saving again does not overwrite what is there.
    let o = nodus(
        &b,
        &["msg", "save", &hash, "--output", out.to_str().unwrap()],
    );
    fails_saying(&o, "exists already");
}
