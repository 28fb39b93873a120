//! The onion service on real nodes: relays publish signed descriptors by gossip, a node
//! builds circuits from the list it heard, and programs nobody here wrote, curl and
//! Python's `requests` (socks5h://, PySocks), fetch a page through its SOCKS5 proxy and
//! three relays. Credentials pick the circuit; each relay sees only its neighbours.

use std::time::Duration;

use libp2p::PeerId;
use nodus_onion::relay::View;
use nodus_testnet::Testnet;
use nodus_testnet::onion::{
    add_onion_node, add_relay, handle, http_server, kill_the_middle_mid_download, peers_by_circuit,
    socks_connect, socks_get, wait_relays, wait_service,
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
    // Both pages came back on it (with their headers), and the requests went out.
    let c = &status.circuits[0];
    assert!(
        c.received_bytes > 2 * page.len() as u64 && c.sent_bytes > 0,
        "{} bytes received, {} sent",
        c.received_bytes,
        c.sent_bytes
    );

    // Each relay saw only its neighbours, circuit by circuit: on no circuit did a relay
    // see both the client and the destination. (A circuit built ahead, the spare, may
    // have another guard, so more than one relay may have seen the client.)
    let client = net.node(0).peer_id();
    let target = format!("localhost:{port}");
    let (mut saw_client, mut saw_target) = (Vec::new(), Vec::new());
    for (i, rx) in views.iter_mut().enumerate() {
        let mut circuits: std::collections::HashMap<u64, Vec<View>> = Default::default();
        while let Ok(s) = rx.try_recv() {
            circuits.entry(s.circuit).or_default().push(s.view);
        }
        for (c, seen) in circuits {
            let peers: Vec<PeerId> = seen.iter().flat_map(View::peers).collect();
            let client_here = peers.contains(&client);
            let target_here = seen
                .iter()
                .any(|v| matches!(v, View::Exit { target: t, .. } if *t == target));
            assert!(
                !(client_here && target_here),
                "relay {i} saw both ends on its circuit {c}: {seen:?}"
            );
            // A circuit with no view past its CREATE carried nothing: a one-hop
            // bandwidth probe, which every relay gets from the client.
            if client_here && seen.len() > 1 {
                saw_client.push(i);
            }
            if target_here {
                saw_target.push(i);
            }
        }
    }
    saw_target.dedup();
    assert_eq!(
        saw_target.len(),
        1,
        "one relay, the exit, saw the destination"
    );
    assert!(!saw_client.is_empty() && !saw_client.contains(&saw_target[0]));

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
    let role = handle(&net, 1)
        .set_role(true, true, Some(2_000_000))
        .await
        .unwrap();
    assert!(role.relay && role.exit);
    assert_eq!(role.bandwidth, Some(2_000_000));
    assert_eq!(handle(&net, 1).status().await.relay_bandwidth, 2_000_000);
    wait_relays(&net, 0, 1, 1, T).await.unwrap();
    let peer = net.node(1).peer_id();
    let opened = net
        .node(0)
        .net
        .open_stream(peer, nodus_onion::link::PROTOCOL)
        .await;
    assert!(opened.is_ok(), "a relay takes circuits");
    drop(opened);

    let role = handle(&net, 1).set_role(false, false, None).await.unwrap();
    assert!(!role.relay && handle(&net, 1).relay().is_none());
    let refused = net
        .node(0)
        .net
        .open_stream(peer, nodus_onion::link::PROTOCOL)
        .await;
    assert!(refused.is_err(), "a node that stopped relaying takes none");
    assert!(
        handle(&net, 1).set_role(false, true, None).await.is_err(),
        "no exit without the relay"
    );
    assert!(
        handle(&net, 1)
            .set_role(false, false, Some(1))
            .await
            .is_err(),
        "no bandwidth limit without the relay"
    );
    net.shutdown().await;
}

/// A stream through `proxy` to `target`, its circuit chosen by SOCKS user `user`.
async fn open_as(proxy: &str, target: &str, user: &str) -> std::io::Result<tokio::net::TcpStream> {
    socks_connect(proxy, target, Some((user, "x"))).await
}

/// `GET /` on `s`, and the answer to its end.
async fn get_on(s: &mut tokio::net::TcpStream) -> std::io::Result<Vec<u8>> {
    tokio::io::AsyncWriteExt::write_all(s, b"GET / HTTP/1.0\r\n\r\n").await?;
    Ok(nodus_testnet::onion::read_until_closed(s).await)
}

/// A page on a local web server, and a client's SOCKS proxy to fetch it through.
struct Page {
    proxy: String,
    target: String,
    body: Vec<u8>,
}

impl Page {
    async fn serve(net: &Testnet, client: usize, len: u32) -> Page {
        let body: Vec<u8> = (0..len).map(|i| (i % 241) as u8).collect();
        let port = http_server(body.clone()).await.unwrap();
        Page {
            proxy: handle(net, client).socks_addr().to_string(),
            target: format!("localhost:{port}"),
            body,
        }
    }

    /// Fetches it as SOCKS user `user` (new credentials: a new circuit); whether it
    /// came whole.
    async fn fetched_as(&self, user: &str) -> bool {
        let mut s = open_as(&self.proxy, &self.target, user).await.unwrap();
        get_on(&mut s).await.unwrap().ends_with(&self.body)
    }
}

/// Three relays, the last an exit; their peer ids.
async fn three_relays(net: &mut Testnet) -> Vec<String> {
    let mut ids = Vec::new();
    for exit in [false, false, true] {
        let k = add_relay(net, exit).await.unwrap();
        ids.push(net.node(k).peer_id().to_string());
    }
    ids
}

/// A relay that answers CREATE as a relay should, then swallows every cell: it
/// publishes a signed descriptor like any relay, with node `k`'s identity.
async fn black_hole(net: &Testnet, k: usize) -> PeerId {
    use nodus_onion::cell::{Cell, Command};
    use nodus_onion::link::{PROTOCOL, read_cell, write_cell};
    use nodus_onion::ntor::{self, CREATE_LEN, OnionKey};
    let node = net.node(k);
    let me = node.peer_id();
    let key = OnionKey::generate();
    let mut incoming = node.net.incoming(PROTOCOL).unwrap();
    let answering = key.clone();
    tokio::spawn(async move {
        while let Some((_, mut s)) = futures::StreamExt::next(&mut incoming).await {
            let key = answering.clone();
            tokio::spawn(async move {
                let Ok(Some(create)) = read_cell(&mut s).await else {
                    return;
                };
                let id = nodus_onion::relay::relay_id(&me);
                let Ok((created, _)) = ntor::respond(&id, &[&key], &create.body[..CREATE_LEN])
                else {
                    return;
                };
                if write_cell(&mut s, &Cell::new(Command::Created, &created))
                    .await
                    .is_ok()
                {
                    while let Ok(Some(_)) = read_cell(&mut s).await {}
                }
            });
        }
    });
    let identity = std::fs::read(net.data_dir(k).identity_path()).unwrap();
    let identity = libp2p::identity::Keypair::from_protobuf_encoding(&identity).unwrap();
    let addr = node.p2p_addr("tcp").unwrap();
    let publisher = node.net.clone();
    // It pays the testnet's admission cost, as an attacker would.
    let bits = nodus_onion::OnionConfig::default().admission_bits.min(2);
    let ticket = nodus_onion::admission::solve(
        &me,
        &key.public(),
        nodus_onion::admission::epoch_of(now_ms()),
        bits,
        0,
    );
    tokio::spawn(async move {
        loop {
            let signed = nodus_onion::descriptor::Descriptor::new(
                me,
                key.public(),
                false,
                std::slice::from_ref(&addr),
                now_ms(),
                ticket,
            )
            .sign(&identity)
            .unwrap();
            let _ = publisher.publish(nodus_onion::service::TOPIC, signed).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    me
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_swallows_cells_is_avoided_after_it_failed_circuits() {
    nodus_testnet::test_logs();
    let dir = tempfile::tempdir().unwrap();
    // Node 0 the client, node 1 the black hole once the honest relays are learned.
    let mut net = Testnet::start(2, dir.path()).await.unwrap();
    let honest = three_relays(&mut net).await;
    wait_relays(&net, 0, 3, 1, T).await.unwrap();
    let page = Page::serve(&net, 0, 20_000).await;
    // Honest circuits first, until the build timeout is learned from them.
    let mut i = 0;
    while handle(&net, 0).status().await.build_timeout_ms.is_none() {
        assert!(i < 20, "no build timeout learned after {i} circuits");
        assert!(page.fetched_as(&format!("warm{i}")).await);
        i += 1;
    }
    let hole = black_hole(&net, 1).await.to_string();
    wait_relays(&net, 0, 4, 1, T).await.unwrap();
    // New credentials, new circuits: each request gets through. A build through the
    // hole is given up on after the learned timeout and another path is tried; the
    // hole is late (left out) until that build is judged, when its fixed wait is over.
    // Named twice, the hole is left out for a time.
    let deadline = tokio::time::Instant::now() + 2 * T;
    let (mut i, mut seen_late) = (0, false);
    loop {
        let status = handle(&net, 0).status().await;
        seen_late |= status.late.contains(&hole);
        if status.avoided.contains(&hole) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the black hole was never left out ({i} requests)"
        );
        assert!(page.fetched_as(&format!("user{i}")).await);
        i += 1;
    }
    assert!(seen_late, "the hole was late while its builds were judged");
    let status = handle(&net, 0).status().await;
    assert!(
        honest.iter().all(|p| !status.avoided.contains(p)),
        "honest relays stay in: {:?}",
        status.avoided
    );
    for j in 0..10 {
        assert!(page.fetched_as(&format!("after{j}")).await);
    }
    let circuits = handle(&net, 0).status().await.circuits;
    assert!(
        circuits.iter().all(|c| !c.hops.contains(&hole)),
        "no circuit goes through the hole afterwards"
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_credentials_get_the_circuit_built_ahead_and_another_is_built() {
    nodus_testnet::test_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(1, dir.path()).await.unwrap();
    for exit in [false, false, true] {
        add_relay(&mut net, exit).await.unwrap();
    }
    wait_relays(&net, 0, 3, 1, T).await.unwrap();
    let h = handle(&net, 0).clone();
    let spare = |h: nodus_onion::OnionHandle| async move { h.status().await.spare };
    nodus_testnet::wait_until(T, "a spare circuit", || {
        let h = h.clone();
        async move { spare(h).await.is_some() }
    })
    .await
    .unwrap();
    let ahead = spare(h.clone()).await.unwrap();
    let page: Vec<u8> = vec![7; 10_000];
    let port = http_server(page.clone()).await.unwrap();
    let (proxy, target) = (h.socks_addr().to_string(), format!("localhost:{port}"));
    let mut s = open_as(&proxy, &target, "new").await.unwrap();
    assert!(get_on(&mut s).await.unwrap().ends_with(&page));
    let status = h.status().await;
    assert_eq!(status.circuits.len(), 1);
    assert_eq!(
        status.circuits[0].hops, ahead,
        "the request went over the circuit built ahead"
    );
    // And the next one is built.
    nodus_testnet::wait_until(T, "another spare circuit", || {
        let h = h.clone();
        async move { spare(h).await.is_some() }
    })
    .await
    .unwrap();
    // More sets of credentials than circuits are kept: the oldest idle ones make room,
    // while one that carries a stream stays.
    let mut held = open_as(&proxy, &target, "held").await.unwrap();
    assert_eq!(h.status().await.circuits.len(), 2);
    for i in 0..nodus_onion::paths::MAX_CIRCUITS + 6 {
        let mut s = open_as(&proxy, &target, &format!("user{i}")).await.unwrap();
        assert!(
            get_on(&mut s).await.unwrap().ends_with(&page),
            "request {i}"
        );
    }
    assert!(h.status().await.circuits.len() <= nodus_onion::paths::MAX_CIRCUITS);
    assert!(
        get_on(&mut held).await.unwrap().ends_with(&page),
        "the stream opened first still works"
    );
    net.shutdown().await;
}

/// Waits for `h` to have [`nodus_onion::guards::NUM`] guards (`want`, if given) and a
/// circuit built ahead that enters by one (one built before the guards were heard of
/// is built anew); the guards.
async fn guarded(h: nodus_onion::OnionHandle, want: Option<Vec<String>>) -> Vec<String> {
    let found = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = found.clone();
    nodus_testnet::wait_until(T, "guards, and a spare entering by one", move || {
        let (h, want, found) = (h.clone(), want.clone(), found.clone());
        async move {
            let s = h.status().await;
            let enough = match &want {
                Some(w) => s.guards == *w,
                None => s.guards.len() == nodus_onion::guards::NUM,
            };
            *found.lock().unwrap() = s.guards.clone();
            enough && s.spare.is_some_and(|hops| s.guards.contains(&hops[0]))
        }
    })
    .await
    .unwrap();
    out.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuits_enter_by_guards_that_a_restart_keeps() {
    nodus_testnet::test_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(1, dir.path()).await.unwrap();
    for exit in [false, false, false, true, true] {
        add_relay(&mut net, exit).await.unwrap();
    }
    // A client that takes any relay as a guard at once (a day's age by default).
    let c = add_onion_node(&mut net, |o| o.guard_min_age_secs = 0)
        .await
        .unwrap();
    wait_relays(&net, c, 5, 2, T).await.unwrap();
    let page: Vec<u8> = vec![3; 5_000];
    let port = http_server(page.clone()).await.unwrap();
    let target = format!("localhost:{port}");
    // Every circuit enters by a guard (the first that fits it, unless that one was
    // left out for a moment: the order is the unit tests' to check).
    let check = |status: &nodus_onion::service::Status, guards: &[String]| {
        assert!(!status.circuits.is_empty());
        for circuit in &status.circuits {
            assert!(
                guards.contains(&circuit.hops[0]),
                "{:?} by {guards:?}",
                circuit.hops
            );
        }
    };
    let guards = guarded(handle(&net, c).clone(), None).await;
    for i in 0..8 {
        let proxy = handle(&net, c).socks_addr().to_string();
        let mut s = open_as(&proxy, &target, &format!("user{i}")).await.unwrap();
        assert!(get_on(&mut s).await.unwrap().ends_with(&page));
    }
    let status = handle(&net, c).status().await;
    assert_eq!(status.guards, guards);
    check(&status, &guards);
    // The relays' own status: none of them has guards (all are younger than a day).
    assert!(handle(&net, 1).status().await.guards.is_empty());

    // Killed, as a crash: the guards were written when chosen.
    net.kill(c).await.unwrap();
    net.restart(c).await.unwrap();
    wait_relays(&net, c, 5, 2, T).await.unwrap();
    assert_eq!(
        guarded(handle(&net, c).clone(), Some(guards.clone())).await,
        guards,
        "the same guards, in order, after a restart"
    );
    let proxy = handle(&net, c).socks_addr().to_string();
    let mut s = open_as(&proxy, &target, "after").await.unwrap();
    assert!(get_on(&mut s).await.unwrap().ends_with(&page));
    check(&handle(&net, c).status().await, &guards);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_joins_late_is_handed_the_relay_list_by_its_peers() {
    nodus_testnet::test_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(1, dir.path()).await.unwrap();
    // Relays that publish once, at their start, and not again for an hour.
    for exit in [false, false, true] {
        add_onion_node(&mut net, |o| {
            o.relay = true;
            o.exit = exit;
            o.publish_secs = 3600;
        })
        .await
        .unwrap();
    }
    wait_relays(&net, 0, 3, 1, T).await.unwrap();
    // Past gossip's memory (its message cache: 5 heartbeats of 0.7 s), so that only
    // the lists can tell a newcomer of these relays.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let c = add_onion_node(&mut net, |_| {}).await.unwrap();
    wait_relays(&net, c, 3, 1, T).await.unwrap();
    assert!(handle(&net, c).status().await.from_lists >= 3);
    let page: Vec<u8> = vec![5; 2_000];
    let port = http_server(page.clone()).await.unwrap();
    let proxy = handle(&net, c).socks_addr().to_string();
    let mut s = open_as(&proxy, &format!("localhost:{port}"), "late")
        .await
        .unwrap();
    assert!(get_on(&mut s).await.unwrap().ends_with(&page));
    net.shutdown().await;
}

/// `[msg] anonymous = true`: Alice and Bob message each other through their onion
/// services. What a contact holds of the other (the identity in the card) is no node's
/// peer id, neither node takes messages on the overlay, and both messages came in
/// through an onion service. A message for Bob while he is offline is stored in
/// mailboxes and fetched by him, both through circuits: the mailbox stream is opened
/// by a relay that is not Alice's first hop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_contacts_message_through_onion_services_under_identities_no_node_has() {
    use nodus_msg::{MessageState, MsgHandle};
    use nodus_testnet::onion::add_anonymous_messenger;
    nodus_testnet::test_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(1, dir.path()).await.unwrap();
    for _ in 0..4 {
        add_relay(&mut net, false).await.unwrap();
    }
    let alice = add_anonymous_messenger(&mut net).await.unwrap();
    let bob = add_anonymous_messenger(&mut net).await.unwrap();
    for k in [alice, bob] {
        wait_relays(&net, k, 4, 0, T).await.unwrap();
    }
    let msg = |net: &Testnet, k: usize| {
        net.node(k)
            .service::<MsgHandle>()
            .expect("msg runs")
            .clone()
    };
    let (a, b) = (&msg(&net, alice), &msg(&net, bob));
    let nodes: Vec<PeerId> = (0..net.len()).map(|k| net.node(k).peer_id()).collect();
    for h in [a, b] {
        assert!(
            !nodes.contains(&h.local_peer_id()),
            "an anonymous identity is no node's peer id"
        );
    }
    // Each hosts its identity's onion service; each node hears of the other's.
    let mut addresses = Vec::new();
    for k in [alice, bob] {
        let s = handle(&net, k).status().await.services;
        assert_eq!(s.len(), 1, "{s:?}");
        addresses.push(s[0].address.clone());
    }
    let (a_addr, b_addr) = (&addresses[0], &addresses[1]);
    wait_service(&net, alice, b_addr, 0, T).await.unwrap();
    wait_service(&net, bob, a_addr, 0, T).await.unwrap();

    nodus_testnet::msg::introduce(a, b, "alice", "bob")
        .await
        .unwrap();
    let (a_id, b_id) = (a.local_peer_id().to_string(), b.local_peer_id().to_string());
    let hello = a.send(&b_id, "hello, whoever you are").await.unwrap();
    nodus_testnet::wait_until(T, "bob gets alice's message", || async {
        nodus_testnet::msg::incoming_texts(b, &a_id).await == ["hello, whoever you are"]
    })
    .await
    .unwrap();
    nodus_testnet::wait_until(T, "alice's message delivered", || async {
        a.history(&b_id).await.unwrap().iter().any(|m| {
            m.id == hello.id
                && m.state >= MessageState::Delivered
                && m.state != MessageState::Failed
        })
    })
    .await
    .unwrap();
    b.send(&a_id, "hello back").await.unwrap();
    nodus_testnet::wait_until(T, "alice gets bob's answer", || async {
        nodus_testnet::msg::incoming_texts(a, &b_id).await == ["hello back"]
    })
    .await
    .unwrap();

    // Both came in through the onion services...
    for k in [alice, bob] {
        let s = handle(&net, k).status().await.services;
        assert!(s[0].introductions >= 1, "{s:?}");
    }
    // ...for neither node takes a message stream on the overlay.
    let refused = net
        .node(alice)
        .net
        .open_stream(net.node(bob).peer_id(), nodus_msg::wire::MSG_PROTOCOL)
        .await;
    assert!(refused.is_err(), "bob's node takes messages on the overlay");
    let stats = a.stats().await.unwrap();
    assert!(stats.anonymous && stats.identity == a_id, "{stats:?}");
    // Calls are not made anonymously yet: their signals would carry this node's addresses.
    let e = a
        .send_signal(&b_id, "voice", vec![1])
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not done anonymously yet"), "{e}");

    // Bob goes offline: Alice's next message waits in mailboxes, reached through
    // circuits whose last relay opens the mailbox stream.
    // (Watched from when Bob is gone: his own polls reach mailboxes, Alice's node too.)
    net.stop(bob).await.unwrap();
    let relays: Vec<usize> = (1..=4).collect();
    let mut views: Vec<_> = relays
        .iter()
        .map(|k| handle(&net, *k).relay().expect("a relay").views.subscribe())
        .collect();
    let away = a.send(&b_id, "while you were away").await.unwrap();
    nodus_testnet::wait_until(T, "alice's message stored in mailboxes", || async {
        a.history(&b_id)
            .await
            .unwrap()
            .iter()
            .any(|m| m.id == away.id && m.state == MessageState::Stored)
    })
    .await
    .unwrap();
    let alice_node = net.node(alice).peer_id();
    let mut reached = Vec::new();
    for (k, rx) in relays.iter().zip(views.iter_mut()) {
        while let Ok(seen) = rx.try_recv() {
            if let nodus_onion::relay::View::Exit { prev, target } = seen.view
                && let Some(mailbox) = target.strip_suffix(" /nodus/mailbox/1")
            {
                assert_ne!(prev, alice_node, "the last hop saw alice's node");
                assert_ne!(mailbox, net.node(*k).peer_id().to_string());
                reached.push(mailbox.to_string());
            }
        }
    }
    assert!(
        !reached.is_empty(),
        "no relay opened a mailbox stream for alice"
    );
    assert!(!reached.contains(&alice_node.to_string()), "{reached:?}");

    // Bob comes back and fetches it, through circuits too; Alice learns it arrived.
    net.restart(bob).await.unwrap();
    wait_relays(&net, bob, 4, 0, T).await.unwrap();
    let b = &msg(&net, bob);
    b.poll_mailboxes().await.unwrap();
    nodus_testnet::wait_until(T, "bob fetches what came while he was away", || async {
        nodus_testnet::msg::incoming_texts(b, &a_id)
            .await
            .contains(&"while you were away".to_string())
    })
    .await
    .unwrap();
    nodus_testnet::wait_until(T, "alice's stored message delivered", || async {
        a.history(&b_id).await.unwrap().iter().any(|m| {
            m.id == away.id && m.state >= MessageState::Delivered && m.state != MessageState::Failed
        })
    })
    .await
    .unwrap();
}

/// Relays are weighed by what their users measured them carrying, not by what they
/// say: one held to 400 kB/s by its operator measures near that, far below the others.
/// Only a node that uses circuits measures: here the client, once it fetched a page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_are_measured_by_their_users_and_a_slow_one_measures_slow() {
    nodus_testnet::test_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(1, dir.path()).await.unwrap();
    const LIMIT: u64 = 400_000;
    let slow = add_onion_node(&mut net, |o| {
        o.relay = true;
        o.relay_bandwidth = LIMIT;
    })
    .await
    .unwrap();
    for exit in [false, false, true] {
        add_relay(&mut net, exit).await.unwrap();
    }
    let c = add_onion_node(&mut net, |_| {}).await.unwrap();
    wait_relays(&net, c, 4, 1, T).await.unwrap();
    let h = handle(&net, c).clone();
    assert!(
        h.status().await.measured.is_empty(),
        "no measuring before any use"
    );
    let page = vec![7u8; 10_000];
    let port = http_server(page.clone()).await.unwrap();
    let proxy = h.socks_addr().to_string();
    let got = socks_get(&proxy, &format!("localhost:{port}"), "/")
        .await
        .unwrap();
    assert!(got.ends_with(&page));
    nodus_testnet::wait_until(T, "all four relays measured", || async {
        h.status().await.measured.len() == 4
    })
    .await
    .unwrap();
    let measured = h.status().await.measured;
    let slow_id = net.node(slow).peer_id().to_string();
    let of_slow = measured
        .iter()
        .find(|m| m.relay == slow_id)
        .expect("the slow relay measured")
        .bytes_per_sec;
    // Its limit lets a quarter second's worth through at once, then LIMIT a second.
    assert!(
        of_slow > LIMIT / 2 && of_slow < 2 * LIMIT,
        "{of_slow} B/s measured under a limit of {LIMIT}"
    );
    for m in measured.iter().filter(|m| m.relay != slow_id) {
        assert!(
            m.bytes_per_sec > 4 * of_slow,
            "{} B/s against the slow relay's {of_slow}",
            m.bytes_per_sec
        );
    }
    // Nobody else used circuits, so nobody else measured.
    for k in (0..net.len()).filter(|k| *k != c) {
        assert!(
            handle(&net, k).status().await.measured.is_empty(),
            "node {k}"
        );
    }
    net.shutdown().await;
}

/// An exit that builds circuits as it should, then drops every BEGIN: each request
/// that met it is tried again on another circuit and answered there, and after it
/// failed a few it is left out of paths, the honest relays kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exit_that_builds_circuits_then_drops_streams_is_avoided() {
    nodus_testnet::test_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(1, dir.path()).await.unwrap();
    let honest = three_relays(&mut net).await;
    let hostile = add_relay(&mut net, true).await.unwrap();
    handle(&net, hostile)
        .relay()
        .expect("a relay")
        .swallow_begins
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let hostile = net.node(hostile).peer_id().to_string();
    wait_relays(&net, 0, 4, 2, T).await.unwrap();
    let page = Page::serve(&net, 0, 20_000).await;
    let deadline = tokio::time::Instant::now() + 3 * T;
    let mut i = 0;
    while !handle(&net, 0).status().await.avoided.contains(&hostile) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the exit that drops streams was never left out ({i} requests)"
        );
        assert!(page.fetched_as(&format!("user{i}")).await);
        i += 1;
    }
    let status = handle(&net, 0).status().await;
    assert!(
        honest.iter().all(|p| !status.avoided.contains(p)),
        "honest relays stay in: {:?}",
        status.avoided
    );
    for j in 0..6 {
        assert!(page.fetched_as(&format!("after{j}")).await);
    }
    let circuits = handle(&net, 0).status().await.circuits;
    assert!(
        circuits.iter().all(|c| c.hops.last() != Some(&hostile)),
        "no circuit ends at it afterwards"
    );
    net.shutdown().await;
}
