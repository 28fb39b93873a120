//! What the overlay reports: events for the node's event stream, and status snapshots.

use serde::Serialize;

/// Something that happened on the overlay. Sent on a bounded broadcast channel; a
/// receiver that falls behind skips events, it never slows the swarm.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NetEvent {
    PeerConnected {
        peer: String,
        address: String,
    },
    PeerDisconnected {
        peer: String,
    },
    /// A dial to a known peer failed on every address tried.
    DialFailed {
        peer: String,
        error: String,
    },
    ListenAddr {
        address: String,
    },
    ListenAddrExpired {
        address: String,
    },
    RelayReservation {
        relay: String,
    },
    NatStatus {
        status: String,
    },
    RoutingRejected {
        peer: String,
        address: String,
        reason: String,
    },
    BadConnection {
        address: String,
        error: String,
    },
    HolePunch {
        peer: String,
        ok: bool,
    },
    PeerBanned {
        peer: String,
        reason: String,
    },
}

/// A gossipsub message delivered to a local subscriber.
#[derive(Debug, Clone, Serialize)]
pub struct GossipMessage {
    pub topic: String,
    /// The signed author of the message.
    pub source: Option<String>,
    /// The peer that forwarded it to us.
    pub via: String,
    pub data: Vec<u8>,
    pub id: String,
    /// The message id as gossipsub keeps it, for [`crate::NetworkHandle::validate`].
    #[serde(skip)]
    pub raw_id: Vec<u8>,
}

/// What a service that validates a topic's messages says of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: forward it to other peers.
    Accept,
    /// Invalid: drop it and count it against the peer that sent it (gossipsub score).
    Reject,
    /// Not forwarded, nobody penalized (a duplicate, a race).
    Ignore,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerInfo {
    pub peer_id: String,
    /// Remote address of each open connection.
    pub addresses: Vec<String>,
    pub agent: Option<String>,
    pub rtt_ms: Option<f64>,
    pub relayed: bool,
}

impl PeerInfo {
    /// The peer id of the relay its first relayed connection goes through, if one does.
    pub fn relay(&self) -> Option<String> {
        self.addresses.iter().find_map(|a| {
            let addr = a.parse().ok()?;
            crate::addr::relay_of(&addr).map(|id| id.to_string())
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub peer_id: String,
    pub listen_addrs: Vec<String>,
    pub external_addrs: Vec<String>,
    pub connected_peers: usize,
    pub routing_table_size: usize,
    /// Kademlia queries running (lookups, bootstraps, record puts and gets).
    pub dht_queries: usize,
    pub nat: String,
    pub topics: Vec<String>,
}

#[cfg(test)]
mod peer_info_tests {
    use super::PeerInfo;
    use libp2p::PeerId;

    #[test]
    fn the_relay_is_the_peer_before_the_circuit() {
        let (relay, peer) = (PeerId::random(), PeerId::random());
        let info = |addresses: Vec<String>| PeerInfo {
            peer_id: peer.to_string(),
            addresses,
            agent: None,
            rtt_ms: None,
            relayed: false,
        };
        let circuit = format!("/ip4/127.0.0.1/tcp/1/p2p/{relay}/p2p-circuit/p2p/{peer}");
        assert_eq!(info(vec![circuit.clone()]).relay(), Some(relay.to_string()));
        let both = info(vec!["/ip4/127.0.0.1/tcp/2".into(), circuit]);
        assert_eq!(both.relay(), Some(relay.to_string()));
        assert_eq!(info(vec!["/ip4/127.0.0.1/tcp/2".into()]).relay(), None);
        // The peer at the end of a circuit is not its relay.
        assert_eq!(
            info(vec![format!("/ip4/127.0.0.1/tcp/2/p2p/{peer}")]).relay(),
            None
        );
    }
}
