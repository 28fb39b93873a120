//! Which security a TCP connection ends up with, read from each node's
//! `nodus_net_secured_connections_total`: two nodus nodes use TLS with AES-128-GCM; a stock
//! rust-libp2p peer that only has libp2p-tls (ChaCha20-Poly1305 first) or only Noise
//! still connects and pings in both directions. Real sockets on 127.0.0.1.

use std::time::Duration;

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, ping, tcp};
use nodus_core::config::P2pConfig;
use nodus_net::{NetConfig, NetworkHandle};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

const T: Duration = Duration::from_secs(20);

fn config(ip: &str) -> NetConfig {
    let p2p = P2pConfig {
        listen: vec![format!("/ip4/{ip}/tcp/0")],
        mdns: false,
        ..P2pConfig::default()
    };
    NetConfig::from_config(&p2p).unwrap()
}

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
        for _ in 0..200 {
            if let Some(a) = self.net.status().await.unwrap().listen_addrs.first() {
                let a: Multiaddr = a.parse().unwrap();
                return a.with_p2p(self.net.local_peer_id()).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no listen address");
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
    let builder = libp2p::SwarmBuilder::with_new_identity().with_tokio();
    let ping = |_: &Keypair| ping::Behaviour::new(ping::Config::new().with_interval(T / 100));
    let mut swarm = if tls {
        builder
            .with_tcp(
                tcp::Config::default(),
                libp2p::tls::Config::new,
                libp2p::yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(ping)
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(T))
            .build()
    } else {
        builder
            .with_tcp(
                tcp::Config::default(),
                libp2p::noise::Config::new,
                libp2p::yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(ping)
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(T))
            .build()
    };
    swarm
        .listen_on(format!("/ip4/{ip}/tcp/0").parse().unwrap())
        .unwrap();
    let me = *swarm.local_peer_id();
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address.with_p2p(me).unwrap();
        }
    };
    if let Some(d) = dial {
        swarm.dial(d).unwrap();
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
