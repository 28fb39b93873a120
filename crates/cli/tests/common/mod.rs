//! Helpers of the `nodus` binary's tests: run it in a data dir, start nodes as
//! processes, read their endpoints, talk to their API.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_nodus");

pub fn nodus(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run nodus")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The command failed and its error mentions `text`.
pub fn fails_saying(o: &Output, text: &str) {
    assert!(!o.status.success(), "expected a failure: {}", stdout(o));
    assert!(stderr(o).contains(text), "{}", stderr(o));
}

pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", stdout(o), stderr(o)))
}

/// Writes a node's config.toml. Every node of these tests takes free ports for its
/// JSON-RPC server, BitTorrent listener, Nostr relay, content gateway and SOCKS5 proxy (the defaults
/// can only be had by one).
pub fn write_config(dir: &Path, text: impl AsRef<str>) -> std::io::Result<()> {
    let mut text = text.as_ref().to_string();
    if !text.contains("[chain]") {
        text.push_str("[chain]\nrpc_listen = \"127.0.0.1:0\"\n");
    }
    if !text.contains("[torrent]") {
        text.push_str("[torrent]\nlisten = \"127.0.0.1:0\"\ndht_bootstrap = []\n");
    }
    if !text.contains("[social]") {
        text.push_str("[social]\nlisten = \"127.0.0.1:0\"\n");
    }
    if !text.contains("[gateway]") {
        text.push_str("[gateway]\nlisten = \"127.0.0.1:0\"\n");
    }
    if !text.contains("[onion]") {
        text.push_str("[onion]\nsocks_listen = \"127.0.0.1:0\"\n");
    }
    std::fs::write(dir.join("config.toml"), text)
}

/// A data dir whose node listens on TCP at `ip` only.
pub fn init_at(dir: &Path, ip: &str) {
    let o = nodus(dir, &["init"]);
    assert!(o.status.success(), "{}", stderr(&o));
    write_config(
        dir,
        format!("[p2p]\nlisten = [\"/ip4/{ip}/tcp/0\"]\nmdns = false\n"),
    )
    .unwrap();
}

/// A node for file sharing on its own loopback IP, with no DHT bootstrap.
pub fn torrent_node(dir: &Path, ip: &str, torrent_extra: &str) {
    std::fs::create_dir_all(dir).unwrap();
    assert!(nodus(dir, &["init"]).status.success());
    write_config(
        dir,
        format!("[p2p]\nlisten = [\"/ip4/{ip}/tcp/0\"]\nmdns = false\n[torrent]\nlisten = \"{ip}:0\"\ndht_bootstrap = []\n{torrent_extra}"),
    )
    .unwrap();
}

pub struct Running {
    pub child: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn endpoints(dir: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("endpoints.json")).ok()?;
    serde_json::from_str(&text).ok()
}

pub fn up(dir: &Path) -> Running {
    up_with_env(dir, &[])
}

/// A node started with these environment variables too (a sound server's address).
pub fn up_with_env(dir: &Path, env: &[(&str, &str)]) -> Running {
    let _ = std::fs::remove_file(dir.join("endpoints.json"));
    let child = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(["up", "--log", "warn"])
        .envs(env.iter().copied())
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

pub fn api_get(dir: &Path, path: &str, token: Option<&str>) -> (u16, String) {
    api_request(dir, "GET", path, token, None)
}

/// A raw HTTP/1.1 request to the node's API: (status, whole response).
pub fn api_request(
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

/// A request to the node's API with the header lines given as they are:
/// (status, whole response).
pub fn api_raw(dir: &Path, method: &str, path: &str, headers: &str, body: &[u8]) -> (u16, String) {
    let api = endpoints(dir).unwrap()["api"].as_str().unwrap().to_string();
    let hostport = api.trim_start_matches("http://");
    let mut s = TcpStream::connect(hostport).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    // The server may answer (413) and close before the whole body is sent.
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let code = resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, resp)
}

pub fn p2p_addr(dir: &Path) -> String {
    endpoints(dir).unwrap()["p2p"][0]
        .as_str()
        .unwrap()
        .to_string()
}

pub fn connect(dir: &Path, to: &Path) {
    let o = nodus(dir, &["connect", &p2p_addr(to)]);
    assert!(o.status.success(), "{}", stderr(&o));
}

pub fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
