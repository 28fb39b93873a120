//! Tier 2: several real nodes in one process, real sockets on 127.0.0.0/8.

use std::time::Duration;

use nodus_net::NetEvent;
use nodus_testnet::{Testnet, hidden_node_config, node_config, node_ip, wait_until};
use tokio::sync::broadcast;

const T: Duration = Duration::from_secs(20);

async fn connect_over(transport: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(1, dir.path()).await.unwrap();
    // A second node with no bootstrap: it joins only by the explicit dial below.
    net.add_node(node_config(node_ip(1), &[])).await.unwrap();
    let target = net
        .node(0)
        .p2p_addr(transport)
        .expect("listener of that transport");
    let peer = net.node(1).net.dial(target).await.unwrap();
    assert_eq!(peer, net.node(0).peer_id());
    // The dialer knows first; the listener processes its side of the handshake a moment later.
    let expect = if transport == "tcp" {
        "/tcp/"
    } else {
        "/quic-v1"
    };
    let other = net.node(1).peer_id().to_string();
    wait_until(T, "node 0 to list node 1", || async {
        let peers = net.node(0).net.peers().await.unwrap();
        peers
            .iter()
            .any(|p| p.peer_id == other && p.addresses.iter().any(|a| a.contains(expect)))
    })
    .await
    .unwrap();
    let rtts = net
        .node(1)
        .net
        .ping(net.node(0).peer_id(), 3)
        .await
        .unwrap();
    assert_eq!(rtts.len(), 3);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_connect_over_tcp() {
    connect_over("tcp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_connect_over_quic() {
    connect_over("quic-v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_nodes_share_dht_records_and_gossip() {
    nodus_testnet::test_logs();
    let dir = tempfile::tempdir().unwrap();
    let t = std::time::Instant::now();
    let net = Testnet::start(20, dir.path()).await.unwrap();
    eprintln!("started in {:?}", t.elapsed());
    net.wait_connected(1, T).await.unwrap();
    eprintln!("connected after {:?}", t.elapsed());

    // Everyone subscribes; wait for the mesh before publishing.
    let mut subs = Vec::new();
    for k in net.running() {
        subs.push(net.node(k).net.subscribe("news").await.unwrap());
    }
    net.wait_topic_mesh("news", 1, T).await.unwrap();
    eprintln!("mesh after {:?}", t.elapsed());

    let replicated = net
        .node(7)
        .net
        .put_record(b"/kv/answer".to_vec(), b"42".to_vec())
        .await
        .unwrap();
    assert!(replicated, "other peers took copies");
    eprintln!("put after {:?}", t.elapsed());
    for k in net.running() {
        let v = net.node(k).net.get_record(b"/kv/answer".to_vec()).await;
        assert_eq!(v.unwrap(), b"42", "node {k} reads the record");
    }

    let id = net
        .node(3)
        .net
        .publish("news", b"hello all".to_vec())
        .await
        .unwrap();
    for (k, rx) in subs.iter_mut().enumerate() {
        if k == 3 {
            continue; // gossipsub does not echo to the publisher
        }
        let m = tokio::time::timeout(T, rx.recv()).await.unwrap().unwrap();
        assert_eq!(m.data, b"hello all", "node {k}");
        assert_eq!(m.id, id);
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_outside_a_namespace_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let net = Testnet::start(2, dir.path()).await.unwrap();
    let err = net
        .node(0)
        .net
        .put_record(b"/nosuch/x".to_vec(), b"v".to_vec())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown namespace"), "{err}");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_leaves_peer_lists_and_the_rest_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(5, dir.path()).await.unwrap();
    net.wait_connected(2, T).await.unwrap();
    let victim = net.node(2).peer_id().to_string();
    net.kill(2).await.unwrap();
    wait_until(T, "victim gone from every peer list", || async {
        for k in net.running() {
            let peers = net.node(k).net.peers().await.unwrap();
            if peers.iter().any(|p| p.peer_id == victim) {
                return false;
            }
        }
        true
    })
    .await
    .unwrap();
    let replicated = net
        .node(1)
        .net
        .put_record(b"/kv/after".to_vec(), b"still here".to_vec())
        .await
        .unwrap();
    assert!(replicated);
    let v = net
        .node(4)
        .net
        .get_record(b"/kv/after".to_vec())
        .await
        .unwrap();
    assert_eq!(v, b"still here");
    net.shutdown().await;
}

/// The demo kills node 0 on some runs (the relay in use is either node); a node added
/// after that must still find the network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_added_after_node_0_died_joins_through_another() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(3, dir.path()).await.unwrap();
    net.wait_connected(2, T).await.unwrap();
    net.kill(0).await.unwrap();
    let k = net.len();
    let joined = net
        .add_node(node_config(node_ip(k), &net.bootstrap_addrs()))
        .await
        .unwrap();
    wait_until(T, "the new node to have a peer", || async {
        !net.node(joined).net.peers().await.unwrap().is_empty()
    })
    .await
    .unwrap();
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_keeps_its_identity() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(3, dir.path()).await.unwrap();
    let before = net.node(1).peer_id();
    net.kill(1).await.unwrap();
    net.restart(1).await.unwrap();
    assert_eq!(net.node(1).peer_id(), before);
    net.wait_connected(1, T).await.unwrap();
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_listening_only_through_a_relay_is_reached_by_others() {
    nodus_testnet::test_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(3, dir.path()).await.unwrap();
    let relay = net.node(0).p2p_addr("tcp").unwrap().to_string();
    let mut config = node_config(node_ip(3), std::slice::from_ref(&relay));
    config.p2p.listen.clear();
    config.p2p.relays = vec![relay];
    let hidden = net.add_node(config).await.unwrap();
    wait_until(T, "relay reservation", || async {
        let s = net.node(hidden).net.status().await.unwrap();
        s.listen_addrs.iter().any(|a| a.contains("p2p-circuit"))
    })
    .await
    .unwrap();
    let status = net.node(hidden).net.status().await.unwrap();
    assert!(
        status
            .listen_addrs
            .iter()
            .all(|a| a.contains("p2p-circuit")),
        "hidden node must have no direct listener: {:?}",
        status.listen_addrs
    );
    let hidden_id = net.node(hidden).peer_id();
    // A newcomer that knows nobody, only the one address the hidden node publishes.
    let newcomer = net.add_node(node_config(node_ip(4), &[])).await.unwrap();
    // That address is a relay circuit; dialing it connects through node 0.
    let circuit: libp2p::Multiaddr = status
        .listen_addrs
        .iter()
        .find(|a| a.contains("/p2p-circuit"))
        .unwrap()
        .parse()
        .unwrap();
    let reached = net.node(newcomer).net.dial(circuit).await.unwrap();
    assert_eq!(reached, hidden_id);
    let rtts = net.node(newcomer).net.ping(hidden_id, 2).await.unwrap();
    assert_eq!(rtts.len(), 2);
    // The others find it by peer id alone, through the DHT.
    for k in [1, 2] {
        let rtts = net.node(k).net.ping(hidden_id, 2).await.unwrap();
        assert_eq!(rtts.len(), 2, "node {k} pinged the hidden node");
    }

    // Between two nodes that both lack a listener, the relay is the only path (no hole
    // punch can succeed), and it carries more than libp2p's default circuit limit of
    // 128 KiB.
    const SIZE: usize = 1024 * 1024;
    let protocol = libp2p::StreamProtocol::new("/nodus/test-count/1");
    let mut incoming = net.node(hidden).net.incoming(protocol.clone()).unwrap();
    tokio::spawn(async move {
        use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
        while let Some((_, mut s)) = incoming.next().await {
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0u64;
            while total < SIZE as u64 {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n as u64,
                }
            }
            let _ = s.write_all(&total.to_be_bytes()).await;
            let _ = s.close().await;
        }
    });
    let mut walled_config = node_config(node_ip(5), &[]);
    walled_config.p2p.listen.clear();
    let walled = net.add_node(walled_config).await.unwrap();
    let circuit: libp2p::Multiaddr = net
        .node(hidden)
        .net
        .status()
        .await
        .unwrap()
        .listen_addrs
        .iter()
        .find(|a| a.contains("/tcp/") && a.contains("/p2p-circuit"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(net.node(walled).net.dial(circuit).await.unwrap(), hidden_id);
    let mut stream = net
        .node(walled)
        .net
        .open_stream(hidden_id, protocol)
        .await
        .unwrap();
    {
        use futures::{AsyncReadExt, AsyncWriteExt};
        stream.write_all(&vec![7u8; SIZE]).await.unwrap();
        stream.flush().await.unwrap();
        let mut count = [0u8; 8];
        stream.read_exact(&mut count).await.unwrap();
        assert_eq!(u64::from_be_bytes(count), SIZE as u64);
    }
    let peers = net.node(walled).net.peers().await.unwrap();
    let to_hidden = peers
        .iter()
        .find(|p| p.peer_id == hidden_id.to_string())
        .unwrap();
    assert!(to_hidden.relayed, "only relayed: {:?}", to_hidden.addresses);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dials_by_dns_name_and_caps_connections_per_peer() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(0, dir.path()).await.unwrap();
    // `localhost` resolves to 127.0.0.1, so this node listens there.
    let a = net
        .add_node(node_config("127.0.0.1".parse().unwrap(), &[]))
        .await
        .unwrap();
    let b = net.add_node(node_config(node_ip(1), &[])).await.unwrap();
    let tcp = net.node(a).p2p_addr("tcp").unwrap().to_string();
    let by_name = tcp.replace("/ip4/127.0.0.1/", "/dns4/localhost/");
    assert!(by_name.starts_with("/dns4/localhost/tcp/"), "{by_name}");
    let peer = net
        .node(b)
        .net
        .dial(by_name.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(peer, net.node(a).peer_id());

    // Dialing an address always opens a new connection; the third to one peer is refused.
    let addr: libp2p::Multiaddr = tcp.parse().unwrap();
    net.node(b).net.dial(addr.clone()).await.unwrap();
    let third = net.node(b).net.dial(addr).await.unwrap_err();
    assert!(third.to_string().contains("connection limit"), "{third}");
    let peers = net.node(b).net.peers().await.unwrap();
    let to_a = peers
        .iter()
        .find(|p| p.peer_id == peer.to_string())
        .unwrap();
    assert_eq!(to_a.addresses.len(), 2, "{:?}", to_a.addresses);
    net.shutdown().await;
}

/// A stream asked for while the connection it lands on is closing (here: closed by the
/// asking node itself a moment before) opens anyway, on a new connection. libp2p-stream
/// hands the request to a connection it still lists; without the retry in
/// `NetworkHandle::open_stream` it fails with "connection reset".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_opens_although_its_connection_closes_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    // Node 1 joins through node 0, so it knows node 0's address to dial again.
    let net = Testnet::start(2, dir.path()).await.unwrap();
    net.wait_connected(1, T).await.unwrap();
    let peer = net.node(0).peer_id();
    for round in 0..10 {
        net.node(1).net.disconnect(peer).await.unwrap();
        let rtts = net.node(1).net.ping(peer, 1).await;
        assert!(rtts.is_ok(), "round {round}: {rtts:?}");
    }
}

/// Dialing a peer by id when no address is known looks it up in the DHT. The dial is
/// done once the lookup reaches the peer, not when the whole lookup ends: a dead node
/// among those asked holds the lookup's end until its QUIC handshake times out (3 s).
/// Shown by events, not by timing: when the dial is answered the dialer's dial to the
/// dead node has not failed yet, and it does fail afterwards (so the lookup did ask it).
///
/// The dialer must not meet the target before it dials. It only dials out (no listen
/// address, no relay), so the target's own bootstrap cannot reach it, and it is quiet
/// when the target starts: it knows every other node, and an explicit bootstrap takes
/// the place of the one libp2p-kad schedules 500 ms after each new peer, which would
/// otherwise meet the target whenever it ran late (seen once in CI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dial_by_id_does_not_wait_for_a_dead_peer_in_the_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(4, dir.path()).await.unwrap();
    net.wait_connected(3, T).await.unwrap();
    let mut outbound_only = node_config(node_ip(4), &net.bootstrap_addrs());
    outbound_only.p2p.listen.clear();
    let dialer = net.add_node(outbound_only).await.unwrap();
    let servers: Vec<_> = (0..4).map(|k| net.node(k).peer_id()).collect();
    wait_until(T, "the dialer to know nodes 0 to 3", || async {
        let table = net.node(dialer).net.routing_table().await.unwrap();
        servers.iter().all(|s| table.iter().any(|(p, _)| p == s))
    })
    .await
    .unwrap();
    assert_eq!(net.node(dialer).net.bootstrap().await.unwrap(), 4);
    wait_until(T, "the dialer's queries to end", || async {
        net.node(dialer).net.status().await.unwrap().dht_queries == 0
    })
    .await
    .unwrap();
    let dead = net.node(3).peer_id();
    net.kill(3).await.unwrap();
    // The target has no public address and listens through relays 0 and 1, as Bob
    // does in the demo.
    let relays: Vec<String> = [0, 1]
        .iter()
        .filter_map(|k| net.node(*k).p2p_addr("tcp"))
        .map(|a| a.to_string())
        .collect();
    let target = net.add_node(hidden_node_config(5, &relays)).await.unwrap();
    net.wait_circuits(target, 2, T).await.unwrap();
    let target_id = net.node(target).peer_id();
    let known = net.node(dialer).net.routing_table().await.unwrap();
    assert!(
        !known.iter().any(|(p, _)| *p == target_id),
        "the dialer must not know the target yet"
    );
    let peers = net.node(dialer).net.peers().await.unwrap();
    assert!(
        !peers.iter().any(|p| p.peer_id == target_id.to_string()),
        "the dialer must not be connected to the target yet"
    );
    let mut events = net.node(dialer).net.events();
    let got = net.node(dialer).net.dial_peer(target_id).await.unwrap();
    assert_eq!(got, target_id);
    let dead_failed = |ev: &NetEvent| matches!(ev, NetEvent::DialFailed { peer, .. } if *peer == dead.to_string());
    // Without the early answer the dial waits for the lookup's end, which waits for the
    // dead node's QUIC handshake to time out: its failure would already be here.
    loop {
        match events.try_recv() {
            Ok(ev) => assert!(
                !dead_failed(&ev),
                "the dial waited for the dead node: {ev:?}"
            ),
            Err(broadcast::error::TryRecvError::Empty) => break,
            Err(e) => panic!("event stream: {e}"),
        }
    }
    tokio::time::timeout(T, async {
        loop {
            match events.recv().await {
                Ok(ev) if dead_failed(&ev) => return,
                Ok(_) => {}
                Err(e) => panic!("event stream: {e}"),
            }
        }
    })
    .await
    .expect("the lookup asked the dead node, and that dial failed after the dial by id");
}
