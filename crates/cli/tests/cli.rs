//! The `nodus` binary as a person uses it: separate processes, real files, real signals.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_nodus");

fn nodus(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run nodus")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The command failed and its error mentions `text`.
fn fails_saying(o: &Output, text: &str) {
    assert!(!o.status.success(), "expected a failure: {}", stdout(o));
    assert!(stderr(o).contains(text), "{}", stderr(o));
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", stdout(o), stderr(o)))
}

/// Writes a node's config.toml. Every node of these tests takes free ports for its
/// JSON-RPC server and BitTorrent listener (the defaults can only be had by one).
fn write_config(dir: &Path, text: impl AsRef<str>) -> std::io::Result<()> {
    let mut text = text.as_ref().to_string();
    if !text.contains("[chain]") {
        text.push_str("[chain]\nrpc_listen = \"127.0.0.1:0\"\n");
    }
    if !text.contains("[torrent]") {
        text.push_str("[torrent]\nlisten = \"127.0.0.1:0\"\ndht_bootstrap = []\n");
    }
    std::fs::write(dir.join("config.toml"), text)
}

/// A data dir whose node listens on TCP at `ip` only.
fn init_at(dir: &Path, ip: &str) {
    let o = nodus(dir, &["init"]);
    assert!(o.status.success(), "{}", stderr(&o));
    write_config(
        dir,
        format!("[p2p]\nlisten = [\"/ip4/{ip}/tcp/0\"]\nmdns = false\n"),
    )
    .unwrap();
}

struct Running {
    child: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn endpoints(dir: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("endpoints.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn up(dir: &Path) -> Running {
    let _ = std::fs::remove_file(dir.join("endpoints.json"));
    let child = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(["up", "--log", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while endpoints(dir).is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "node did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Running { child }
}

fn api_get(dir: &Path, path: &str, token: Option<&str>) -> (u16, String) {
    api_request(dir, "GET", path, token, None)
}

/// A raw HTTP/1.1 request to the node's API: (status, whole response).
fn api_request(
    dir: &Path,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let api = endpoints(dir).unwrap()["api"].as_str().unwrap().to_string();
    let hostport = api.trim_start_matches("http://");
    let mut s = TcpStream::connect(hostport).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let body_headers = body
        .map(|b| {
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            )
        })
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\n{auth}{body_headers}Connection: close\r\n\r\n{}",
        body.unwrap_or_default()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp[9..12].parse().unwrap();
    (code, resp)
}

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
    for body in ["{not json", r#"{"adr": "x"}"#, r#"{"addr": 7}"#] {
        let (code, resp) =
            api_request(d, "POST", "/api/v1/connect", Some(token.trim()), Some(body));
        assert_eq!(code, 400, "{body}: {resp}");
        assert!(resp.contains(r#"{"error":"the request body"#), "{resp}");
    }
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

#[test]
fn demo_shows_every_capability_and_exits_zero() {
    let o = Command::new(BIN).arg("demo").output().unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    for what in [
        "peers discover each other",
        "DHT record stored by one node, read by another",
        "pubsub message reaches every node",
        "reached through a relay",
        "a node killed while the others keep working",
        "Alice and Bob, neither dialable, message end to end through a relay",
        "Bob offline: Alice keeps writing, Bob gets it all in order when back",
        "the relay in use dies mid-conversation; messages route around it",
        "three nodes hold a third of a file each; a fourth downloads from all at once",
    ] {
        assert!(
            out.lines().any(|l| l.contains(what) && l.contains(" ok ")),
            "summary row for {what:?} missing or failed:\n{out}"
        );
    }
    assert!(out.contains("13 of 13 shown working"), "{out}");
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

fn p2p_addr(dir: &Path) -> String {
    endpoints(dir).unwrap()["p2p"][0]
        .as_str()
        .unwrap()
        .to_string()
}

fn connect(dir: &Path, to: &Path) {
    let o = nodus(dir, &["connect", &p2p_addr(to)]);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

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
    let code = stdout(&nodus(&a, &["msg", "invite"])).trim().to_string();
    assert!(
        nodus(&b, &["msg", "add", &code, "--name", "alice"])
            .status
            .success()
    );
    let code = stdout(&nodus(&b, &["msg", "invite"])).trim().to_string();
    assert!(
        nodus(&a, &["msg", "add", &code, "--name", "bob"])
            .status
            .success()
    );
    let o = nodus(&a, &["msg", "send", "bob", "m0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_for("m0", || incoming(&b, "alice") == ["m0"]);

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
        ])
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    for row in [
        "direct, 100 B",
        "one relay, 64 KiB",
        "reroute after the relay dies",
        "stored messages",
    ] {
        assert!(out.contains(row), "{row} missing:\n{out}");
    }
}

/// A chain node: JSON-RPC on a free port, one-second blocks from an easy start, hashing
/// capped so the test leaves CPU to the rest.
fn chain_config(ip: &str) -> String {
    format!(
        "[p2p]\nlisten = [\"/ip4/{ip}/tcp/0\"]\nmdns = false\n[chain]\nrpc_listen = \"127.0.0.1:0\"\n\
         [chain.genesis]\nblock_time_secs = 1\ninitial_difficulty = 20000\n\
         [chain.mining]\nmax_hashes_per_sec = 400000\n"
    )
}

fn chain_json(dir: &Path) -> serde_json::Value {
    json(&nodus(dir, &["--json", "chain"]))
}

/// The chain commands on two real node processes: a wallet account imported from a
/// private key (its keystore readable by web3.py's eth_account), ether sent and mined,
/// blocks and transactions shown. Then kill -9 of the importing node again and again
/// while it syncs: each restart opens a consistent chain and catches up; and a
/// transaction accepted just before a kill is still pending after the restart.
#[test]
fn chain_commands_and_kill_9_during_block_import() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for (d, ip) in [(&a, "127.0.48.1"), (&b, "127.0.49.1")] {
        assert!(nodus(d, &["init"]).status.success());
        write_config(d, chain_config(ip)).unwrap();
    }
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "correct horse\n").unwrap();
    let pw = pw.to_str().unwrap();
    let _na = up(&a);
    // b joins through a, also after every restart.
    let bootstrap = format!("mdns = false\nbootstrap = [\"{}\"]\n", p2p_addr(&a));
    write_config(
        &b,
        chain_config("127.0.49.1").replacen("mdns = false\n", &bootstrap, 1),
    )
    .unwrap();
    let mut nb = up(&b);

    // The first development account, imported; its keystore opens in eth_account.
    let dev_key = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
    let dev = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
    let imported = json(&nodus(
        &b,
        &["--json", "wallet", "import", dev_key, "--password-file", pw],
    ));
    assert_eq!(imported["address"], dev);
    let file = imported["file"].as_str().unwrap().to_string();
    let py = Command::new("python3")
        .args([
            "-c",
            "import json,sys; from eth_account import Account; \
             print(Account.from_key(Account.decrypt(json.load(open(sys.argv[1])), sys.argv[2])).address)",
            &file,
            "correct horse",
        ])
        .output()
        .unwrap();
    assert_eq!(
        stdout(&py).trim(),
        dev,
        "web3.py opens our keystore: {}",
        stderr(&py)
    );
    fails_saying(
        &nodus(&b, &["wallet", "import", dev_key, "--password-file", pw]),
        "already",
    );

    assert!(nodus(&a, &["mine"]).status.success());
    let to = "0x000000000000000000000000000000000000bEEF";
    let sent = nodus(&b, &["send", to, "1.5", "--password-file", pw]);
    assert!(sent.status.success(), "{}{}", stdout(&sent), stderr(&sent));
    assert!(stdout(&sent).contains("in block"), "{}", stdout(&sent));
    let hash = stdout(&sent)
        .lines()
        .find_map(|l| l.strip_prefix("transaction "))
        .unwrap()
        .trim()
        .to_string();
    let bal = json(&nodus(&a, &["--json", "wallet", "balance", to]));
    assert_eq!(bal[0]["balance"], "1500000000000000000");
    let shown = json(&nodus(&a, &["--json", "tx", &hash]));
    assert_eq!(shown["receipt"]["status"], "0x1");
    assert!(nodus(&a, &["block", "latest"]).status.success());
    fails_saying(
        &nodus(&b, &["send", "0xnot-an-address", "1"]),
        "is not an address",
    );

    // kill -9 of b while it imports what a keeps mining.
    for round in 0..5u64 {
        std::thread::sleep(Duration::from_millis(150 + 130 * round));
        nb.child.kill().unwrap();
        nb.child.wait().unwrap();
        nb = up(&b);
        let target = chain_json(&a)["height"].as_u64().unwrap();
        wait_for("b to catch up after a kill", || {
            chain_json(&b)["height"].as_u64().unwrap() >= target
        });
    }

    // A transaction accepted just before kill -9 is still pending after the restart.
    assert!(nodus(&a, &["mine", "--stop"]).status.success());
    let sent = nodus(
        &b,
        &[
            "--json",
            "send",
            to,
            "2",
            "--no-wait",
            "--password-file",
            pw,
        ],
    );
    assert!(sent.status.success(), "{}", stderr(&sent));
    let pending = json(&sent)["hash"].as_str().unwrap().to_string();
    nb.child.kill().unwrap();
    nb.child.wait().unwrap();
    let _nb = up(&b);
    let t = json(&nodus(&b, &["--json", "tx", &pending]));
    assert_eq!(t["transaction"]["hash"], pending.as_str());
    assert!(t["receipt"].is_null(), "not mined yet");
    assert!(nodus(&b, &["mine"]).status.success());
    wait_for("the kept transaction to be mined", || {
        !json(&nodus(&b, &["--json", "tx", &pending]))["receipt"].is_null()
    });
}

/// `nodus bench chain` runs nodus and Hardhat side by side and prints every row with a
/// ratio (small numbers: a smoke test, not a measurement).
#[test]
fn bench_chain_prints_nodus_beside_hardhat() {
    let o = Command::new(BIN)
        .args([
            "--json",
            "bench",
            "chain",
            "--calls",
            "200",
            "--txs",
            "20",
            "--import",
            "400",
            "--accounts",
            "1000",
            "--nodes",
            "3",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let v = json(&o);
    assert_eq!(v["txs"], 20);
    for k in ["intake", "block_build", "block_import"] {
        assert!(v["nodus"][k].as_f64().unwrap() > 0.0, "nodus {k}: {v}");
    }
    let rows = v["import"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "value and ERC-20 transfers: {v}");
    assert!(
        rows.iter()
            .all(|r| r["end_to_end_tps"].as_f64().unwrap() > 0.0)
    );
    assert!(v["propagation"]["p99_ms"].as_f64().unwrap() > 0.0);
    assert!(
        v["hardhat"]["block_mine"].as_f64().unwrap_or(0.0) > 0.0,
        "Hardhat was measured in the same run: {v}\n{}",
        stderr(&o)
    );
}

/// File sharing between two `nodus up` processes: `share` on one, `get` on the other,
/// the downloader killed with SIGKILL half way. After the restart it still has every
/// piece it had announced (no re-hash), and `get` finishes the download byte for byte.
#[test]
fn share_and_get_between_processes_survive_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    torrent_node(&a, "127.0.61.1", "upload_limit_kib = 2048\n");
    torrent_node(&b, "127.0.62.1", "");
    let _seeder = up(&a);
    let mut leecher = up(&b);
    let (file, data) = holiday(tmp.path());

    let o = nodus(&a, &["share", file.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let shared = json(&o);
    assert!(s_of(&shared["magnet"]).starts_with("magnet:?xt=urn:btih:"));
    let torrent_path = s_of(&shared["torrent_path"]);
    assert!(Path::new(&torrent_path).is_file());
    let seeder_addr = bittorrent_addr(&a);

    fails_saying(
        &nodus(&b, &["get", "no-such-thing"]),
        "neither a magnet link",
    );

    let out = tmp.path().join("out");
    let o = nodus(
        &b,
        &[
            "get",
            &torrent_path,
            "-o",
            out.to_str().unwrap(),
            "--peer",
            &seeder_addr,
            "--detach",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let id = s_of(&json(&o)["id"]);

    let had = kill_9_half_way(&b, &mut leecher);

    let _leecher = up(&b);
    let o = nodus(&b, &["torrents", "--json"]);
    let t = json(&o)[0].clone();
    assert!(
        t["pieces_have"].as_u64().unwrap() >= had,
        "had {had} pieces before kill -9, {} after",
        t["pieces_have"]
    );
    let o = nodus(&b, &["get", &id, "--peer", &seeder_addr, "--json"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(s_of(&json(&o)["state"]), "seeding");
    assert!(
        std::fs::read(out.join("holiday.mp4")).unwrap() == data,
        "downloaded file differs"
    );
    let o = nodus(&b, &["torrents"]);
    assert!(
        stdout(&o).contains("holiday.mp4") && stdout(&o).contains("seeding"),
        "{}",
        stdout(&o)
    );
}

/// A node for file sharing on its own loopback IP, with no DHT bootstrap.
fn torrent_node(dir: &Path, ip: &str, torrent_extra: &str) {
    std::fs::create_dir_all(dir).unwrap();
    assert!(nodus(dir, &["init"]).status.success());
    write_config(
        dir,
        format!("[p2p]\nlisten = [\"/ip4/{ip}/tcp/0\"]\nmdns = false\n[torrent]\nlisten = \"{ip}:0\"\ndht_bootstrap = []\n{torrent_extra}"),
    )
    .unwrap();
}

/// An 8 MiB file to share, and its bytes.
fn holiday(dir: &Path) -> (PathBuf, Vec<u8>) {
    let file = dir.join("holiday.mp4");
    let data: Vec<u8> = (0..8 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &data).unwrap();
    (file, data)
}

fn bittorrent_addr(dir: &Path) -> String {
    endpoints(dir).unwrap()["extra"]["bittorrent"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Waits until the first torrent of the node at `dir` is between 30% and 90% done (its
/// seeder uploads at 2 MiB/s), kills the node with SIGKILL and returns the pieces it had.
fn kill_9_half_way(dir: &Path, node: &mut Running) -> u64 {
    let start = Instant::now();
    let had = loop {
        let t = json(&nodus(dir, &["torrents", "--json"]))[0].clone();
        let p = t["progress"].as_f64().unwrap_or(0.0);
        if p >= 0.3 {
            assert!(p < 0.9, "too fast to kill half way: {p}");
            break t["pieces_have"].as_u64().unwrap();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no progress: {t}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    node.child.kill().unwrap();
    node.child.wait().unwrap();
    had
}

/// A v2-only magnet link: the downloader fetches the piece layers from the seeder
/// (BEP 52 hash requests) and is killed with SIGKILL half way; the seeder stops too.
/// After the restart the downloader still has the layers, stored with its metainfo: a
/// third node that knows only it gets the metadata, the layers (without which it could
/// verify nothing) and pieces. Then the seeder is back and the download finishes byte
/// for byte.
#[test]
fn v2_magnet_download_keeps_fetched_piece_layers_across_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    torrent_node(&a, "127.0.63.1", "upload_limit_kib = 2048\n");
    torrent_node(&b, "127.0.64.1", "");
    torrent_node(&c, "127.0.65.1", "");
    let mut seeder = up(&a);
    let mut leecher = up(&b);
    let (file, data) = holiday(tmp.path());
    let o = nodus(&a, &["share", file.to_str().unwrap(), "--v2", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let magnet = s_of(&json(&o)["magnet"]);
    assert!(
        magnet.contains("xt=urn:btmh:") && !magnet.contains("urn:btih:"),
        "a v2-only magnet link: {magnet}"
    );
    let get = |node: &Path, peer: &str| {
        let out = node.join("out");
        let o = nodus(
            node,
            &[
                "get",
                &magnet,
                "-o",
                out.to_str().unwrap(),
                "--peer",
                peer,
                "--detach",
                "--json",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        s_of(&json(&o)["id"])
    };
    let id = get(&b, &bittorrent_addr(&a));
    let had = kill_9_half_way(&b, &mut leecher);
    let _ = seeder.child.kill();
    seeder.child.wait().unwrap();

    let _leecher = up(&b);
    let t = json(&nodus(&b, &["torrents", "--json"]))[0].clone();
    assert!(t["pieces_have"].as_u64().unwrap() >= had, "{t}");
    let _third = up(&c);
    get(&c, &bittorrent_addr(&b));
    wait_for(
        "the third node to verify pieces it got from the restarted one",
        || {
            let t = json(&nodus(&c, &["torrents", "--json"]))[0].clone();
            t["pieces_have"].as_u64().unwrap_or(0) > 0
        },
    );

    let _seeder = up(&a);
    let o = nodus(&b, &["get", &id, "--peer", &bittorrent_addr(&a), "--json"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(s_of(&json(&o)["state"]), "seeding");
    assert!(
        std::fs::read(b.join("out/holiday.mp4")).unwrap() == data,
        "downloaded file differs"
    );
}

fn s_of(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// The torrent benchmark's plumbing, with a tiny file: it must print nodus beside the
/// three reference clients, each of which finished. Timing is never asserted.
#[test]
fn bench_torrent_prints_nodus_beside_reference_clients() {
    let o = Command::new(BIN)
        .args([
            "--json",
            "bench",
            "torrent",
            "--size-mib",
            "8",
            "--seeders",
            "1",
            "--limit-secs",
            "90",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let v = json(&o);
    let runs = v["runs"].as_array().unwrap();
    let clients: Vec<&str> = runs.iter().map(|r| r["client"].as_str().unwrap()).collect();
    assert_eq!(
        clients,
        ["nodus", "libtorrent 2.1", "aria2", "Transmission"]
    );
    for r in runs {
        assert!(
            r["seconds"].as_f64().is_some(),
            "{} did not finish: {r}",
            r["client"]
        );
        // CPU time in clock ticks (10 ms): at most two cores' worth of the wall time.
        let cpu = r["cpu_seconds"].as_f64().unwrap_or(-1.0);
        let wall = r["seconds"].as_f64().unwrap_or(0.0);
        assert!(cpu >= 0.0 && cpu <= 2.0 * wall + 0.05, "CPU time of {r}");
        assert!(
            r["seeders_cpu_seconds"].as_f64().is_some_and(|s| s >= 0.0),
            "{r}"
        );
    }
    // libtorrent's Python process alone takes more than a tick to start.
    let libtorrent_cpu = runs[1]["cpu_seconds"].as_f64().unwrap_or(0.0);
    assert!(libtorrent_cpu >= 0.02, "{}", runs[1]);
    assert_eq!(v["check"]["pieces_ok"], 32, "{v}");
}
