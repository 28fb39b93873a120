//! The user-space impairment proxies: delay over TCP, delay and loss over UDP (QUIC).
//! Only lower bounds on time are asserted: a delay the proxy adds is a physical floor,
//! whatever the machine's load.

use std::net::SocketAddr;
use std::time::Duration;

use libp2p::Multiaddr;
use nodus_net::addr::socket_addr;
use nodus_testnet::{Testnet, impair, node_config, node_ip};

/// Two fresh nodes; returns (a, b) and the socket of a's listener of `transport`.
async fn pair(net: &mut Testnet, transport: &str) -> (usize, usize, SocketAddr) {
    let a = net.add_node(node_config(node_ip(0), &[])).await.unwrap();
    let b = net.add_node(node_config(node_ip(1), &[])).await.unwrap();
    let target = socket_addr(&net.node(a).p2p_addr(transport).unwrap()).unwrap();
    (a, b, target)
}

/// Dials a from b through `proxy`, pings a five times, and checks that every round trip
/// took at least the delay the proxy adds both ways.
async fn ping_through(net: &Testnet, a: usize, b: usize, proxy: Multiaddr, one_way: Duration) {
    let via = proxy.with_p2p(net.node(a).peer_id()).unwrap();
    net.node(b).net.dial(via).await.unwrap();
    let rtts = net
        .node(b)
        .net
        .ping(net.node(a).peer_id(), 5)
        .await
        .unwrap();
    assert_eq!(rtts.len(), 5);
    for rtt in rtts {
        assert!(
            rtt >= one_way * 2,
            "round trip {rtt:?} shorter than the added delay"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_through_a_delaying_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(0, dir.path()).await.unwrap();
    let (a, b, target) = pair(&mut net, "tcp").await;
    let one_way = Duration::from_millis(20);
    let proxy = impair::tcp_delay("127.0.3.1:0".parse().unwrap(), target, one_way)
        .await
        .unwrap();
    let addr = format!("/ip4/127.0.3.1/tcp/{}", proxy.addr.port());
    ping_through(&net, a, b, addr.parse().unwrap(), one_way).await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_through_a_lossy_delaying_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(0, dir.path()).await.unwrap();
    let (a, b, target) = pair(&mut net, "quic-v1").await;
    let one_way = Duration::from_millis(10);
    let proxy = impair::udp_impair(
        "127.0.4.1:0".parse().unwrap(),
        target,
        one_way,
        Duration::ZERO,
        0.1,
    )
    .await
    .unwrap();
    // QUIC recovers from the 10% loss on its own.
    let addr = format!("/ip4/127.0.4.1/udp/{}/quic-v1", proxy.addr.port());
    ping_through(&net, a, b, addr.parse().unwrap(), one_way).await;
    net.shutdown().await;
}
