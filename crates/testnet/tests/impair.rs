//! The user-space impairment proxies: delay over TCP, delay and loss over UDP (QUIC).
//! Only lower bounds on time are asserted: a delay the proxy adds is a physical floor,
//! whatever the machine's load.

use std::net::SocketAddr;
use std::time::Duration;

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use nodus_testnet::{Testnet, impair, node_config, node_ip};

fn socket_of(addr: &Multiaddr) -> SocketAddr {
    let mut ip = None;
    let mut port = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(i) => ip = Some(i),
            Protocol::Tcp(p) | Protocol::Udp(p) => port = Some(p),
            _ => {}
        }
    }
    SocketAddr::from((ip.unwrap(), port.unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_through_a_delaying_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(0, dir.path()).await.unwrap();
    let a = net.add_node(node_config(node_ip(0), &[])).await.unwrap();
    let b = net.add_node(node_config(node_ip(1), &[])).await.unwrap();
    let target = socket_of(&net.node(a).p2p_addr("tcp").unwrap());
    let one_way = Duration::from_millis(20);
    let proxy = impair::tcp_delay("127.0.3.1:0".parse().unwrap(), target, one_way)
        .await
        .unwrap();
    let via: Multiaddr = format!(
        "/ip4/127.0.3.1/tcp/{}/p2p/{}",
        proxy.addr.port(),
        net.node(a).peer_id()
    )
    .parse()
    .unwrap();
    net.node(b).net.dial(via).await.unwrap();
    let rtts = net
        .node(b)
        .net
        .ping(net.node(a).peer_id(), 3)
        .await
        .unwrap();
    for rtt in rtts {
        assert!(
            rtt >= one_way * 2,
            "round trip {rtt:?} shorter than the added delay"
        );
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_through_a_lossy_delaying_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(0, dir.path()).await.unwrap();
    let a = net.add_node(node_config(node_ip(0), &[])).await.unwrap();
    let b = net.add_node(node_config(node_ip(1), &[])).await.unwrap();
    let target = socket_of(&net.node(a).p2p_addr("quic-v1").unwrap());
    let one_way = Duration::from_millis(10);
    let proxy = impair::udp_impair("127.0.4.1:0".parse().unwrap(), target, one_way, 0.1)
        .await
        .unwrap();
    let via: Multiaddr = format!(
        "/ip4/127.0.4.1/udp/{}/quic-v1/p2p/{}",
        proxy.addr.port(),
        net.node(a).peer_id()
    )
    .parse()
    .unwrap();
    // QUIC recovers from the 10% loss on its own.
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
    net.shutdown().await;
}
