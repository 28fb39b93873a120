//! The onion service on real nodes: relays publish signed descriptors by gossip, a node
//! builds circuits from the list it heard, and programs nobody here wrote, curl and
//! Python's `requests` (socks5h://, PySocks), fetch a page through its SOCKS5 proxy and
//! three relays. Credentials pick the circuit; each relay sees only its neighbours.

use std::time::Duration;

use libp2p::PeerId;
use nodus_onion::relay::View;
use nodus_testnet::Testnet;
use nodus_testnet::onion::{add_relay, handle, http_server, wait_relays};

const T: Duration = Duration::from_secs(60);

/// Runs a program that is not ours and returns its stdout, failing on a nonzero exit.
async fn run(program: &str, args: &[&str]) -> Vec<u8> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_and_python_requests_fetch_through_three_relays_by_socks5() {
    nodus_testnet::test_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(1, dir.path()).await.unwrap();
    let relays = [
        add_relay(&mut net, false).await.unwrap(),
        add_relay(&mut net, false).await.unwrap(),
        add_relay(&mut net, true).await.unwrap(),
    ];
    wait_relays(&net, 0, 3, 1, T).await.unwrap();
    let mut views: Vec<_> = relays
        .iter()
        .map(|&k| handle(&net, k).relay().expect("a relay").views.subscribe())
        .collect();
    let page: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    let port = http_server(page.clone()).await.unwrap();
    let url = format!("http://localhost:{port}/page");
    let proxy = handle(&net, 0).socks_addr().to_string();

    let curl = |user: &'static str| {
        let (proxy, url) = (proxy.clone(), url.clone());
        async move {
            let mut args = vec!["-sS", "--max-time", "60", "--socks5-hostname", &proxy, &url];
            if !user.is_empty() {
                args.extend(["--proxy-user", user]);
            }
            run("curl", &args).await
        }
    };
    assert!(curl("").await == page, "curl got the page");
    let script = format!(
        "import requests, sys\n\
         r = requests.get('{url}', proxies={{'http': 'socks5h://{proxy}'}}, timeout=60)\n\
         r.raise_for_status()\n\
         sys.stdout.buffer.write(r.content)\n"
    );
    assert!(
        run("python3", &["-c", &script]).await == page,
        "requests got the page"
    );
    let status = handle(&net, 0).status().await;
    assert_eq!(status.circuits.len(), 1, "one circuit without credentials");
    assert_eq!(status.circuits[0].hops.len(), 3);

    // Each relay saw only its neighbours: one the client, one the destination, the
    // middle neither.
    let client = net.node(0).peer_id();
    let target = format!("localhost:{port}");
    let (mut saw_client, mut saw_target) = (Vec::new(), Vec::new());
    for (i, rx) in views.iter_mut().enumerate() {
        let mut seen: Vec<View> = Vec::new();
        while let Ok(v) = rx.try_recv() {
            seen.push(v);
        }
        let peers: Vec<PeerId> = seen
            .iter()
            .flat_map(|v| match v {
                View::Created { prev } => vec![*prev],
                View::Extended { prev, next } => vec![*prev, *next],
                View::Exit { prev, .. } => vec![*prev],
            })
            .collect();
        assert!(peers.len() <= 3, "relay {i} saw {seen:?}");
        if peers.contains(&client) {
            saw_client.push(i);
        }
        if seen
            .iter()
            .any(|v| matches!(v, View::Exit { target: t, .. } if *t == target))
        {
            saw_target.push(i);
        }
    }
    assert_eq!(saw_client.len(), 1, "one relay (the guard) saw the client");
    assert_eq!(
        saw_target.len(),
        1,
        "one relay (the exit) saw the destination"
    );
    assert_ne!(saw_client, saw_target, "and not the same one");

    // Credentials pick the circuit: two sets, two more circuits; the same set again, none.
    assert!(curl("alice:one").await == page);
    assert!(curl("bob:two").await == page);
    assert!(curl("alice:one").await == page);
    assert_eq!(handle(&net, 0).status().await.circuits.len(), 3);
    net.shutdown().await;
}
