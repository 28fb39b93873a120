//! One host opening many TCP connections that never finish a handshake gets only
//! `max_inbound_per_ip` of them; the rest are closed at once and counted, and other
//! peers still get in. Many hosts together cannot hold every pending slot either: the
//! oldest pending connection makes room for a new one. Real sockets on 127.0.0.0/8: the flood comes from 127.0.31.1,
//! the node listens on 127.0.30.1, a real peer dials from 127.0.0.1.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use libp2p::Multiaddr;
use libp2p::identity::Keypair;
use nodus_net::NetworkHandle;
use prometheus_client::registry::Registry;

mod common;
use common::{addr_of, config, counter};

const LIMIT: u32 = 4;
const FLOOD: usize = 10;

const REFUSED: &str = "nodus_net_inbound_refused_per_ip_total";
/// Inbound connections the swarm took into their handshake.
const ADMITTED: &str = "libp2p_swarm_connections_incoming_total";

fn tcp_socket_addr(a: &Multiaddr) -> SocketAddr {
    nodus_net::addr::socket_addr(a).expect("a TCP address")
}

/// A connection from `from` that sends nothing.
async fn idle_connection(from: &str, to: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    let s = socket.connect(to).await.unwrap().into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    s
}

/// Whether the node has closed this connection (it never sends anything on its own
/// before the client speaks, so any end of stream is the node hanging up).
fn closed_by_node(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
        Err(_) => true,
    }
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..100 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_holds_at_most_its_share_of_handshakes() {
    let mut registry = Registry::default();
    let mut cfg = config("127.0.30.1");
    cfg.limits.max_inbound_per_ip = LIMIT;
    let (net, _task) = nodus_net::spawn(Keypair::generate_ed25519(), cfg, &mut registry).unwrap();
    let addr = addr_of(&net).await;
    let to = tcp_socket_addr(&addr);

    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        flood.push(idle_connection("127.0.31.1", to).await);
    }
    let refused = FLOOD as u64 - LIMIT as u64;
    wait_for("the connections over the limit to be refused", || {
        counter(&registry, REFUSED) + counter(&registry, ADMITTED) >= FLOOD as u64
    })
    .await;
    let open: Vec<usize> = (0..FLOOD)
        .filter(|k| !closed_by_node(&mut flood[*k]))
        .collect();
    assert_eq!(open.len(), LIMIT as usize, "still open: {open:?}");
    assert_eq!(counter(&registry, REFUSED), refused);
    assert_eq!(counter(&registry, ADMITTED), LIMIT as u64);

    // The idle ones hold their slots, not anyone else's: a real peer connects and pings.
    let mut peer_registry = Registry::default();
    let (peer, _peer_task): (NetworkHandle, _) = nodus_net::spawn(
        Keypair::generate_ed25519(),
        config("127.0.32.1"),
        &mut peer_registry,
    )
    .unwrap();
    assert_eq!(peer.dial(addr.clone()).await.unwrap(), net.local_peer_id());
    assert_eq!(peer.ping(net.local_peer_id(), 1).await.unwrap().len(), 1);

    // Closing the idle ones frees their slots: a new one from the same host is taken
    // into its handshake once the node has seen them go.
    drop(flood);
    let mut later = Vec::new();
    for attempt in 0.. {
        assert!(attempt < 50, "no slot was freed");
        let before = (counter(&registry, REFUSED), counter(&registry, ADMITTED));
        later.push(idle_connection("127.0.31.1", to).await);
        wait_for("the node to take or refuse it", || {
            (counter(&registry, REFUSED), counter(&registry, ADMITTED)) != before
        })
        .await;
        if counter(&registry, ADMITTED) > before.1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const EVICTED: &str = "nodus_net_pending_evicted_total";

/// Issue 17 point 4: hosts enough to get past the per-IP limit hold every pending slot
/// with connections that send nothing. A new connection pushes out the oldest instead of
/// being refused, so a real peer still gets in while the flood goes on; a connection
/// from a peer already known (here a bootstrap peer) takes no slot and is never pushed
/// out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_hosts_cannot_hold_every_pending_slot() {
    const PENDING: u32 = 6;
    let mut peer_registry = Registry::default();
    let (peer, _peer_task): (NetworkHandle, _) = nodus_net::spawn(
        Keypair::generate_ed25519(),
        config("127.0.36.1"),
        &mut peer_registry,
    )
    .unwrap();
    let peer_addr = addr_of(&peer).await;
    let mut registry = Registry::default();
    let mut cfg = config("127.0.34.1");
    cfg.limits.max_inbound_per_ip = 2;
    cfg.limits.max_pending = PENDING;
    cfg.bootstrap = vec![peer_addr.with(libp2p::multiaddr::Protocol::P2p(peer.local_peer_id()))];
    let (net, _task) = nodus_net::spawn(Keypair::generate_ed25519(), cfg, &mut registry).unwrap();
    let addr = addr_of(&net).await;
    let to = tcp_socket_addr(&addr);

    let mut known = idle_connection("127.0.36.1", to).await;
    // Ten hosts, two idle connections each: 20 for 6 slots.
    let mut flood = Vec::new();
    for host in 1..=10 {
        for _ in 0..2 {
            flood.push(idle_connection(&format!("127.0.35.{host}"), to).await);
        }
    }
    let pushed_out = flood.len() as u64 - PENDING as u64;
    wait_for("the oldest pending connections to be pushed out", || {
        counter(&registry, EVICTED) >= pushed_out
    })
    .await;
    wait_for("the oldest to be closed", || closed_by_node(&mut flood[0])).await;
    let last = flood.len() - 1;
    assert!(!closed_by_node(&mut flood[last]), "the newest was dropped");
    assert!(
        !closed_by_node(&mut known),
        "a known peer's connection was pushed out"
    );
    assert_eq!(counter(&registry, EVICTED), pushed_out);

    // Every slot is held by the flood, yet a real peer connects and pings.
    let mut other_registry = Registry::default();
    let (other, _other_task): (NetworkHandle, _) = nodus_net::spawn(
        Keypair::generate_ed25519(),
        config("127.0.37.1"),
        &mut other_registry,
    )
    .unwrap();
    assert_eq!(other.dial(addr.clone()).await.unwrap(), net.local_peer_id());
    assert_eq!(other.ping(net.local_peer_id(), 1).await.unwrap().len(), 1);
    drop(flood);
}
