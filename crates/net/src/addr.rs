//! Small facts about multiaddrs that several parts of nodus need.

use std::net::{IpAddr, SocketAddr};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

/// The peer id an address ends in (`.../p2p/<id>`), if any.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().last().and_then(|p| match p {
        Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

/// Whether the address goes through a circuit relay.
pub fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| p == Protocol::P2pCircuit)
}

/// The relay a circuit address goes through: the peer named just before `/p2p-circuit`.
pub fn relay_of(addr: &Multiaddr) -> Option<PeerId> {
    let mut last = None;
    for p in addr.iter() {
        match p {
            Protocol::P2p(id) => last = Some(id),
            Protocol::P2pCircuit => return last,
            _ => {}
        }
    }
    None
}

/// The IP and port of the first IP and TCP or UDP components, for direct addresses.
pub fn socket_addr(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut ip = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(i) => ip = Some(IpAddr::V4(i)),
            Protocol::Ip6(i) => ip = Some(IpAddr::V6(i)),
            Protocol::Tcp(port) | Protocol::Udp(port) => {
                return ip.map(|ip| SocketAddr::new(ip, port));
            }
            _ => {}
        }
    }
    None
}

/// Whether the address is a direct TCP one.
pub fn is_tcp(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::Tcp(_))) && !is_relayed(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts() {
        let a: Multiaddr =
            "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWQwPYykXaKxmwQ8PKB9bkQ3XfW1HMkmPXafETMcDVHuY3"
                .parse()
                .unwrap();
        assert_eq!(socket_addr(&a), Some("127.0.0.1:4001".parse().unwrap()));
        assert!(peer_of(&a).is_some());
        assert!(is_tcp(&a) && !is_relayed(&a));
        let q: Multiaddr = "/ip4/10.0.0.1/udp/9/quic-v1".parse().unwrap();
        assert_eq!(socket_addr(&q), Some("10.0.0.1:9".parse().unwrap()));
        assert!(!is_tcp(&q) && peer_of(&q).is_none());
        let d: Multiaddr = "/dns4/example.org/tcp/1".parse().unwrap();
        assert_eq!(socket_addr(&d), None);
    }
}
