//! The `nodus` binary as a person uses it for the node itself: init, up, stop, the
//! API and its token, the overlay commands, events, testnet, the demo and `bench net`;
//! separate processes, real files, real signals.

mod common;

#[allow(unused_imports)]
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn init_creates_a_private_identity_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("node");
    let a = nodus(&d, &["--json", "init"]);
    assert!(a.status.success(), "{}", stderr(&a));
    let a = json(&a);
    assert_eq!(a["created_identity"], true);
    let mode = std::fs::metadata(d.join("identity.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        std::fs::read_to_string(d.join("config.toml"))
            .unwrap()
            .contains("# nodus configuration")
    );
    let b = json(&nodus(&d, &["--json", "init"]));
    assert_eq!(b["created_identity"], false);
    assert_eq!(
        a["peer_id"], b["peer_id"],
        "init never replaces an identity"
    );
}

#[test]
fn corrupt_or_open_key_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(nodus(d, &["init"]).status.success());
    let key = d.join("identity.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = nodus(d, &["up"]);
    fails_saying(&o, "chmod 600");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&key, b"not a key").unwrap();
    let o = nodus(d, &["init"]);
    fails_saying(&o, "corrupt");
    assert_eq!(
        std::fs::read(&key).unwrap(),
        b"not a key",
        "key left untouched"
    );
}

#[test]
fn malformed_config_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(nodus(d, &["init"]).status.success());
    std::fs::write(
        d.join("config.toml"),
        "[p2p]\nmdns = false\nlisten = \"oops\n",
    )
    .unwrap();
    let o = nodus(d, &["up"]);
    fails_saying(&o, "line 3");
    fails_saying(&o, "config.toml");
}

#[test]
fn unknown_flags_and_missing_node_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(BIN).arg("--frobnicate").output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--frobnicate"), "{}", stderr(&o));

    let o = nodus(dir.path(), &["status"]);
    fails_saying(&o, "nodus up");

    let o = nodus(dir.path(), &["up"]);
    fails_saying(&o, "nodus init");

    let o = nodus(dir.path(), &["ui"]);
    fails_saying(&o, "nodus up");
}

/// `nodus ui` prints the link that logs the dashboard in: the token in its fragment only.
#[test]
fn ui_prints_the_dashboard_link_with_the_token_in_its_fragment() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    init_at(d, "127.0.78.1");
    let _node = up(d);
    let o = nodus(d, &["--json", "ui"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let token = std::fs::read_to_string(d.join("api.cookie")).unwrap();
    let api = endpoints(d).unwrap()["api"].as_str().unwrap().to_string();
    assert_eq!(v["url"], format!("{api}/#token={}", token.trim()));
    // The page itself loads without the token; it holds no data.
    let (code, page) = api_get(d, "/", None);
    assert_eq!(code, 200);
    assert!(page.contains("ui/app.js"), "{page}");
    let o = nodus(d, &["ui"]);
    assert!(
        stderr(&o).contains("share it with nobody"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn api_requires_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    init_at(d, "127.0.31.1");
    let _node = up(d);
    let mode = std::fs::metadata(d.join("api.cookie"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let token = std::fs::read_to_string(d.join("api.cookie")).unwrap();
    for path in ["/api/v1/status", "/metrics", "/api/v1/peers"] {
        let (code, body) = api_get(d, path, None);
        assert_eq!(code, 401, "{path} without token: {body}");
        let (code, _) = api_get(d, path, Some("wrong"));
        assert_eq!(code, 401, "{path} with a wrong token");
        let (code, body) = api_get(d, path, Some(token.trim()));
        assert_eq!(code, 200, "{path}: {body}");
    }
    let (_, metrics) = api_get(d, "/metrics", Some(token.trim()));
    assert!(
        metrics.contains("nodus_api_unauthorized_total 6"),
        "{metrics}"
    );
    let ep = endpoints(d).unwrap();
    assert!(ep["api"].as_str().unwrap().starts_with("http://127.0.0.1:"));

    // A malformed body is a JSON error that says what is wrong, like every other error.
    // 400 for what is not JSON, 422 for JSON of the wrong shape.
    for (body, want) in [
        ("{not json", 400),
        (r#"{"adr": "x"}"#, 422),
        (r#"{"addr": 7}"#, 422),
    ] {
        let (code, resp) =
            api_request(d, "POST", "/api/v1/connect", Some(token.trim()), Some(body));
        assert_eq!(code, want, "{body}: {resp}");
        assert!(resp.contains(r#"{"error":"the request body"#), "{resp}");
    }
    // A body over the limit is 413; the scheme's case does not matter (RFC 9110).
    let auth = format!(
        "Authorization: Bearer {}\r\nContent-Type: application/json\r\n",
        token.trim()
    );
    let huge = format!(r#"{{"addr": "{}"}}"#, "x".repeat(3 * 1024 * 1024));
    let (code, resp) = api_raw(d, "POST", "/api/v1/connect", &auth, huge.as_bytes());
    assert_eq!(code, 413, "{}", &resp[..resp.len().min(300)]);
    let lower = format!("authorization: bearer {}\r\n", token.trim());
    let (code, resp) = api_raw(d, "GET", "/api/v1/status", &lower, b"");
    assert_eq!(code, 200, "{resp}");
    // A caller without the token keeps no connection: the refusal closes it.
    let api = endpoints(d).unwrap()["api"].as_str().unwrap().to_string();
    let mut c = std::net::TcpStream::connect(api.trim_start_matches("http://")).unwrap();
    c.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut refused = String::new();
    c.read_to_string(&mut refused).unwrap();
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("connection: close"),
        "{refused}"
    );
    let (code, resp) = api_request(
        d,
        "POST",
        "/api/v1/connect",
        Some(token.trim()),
        Some(r#"{"addr": "not-an-address"}"#),
    );
    assert_eq!(code, 400, "{resp}");
    assert!(resp.contains("neither a multiaddr"), "{resp}");
    let (code, resp) = api_get(d, "/api/v1/nope", Some(token.trim()));
    assert_eq!(code, 404, "{resp}");
    assert!(resp.contains(r#""error""#), "{resp}");
}

#[test]
fn commands_drive_two_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    init_at(&a, "127.0.32.1");
    init_at(&b, "127.0.33.1");
    let _na = up(&a);
    let _nb = up(&b);
    let addr_a = endpoints(&a).unwrap()["p2p"][0]
        .as_str()
        .unwrap()
        .to_string();
    let peer_a = endpoints(&a).unwrap()["peer_id"]
        .as_str()
        .unwrap()
        .to_string();

    let o = nodus(&b, &["--json", "connect", &addr_a]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["peer_id"], peer_a.as_str());

    let o = nodus(&b, &["--json", "peers"]);
    let peers = json(&o);
    assert!(
        peers["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["peer_id"] == peer_a.as_str()),
        "{peers}"
    );
    let o = nodus(&b, &["--json", "ping", &peer_a, "--count", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["rtt_ms"].as_array().unwrap().len(), 2);

    let o = nodus(&a, &["dht", "put", "colour", "blue"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = nodus(&b, &["dht", "get", "colour"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "blue");
    let o = nodus(&b, &["dht", "get", "no-such-key"]);
    fails_saying(&o, "no value");

    // Subscribe on b, publish on a until the subscription has propagated.
    let sub = Command::new(BIN)
        .arg("--data-dir")
        .arg(&b)
        .args(["--json", "pubsub", "subscribe", "chat", "--count", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let o = nodus(&a, &["pubsub", "publish", "chat", "hello b"]);
        if o.status.success() {
            break;
        }
        assert!(stderr(&o).contains("subscribe"), "{}", stderr(&o));
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no subscriber appeared"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = sub.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(r#"{"type":"ready"}"#));
    let line: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(line["data"], "hello b");
    assert_eq!(line["source"], peer_a.as_str());

    let o = nodus(&b, &["--json", "status"]);
    assert_eq!(json(&o)["connected_peers"], 1);
}

#[test]
fn garbage_on_the_p2p_port_drops_that_connection_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    init_at(d, "127.0.34.1");
    let _node = up(d);
    let p2p = endpoints(d).unwrap()["p2p"][0]
        .as_str()
        .unwrap()
        .to_string();
    let port: u16 = p2p
        .split("/tcp/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    for _ in 0..5 {
        let mut s = TcpStream::connect(("127.0.34.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let garbage: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7919 % 251) as u8).collect();
        let _ = s.write_all(&garbage);
        let mut buf = [0u8; 4096];
        // The node answers with its own handshake at most, then closes the connection.
        let closed = loop {
            match s.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                Err(_) => break true,
            }
        };
        assert!(closed, "the node kept a garbage connection open");
    }
    let o = nodus(d, &["--json", "status"]);
    assert!(o.status.success(), "node still answers: {}", stderr(&o));
    let token = std::fs::read_to_string(d.join("api.cookie")).unwrap();
    let (_, metrics) = api_get(d, "/metrics", Some(token.trim()));
    let bad: f64 = metrics
        .lines()
        .find(|l| l.starts_with("nodus_net_bad_connections_total "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(bad >= 5.0, "garbage connections counted: {bad}");
    // And a real peer still gets in.
    let other = dir.path().join("other");
    init_at(&other, "127.0.35.1");
    let _o = up(&other);
    let o = nodus(&other, &["connect", &p2p]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn kill_9_then_restart_keeps_identity_and_sigterm_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    init_at(d, "127.0.36.1");
    let mut node = up(d);
    let before = endpoints(d).unwrap()["peer_id"].clone();

    fails_saying(&nodus(d, &["up"]), "already running");

    // kill -9: endpoints.json stays behind, commands must say no node is running.
    node.child.kill().unwrap();
    node.child.wait().unwrap();
    let o = nodus(d, &["status"]);
    fails_saying(&o, "no node running");

    let mut node = up(d);
    assert_eq!(
        endpoints(d).unwrap()["peer_id"],
        before,
        "same identity after kill -9"
    );

    let pid = node.child.id();
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = node.child.wait().unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    assert!(
        !d.join("endpoints.json").exists(),
        "endpoints.json removed on clean shutdown"
    );
}

/// Output piped into a reader that stops early ends the command quietly, without a
/// panic and its backtrace.
#[test]
fn output_cut_short_by_a_closed_pipe_is_not_a_panic() {
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("'{BIN}' demo | head -n 1"))
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("Broken pipe"), "{err}");
    assert_eq!(stdout(&o).lines().count(), 1);
}

/// A demo's output, read line by line as it runs.
struct Narrated {
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    out: String,
}

impl Narrated {
    fn of(child: &mut std::process::Child) -> Narrated {
        let stdout = child.stdout.take().expect("stdout piped");
        Narrated {
            lines: std::io::BufRead::lines(std::io::BufReader::new(stdout)),
            out: String::new(),
        }
    }

    /// Reads up to and including the first line `stop` holds for (or to the end).
    fn until(&mut self, stop: impl Fn(&str) -> bool) {
        for line in self.lines.by_ref() {
            let line = line.unwrap();
            self.out.push_str(&line);
            self.out.push('\n');
            if stop(&line) {
                return;
            }
        }
    }
}

fn interrupt(child: &std::process::Child) {
    // SAFETY: kill(2) on the child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
}

/// Ctrl-C during the demo stops it: the network is shut down, the summary shows the
/// steps that ran, and the status is a shell's for SIGINT.
#[test]
fn demo_stops_on_ctrl_c_with_the_steps_so_far() {
    let mut child = Command::new(BIN)
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut demo = Narrated::of(&mut child);
    demo.until(|l| l.starts_with("ok   peers discover each other"));
    interrupt(&child);
    demo.until(|_| false);
    let out = demo.out;
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{out}");
    assert!(out.contains("interrupted: stopping the network"), "{out}");
    assert!(out.contains("shown working in"), "{out}");
    assert!(out.contains(", then interrupted"), "{out}");
}

/// What a newcomer runs: `demo --open`. It opens the watcher's dashboard (a stand-in
/// `xdg-open` records the link), narrates every step there, stays up until Ctrl-C, and
/// then prints the summary and exits 0.
#[test]
fn demo_shows_every_capability_and_exits_zero() {
    let bin = tempfile::tempdir().unwrap();
    let opened = bin.path().join("opened");
    let fake = bin.path().join("xdg-open");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\nprintf '%s' \"$1\" > '{}'\n", opened.display()),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new(BIN)
        .args(["demo", "--open"])
        .env("PATH", path)
        .stdout(Stdio::piped())
        // A file, not a pipe: nobody reads it until the end.
        .stderr(std::fs::File::create(bin.path().join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let mut demo = Narrated::of(&mut child);
    demo.until(|l| l.contains("Ctrl-C ends it"));
    let out = demo.out.clone();
    let link = std::fs::read_to_string(&opened).unwrap_or_default();
    assert!(
        link.contains("/#token="),
        "the dashboard was not opened: {link:?}\n{out}"
    );
    assert!(
        out.contains(&link),
        "the link opened is not the one printed:\n{out}"
    );
    // Up for the dashboard: the page narrates all the steps, each as it ended.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let shown = rt.block_on(async {
        let browser = nodus_testnet::browser::Browser::start().await.unwrap();
        browser.goto(&link).await.unwrap();
        let shown = browser.narration(32, 1, Duration::from_secs(60)).await;
        browser.quit().await;
        shown.unwrap()
    });
    assert_eq!(shown.steps.len(), 32, "{:?}", shown.steps);
    assert!(
        shown.steps.iter().all(|s| s.state == "ok"),
        "{:?}",
        shown.steps
    );
    // Ctrl-C ends it, with the summary.
    interrupt(&child);
    demo.until(|_| false);
    let out = demo.out;
    let status = child.wait().unwrap();
    let err = std::fs::read_to_string(bin.path().join("stderr")).unwrap_or_default();
    assert!(status.success(), "{out}{err}");
    for what in [
        "peers discover each other",
        "DHT record stored by one node, read by another",
        "pubsub message reaches every node",
        "reached through a relay",
        "a node killed while the others keep working",
        "Alice and Bob, neither dialable, message end to end through a relay",
        "Bob offline: Alice keeps writing, Bob gets it all in order when back",
        "the relay in use dies mid-conversation; messages route around it",
        "a Transfer event pushed over a JSON-RPC WebSocket subscription; the balance read at the block before",
        "three nodes hold a third of a file each; a fourth downloads from all at once",
        "a Nostr note posted on one node reaches a live subscription on a follower's node",
        "two partitioned nodes both take posts and converge by negentropy when they rejoin",
        "a node's block list hides an author there; the other nodes still serve them",
        "a video seeded by three nodes plays through a fourth node's gateway, seeks and plays on",
        "a patient's FHIR record is imported; a clinic granted Observations for a week reads them and adds one",
        "revoking re-keys what the grant covered; the clinic's next read is refused",
        "a replica holds the vault sealed; killed while records come in, it catches up, nothing lost",
        "the audit log's head is anchored on the chain, and the log verifies against it",
        "Alice and Bob, neither dialable, call through a voice relay: espeak-ng speech in, recorded at Bob's",
        "the relay in use is killed mid-call; the call moves on without hanging up",
        "200 work units on five volunteers: a cheat caught by the quorum, a killed volunteer's units reissued, the sum checked",
        "credit paid on the chain: each volunteer holds its credit's worth, the cheat nothing",
        "a web page fetched through a SOCKS5 proxy and three relays; each relay saw only its neighbours",
        "alice and bob message anonymously: identities no node has, each other's onion services, mailboxes through circuits",
        "dashboard in a browser narrates every step as it happens",
    ] {
        assert!(
            out.lines().any(|l| l.contains(what) && l.contains(" ok ")),
            "summary row for {what:?} missing or failed:\n{out}"
        );
    }
    assert!(out.contains("32 of 32 shown working"), "{out}");
}

/// The benchmark's plumbing, with tiny sizes: it must print nodus beside iperf3. Timing
/// is never asserted.
#[test]
fn bench_net_prints_nodus_beside_iperf3() {
    let o = Command::new(BIN)
        .args([
            "--json",
            "bench",
            "net",
            "--mib",
            "4",
            "--round-trips",
            "20",
            "--repeat",
            "2",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert!(
        v["iperf3"]["mb_per_s"].as_f64().is_some(),
        "iperf3 measured: {v}"
    );
    assert_eq!(v["iperf3"]["mb_per_s_runs"].as_array().unwrap().len(), 2);
    let runs = v["nodus"].as_array().unwrap();
    for (transport, processes) in [("tcp", 1), ("tcp", 2), ("quic-v1", 1), ("quic-v1", 2)] {
        let run = runs
            .iter()
            .find(|r| r["transport"] == transport && r["processes"] == processes)
            .unwrap_or_else(|| panic!("{transport} in {processes} processes: {v}"));
        assert!(run["mb_per_s"].as_f64().unwrap() > 0.0, "{v}");
        assert_eq!(run["mb_per_s_runs"].as_array().unwrap().len(), 2, "{v}");
        assert!(run["ratio_to_iperf3"].as_f64().is_some(), "{v}");
        assert!(run["rtt_p50_us"].as_f64().unwrap() > 0.0, "{v}");
    }
}

#[test]
fn event_stream_reports_peers_coming_and_going() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    init_at(&a, "127.0.37.1");
    init_at(&b, "127.0.38.1");
    let _na = up(&a);
    let mut nb = up(&b);
    let peer_b = endpoints(&b).unwrap()["peer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut events = Command::new(BIN)
        .arg("--data-dir")
        .arg(&a)
        .args(["--json", "events"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = events.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("stream opens");
    assert_eq!(first, r#"{"type":"ready"}"#);
    let addr_a = endpoints(&a).unwrap()["p2p"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(nodus(&b, &["connect", &addr_a]).status.success());
    let wait_for = |kind: &str| loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no {kind} event"));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["type"] == kind && v["peer"] == peer_b.as_str() {
            return v;
        }
    };
    wait_for("peer_connected");
    nb.child.kill().unwrap();
    nb.child.wait().unwrap();
    wait_for("peer_disconnected");
    let _ = events.kill();
    let _ = events.wait();
}

#[test]
fn testnet_up_gives_each_node_a_data_dir_the_commands_work_with() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("tn");
    let mut child = Command::new(BIN)
        .args(["testnet", "up", "3", "--dir"])
        .arg(&d)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while endpoints(&d.join("node2")).is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "testnet did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let node0 = endpoints(&d.join("node0")).unwrap()["peer_id"].clone();
    let mut seen = false;
    while !seen && start.elapsed() < Duration::from_secs(20) {
        let o = nodus(&d.join("node2"), &["--json", "peers"]);
        assert!(o.status.success(), "{}", stderr(&o));
        seen = json(&o)["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["peer_id"] == node0);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(seen, "node 2 joined through node 0");
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "testnet stops cleanly on SIGTERM: {status:?}"
    );
    let mut table = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut table)
        .unwrap();
    assert!(
        table.contains("node2") && table.contains("/p2p/"),
        "{table}"
    );
    for k in 0..3 {
        assert!(!d.join(format!("node{k}/endpoints.json")).exists());
    }
}

#[test]
fn dht_records_survive_kill_9_of_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    init_at(&a, "127.0.39.1");
    init_at(&b, "127.0.40.1");
    let mut na = up(&a);
    let mut nb = up(&b);
    let addr_a = endpoints(&a).unwrap()["p2p"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(nodus(&b, &["connect", &addr_a]).status.success());
    // Stored on a and replicated to b, its only peer (once a has b in its routing table).
    let start = Instant::now();
    loop {
        let o = nodus(&a, &["--json", "dht", "put", "kept", "across crashes"]);
        assert!(o.status.success(), "{}", stderr(&o));
        if json(&o)["replicated"] == true {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "b never took a copy"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for n in [&mut na, &mut nb] {
        n.child.kill().unwrap();
        n.child.wait().unwrap();
    }
    // Each restarts alone, with no peer to ask: the value comes from its own store.
    for d in [&b, &a] {
        let _n = up(d);
        let o = nodus(d, &["dht", "get", "kept"]);
        assert!(o.status.success(), "{}: {}", d.display(), stderr(&o));
        assert_eq!(stdout(&o).trim(), "across crashes");
    }
}

#[test]
fn a_node_started_before_its_bootstrap_peer_joins_when_it_comes_up() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    init_at(&a, "127.0.41.1");
    // Pin a's port so b can name it before a runs.
    let port = {
        let l = std::net::TcpListener::bind("127.0.41.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    write_config(
        &a,
        format!("[p2p]\nlisten = [\"/ip4/127.0.41.1/tcp/{port}\"]\nmdns = false\n"),
    )
    .unwrap();
    let peer_a = json(&nodus(&a, &["--json", "init"]))["peer_id"]
        .as_str()
        .unwrap()
        .to_string();
    init_at(&b, "127.0.42.1");
    write_config(&b,
        format!(
            "[p2p]\nlisten = [\"/ip4/127.0.42.1/tcp/0\"]\nmdns = false\nbootstrap = [\"/ip4/127.0.41.1/tcp/{port}/p2p/{peer_a}\"]\n"
        ),
    )
    .unwrap();
    let _nb = up(&b);
    std::thread::sleep(Duration::from_millis(500));
    let _na = up(&a);
    let start = Instant::now();
    loop {
        let peers = json(&nodus(&b, &["--json", "peers"]));
        if peers["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["peer_id"] == peer_a.as_str())
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "b never joined through a"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_second_node_on_a_taken_port_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let port = {
        let l = std::net::TcpListener::bind("127.0.43.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for d in [&a, &b] {
        assert!(nodus(d, &["init"]).status.success());
        write_config(
            d,
            format!("[p2p]\nlisten = [\"/ip4/127.0.43.1/tcp/{port}\"]\nmdns = false\n"),
        )
        .unwrap();
    }
    let _na = up(&a);
    // libp2p listens with SO_REUSEPORT; without the check both would share the port.
    fails_saying(&nodus(&b, &["up"]), "is another node using port");
}

/// Issue 17 point 10: the data dir deleted under a running node. The node notices, says
/// so and stops cleanly (it used to write on into deleted files, out of reach of
/// `status` and `stop`, holding its ports); a new node on the path then starts.
#[test]
fn a_node_whose_data_dir_is_deleted_stops_and_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("n");
    init_at(&d, "127.0.66.1");
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(&d)
        .args(["up", "--log", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while endpoints(&d).is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "node did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::remove_dir_all(&d).unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the node runs on without its data dir"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(
        log.contains("was deleted or replaced while the node ran"),
        "{log}"
    );
    assert!(status.success(), "{status}: {log}");
    init_at(&d, "127.0.66.1");
    let _again = up(&d);
    assert!(nodus(&d, &["status"]).status.success());
}
