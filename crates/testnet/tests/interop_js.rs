//! Tier 3: a js-libp2p peer (interop/js/peer.mjs) and nodus, both directions: nodus
//! dials js, js dials nodus; identify, ping, and gossipsub messages each way, over Noise
//! (js-libp2p's default); then a js peer that only has `@libp2p/tls` (Node's OpenSSL TLS
//! 1.3), which meets nodus's own libp2p TLS handshake.
//! Needs `node` and `npm ci` in interop/js, which scripts/test does.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nodus_testnet::{Testnet, node_config, node_ip, wait_until};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/js")
}

/// Waits for the next line from the js peer whose `event` is `kind` and that passes `f`.
fn expect(rx: &mpsc::Receiver<Value>, kind: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + T;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let v = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("js peer never reported {kind}"));
        if v["event"] == kind && f(&v) {
            return v;
        }
    }
}

/// Starts interop/js/peer.mjs dialing `target` with `security`; its JSON lines arrive on
/// the receiver.
fn js_peer(target: &str, security: &str) -> (Child, mpsc::Receiver<Value>) {
    let dir = js_dir();
    assert!(
        dir.join("node_modules/libp2p").exists(),
        "js-libp2p is not installed: run scripts/test (it runs `npm ci` in {})",
        dir.display()
    );
    let mut child = Command::new("node")
        .arg("peer.mjs")
        .arg(target)
        .arg(security)
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("`node` is installed (scripts/test installs it)");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    (child, rx)
}

/// Node `k`'s count of connections secured with `protocol` (any cipher when `cipher` is
/// None), from its `/metrics`.
async fn secured(net: &Testnet, k: usize, protocol: &str, cipher: Option<&str>) -> u64 {
    let token = std::fs::read_to_string(net.data_dir(k).cookie_path()).unwrap();
    let text = reqwest::Client::new()
        .get(format!("{}/metrics", net.node(k).api_url()))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let protocol = format!("protocol=\"{protocol}\"");
    text.lines()
        .filter(|l| l.starts_with("nodus_net_secured_connections_total{") && l.contains(&protocol))
        .filter(|l| cipher.is_none_or(|c| l.contains(&format!("cipher=\"{c}\""))))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// Node `k` dials the js peer at `js_addr`, finds the peer id it expects, and pings it.
async fn dial_and_ping(net: &Testnet, k: usize, js_addr: &str, js_id: &str) {
    let peer = net
        .node(k)
        .net
        .dial(js_addr.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(peer.to_string(), js_id);
    assert_eq!(net.node(k).net.ping(peer, 3).await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_libp2p_and_nodus_identify_ping_and_gossip_both_ways() {
    let tmp = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(1, tmp.path()).await.unwrap();
    let b = net.add_node(node_config(node_ip(1), &[])).await.unwrap();
    let (a, b_addr) = (0, net.node(b).p2p_addr("tcp").unwrap());
    let (a_id, b_id) = (
        net.node(a).peer_id().to_string(),
        net.node(b).peer_id().to_string(),
    );
    let mut subs = Vec::new();
    for k in [a, b] {
        subs.push(net.node(k).net.subscribe("interop").await.unwrap());
    }

    let (mut child, rx) = js_peer(&b_addr.to_string(), "noise");
    let listening = expect(&rx, "listening", |_| true);
    let js_id = listening["peer"].as_str().unwrap().to_string();
    let js_addr = format!("{}/p2p/{js_id}", listening["addrs"][0].as_str().unwrap());

    // js dials nodus (node b): js identifies b, and pings it.
    let ident = expect(&rx, "identified", |v| v["peer"] == b_id.as_str());
    assert!(
        ident["agent"].as_str().unwrap().starts_with("nodus/"),
        "{ident}"
    );
    assert!(
        ident["protocols"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "/ipfs/ping/1.0.0"),
        "{ident}"
    );
    let ping = expect(&rx, "ping", |_| true);
    assert!(ping["rtt"].as_f64().is_some(), "{ping}");

    // nodus (node a) dials js, identifies it and pings it.
    dial_and_ping(&net, a, &js_addr, &js_id).await;
    wait_until(T, "nodus to identify the js peer", || async {
        let peers = net.node(a).net.peers().await.unwrap();
        peers.iter().any(|p| {
            p.peer_id == js_id && p.agent.as_deref().is_some_and(|a| a.contains("js-libp2p"))
        })
    })
    .await
    .unwrap();

    // Gossip: nodus -> js, then js -> nodus (both nodus nodes get it through js).
    wait_until(T, "js to join the topic", || async {
        net.node(a)
            .net
            .topic_peers("interop")
            .await
            .map(|p| p.iter().any(|p| p.to_string() == js_id))
            .unwrap_or(false)
    })
    .await
    .unwrap();
    net.node(a)
        .net
        .publish("interop", b"from-nodus".to_vec())
        .await
        .unwrap();
    let m = expect(&rx, "message", |v| v["data"] == "from-nodus");
    assert_eq!(m["from"], a_id.as_str());
    for (k, rx) in subs.iter_mut().enumerate() {
        let got = tokio::time::timeout(T, async {
            loop {
                let m = rx.recv().await.unwrap();
                if m.data == b"from-js" {
                    return m;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("nodus node {k} never got the js message"));
        assert_eq!(got.source.as_deref(), Some(js_id.as_str()));
    }
    assert_eq!(
        secured(&net, b, "/noise", None).await,
        1,
        "js offers Noise only"
    );
    drop(child.stdin.take());
    let _ = child.wait();
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_libp2p_tls_peer_and_nodus_ping_both_ways() {
    let tmp = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(1, tmp.path()).await.unwrap();
    let b = net.add_node(node_config(node_ip(2), &[])).await.unwrap();
    let a = 0;
    let b_id = net.node(b).peer_id().to_string();
    let (mut child, rx) = js_peer(&net.node(b).p2p_addr("tcp").unwrap().to_string(), "tls");
    let listening = expect(&rx, "listening", |_| true);
    let js_id = listening["peer"].as_str().unwrap().to_string();
    let js_addr = format!("{}/p2p/{js_id}", listening["addrs"][0].as_str().unwrap());

    // js dials nodus (node b) over TLS: identify and ping.
    expect(&rx, "identified", |v| v["peer"] == b_id.as_str());
    let ping = expect(&rx, "ping", |_| true);
    assert!(ping["rtt"].as_f64().is_some(), "{ping}");
    assert_eq!(secured(&net, b, "/tls/1.0.0", None).await, 1);
    assert_eq!(secured(&net, b, "/noise", None).await, 0);

    // nodus (node a) dials js: nodus's client order puts AES-128-GCM first.
    dial_and_ping(&net, a, &js_addr, &js_id).await;
    assert_eq!(
        secured(&net, a, "/tls/1.0.0", Some("TLS13_AES_128_GCM_SHA256")).await,
        1
    );
    drop(child.stdin.take());
    let _ = child.wait();
    net.shutdown().await;
}
