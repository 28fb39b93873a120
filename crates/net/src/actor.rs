//! The swarm actor: the only code that touches the `Swarm`. A biased `select!` serves
//! commands (shutdown first in effect: a closed or `Shutdown` command ends the loop) and
//! swarm events; replies wait in maps keyed by connection or query id.

use std::collections::{HashMap, HashSet};
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
    queries: HashMap<QueryId, PendingQuery>,
    reservations: HashMap<PeerId, Vec<Reply<()>>>,
    subscriptions: HashMap<gossipsub::TopicHash, (String, Vec<mpsc::Sender<GossipMessage>>)>,
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
    let mut swarm = build_swarm(key, &config, registry)?;
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Listen {
                addr: addr.to_string(),
                reason: e.to_string(),
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
        queries: HashMap::new(),
        reservations: HashMap::new(),
        subscriptions: HashMap::new(),
        connections: HashMap::new(),
        agents: HashMap::new(),
        rtts: HashMap::new(),
        nat: "unknown".into(),
        relays: Vec::new(),
        strikes: HashMap::new(),
        bans: HashMap::new(),
    };
    actor.join_network();
    let task = tokio::spawn(actor.run());
    Ok((handle, task))
}

fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().last().and_then(|p| match p {
        Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

/// A dial error a person can read: libp2p prints a denied dial as just "Dial error" and
/// a transport failure as the same cause nested several times over.
fn describe(e: &DialError) -> String {
    fn root(e: &dyn std::error::Error) -> String {
        let mut last = e;
        while let Some(next) = last.source() {
            last = next;
        }
        last.to_string()
    }
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

fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| p == Protocol::P2pCircuit)
}

impl Actor {
    fn join_network(&mut self) {
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

    /// Counts a misbehaviour of `peer`; at [`MAX_STRIKES`] disconnects and bans it.
    fn strike(&mut self, peer: PeerId, why: &str) {
        if self.strikes.len() >= MAX_TRACKED_OFFENDERS {
            self.strikes.clear();
        }
        let n = self.strikes.entry(peer).or_default();
        *n += 1;
        if *n < MAX_STRIKES {
            return;
        }
        self.strikes.remove(&peer);
        self.counters.peers_banned.inc();
        tracing::info!(target: "nodus::net", %peer, "banned for {BAN:?}: {why}");
        if self.bans.len() < MAX_TRACKED_OFFENDERS {
            self.bans.insert(peer, std::time::Instant::now() + BAN);
            self.swarm.behaviour_mut().blocked.block_peer(peer);
        } else {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        self.swarm.behaviour_mut().kad.remove_peer(&peer);
        self.emit(NetEvent::PeerBanned {
            peer: peer.to_string(),
            reason: why.to_string(),
        });
    }

    fn lift_expired_bans(&mut self) {
        let now = std::time::Instant::now();
        let expired: Vec<PeerId> = self
            .bans
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in expired {
            self.bans.remove(&peer);
            self.swarm.behaviour_mut().blocked.unblock_peer(peer);
        }
    }

    fn emit(&self, event: NetEvent) {
        let _ = self.events.send(event);
    }

    /// The single gate into the Kademlia routing table.
    fn try_route(&mut self, peer: PeerId, addr: Multiaddr) -> bool {
        if peer == *self.swarm.local_peer_id() {
            return false;
        }
        let limits = Limits {
            per_bucket: self.config.routing.max_per_subnet_per_bucket,
            per_table: self.config.routing.max_per_subnet_per_table,
        };
        let kad = &mut self.swarm.behaviour_mut().kad;
        let bucket = kad.kbucket(peer).map(|b| b.range());
        let mut already = false;
        let mut table: Vec<(bool, Vec<Subnet>)> = Vec::new();
        for b in kad.kbuckets() {
            let same = Some(b.range()) == bucket;
            for e in b.iter() {
                if *e.node.key.preimage() == peer {
                    already = true;
                    continue;
                }
                let subnets = e.node.value.iter().filter_map(Subnet::of_addr).collect();
                table.push((same, subnets));
            }
        }
        if !already {
            let view = table.iter().map(|(s, v)| (*s, v.as_slice()));
            if let Err(refusal) = diversity::admit(limits, &addr, view) {
                self.counters.routing_rejected.inc();
                tracing::debug!(target: "nodus::net", %peer, %addr, "routing refused: {refusal}");
                self.emit(NetEvent::RoutingRejected {
                    peer: peer.to_string(),
                    address: addr.to_string(),
                    reason: refusal.to_string(),
                });
                return false;
            }
        }
        let addr = match peer_of(&addr) {
            Some(_) => {
                let mut a = addr;
                a.pop();
                a
            }
            None => addr,
        };
        !matches!(
            self.swarm.behaviour_mut().kad.add_address(&peer, addr),
            kad::RoutingUpdate::Failed
        )
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Shutdown => {}
            Command::Status(reply) => {
                let _ = reply.send(Ok(self.status()));
            }
            Command::Peers(reply) => {
                let _ = reply.send(Ok(self.peer_infos()));
            }
            Command::Dial { addr, reply } => {
                let opts = DialOpts::unknown_peer_id().address(addr).build();
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.dials.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NetError::Dial(describe(&e))));
                    }
                }
            }
            Command::DialPeer { peer, reply } => self.dial_peer(peer, reply, true),
            Command::Disconnect { peer, reply } => {
                let _ = self.swarm.disconnect_peer_id(peer);
                let _ = reply.send(Ok(()));
            }
            Command::ListenViaRelay { relay, reply } => {
                let Some(relay_peer) = peer_of(&relay) else {
                    let _ = reply.send(Err(NetError::BadAddr {
                        addr: relay.to_string(),
                        reason: "a relay address must end in /p2p/<relay peer id>".into(),
                    }));
                    return;
                };
                self.reservations.entry(relay_peer).or_default().push(reply);
                if !self.relays.iter().any(|(a, _)| *a == relay) {
                    self.relays.push((relay, None));
                }
                self.ensure_relays();
            }
            Command::Subscribe { topic, reply } => {
                let t = gossipsub::IdentTopic::new(topic.clone());
                if let Err(e) = self.swarm.behaviour_mut().gossipsub.subscribe(&t) {
                    let _ = reply.send(Err(NetError::Publish(e.to_string())));
                    return;
                }
                let (tx, rx) = mpsc::channel(SUBSCRIPTION_CAPACITY);
                self.subscriptions
                    .entry(t.hash())
                    .or_insert_with(|| (topic, Vec::new()))
                    .1
                    .push(tx);
                let _ = reply.send(Ok(rx));
            }
            Command::Publish { topic, data, reply } => {
                let t = gossipsub::IdentTopic::new(topic);
                let r = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(t, data)
                    .map(|id| id.to_string())
                    .map_err(|e| match e {
                        gossipsub::PublishError::NoPeersSubscribedToTopic => NetError::Publish(
                            "no connected peer is subscribed to this topic yet".into(),
                        ),
                        other => NetError::Publish(other.to_string()),
                    });
                let _ = reply.send(r);
            }
            Command::TopicPeers { topic, reply } => {
                let hash = gossipsub::IdentTopic::new(topic).hash();
                let peers = self
                    .swarm
                    .behaviour()
                    .gossipsub
                    .all_peers()
                    .filter(|(_, topics)| topics.contains(&&hash))
                    .map(|(p, _)| *p)
                    .collect();
                let _ = reply.send(Ok(peers));
            }
            Command::PutRecord { key, value, reply } => {
                let record = kad::Record::new(kad::RecordKey::new(&key), value);
                if let Err(reason) = self.config.validators.validate(&record) {
                    let _ = reply.send(Err(NetError::RecordRefused(reason)));
                    return;
                }
                match self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .put_record(record, kad::Quorum::One)
                {
                    Ok(q) => {
                        self.queries.insert(q, PendingQuery::Put(reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NetError::Query(format!("{e:?}"))));
                    }
                }
            }
            Command::GetRecord { key, reply } => {
                let q = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_record(kad::RecordKey::new(&key));
                self.queries.insert(q, PendingQuery::Get(reply));
            }
            Command::Provide { key, reply } => {
                match self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .start_providing(kad::RecordKey::new(&key))
                {
                    Ok(q) => {
                        self.queries.insert(q, PendingQuery::Provide(reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NetError::Query(format!("{e:?}"))));
                    }
                }
            }
            Command::Providers { key, reply } => {
                let q = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_providers(kad::RecordKey::new(&key));
                self.queries
                    .insert(q, PendingQuery::Providers(reply, HashSet::new()));
            }
            Command::ClosestPeers { key, reply } => {
                let q = self.swarm.behaviour_mut().kad.get_closest_peers(key);
                self.queries.insert(q, PendingQuery::Closest(reply));
            }
            Command::GossipScore { peer, reply } => {
                let _ = reply.send(Ok(self.swarm.behaviour().gossipsub.peer_score(&peer)));
            }
            Command::RoutingTable { reply } => {
                let mut out = Vec::new();
                for b in self.swarm.behaviour_mut().kad.kbuckets() {
                    for e in b.iter() {
                        out.push((
                            *e.node.key.preimage(),
                            e.node.value.iter().cloned().collect(),
                        ));
                    }
                }
                let _ = reply.send(Ok(out));
            }
        }
    }

    fn dial_peer(&mut self, peer: PeerId, reply: Reply<PeerId>, may_lookup: bool) {
        if self.swarm.is_connected(&peer) || peer == *self.swarm.local_peer_id() {
            let _ = reply.send(Ok(peer));
            return;
        }
        let opts = DialOpts::peer_id(peer)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        match self.swarm.dial(opts) {
            Ok(()) | Err(DialError::DialPeerConditionFalse(_)) => {
                self.peer_dials.entry(peer).or_default().push(reply);
            }
            Err(DialError::NoAddresses) if may_lookup => {
                let q = self.swarm.behaviour_mut().kad.get_closest_peers(peer);
                self.queries.insert(q, PendingQuery::Lookup(peer, reply));
            }
            Err(DialError::NoAddresses) => {
                let _ = reply.send(Err(NetError::PeerNotFound(peer.to_string())));
            }
            Err(e) => {
                let _ = reply.send(Err(NetError::Dial(describe(&e))));
            }
        }
    }

    fn status(&mut self) -> Status {
        let routing_table_size = self
            .swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .map(|b| b.num_entries())
            .sum();
        Status {
            peer_id: self.swarm.local_peer_id().to_string(),
            listen_addrs: self.swarm.listeners().map(|a| a.to_string()).collect(),
            external_addrs: self
                .swarm
                .external_addresses()
                .map(|a| a.to_string())
                .collect(),
            connected_peers: self.swarm.connected_peers().count(),
            routing_table_size,
            nat: self.nat.clone(),
            topics: self
                .subscriptions
                .values()
                .map(|(t, _)| t.clone())
                .collect(),
        }
    }

    fn peer_infos(&self) -> Vec<PeerInfo> {
        let mut out: Vec<PeerInfo> = self
            .connections
            .iter()
            .map(|(peer, conns)| PeerInfo {
                peer_id: peer.to_string(),
                addresses: conns.iter().map(|(_, a)| a.to_string()).collect(),
                agent: self.agents.get(peer).cloned(),
                rtt_ms: self.rtts.get(peer).map(|d| d.as_secs_f64() * 1000.0),
                relayed: conns.iter().all(|(_, a)| is_relayed(a)),
            })
            .collect();
        out.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        out
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.metrics.record(&event);
        match event {
            SwarmEvent::Behaviour(ev) => self.on_behaviour_event(ev),
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(target: "nodus::net", %address, "listening");
                if self.config.advertise_listen_addrs && !is_relayed(&address) {
                    self.swarm.add_external_address(address.clone());
                }
                self.emit(NetEvent::ListenAddr {
                    address: address.to_string(),
                });
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.emit(NetEvent::ListenAddrExpired {
                    address: address.to_string(),
                });
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                let addr = endpoint.get_remote_address().clone();
                let conns = self.connections.entry(peer_id).or_default();
                let first = conns.is_empty();
                conns.push((connection_id, addr.clone()));
                if let ConnectedPoint::Dialer { address, .. } = &endpoint
                    && self
                        .config
                        .bootstrap
                        .iter()
                        .any(|b| peer_of(b) == Some(peer_id))
                {
                    self.try_route(peer_id, address.clone());
                    let _ = self.swarm.behaviour_mut().kad.bootstrap();
                }
                if let Some(reply) = self.dials.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
                for reply in self.peer_dials.remove(&peer_id).unwrap_or_default() {
                    let _ = reply.send(Ok(peer_id));
                }
                if self
                    .relays
                    .iter()
                    .any(|(a, l)| l.is_none() && peer_of(a) == Some(peer_id))
                {
                    self.ensure_relays();
                }
                if first {
                    self.emit(NetEvent::PeerConnected {
                        peer: peer_id.to_string(),
                        address: addr.to_string(),
                    });
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                ..
            } => {
                if let Some(conns) = self.connections.get_mut(&peer_id) {
                    conns.retain(|(id, _)| *id != connection_id);
                    if conns.is_empty() {
                        self.connections.remove(&peer_id);
                        self.rtts.remove(&peer_id);
                        self.agents.remove(&peer_id);
                        self.emit(NetEvent::PeerDisconnected {
                            peer: peer_id.to_string(),
                        });
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                let msg = describe(&error);
                tracing::debug!(target: "nodus::net", ?peer_id, "dial failed: {msg}");
                if let Some(reply) = self.dials.remove(&connection_id) {
                    let _ = reply.send(Err(NetError::Dial(msg.clone())));
                }
                if let Some(peer) = peer_id
                    && !self.swarm.is_connected(&peer)
                {
                    for reply in self.peer_dials.remove(&peer).unwrap_or_default() {
                        let _ = reply.send(Err(NetError::Dial(msg.clone())));
                    }
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                self.counters.bad_connections.inc();
                tracing::debug!(target: "nodus::net", %send_back_addr, "inbound connection failed: {error}");
                self.emit(NetEvent::BadConnection {
                    address: send_back_addr.to_string(),
                    error: error.to_string(),
                });
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            } => {
                if let Err(e) = reason {
                    tracing::warn!(target: "nodus::net", ?addresses, "listener closed: {e}");
                }
                // A relay listener dies with its connection; the retry tick renews it.
                for (_, l) in self.relays.iter_mut() {
                    if *l == Some(listener_id) {
                        *l = None;
                    }
                }
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                tracing::info!(target: "nodus::net", %address, "external address confirmed");
            }
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(ev) => {
                self.metrics.record(&ev);
                if let identify::Event::Received { peer_id, info, .. } = ev {
                    if self.connections.contains_key(&peer_id) {
                        self.agents.insert(peer_id, info.agent_version.clone());
                    }
                    if info.protocols.contains(&KAD_PROTOCOL) {
                        for addr in info.listen_addrs {
                            self.try_route(peer_id, addr);
                        }
                    }
                }
            }
            BehaviourEvent::Kad(ev) => {
                self.metrics.record(&ev);
                self.on_kad_event(ev);
            }
            BehaviourEvent::Gossipsub(ev) => {
                self.metrics.record(&ev);
                if let gossipsub::Event::Message {
                    propagation_source,
                    message_id,
                    message,
                } = ev
                {
                    self.deliver(propagation_source, message_id, message);
                }
            }
            BehaviourEvent::Ping(ev) => {
                self.metrics.record(&ev);
                if let Ok(rtt) = ev.result {
                    self.rtts.insert(ev.peer, rtt);
                }
            }
            BehaviourEvent::RelayClient(ev) => {
                if let relay::client::Event::ReservationReqAccepted { relay_peer_id, .. } = ev {
                    tracing::info!(target: "nodus::net", relay = %relay_peer_id, "relay reservation accepted");
                    for reply in self.reservations.remove(&relay_peer_id).unwrap_or_default() {
                        let _ = reply.send(Ok(()));
                    }
                    self.emit(NetEvent::RelayReservation {
                        relay: relay_peer_id.to_string(),
                    });
                }
            }
            BehaviourEvent::Relay(ev) => self.metrics.record(&ev),
            BehaviourEvent::Dcutr(ev) => {
                self.metrics.record(&ev);
                self.emit(NetEvent::HolePunch {
                    peer: ev.remote_peer_id.to_string(),
                    ok: ev.result.is_ok(),
                });
            }
            BehaviourEvent::Autonat(autonat::Event::StatusChanged { new, .. }) => {
                self.nat = match &new {
                    autonat::NatStatus::Public(a) => format!("public {a}"),
                    autonat::NatStatus::Private => "private".into(),
                    autonat::NatStatus::Unknown => "unknown".into(),
                };
                self.emit(NetEvent::NatStatus {
                    status: self.nat.clone(),
                });
            }
            BehaviourEvent::Autonat(_) => {}
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    if !self.swarm.is_connected(&peer) {
                        let _ = self
                            .swarm
                            .dial(DialOpts::peer_id(peer).addresses(vec![addr]).build());
                    }
                }
            }
            BehaviourEvent::Mdns(_) => {}
            BehaviourEvent::Stream(()) => {}
            BehaviourEvent::Limits(v) | BehaviourEvent::Memory(v) | BehaviourEvent::Blocked(v) => {
                match v {}
            }
        }
    }

    fn deliver(&mut self, via: PeerId, id: gossipsub::MessageId, message: gossipsub::Message) {
        let Some((topic, senders)) = self.subscriptions.get_mut(&message.topic) else {
            return;
        };
        let msg = GossipMessage {
            topic: topic.clone(),
            source: message.source.map(|p| p.to_string()),
            via: via.to_string(),
            data: message.data,
            id: id.to_string(),
        };
        senders.retain(|tx| match tx.try_send(msg.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counters.gossip_dropped.inc();
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        if senders.is_empty() {
            let t = gossipsub::IdentTopic::new(topic.clone());
            self.subscriptions.remove(&message.topic);
            self.swarm.behaviour_mut().gossipsub.unsubscribe(&t);
        }
    }

    fn on_kad_event(&mut self, ev: kad::Event) {
        match ev {
            kad::Event::RoutablePeer { peer, address }
            | kad::Event::PendingRoutablePeer { peer, address } => {
                self.try_route(peer, address);
            }
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::PutRecord {
                        source,
                        record: Some(record),
                        ..
                    },
            } => match self.config.validators.validate(&record) {
                Ok(()) => {
                    if let Err(e) = self.swarm.behaviour_mut().kad.store_mut().put(record) {
                        tracing::debug!(target: "nodus::net", %source, "record not stored: {e:?}");
                    }
                }
                Err(reason) => {
                    self.counters.records_rejected.inc();
                    tracing::debug!(target: "nodus::net", %source, "record refused: {reason}");
                    self.strike(source, "sent invalid DHT records");
                }
            },
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::AddProvider {
                        record: Some(record),
                    },
            } => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .store_mut()
                    .add_provider(record);
            }
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } => self.on_query_progress(id, result, step.last),
            _ => {}
        }
    }

    fn on_query_progress(&mut self, id: QueryId, result: QueryResult, last: bool) {
        let Some(pending) = self.queries.remove(&id) else {
            return;
        };
        match (pending, result) {
            (PendingQuery::Put(reply), QueryResult::PutRecord(r)) => {
                // The record is in the local store either way; what varies is whether
                // any other peer took a copy.
                let replicated = match r {
                    Ok(_) => true,
                    Err(kad::PutRecordError::QuorumFailed { success, .. })
                    | Err(kad::PutRecordError::Timeout { success, .. }) => !success.is_empty(),
                };
                let _ = reply.send(Ok(replicated));
            }
            (PendingQuery::Get(reply), QueryResult::GetRecord(r)) => match r {
                Ok(GetRecordOk::FoundRecord(found)) => {
                    match self.config.validators.validate(&found.record) {
                        Ok(()) => {
                            let _ = reply.send(Ok(found.record.value));
                            if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                                q.finish();
                            }
                        }
                        Err(_) => {
                            self.counters.records_rejected.inc();
                            if last {
                                let _ = reply.send(Err(NetError::NotFound));
                            } else {
                                self.queries.insert(id, PendingQuery::Get(reply));
                            }
                        }
                    }
                }
                Ok(GetRecordOk::FinishedWithNoAdditionalRecord { .. }) | Err(_) => {
                    let _ = reply.send(Err(NetError::NotFound));
                }
            },
            (PendingQuery::Provide(reply), QueryResult::StartProviding(r)) => {
                let _ = reply.send(r.map(|_| ()).map_err(|e| NetError::Query(e.to_string())));
            }
            (PendingQuery::Providers(reply, mut found), QueryResult::GetProviders(r)) => match r {
                Ok(GetProvidersOk::FoundProviders { providers, .. }) => {
                    found.extend(providers);
                    if last {
                        let _ = reply.send(Ok(found.into_iter().collect()));
                    } else {
                        self.queries
                            .insert(id, PendingQuery::Providers(reply, found));
                    }
                }
                Ok(GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) | Err(_) => {
                    let _ = reply.send(Ok(found.into_iter().collect()));
                }
            },
            (PendingQuery::Closest(reply), QueryResult::GetClosestPeers(r)) => {
                let peers = match r {
                    Ok(GetClosestPeersOk { peers, .. }) => peers,
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
                };
                let _ = reply.send(Ok(peers.into_iter().map(|p| p.peer_id).collect()));
            }
            (PendingQuery::Lookup(target, reply), QueryResult::GetClosestPeers(r)) => {
                let peers = match r {
                    Ok(GetClosestPeersOk { peers, .. }) => peers,
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
                };
                for p in peers.into_iter().filter(|p| p.peer_id == target) {
                    for a in p.addrs {
                        self.swarm.add_peer_address(target, a);
                    }
                }
                self.dial_peer(target, reply, false);
            }
            (pending, other) => {
                tracing::debug!(target: "nodus::net", ?other, "query result of unexpected kind");
                if !last {
                    self.queries.insert(id, pending);
                }
            }
        }
    }
}
