//! At most so many inbound connections from one IP address (one /64 for IPv6), counting
//! those still in their handshake.
//!
//! libp2p's connection limits count pending inbound connections in total only (128
//! here). One host that opens that many TCP connections and sends nothing holds every
//! slot until the upgrade timeout (20 s) and can open them again, so no one else gets
//! in. go-libp2p's resource manager allows 8 connections per IPv4 address by default;
//! so does this. Relayed connections carry no IP of the peer and are not counted here
//! (the relay limits its circuits). Configured addresses (`limits.exempt_ips`) are not
//! counted: on one machine every node dials other loopback addresses from 127.0.0.1.
//!
//! Invariant: an inbound connection is counted from its `handle_pending_inbound_connection`
//! until libp2p reports it failed (`ListenFailure`) or closed (`ConnectionClosed`), so a
//! count never outlives its connection.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, ListenFailure, NetworkBehaviour,
    THandler, THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// What one inbound connection is counted under: an IPv4 address or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4(u32),
    V6(u64),
}

impl Source {
    fn of(addr: &Multiaddr) -> Option<(IpAddr, Source)> {
        match addr.iter().next()? {
            Protocol::Ip4(ip) => Some((ip.into(), Source::V4(ip.into()))),
            Protocol::Ip6(ip) => Some((ip.into(), Source::V6((u128::from(ip) >> 64) as u64))),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{count} inbound connections from {ip} already (at most {max} per address)")]
struct TooMany {
    ip: IpAddr,
    count: u32,
    max: u32,
}

pub struct Behaviour {
    max: u32,
    exempt: Vec<IpAddr>,
    counts: HashMap<Source, u32>,
    connections: HashMap<ConnectionId, Source>,
    refused: Counter,
}

impl Behaviour {
    pub fn new(max: u32, exempt: Vec<IpAddr>, registry: &mut Registry) -> Self {
        let refused = Counter::default();
        registry.sub_registry_with_prefix("nodus_net").register(
            "inbound_refused_per_ip",
            "Inbound connections refused because their IP address had too many already",
            refused.clone(),
        );
        Behaviour {
            max,
            exempt,
            counts: HashMap::new(),
            connections: HashMap::new(),
            refused,
        }
    }

    fn release(&mut self, id: ConnectionId) {
        let Some(source) = self.connections.remove(&id) else {
            return;
        };
        if let Some(n) = self.counts.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&source);
            }
        }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some((ip, source)) = Source::of(remote) else {
            return Ok(());
        };
        if self.exempt.contains(&ip) {
            return Ok(());
        }
        let count = self.counts.entry(source).or_default();
        if *count >= self.max {
            self.refused.inc();
            tracing::debug!(target: "nodus::net", %ip, count = *count, "inbound connection refused: too many from this address");
            return Err(ConnectionDenied::new(TooMany {
                ip,
                count: *count,
                max: self.max,
            }));
        }
        *count += 1;
        self.connections.insert(id, source);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ListenFailure(ListenFailure { connection_id, .. })
            | FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => {
                self.release(connection_id)
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_counts_per_address_and_ipv6_per_64() {
        let a: Multiaddr = "/ip4/10.0.0.1/tcp/1".parse().unwrap();
        let b: Multiaddr = "/ip4/10.0.0.2/tcp/1".parse().unwrap();
        assert_ne!(Source::of(&a).unwrap().1, Source::of(&b).unwrap().1);
        let c: Multiaddr = "/ip6/2001:db8::1/tcp/1".parse().unwrap();
        let d: Multiaddr = "/ip6/2001:db8::ffff:2/udp/1/quic-v1".parse().unwrap();
        let e: Multiaddr = "/ip6/2001:db8:0:1::1/tcp/1".parse().unwrap();
        assert_eq!(Source::of(&c).unwrap().1, Source::of(&d).unwrap().1);
        assert_ne!(Source::of(&c).unwrap().1, Source::of(&e).unwrap().1);
        let relayed: Multiaddr = "/p2p-circuit".parse().unwrap();
        assert!(Source::of(&relayed).is_none());
    }

    #[test]
    fn a_refused_or_closed_connection_frees_its_slot() {
        let mut b = Behaviour::new(2, vec![], &mut Registry::default());
        let local: Multiaddr = "/ip4/10.0.0.9/tcp/4001".parse().unwrap();
        let remote: Multiaddr = "/ip4/10.0.0.1/tcp/5555".parse().unwrap();
        let (one, two) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
        );
        assert!(
            b.handle_pending_inbound_connection(one, &local, &remote)
                .is_ok()
        );
        assert!(
            b.handle_pending_inbound_connection(two, &local, &remote)
                .is_ok()
        );
        let three = ConnectionId::new_unchecked(3);
        assert!(
            b.handle_pending_inbound_connection(three, &local, &remote)
                .is_err()
        );
        assert_eq!(b.refused.get(), 1);
        b.release(one);
        assert!(
            b.handle_pending_inbound_connection(three, &local, &remote)
                .is_ok()
        );
        b.release(two);
        b.release(three);
        assert!(b.counts.is_empty() && b.connections.is_empty());
    }
}
