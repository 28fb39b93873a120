//! The onion service on real nodes: relays publish signed descriptors by gossip, a node
//! builds circuits from the list it heard, and programs nobody here wrote, curl and
//! Python's `requests` (socks5h://, PySocks), fetch a page through its SOCKS5 proxy and
//! three relays. Credentials pick the circuit; each relay sees only its neighbours.

use std::time::Duration;

use libp2p::PeerId;
use nodus_onion::relay::View;
use nodus_testnet::Testnet;
use nodus_testnet::onion::{
    add_relay, handle, http_server, kill_the_middle_mid_download, peers_by_circuit, socks_connect,
    wait_relays, wait_service,
};

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
            seen.push(v.view);
        }
        let peers: Vec<PeerId> = seen.iter().flat_map(View::peers).collect();
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

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_onion_service_is_reached_by_curl_and_keeps_its_address_across_a_restart() {
    nodus_testnet::test_logs();
    let dir = tempfile::tempdir().unwrap();
    // Node 0 the client, node 1 the service; neither relays.
    let mut net = Testnet::start(2, dir.path()).await.unwrap();
    let mut relays = Vec::new();
    for _ in 0..4 {
        relays.push(add_relay(&mut net, false).await.unwrap());
    }
    for k in [0, 1] {
        wait_relays(&net, k, 4, 0, T).await.unwrap();
    }
    let mut views: Vec<_> = relays
        .iter()
        .map(|&k| handle(&net, k).relay().expect("a relay").views.subscribe())
        .collect();
    let page: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let port = http_server(page.clone()).await.unwrap();
    let started = now_ms();
    let served = handle(&net, 1).serve(port, 80).unwrap();
    let address = served.address.clone();
    assert!(
        address.ends_with(".nodus") && address.len() == 62,
        "{address}"
    );
    wait_service(&net, 0, &address, started, T).await.unwrap();

    let proxy = handle(&net, 0).socks_addr().to_string();
    let url = format!("http://{address}/index.html");
    let fetch = || {
        let (proxy, url) = (proxy.clone(), url.clone());
        async move {
            run(
                "curl",
                &["-sS", "--max-time", "60", "--socks5-hostname", &proxy, &url],
            )
            .await
        }
    };
    assert!(
        fetch().await == page,
        "curl got the page from the onion service"
    );
    let status = handle(&net, 0).status().await;
    assert_eq!(status.circuits.len(), 1);
    assert_eq!(
        status.circuits[0].service.as_deref(),
        Some(address.as_str())
    );
    let hosted = handle(&net, 1).status().await.services;
    assert_eq!(hosted.len(), 1);
    assert_eq!(hosted[0].introductions, 1);

    // No relay saw both ends on one circuit: each knows only its neighbours. (One relay
    // may be on both the client's and the service's circuits, as with Tor, each time
    // seeing one end.) Both ends were seen, each by a first hop.
    let (client, service) = (net.node(0).peer_id(), net.node(1).peer_id());
    let (mut saw_client, mut saw_service) = (false, false);
    for (i, rx) in views.iter_mut().enumerate() {
        for (c, peers) in peers_by_circuit(rx) {
            assert!(
                !(peers.contains(&client) && peers.contains(&service)),
                "relay {i} saw both the client and the service on its circuit {c}"
            );
            saw_client |= peers.contains(&client);
            saw_service |= peers.contains(&service);
        }
    }
    assert!(saw_client && saw_service);

    // A port the service does not offer is refused, and the circuit stays usable.
    let refused = socks_connect(&proxy, &format!("{address}:81"), None).await;
    assert!(refused.is_err(), "port 81 is not served");
    assert!(fetch().await == page);

    // Stopped and started again: the same address, reachable again.
    net.stop(1).await.unwrap();
    let restarted = now_ms();
    net.restart(1).await.unwrap();
    let again = handle(&net, 1).status().await.services;
    assert_eq!(
        again.len(),
        1,
        "the service is served again after the restart"
    );
    assert_eq!(again[0].address, address, "with the same address");
    wait_service(&net, 0, &address, restarted, T).await.unwrap();
    assert!(fetch().await == page, "reached again after the restart");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_middle_relay_killed_mid_download_the_circuit_is_rebuilt_and_the_download_resumes() {
    nodus_testnet::test_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(1, dir.path()).await.unwrap();
    // One exit, so every middle is one of the three others.
    for exit in [false, false, false, true] {
        add_relay(&mut net, exit).await.unwrap();
    }
    wait_relays(&net, 0, 4, 1, T).await.unwrap();
    let size = 4_000_000;
    let r = kill_the_middle_mid_download(&mut net, 0, size)
        .await
        .unwrap();
    assert_eq!(r.before, size / 2, "half came before the kill");
    assert!(
        r.broken_at < size,
        "the download broke with its circuit: {r:?}"
    );
    assert!(r.whole, "the download resumed and completed: {r:?}");
    assert_eq!(r.new_hops.len(), 3, "on a new circuit: {r:?}");
    assert!(
        !r.new_hops.contains(&r.killed.to_string()),
        "which leaves out the dead relay: {r:?}"
    );
    assert_eq!(
        handle(&net, 0).status().await.circuits.len(),
        1,
        "the broken circuit is gone"
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_turned_on_at_run_time_is_heard_of_and_one_turned_off_takes_no_circuits() {
    nodus_testnet::test_logs();
    let dir = tempfile::tempdir().unwrap();
    let net = Testnet::start(2, dir.path()).await.unwrap();
    let role = handle(&net, 1).set_role(true, true).await.unwrap();
    assert!(role.relay && role.exit);
    wait_relays(&net, 0, 1, 1, T).await.unwrap();
    let peer = net.node(1).peer_id();
    let opened = net
        .node(0)
        .net
        .open_stream(peer, nodus_onion::link::PROTOCOL)
        .await;
    assert!(opened.is_ok(), "a relay takes circuits");
    drop(opened);

    let role = handle(&net, 1).set_role(false, false).await.unwrap();
    assert!(!role.relay && handle(&net, 1).relay().is_none());
    let refused = net
        .node(0)
        .net
        .open_stream(peer, nodus_onion::link::PROTOCOL)
        .await;
    assert!(refused.is_err(), "a node that stopped relaying takes none");
    assert!(
        handle(&net, 1).set_role(false, true).await.is_err(),
        "no exit without the relay"
    );
    net.shutdown().await;
}
