//! nodus-net: the overlay. One task owns the libp2p [`Swarm`](libp2p::Swarm); everything
//! else talks to it through a cloneable [`NetworkHandle`].
//!
//! Transports: TCP + TLS (AES-GCM first) or Noise + Yamux (256 KiB frames), QUIC, DNS,
//! circuit relay v2 (client). Behaviours:
//! identify, ping, Kademlia (protocol `/nodus/kad/1.0.0`, records validated per
//! namespace), gossipsub v1.1 with peer scoring, relay server, DCUtR, AutoNAT, mDNS,
//! connection and memory limits, and libp2p-stream for service protocols named
//! `/nodus/<service>/<n>`.
//!
//! Invariants:
//! - Every channel into or out of the actor is bounded. A slow subscriber loses messages
//!   (counted in `nodus_net_gossip_dropped_total`); it never grows the node's memory.
//! - The Kademlia routing table is only ever written through [`diversity`]: at most
//!   `max_per_subnet_per_bucket` entries from one /24 (IPv4) or /64 (IPv6) per bucket and
//!   `max_per_subnet_per_table` in the whole table, so a flood of peers from one network
//!   cannot eclipse a node.
//! - A DHT record whose key has no registered namespace, or that its namespace's
//!   validator refuses, is neither stored nor returned.
//! - Every command carries a oneshot reply; a dropped handle never blocks the actor.

mod actor;
pub mod addr;
mod behaviour;
mod circuits;
mod coalesce;
pub mod config;
pub mod diversity;
mod error;
mod events;
pub mod frame;
mod handle;
mod ip_limits;
mod muxer;
mod pending;
pub mod ping;
pub mod records;
mod security;
pub mod slots;
mod store;
mod tls;
mod transport;

pub use actor::MAX_STRIKES;
pub use config::NetConfig;
pub use error::NetError;
pub use events::{GossipMessage, NetEvent, PeerInfo, Status, Verdict};
pub use handle::NetworkHandle;
pub use libp2p::{Multiaddr, PeerId, StreamProtocol};
pub use records::{RecordError, RecordValidator, Validators};

/// Builds the swarm and spawns its actor on the current tokio runtime.
pub use actor::spawn;
