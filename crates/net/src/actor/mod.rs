//! The swarm actor: the only code that touches the `Swarm`. A biased `select!` serves
//! commands (shutdown first in effect: a closed or `Shutdown` command ends the loop) and
//! swarm events; replies wait in maps keyed by connection or query id.
//!
//! The `impl Actor` is split by concern: [`commands`] (what handles ask), [`events`]
//! (what the swarm reports), [`dht`] (routing-table gate and Kademlia queries) and
//! [`misbehaviour`] (strikes and bans).

mod commands;
mod dht;
mod events;
mod misbehaviour;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::core::transport::ListenerId;
use libp2p::identity::Keypair;
use libp2p::kad::store::RecordStore;
use libp2p::kad::{self, GetClosestPeersOk, GetProvidersOk, GetRecordOk, QueryId, QueryResult};
use libp2p::metrics::{Metrics, Recorder};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, autonat, gossipsub, identify, mdns, relay};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::addr::{is_relayed, is_tcp, peer_of, socket_addr};
use crate::behaviour::{Behaviour, BehaviourEvent, KAD_PROTOCOL, build_swarm};
use crate::diversity::{self, Limits, Subnet};
use crate::handle::{Command, Reply, SUBSCRIPTION_CAPACITY};
use crate::{GossipMessage, NetConfig, NetError, NetEvent, NetworkHandle, PeerInfo, Status};

const COMMAND_CAPACITY: usize = 256;
const EVENT_CAPACITY: usize = 1024;

#[derive(Default, Clone)]
struct Counters {
    routing_rejected: Counter,
    records_rejected: Counter,
    gossip_dropped: Counter,
    bad_connections: Counter,
    peers_banned: Counter,
}

impl Counters {
    fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("nodus_net");
        r.register(
            "routing_rejected",
            "Routing-table candidates refused by the IP-diversity limits",
            self.routing_rejected.clone(),
        );
        r.register(
            "records_rejected",
            "DHT records refused by their namespace validator",
            self.records_rejected.clone(),
        );
        r.register(
            "gossip_dropped",
            "Gossip messages dropped because a local subscriber was full",
            self.gossip_dropped.clone(),
        );
        r.register(
            "bad_connections",
            "Inbound connections that failed the handshake (garbage, wrong protocol)",
            self.bad_connections.clone(),
        );
        r.register(
            "peers_banned",
            "Peers banned for repeated misbehaviour",
            self.peers_banned.clone(),
        );
    }
}

enum PendingQuery {
    Put(Reply<bool>),
    Get(Reply<Vec<u8>>),
    Provide(Reply<()>),
    Providers(Reply<Vec<PeerId>>, HashSet<PeerId>),
    Closest(Reply<Vec<PeerId>>),
    /// A bootstrap: answered with the routing table's size after its last step.
    Bootstrap(Reply<usize>),
    /// Looking a peer up so that it can be dialed.
    Lookup(PeerId, Reply<PeerId>),
}

struct Actor {
    swarm: Swarm<Behaviour>,
    config: NetConfig,
    commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<NetEvent>,
    metrics: Metrics,
    counters: Counters,
    dials: HashMap<ConnectionId, Reply<PeerId>>,
    peer_dials: HashMap<PeerId, Vec<Reply<PeerId>>>,
    /// Dials by peer id that `dial_peer` started. Only their failure fails its waiters:
    /// another dial to the same peer (a DCUtR hole punch to stale observed addresses,
    /// say) may fail while ours, through a circuit, succeeds.
    own_dials: HashMap<ConnectionId, PeerId>,
    queries: HashMap<QueryId, PendingQuery>,
    reservations: HashMap<PeerId, Vec<Reply<()>>>,
    subscriptions: HashMap<gossipsub::TopicHash, (String, Vec<mpsc::Sender<GossipMessage>>)>,
    /// Topics whose subscriber validates each message; others are accepted on arrival.
    validated_topics: HashSet<gossipsub::TopicHash>,
    connections: HashMap<PeerId, Vec<(ConnectionId, Multiaddr)>>,
    agents: HashMap<PeerId, String>,
    rtts: HashMap<PeerId, Duration>,
    nat: String,
    /// Relays we want a reservation on, and the listener held on each.
    relays: Vec<(Multiaddr, Option<ListenerId>)>,
    /// Misbehaviour strikes per peer; at [`MAX_STRIKES`] the peer is banned.
    strikes: HashMap<PeerId, u32>,
    /// Banned peers and when their ban ends.
    bans: HashMap<PeerId, std::time::Instant>,
    /// Addresses of peers in the routing table, bootstrap peers and relays: their
    /// connections skip the cap on pending handshakes (pending.rs).
    known_ips: crate::pending::KnownIps,
}

/// Invalid records a peer may send before it is banned.
pub const MAX_STRIKES: u32 = 5;
/// How long a ban lasts.
const BAN: Duration = Duration::from_secs(600);
/// Bound on the strike table; past it the oldest bookkeeping is dropped wholesale.
const MAX_TRACKED_OFFENDERS: usize = 4096;

/// How often lost relay reservations and lost bootstrap connections are retried.
const RELAY_RETRY: Duration = Duration::from_secs(5);

/// Builds the swarm from `key` and `config`, registers its metrics in `registry`, starts
/// listening and bootstrapping, and spawns the actor.
pub fn spawn(
    key: Keypair,
    config: NetConfig,
    registry: &mut Registry,
) -> Result<(NetworkHandle, JoinHandle<()>), NetError> {
    let local_peer_id = key.public().to_peer_id();
    let known_ips = crate::pending::KnownIps::default();
    let mut swarm = build_swarm(key, &config, known_ips.clone(), registry)?;
    for addr in &config.listen {
        ensure_tcp_port_free(addr)?;
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Listen {
                addr: addr.to_string(),
                reason: root_cause(&e),
            })?;
    }
    for addr in &config.external_addresses {
        swarm.add_external_address(addr.clone());
    }
    let metrics = Metrics::new(registry);
    let counters = Counters::default();
    counters.register(registry);
    let (tx, commands) = mpsc::channel(COMMAND_CAPACITY);
    let (events, _) = broadcast::channel(EVENT_CAPACITY);
    let streams = swarm.behaviour().stream.new_control();
    let handle = NetworkHandle {
        tx,
        events: events.clone(),
        streams,
        local_peer_id,
    };
    let mut actor = Actor {
        swarm,
        config,
        commands,
        events,
        metrics,
        counters,
        dials: HashMap::new(),
        peer_dials: HashMap::new(),
        own_dials: HashMap::new(),
        queries: HashMap::new(),
        reservations: HashMap::new(),
        subscriptions: HashMap::new(),
        validated_topics: HashSet::new(),
        connections: HashMap::new(),
        agents: HashMap::new(),
        rtts: HashMap::new(),
        nat: "unknown".into(),
        relays: Vec::new(),
        strikes: HashMap::new(),
        bans: HashMap::new(),
        known_ips,
    };
    actor.join_network();
    let task = tokio::spawn(actor.run());
    Ok((handle, task))
}

/// The innermost cause of an error: libp2p wraps causes in layers that print nothing.
fn root_cause(e: &dyn std::error::Error) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    let text = last.to_string();
    if text.is_empty() {
        format!("{last:?}")
    } else {
        text
    }
}

/// libp2p-tcp listens with SO_REUSEPORT, so a second node on the same TCP port would
/// silently share it (the kernel splitting inbound connections between the two). A
/// plain bind first, which fails if anyone holds the port, turns that into an error.
fn ensure_tcp_port_free(addr: &Multiaddr) -> Result<(), NetError> {
    let Some(socket) = socket_addr(addr).filter(|s| is_tcp(addr) && s.port() != 0) else {
        return Ok(());
    };
    let port = socket.port();
    std::net::TcpListener::bind(socket)
        .map(drop)
        .map_err(|e| NetError::Listen {
            addr: addr.to_string(),
            reason: format!(
                "{e}; is another node using port {port}? Stop it, or change [p2p] listen in config.toml"
            ),
        })
}

/// A dial error a person can read: libp2p prints a denied dial as just "Dial error" and
/// a transport failure as the same cause nested several times over.
pub(crate) fn describe(e: &DialError) -> String {
    let root = root_cause;
    match e {
        DialError::Transport(errors) => {
            let each: Vec<String> = errors
                .iter()
                .map(|(addr, err)| format!("{addr}: {}", root(err)))
                .collect();
            format!("could not reach {}", each.join("; "))
        }
        DialError::Denied { cause } => format!("dial denied: {}", root(cause)),
        other => other.to_string(),
    }
}

impl Actor {
    fn join_network(&mut self) {
        for addr in self.config.bootstrap.iter().chain(&self.config.relays) {
            self.known_ips.add(addr);
        }
        for addr in self.config.bootstrap.clone() {
            if let Some(peer) = peer_of(&addr) {
                self.try_route(peer, addr.clone());
            }
            if let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::warn!(target: "nodus::net", %addr, "bootstrap dial failed: {e}");
            }
        }
        self.relays = self
            .config
            .relays
            .iter()
            .map(|r| (r.clone(), None))
            .collect();
        self.ensure_relays();
    }

    /// A node that lost every peer (or whose bootstrap peers were not up yet when it
    /// started) dials its bootstrap peers again.
    fn rejoin_if_alone(&mut self) {
        if self.swarm.connected_peers().next().is_some() {
            return;
        }
        for addr in self.config.bootstrap.clone() {
            let opts = match peer_of(&addr) {
                Some(peer) => DialOpts::peer_id(peer)
                    .addresses(vec![addr])
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build(),
                None => DialOpts::unknown_peer_id().address(addr).build(),
            };
            let _ = self.swarm.dial(opts);
        }
    }

    /// Listens through every wanted relay that has no listener yet. The listener is only
    /// opened over an established connection: opening it while another dial to the relay
    /// is in flight makes libp2p drop the reservation request.
    fn ensure_relays(&mut self) {
        for i in 0..self.relays.len() {
            let (addr, listener) = self.relays[i].clone();
            if listener.is_some() {
                continue;
            }
            let Some(relay) = peer_of(&addr) else {
                continue;
            };
            if self.swarm.is_connected(&relay) {
                match self
                    .swarm
                    .listen_on(addr.clone().with(Protocol::P2pCircuit))
                {
                    Ok(id) => self.relays[i].1 = Some(id),
                    Err(e) => {
                        tracing::warn!(target: "nodus::net", %addr, "relay listen failed: {e}")
                    }
                }
            } else {
                let opts = DialOpts::peer_id(relay)
                    .addresses(vec![addr])
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build();
                let _ = self.swarm.dial(opts);
            }
        }
    }

    async fn run(mut self) {
        let mut relay_retry = tokio::time::interval(RELAY_RETRY);
        relay_retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                cmd = self.commands.recv() => match cmd {
                    None | Some(Command::Shutdown) => break,
                    Some(cmd) => self.on_command(cmd),
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                _ = relay_retry.tick() => {
                    self.ensure_relays();
                    self.lift_expired_bans();
                    self.rejoin_if_alone();
                }
            }
        }
        tracing::debug!(target: "nodus::net", "network actor stopped");
    }

    fn emit(&self, event: NetEvent) {
        let _ = self.events.send(event);
    }
}
