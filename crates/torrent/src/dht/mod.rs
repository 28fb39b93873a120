//! The mainline DHT (BEP 5): one UDP node per session, shared by every torrent, that
//! finds peers for an infohash, announces ours, and answers other nodes' queries.
//!
//! Written here rather than taken from the `mainline` crate: that crate drops every
//! query whose transaction id is not 4 bytes long, and libtorrent (so qBittorrent,
//! Deluge, and the libtorrent peer in our tests) sends 2-byte ids, so a node built on
//! it could ask libtorrent nodes but never be asked by them.
//!
//! Shape: one task reads the socket. Queries are answered on the spot from the
//! routing table and the peer store (both behind one mutex, never held across an
//! await); responses are matched to the request waiting for them by transaction id
//! *and* source address, so a third party cannot answer for a node. Lookups are plain
//! async functions that send through the shared socket.
//!
//! Bounds: the peer store holds at most MAX_STORED_TORRENTS infohashes of
//! MAX_STORED_PEERS peers each, for PEER_TTL; a datagram that does not decode is
//! counted and dropped, never answered.

pub mod krpc;
pub mod table;

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU16, Ordering};

use prometheus_client::metrics::counter::Counter;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use sha1::{Digest, Sha1};
use tokio::net::UdpSocket;
use tokio::sync::{oneshot, watch};

use krpc::{Message, NodeId, Query, QueryMsg, Response};
use table::{K, Table, distance};

/// How long a node has to answer one query.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Queries in flight at once during one lookup.
const ALPHA: usize = 4;
/// A lookup gives up after this long, whatever is left.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(20);
const MAX_STORED_TORRENTS: usize = 5_000;
const MAX_STORED_PEERS: usize = 200;
const PEER_TTL: Duration = Duration::from_secs(30 * 60);
/// Peers returned in one get_peers answer, at most (one datagram stays under 1500 bytes).
const VALUES_PER_ANSWER: usize = 50;
/// Tokens are valid for two secret rotations (BEP 5: up to ten minutes).
const SECRET_ROTATION: Duration = Duration::from_secs(5 * 60);

/// What a lookup for an infohash found.
#[derive(Debug, Default)]
pub struct Found {
    pub peers: Vec<SocketAddr>,
    /// Nodes that took our announce.
    pub announced: usize,
}

struct State {
    table: Table,
    store: HashMap<NodeId, HashMap<SocketAddrV4, Instant>>,
    secret: [u8; 16],
    prev_secret: [u8; 16],
    rotated: Instant,
}

struct Inner {
    socket: UdpSocket,
    local: SocketAddrV4,
    own: NodeId,
    state: Mutex<State>,
    pending: Mutex<HashMap<u16, (SocketAddrV4, oneshot::Sender<Response>)>>,
    next_tid: AtomicU16,
    bootstrap: Vec<String>,
    bad_packets: Counter,
}

#[derive(Clone)]
pub struct Dht {
    inner: Arc<Inner>,
}

impl Dht {
    /// Binds `bind:port` (any free port when that one is taken), then answers queries
    /// and keeps its routing table filled through `bootstrap` (host:port) until
    /// `shutdown`.
    pub async fn start(
        bind: Ipv4Addr,
        port: u16,
        bootstrap: Vec<String>,
        bad_packets: Counter,
        shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<Dht> {
        let socket = match UdpSocket::bind((bind, port)).await {
            Ok(s) => s,
            Err(e) if port != 0 => {
                tracing::debug!(target: "nodus::torrent", "DHT port {port} taken ({e}); using any");
                UdpSocket::bind((bind, 0)).await?
            }
            Err(e) => return Err(e),
        };
        let local = match socket.local_addr()? {
            SocketAddr::V4(mut a) => {
                if a.ip().is_unspecified() {
                    a.set_ip(Ipv4Addr::LOCALHOST);
                }
                a
            }
            SocketAddr::V6(_) => return Err(std::io::Error::other("the DHT is IPv4 only")),
        };
        let own: NodeId = rand::random();
        let dht = Dht {
            inner: Arc::new(Inner {
                socket,
                local,
                own,
                state: Mutex::new(State {
                    table: Table::new(own),
                    store: HashMap::new(),
                    secret: rand::random(),
                    prev_secret: rand::random(),
                    rotated: Instant::now(),
                }),
                pending: Mutex::new(HashMap::new()),
                next_tid: AtomicU16::new(rand::random()),
                bootstrap,
                bad_packets,
            }),
        };
        tokio::spawn(dht.clone().receive(shutdown.clone()));
        tokio::spawn(dht.clone().maintain(shutdown));
        Ok(dht)
    }

    /// Where other DHT nodes reach this one.
    pub fn local_addr(&self) -> SocketAddr {
        SocketAddr::V4(self.inner.local)
    }

    /// Nodes in the routing table.
    pub fn nodes(&self) -> usize {
        self.state().table.len()
    }

    /// Datagrams that did not decode (dropped unanswered).
    pub fn bad_packets(&self) -> u64 {
        self.inner.bad_packets.get()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<u16, (SocketAddrV4, oneshot::Sender<Response>)>> {
        self.inner.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ---- answering

    async fn receive(self, mut shutdown: watch::Receiver<bool>) {
        let mut buf = vec![0u8; 2048];
        loop {
            let (n, from) = tokio::select! {
                _ = shutdown.changed() => return,
                r = self.inner.socket.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // ICMP errors of earlier sends surface here on Linux; keep going.
                        tracing::trace!(target: "nodus::torrent", "DHT recv: {e}");
                        continue;
                    }
                },
            };
            let SocketAddr::V4(from) = from else { continue };
            match krpc::decode(&buf[..n]) {
                Ok(Message::Query(q)) => {
                    let reply = self.answer(from, q);
                    let _ = self.inner.socket.send_to(&reply, from).await;
                }
                Ok(Message::Response(r)) => self.on_response(from, r),
                Ok(Message::Error { .. }) => {}
                Err(e) => {
                    self.inner.bad_packets.inc();
                    tracing::trace!(target: "nodus::torrent", %from, "DHT: {e}");
                }
            }
        }
    }

    fn on_response(&self, from: SocketAddrV4, r: Response) {
        let Ok(tid) = <[u8; 2]>::try_from(r.tid.as_slice()) else {
            return;
        };
        let tid = u16::from_be_bytes(tid);
        let mut pending = self.pending();
        if pending.get(&tid).is_some_and(|(to, _)| *to == from)
            && let Some((_, tx)) = pending.remove(&tid)
        {
            drop(pending);
            self.state().table.seen(r.id, from);
            let _ = tx.send(r);
        }
    }

    fn token(secret: &[u8; 16], ip: &Ipv4Addr) -> Vec<u8> {
        let mut h = Sha1::new();
        h.update(secret);
        h.update(ip.octets());
        h.finalize()[..8].to_vec()
    }

    fn answer(&self, from: SocketAddrV4, q: QueryMsg) -> Vec<u8> {
        let mut st = self.state();
        if st.rotated.elapsed() > SECRET_ROTATION {
            st.prev_secret = st.secret;
            st.secret = rand::random();
            st.rotated = Instant::now();
        }
        if !q.read_only {
            st.table.seen(q.id, from);
        }
        let mut r = Response {
            tid: q.tid.clone(),
            id: self.inner.own,
            ..Default::default()
        };
        match q.query {
            Query::Ping => {}
            Query::FindNode { target } => r.nodes = st.table.closest(&target, K),
            Query::GetPeers { info_hash } => {
                r.nodes = st.table.closest(&info_hash, K);
                r.token = Some(Self::token(&st.secret, from.ip()));
                if let Some(peers) = st.store.get(&info_hash) {
                    use rand::seq::IteratorRandom;
                    r.values = peers
                        .keys()
                        .copied()
                        .choose_multiple(&mut rand::rng(), VALUES_PER_ANSWER);
                }
            }
            Query::AnnouncePeer {
                info_hash,
                port,
                token,
                implied_port,
            } => {
                let valid = token == Self::token(&st.secret, from.ip())
                    || token == Self::token(&st.prev_secret, from.ip());
                if !valid {
                    return krpc::encode_error(&q.tid, 203, "bad token");
                }
                let port = if implied_port { from.port() } else { port };
                if port == 0 {
                    return krpc::encode_error(&q.tid, 203, "port 0");
                }
                let peer = SocketAddrV4::new(*from.ip(), port);
                if st.store.len() < MAX_STORED_TORRENTS || st.store.contains_key(&info_hash) {
                    let peers = st.store.entry(info_hash).or_default();
                    if peers.len() < MAX_STORED_PEERS || peers.contains_key(&peer) {
                        peers.insert(peer, Instant::now());
                    }
                }
            }
            Query::Other(_) => return krpc::encode_error(&q.tid, 204, "method unknown"),
        }
        krpc::encode_response(&r)
    }

    // ---- asking

    /// A node heard of outside the DHT (a peer's PORT message): pinged, and added to
    /// the routing table if it answers.
    pub fn add_node(&self, addr: SocketAddrV4) {
        if addr.port() == 0 || addr == self.inner.local {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move { me.request(addr, Query::Ping).await });
    }

    async fn request(&self, to: SocketAddrV4, q: Query) -> Option<Response> {
        let (tx, rx) = oneshot::channel();
        let tid = loop {
            let tid = self.inner.next_tid.fetch_add(1, Ordering::Relaxed);
            let mut pending = self.pending();
            if let std::collections::hash_map::Entry::Vacant(v) = pending.entry(tid) {
                v.insert((to, tx));
                break tid;
            }
        };
        let msg = krpc::encode_query(&tid.to_be_bytes(), &self.inner.own, &q);
        let answered = match self.inner.socket.send_to(&msg, to).await {
            Ok(_) => tokio::time::timeout(REQUEST_TIMEOUT, rx)
                .await
                .ok()
                .and_then(Result::ok),
            Err(_) => None,
        };
        self.pending().remove(&tid);
        if answered.is_none() {
            self.state().table.failed(to);
        }
        answered
    }

    async fn ask(
        &self,
        key: Option<NodeId>,
        addr: SocketAddrV4,
        q: Query,
    ) -> (Option<NodeId>, SocketAddrV4, Option<Response>) {
        (key, addr, self.request(addr, q).await)
    }

    /// An iterative lookup of `target` (BEP 5): ask the closest nodes known, then the
    /// closer ones they name, until the K closest that answer have all been asked.
    /// Returns the closest nodes that answered, with their answers, closest first.
    async fn lookup(
        &self,
        target: NodeId,
        get_peers: bool,
        seeds: &[SocketAddrV4],
    ) -> Vec<(SocketAddrV4, Response)> {
        let query = if get_peers {
            Query::GetPeers { info_hash: target }
        } else {
            Query::FindNode { target }
        };
        #[derive(PartialEq)]
        enum Status {
            New,
            Asked,
            Answered(Box<Response>),
            Failed,
        }
        // Keyed by distance to the target; seeds (ids unknown yet) are asked first.
        let mut nodes: BTreeMap<NodeId, (SocketAddrV4, Status)> = BTreeMap::new();
        for (id, addr) in self.state().table.closest(&target, K * 2) {
            nodes.insert(distance(&id, &target), (addr, Status::New));
        }
        let mut inflight = FuturesUnordered::new();
        for s in seeds {
            let q = query.clone();
            inflight.push(self.ask(None, *s, q));
        }
        let deadline = tokio::time::Instant::now() + LOOKUP_TIMEOUT;
        loop {
            // Ask more while fewer than ALPHA are out and one of the K closest live
            // nodes has not been asked.
            while inflight.len() < ALPHA {
                let next = nodes
                    .iter_mut()
                    .filter(|(_, (_, s))| *s != Status::Failed)
                    .take(K)
                    .find(|(_, (_, s))| *s == Status::New);
                let Some((key, (addr, status))) = next else {
                    break;
                };
                *status = Status::Asked;
                let (key, addr, q) = (*key, *addr, query.clone());
                inflight.push(self.ask(Some(key), addr, q));
            }
            let next = tokio::select! {
                n = inflight.next() => n,
                _ = tokio::time::sleep_until(deadline) => None,
            };
            let Some((key, addr, answer)) = next else {
                break;
            };
            let key = key.unwrap_or_else(|| {
                answer
                    .as_ref()
                    .map(|r| distance(&r.id, &target))
                    .unwrap_or([0xff; 20])
            });
            match answer {
                Some(r) => {
                    for (id, a) in &r.nodes {
                        if *id != self.inner.own && *a != self.inner.local {
                            nodes
                                .entry(distance(id, &target))
                                .or_insert((*a, Status::New));
                        }
                    }
                    nodes.insert(key, (addr, Status::Answered(Box::new(r))));
                }
                None => {
                    nodes
                        .entry(key)
                        .and_modify(|e| e.1 = Status::Failed)
                        .or_insert((addr, Status::Failed));
                }
            }
        }
        nodes
            .into_values()
            .filter_map(|(a, s)| match s {
                Status::Answered(r) => Some((a, *r)),
                _ => None,
            })
            .collect()
    }

    /// Finds peers for `info_hash` and, with `announce_port`, announces us on that TCP
    /// port to the K closest nodes that answered.
    pub async fn get_peers(&self, info_hash: [u8; 20], announce_port: Option<u16>) -> Found {
        let answers = self.lookup(info_hash, true, &[]).await;
        let mut found = Found::default();
        // Peers announced to us count too: in a small network we may be the node closest
        // to the infohash, the one others announce to, and nobody else holds them.
        if let Some(peers) = self.state().store.get(&info_hash) {
            found.peers = peers.keys().map(|p| SocketAddr::V4(*p)).collect();
        }
        for (_, r) in &answers {
            for p in &r.values {
                let p = SocketAddr::V4(*p);
                if !found.peers.contains(&p) {
                    found.peers.push(p);
                }
            }
        }
        if let Some(port) = announce_port {
            let mut acks: FuturesUnordered<_> = answers
                .iter()
                .filter_map(|(addr, r)| Some((*addr, r.token.clone()?)))
                .take(K)
                .map(|(addr, token)| {
                    let q = Query::AnnouncePeer {
                        info_hash,
                        port,
                        token,
                        implied_port: false,
                    };
                    async move { self.request(addr, q).await.is_some() }
                })
                .collect();
            while let Some(ok) = acks.next().await {
                found.announced += ok as usize;
            }
        }
        found
    }

    // ---- upkeep

    /// Fills the table from the bootstrap nodes while it is thin, refreshes it every
    /// 15 minutes, and expires stored peers.
    async fn maintain(self, mut shutdown: watch::Receiver<bool>) {
        let mut last_refresh: Option<Instant> = None;
        // While the table stays thin, bootstrap attempts back off (10 s doubling to
        // 5 min): an offline machine or a small private swarm is not a reason to ask
        // the resolver every few seconds forever.
        let mut thin_wait = Duration::from_secs(10);
        loop {
            let thin = self.nodes() < K;
            if thin || last_refresh.is_none_or(|t| t.elapsed() > Duration::from_secs(15 * 60)) {
                let seeds = if thin {
                    self.resolve_bootstrap().await
                } else {
                    vec![]
                };
                if !seeds.is_empty() || self.nodes() > 0 {
                    self.lookup(self.inner.own, false, &seeds).await;
                }
                last_refresh = Some(Instant::now());
            }
            {
                let mut st = self.state();
                st.store.retain(|_, peers| {
                    peers.retain(|_, t| t.elapsed() < PEER_TTL);
                    !peers.is_empty()
                });
            }
            let wait = if self.nodes() < K {
                let w = thin_wait;
                thin_wait = (thin_wait * 2).min(Duration::from_secs(300));
                w
            } else {
                thin_wait = Duration::from_secs(10);
                Duration::from_secs(60)
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn resolve_bootstrap(&self) -> Vec<SocketAddrV4> {
        let mut out = Vec::new();
        for host in &self.inner.bootstrap {
            let Ok(Ok(addrs)) = tokio::time::timeout(
                Duration::from_secs(5),
                tokio::net::lookup_host(host.as_str()),
            )
            .await
            else {
                continue;
            };
            out.extend(addrs.filter_map(|a| match a {
                SocketAddr::V4(a) if a != self.inner.local => Some(a),
                _ => None,
            }));
        }
        out
    }
}
