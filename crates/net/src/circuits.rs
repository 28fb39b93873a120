//! The relay circuits each peer last announced (through identify) as listen addresses,
//! offered for every dial by peer id, whoever starts it (a service's `dial_peer`,
//! libp2p-stream opening a stream, Kademlia, DCUtR).
//!
//! Why: a peer that cannot be dialed directly is reached only through a circuit, yet
//! Kademlia keeps a bounded, diversity-filtered address list and also takes the peer's
//! observed addresses (ephemeral ports nobody listens on), and identify's own cache
//! forgets addresses after failed dials. When the relay in use died, a redial was offered
//! only those stale addresses and waited on a QUIC timeout before anything else was tried.
//!
//! Bounded: at most [`MAX_PEERS`] peers, [`MAX_PER_PEER`] circuits each.

use std::collections::HashMap;
use std::convert::Infallible;
use std::task::{Context, Poll};

use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

use crate::addr::is_relayed;

/// Peers remembered; past it the book starts again from empty.
pub const MAX_PEERS: usize = 4096;
/// Circuits kept per peer.
pub const MAX_PER_PEER: usize = 8;

#[derive(Default)]
pub struct Behaviour {
    peers: HashMap<PeerId, Vec<Multiaddr>>,
}

impl Behaviour {
    /// Keeps the circuits among what `peer` says it listens on, replacing what it said
    /// before (a circuit it no longer lists is gone with its relay).
    pub fn remember(&mut self, peer: PeerId, listen_addrs: &[Multiaddr]) {
        let circuits: Vec<Multiaddr> = listen_addrs
            .iter()
            .filter(|a| is_relayed(a))
            .take(MAX_PER_PEER)
            .cloned()
            .collect();
        if circuits.is_empty() {
            self.peers.remove(&peer);
            return;
        }
        if self.peers.len() >= MAX_PEERS && !self.peers.contains_key(&peer) {
            self.peers.clear();
        }
        self.peers.insert(peer, circuits);
    }

    pub fn circuits(&self, peer: &PeerId) -> &[Multiaddr] {
        self.peers.get(peer).map(Vec::as_slice).unwrap_or_default()
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        _: ConnectionId,
        maybe_peer: Option<PeerId>,
        _: &[Multiaddr],
        _: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        Ok(maybe_peer
            .map(|p| self.circuits(&p).to_vec())
            .unwrap_or_default())
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

    fn on_swarm_event(&mut self, _: FromSwarm) {}

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

    fn peer() -> PeerId {
        libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id()
    }

    #[test]
    fn keeps_only_circuits_and_offers_them_for_a_dial() {
        let (relay, bob) = (peer(), peer());
        let circuit: Multiaddr =
            format!("/ip4/127.0.1.1/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{bob}")
                .parse()
                .unwrap();
        let direct: Multiaddr = "/ip4/127.0.0.1/tcp/5555".parse().unwrap();
        let mut b = Behaviour::default();
        b.remember(bob, &[direct, circuit.clone()]);
        let offered = b
            .handle_pending_outbound_connection(
                ConnectionId::new_unchecked(1),
                Some(bob),
                &[],
                Endpoint::Dialer,
            )
            .unwrap();
        assert_eq!(offered, vec![circuit]);
        // A later announcement without circuits forgets them.
        b.remember(bob, &[]);
        assert!(b.circuits(&bob).is_empty());
    }

    #[test]
    fn stays_bounded() {
        let mut b = Behaviour::default();
        let relay = peer();
        for _ in 0..MAX_PEERS + 10 {
            let p = peer();
            let c: Multiaddr = format!("/ip4/127.0.1.1/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{p}")
                .parse()
                .unwrap();
            b.remember(p, &vec![c; MAX_PER_PEER + 3]);
            assert!(b.circuits(&p).len() <= MAX_PER_PEER);
        }
        assert!(b.peers.len() <= MAX_PEERS);
    }
}
