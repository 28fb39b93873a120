//! Which security a TCP connection ends up with, read from each node's
//! `nodus_net_secured_connections_total`: two nodus nodes use TLS with AES-128-GCM; a stock
//! rust-libp2p peer that only has libp2p-tls (ChaCha20-Poly1305 first) or only Noise
//! still connects and pings in both directions; so does a stock QUIC peer (libp2p-quic's
//! own TLS settings) with nodus's QUIC (its own TLS settings);
//! garbage after TLS is selected drops that connection only. Real sockets on 127.0.0.1.

use std::time::Duration;

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{Multiaddr, PeerId, ping, tcp};
use nodus_net::NetworkHandle;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

mod common;
use common::{addr_of, config};

const T: Duration = Duration::from_secs(20);

struct Node {
    net: NetworkHandle,
    registry: Registry,
}

impl Node {
    fn start(ip: &str) -> Node {
        let mut registry = Registry::default();
        let (net, _task) =
            nodus_net::spawn(Keypair::generate_ed25519(), config(ip), &mut registry).unwrap();
        Node { net, registry }
    }

    async fn addr(&self) -> Multiaddr {
        addr_of(&self.net).await
    }

    fn counter(&self, name: &str) -> u64 {
        common::counter(&self.registry, name)
    }

    /// How many connections were secured with `protocol` and `cipher`.
    fn secured(&self, protocol: &str, cipher: &str) -> u64 {
        let mut text = String::new();
        encode(&mut text, &self.registry).unwrap();
        let wanted = format!(
            "nodus_net_secured_connections_total{{protocol=\"{protocol}\",cipher=\"{cipher}\"}} "
        );
        text.lines()
            .find_map(|l| l.strip_prefix(&wanted))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0)
    }

    fn secured_total(&self) -> u64 {
        let mut text = String::new();
        encode(&mut text, &self.registry).unwrap();
        text.lines()
            .filter(|l| l.starts_with("nodus_net_secured_connections_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodus_nodes_secure_tcp_with_tls_and_aes_gcm() {
    let a = Node::start("127.0.61.1");
    let b = Node::start("127.0.61.2");
    let b_id = a.net.dial(b.addr().await).await.unwrap();
    let rtts = a.net.ping(b_id, 3).await.unwrap();
    assert_eq!(rtts.len(), 3);
    for n in [&a, &b] {
        assert_eq!(n.secured("/tls/1.0.0", "TLS13_AES_128_GCM_SHA256"), 1);
        assert_eq!(n.secured_total(), 1, "one connection, secured once");
    }
}

/// What a stock rust-libp2p peer saw: connections and successful pings.
enum Seen {
    Connected(PeerId),
    Pinged(PeerId),
}

/// A plain rust-libp2p node (TCP, the given security, yamux 16 KiB frames, ping) listening
/// on `ip`, dialing `dial` if given. Returns its address and what it sees.
async fn stock_peer(
    ip: &str,
    tls: bool,
    dial: Option<Multiaddr>,
) -> (Multiaddr, mpsc::UnboundedReceiver<Seen>) {
    let ping = |_: &Keypair| ping::Behaviour::new(ping::Config::new().with_interval(T / 100));
    macro_rules! swarm_with {
        ($security:expr) => {
            libp2p::SwarmBuilder::with_new_identity()
                .with_tokio()
                .with_tcp(
                    tcp::Config::default(),
                    $security,
                    libp2p::yamux::Config::default,
                )
                .unwrap()
                .with_behaviour(ping)
                .unwrap()
                .with_swarm_config(|c| c.with_idle_connection_timeout(T))
                .build()
        };
    }
    let swarm = if tls {
        swarm_with!(libp2p::tls::Config::new)
    } else {
        swarm_with!(libp2p::noise::Config::new)
    };
    run_stock(swarm, format!("/ip4/{ip}/tcp/0"), dial).await
}

/// Listens on `listen` (and dials `dial`), then reports what the stock peer sees.
async fn run_stock(
    mut swarm: libp2p::Swarm<ping::Behaviour>,
    listen: String,
    dial: Option<Multiaddr>,
) -> (Multiaddr, mpsc::UnboundedReceiver<Seen>) {
    swarm.listen_on(listen.parse().unwrap()).unwrap();
    let me = *swarm.local_peer_id();
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address.with_p2p(me).unwrap();
        }
    };
    if let Some(d) = dial {
        // From a new port: a stock dial from the listen port binds 0.0.0.0:port, which
        // fails (EADDRINUSE, no fallback in stock libp2p-tcp) when another process holds
        // that port on 127.0.0.1, as a busy test run's ephemeral ports can.
        let opts = DialOpts::unknown_peer_id()
            .address(d)
            .allocate_new_port()
            .build();
        swarm.dial(opts).unwrap();
    }
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let seen = match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. } => Seen::Connected(peer_id),
                SwarmEvent::Behaviour(ping::Event {
                    peer,
                    result: Ok(_),
                    ..
                }) => Seen::Pinged(peer),
                _ => continue,
            };
            if tx.send(seen).is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

async fn wait_for_ping(rx: &mut mpsc::UnboundedReceiver<Seen>, from: PeerId) {
    let mut connected = false;
    tokio::time::timeout(T, async {
        loop {
            match rx.recv().await.expect("stock peer stopped") {
                Seen::Connected(p) if p == from => connected = true,
                Seen::Pinged(p) if p == from && connected => return,
                _ => {}
            }
        }
    })
    .await
    .expect("the stock peer connected to nodus and pinged it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_libp2p_tls_and_noise_peers_connect_both_ways() {
    let node = Node::start("127.0.62.1");
    let node_id = node.net.local_peer_id();
    let node_addr = node.addr().await;

    // libp2p-tls offers ChaCha20-Poly1305 first, and a TLS client's order decides.
    let (_, mut rx) = stock_peer("127.0.62.2", true, Some(node_addr.clone())).await;
    wait_for_ping(&mut rx, node_id).await;
    assert_eq!(
        node.secured("/tls/1.0.0", "TLS13_CHACHA20_POLY1305_SHA256"),
        1
    );
    // nodus dials a libp2p-tls listener: nodus's order, AES-128-GCM first.
    let (addr, mut rx) = stock_peer("127.0.62.3", true, None).await;
    let peer = node.net.dial(addr).await.unwrap();
    assert_eq!(node.net.ping(peer, 2).await.unwrap().len(), 2);
    wait_for_ping(&mut rx, node_id).await;
    assert_eq!(node.secured("/tls/1.0.0", "TLS13_AES_128_GCM_SHA256"), 1);

    // A peer without TLS answers `na` to it, and Noise follows, in either direction.
    let (_, mut rx) = stock_peer("127.0.62.4", false, Some(node_addr)).await;
    wait_for_ping(&mut rx, node_id).await;
    let (addr, mut rx) = stock_peer("127.0.62.5", false, None).await;
    let peer = node.net.dial(addr).await.unwrap();
    assert_eq!(node.net.ping(peer, 2).await.unwrap().len(), 2);
    wait_for_ping(&mut rx, node_id).await;
    assert_eq!(node.secured("/noise", "ChaChaPoly"), 2);
    assert_eq!(node.secured_total(), 4);
}

/// A plain rust-libp2p node on QUIC with libp2p-quic's own settings (libp2p-tls,
/// ChaCha20-Poly1305 first, 1452-byte datagrams at most), listening on `ip`, dialing
/// `dial` if given.
async fn stock_quic_peer(
    ip: &str,
    dial: Option<Multiaddr>,
) -> (Multiaddr, mpsc::UnboundedReceiver<Seen>) {
    let ping = |_: &Keypair| ping::Behaviour::new(ping::Config::new().with_interval(T / 100));
    let swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_quic()
        .with_behaviour(ping)
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(T))
        .build();
    run_stock(swarm, format!("/ip4/{ip}/udp/0/quic-v1"), dial).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_quic_peers_and_nodus_connect_both_ways_and_nodus_nodes_move_data() {
    let quic_node = |ip: &str| {
        let mut p2p = nodus_core::config::P2pConfig {
            listen: vec![format!("/ip4/{ip}/udp/0/quic-v1")],
            mdns: false,
            ..Default::default()
        };
        p2p.limits.exempt_ips = vec!["127.0.0.1".into()];
        let cfg = nodus_net::NetConfig::from_config(&p2p).unwrap();
        nodus_net::spawn(Keypair::generate_ed25519(), cfg, &mut Registry::default())
            .unwrap()
            .0
    };
    let node = quic_node("127.0.64.1");
    let node_id = node.local_peer_id();
    let node_addr = addr_of(&node).await;
    assert!(node_addr.to_string().contains("quic-v1"), "{node_addr}");

    let (_, mut rx) = stock_quic_peer("127.0.64.2", Some(node_addr.clone())).await;
    wait_for_ping(&mut rx, node_id).await;
    let (addr, mut rx) = stock_quic_peer("127.0.64.3", None).await;
    let peer = node.dial(addr).await.unwrap();
    assert_eq!(node.ping(peer, 2).await.unwrap().len(), 2);
    wait_for_ping(&mut rx, node_id).await;

    // Two nodus nodes: a stream carries 4 MiB intact over QUIC (datagrams up to the
    // larger size once MTU discovery allows them on loopback).
    let other = quic_node("127.0.64.4");
    let peer = other.dial(node_addr).await.unwrap();
    const P: libp2p::StreamProtocol = libp2p::StreamProtocol::new("/nodus/test/quic/1");
    let mut incoming = node.incoming(P).unwrap();
    let data: Vec<u8> = (0..4 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
    let expect = data.clone();
    let reader = tokio::spawn(async move {
        use futures::AsyncReadExt as _;
        let (_, mut s) = incoming.next().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        got
    });
    {
        use futures::AsyncWriteExt as _;
        let mut s = other.open_stream(peer, P).await.unwrap();
        s.write_all(&data).await.unwrap();
        s.close().await.unwrap();
    }
    let got = tokio::time::timeout(T, reader).await.unwrap().unwrap();
    assert!(got == expect, "{} bytes arrived, not the same", got.len());
}

/// multistream-select's framing: a varint length (one byte here), then the line.
fn line(protocol: &str) -> Vec<u8> {
    let mut l = vec![(protocol.len() + 1) as u8];
    l.extend_from_slice(protocol.as_bytes());
    l.push(b'\n');
    l
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_once_tls_is_chosen_drops_that_connection_only() {
    let node = Node::start("127.0.63.1");
    let addr = node.addr().await;
    let port = addr
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap();
    for round in 1..=3u64 {
        let mut s = tokio::net::TcpStream::connect(("127.0.63.1", port))
            .await
            .unwrap();
        let hello = [line("/multistream/1.0.0"), line("/tls/1.0.0")].concat();
        s.write_all(&hello).await.unwrap();
        let mut echoed = vec![0u8; hello.len()];
        s.read_exact(&mut echoed).await.unwrap();
        assert_eq!(echoed, hello, "the node agreed to TLS");
        // A TLS record header announcing a handshake, then bytes that are none.
        let garbage: Vec<u8> = [0x16, 0x03, 0x01, 0x40, 0x00]
            .into_iter()
            .chain((0..16_384u32).map(|i| (i * 7919 % 251) as u8))
            .collect();
        let _ = s.write_all(&garbage).await;
        let closed = tokio::time::timeout(T, async {
            let mut buf = [0u8; 4096];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "the node kept a garbage TLS connection open"
        );
        tokio::time::timeout(T, async {
            while node.counter("nodus_net_bad_connections_total") < round {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the failed handshake is counted");
    }
    assert_eq!(node.secured_total(), 0);
    // A real peer still gets in, over TLS.
    let other = Node::start("127.0.63.2");
    let peer = other.net.dial(addr).await.unwrap();
    assert_eq!(other.net.ping(peer, 1).await.unwrap().len(), 1);
    assert_eq!(node.secured("/tls/1.0.0", "TLS13_AES_128_GCM_SHA256"), 1);
}
