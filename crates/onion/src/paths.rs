//! Circuits from the relay list: for the proxy, a fresh path for each isolation key
//! (and each onion service), kept while it works and replaced once closed; for onion
//! services, paths to given introduction and rendezvous points. A path that fails to
//! build, or takes longer than the learned build timeout, is followed by another (three
//! tries). Every build is judged when it ends, even one given up on (see
//! [`crate::health`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use libp2p::PeerId;
use nodus_net::NetworkHandle;

use crate::bandwidth::Measured;
use crate::build_timeout::BuildTimes;
use crate::client::{Circuit, Hop, Partial, longest_build};
use crate::congestion::WindowStats;
use crate::directory::{Directory, End, PathRules};
use crate::guards::{self, Guards};
use crate::health::Health;
use crate::hs::address::{self, ServiceId};
use crate::hs::connect;
use crate::hs::descriptor::Services;
use crate::proxy::{Circuits, Isolation};
use crate::{OnionError, lock};

const TRIES: usize = 3;
/// A relay whose bandwidth probe failed is probed again after this.
pub const PROBE_RETRY: Duration = Duration::from_secs(10 * 60);
/// A bandwidth probe's cells must all have come within this.
pub const PROBE_WAIT: Duration = Duration::from_secs(30);
/// How often the guards are checked against the relay list.
pub const GUARDS_EVERY: Duration = Duration::from_secs(60);
/// Circuits held at once, one per isolation key and service: local programs choose
/// the keys. Past it, the oldest circuit without streams is closed.
pub const MAX_CIRCUITS: usize = 64;

/// What a kept circuit is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Purpose {
    Exit(Isolation),
    Onion(Isolation, ServiceId),
    /// To a peer of the overlay, from a last hop that is not that peer.
    Overlay(Isolation, PeerId),
}

pub struct DirectoryPaths {
    net: NetworkHandle,
    me: PeerId,
    hops: usize,
    subnet_bits: u8,
    directory: Arc<Mutex<Directory>>,
    services: Arc<Mutex<Services>>,
    health: Arc<Mutex<Health>>,
    build_times: Arc<Mutex<BuildTimes>>,
    guards: Mutex<(Guards, Option<Instant>)>,
    measured: Mutex<Measured>,
    /// Told when this node first builds a circuit for use: measuring starts then.
    used: tokio::sync::Notify,
    /// Relays whose last bandwidth probe failed, and when.
    probe_failed: Mutex<HashMap<PeerId, Instant>>,
    /// A circuit to an exit built before any request needs it.
    spare: Mutex<Option<Circuit>>,
    spare_taken: tokio::sync::Notify,
    built: tokio::sync::Mutex<HashMap<Purpose, (Arc<Circuit>, Instant)>>,
}

/// A circuit as `nodus onion circuits` shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CircuitInfo {
    pub hops: Vec<String>,
    pub age_secs: u64,
    pub isolated: bool,
    /// The onion service it reaches, if it goes to one rather than out of an exit.
    #[serde(default)]
    pub service: Option<String>,
    /// The overlay peer its last hop opens streams to (a mailbox), if that is its use.
    #[serde(default)]
    pub peer: Option<String>,
    /// Stream bytes this node sent and received on it.
    #[serde(default)]
    pub sent_bytes: u64,
    #[serde(default)]
    pub received_bytes: u64,
    /// The congestion window of what this node sends on it.
    #[serde(default)]
    pub window: WindowStats,
}

impl DirectoryPaths {
    pub fn new(
        net: NetworkHandle,
        hops: usize,
        subnet_bits: u8,
        directory: Arc<Mutex<Directory>>,
        services: Arc<Mutex<Services>>,
        guards: Guards,
    ) -> DirectoryPaths {
        DirectoryPaths {
            me: net.local_peer_id(),
            net,
            hops: hops.max(1),
            subnet_bits,
            directory,
            services,
            health: Arc::default(),
            build_times: Arc::default(),
            guards: Mutex::new((guards, None)),
            measured: Mutex::default(),
            used: tokio::sync::Notify::new(),
            probe_failed: Mutex::default(),
            spare: Mutex::default(),
            spare_taken: tokio::sync::Notify::new(),
            built: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    pub async fn circuits(&self) -> Vec<CircuitInfo> {
        self.built
            .lock()
            .await
            .iter()
            .filter(|(_, (c, _))| !c.is_closed())
            .map(|(purpose, (c, at))| CircuitInfo {
                hops: c.hops().iter().map(|p| p.to_string()).collect(),
                age_secs: at.elapsed().as_secs(),
                isolated: match purpose {
                    Purpose::Exit(i) | Purpose::Onion(i, _) | Purpose::Overlay(i, _) => i.is_some(),
                },
                service: match purpose {
                    Purpose::Onion(_, id) => Some(address::encode(id)),
                    _ => None,
                },
                peer: match purpose {
                    Purpose::Overlay(_, peer) => Some(peer.to_string()),
                    _ => None,
                },
                sent_bytes: c.traffic().0,
                received_bytes: c.traffic().1,
                window: c.window(),
            })
            .collect()
    }

    /// A built path of the configured length ending as `end` asks.
    pub async fn partial(&self, end: End<'_>) -> Result<Partial, OnionError> {
        self.used.notify_one();
        self.build(end, None).await
    }

    /// [`DirectoryPaths::partial`] without counting as this node's use of circuits (the
    /// spare built ahead does not), and with `also_avoid` left out of the path (let back
    /// in last, if no path can be made without it).
    async fn build(&self, end: End<'_>, also_avoid: Option<PeerId>) -> Result<Partial, OnionError> {
        let mut last = OnionError::NoPath("no relay known yet");
        for _ in 0..TRIES {
            let mut avoid = lock(&self.health).avoided(Instant::now());
            avoid.extend(also_avoid.filter(|p| !avoid.contains(p)));
            let guards = self.guards();
            let path = {
                let measured = lock(&self.measured);
                let rules = PathRules {
                    guards: &guards,
                    bandwidth: Some(&measured),
                    ..PathRules::new(self.hops, self.subnet_bits)
                };
                lock(&self.directory).pick_path(&self.me, &rules, end, &avoid, &mut rand::rng())?
            };
            let patience = lock(&self.build_times).wait(longest_build(path.len()));
            let pending = Arc::new(Mutex::new(Pending::default()));
            // The first hop is dialled at the addresses its descriptor gives, which the
            // overlay may not know yet (a relay that just joined a large network).
            let first = path
                .first()
                .map(|h| (h.peer, lock(&self.directory).addrs_of(&h.peer)));
            let mut build = tokio::spawn(judged_build(
                self.net.clone(),
                first,
                path,
                pending.clone(),
                self.health.clone(),
                self.build_times.clone(),
            ));
            match tokio::time::timeout(patience, &mut build).await {
                Ok(Ok(Ok(c))) => return Ok(c),
                Ok(Ok(Err(e))) => last = e,
                Ok(Err(_)) => last = OnionError::CircuitClosed,
                Err(_) => {
                    // The build goes on, to be judged when it ends (its circuit is then
                    // dropped); the relay it waits for is late until then.
                    let mut health = lock(&self.health);
                    let mut pending = lock(&pending);
                    if let (false, Some(peer)) = (pending.ended, pending.waiting_on) {
                        pending.late = Some(peer);
                        health.mark_late(peer);
                    }
                    last = OnionError::Timeout("a circuit (the learned build timeout)");
                }
            }
        }
        Err(last)
    }

    /// Keeps a circuit to an exit built ahead, so that a request with new credentials
    /// does not wait for one: builds one whenever there is none (the last was taken,
    /// or it closed), checking every few seconds. Runs until dropped.
    /// A spare that does not enter by the guard a path would take now (built before
    /// the guards were heard of, after a start) is dropped and built again.
    pub async fn keep_a_spare(&self) {
        loop {
            let guards = self.guards();
            let avoid = lock(&self.health).avoided(Instant::now());
            let missing = {
                let mut spare = lock(&self.spare);
                if spare
                    .as_ref()
                    .is_some_and(|c| !enters_by_a_guard(c.hops(), &guards, &avoid))
                {
                    *spare = None;
                }
                spare.as_ref().is_none_or(|c| c.is_closed())
            };
            if missing && lock(&self.directory).relays().any(|r| r.exit) {
                match self.build(End::Exit, None).await {
                    Ok(p) => *lock(&self.spare) = Some(p.into_circuit(crate::client::Role::Client)),
                    Err(e) => tracing::debug!(target: "nodus::onion", "no spare circuit: {e}"),
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(2), self.spare_taken.notified()).await;
        }
    }

    /// Measures relays' bandwidth, one every `every` ([`crate::bandwidth`]): those
    /// never measured first, then each again once its measure is old. A relay whose
    /// probe failed is left for [`PROBE_RETRY`]. Only a node that uses circuits
    /// measures (one that only relays, or has made no request, does not load relays
    /// with probes), from the first circuit it builds for use, after a random
    /// part of `every`, so that nodes do not probe in step. Runs until dropped.
    pub async fn measure_bandwidth(&self, every: Duration) {
        self.used.notified().await;
        tokio::time::sleep(every.mul_f64(rand::random::<f64>())).await;
        loop {
            let now = Instant::now();
            let listed: Vec<(crate::client::Hop, Vec<libp2p::Multiaddr>)> = {
                let d = lock(&self.directory);
                d.relays()
                    .filter(|r| r.hop.peer != self.me && !r.ips.is_empty())
                    .map(|r| (r.hop.clone(), d.addrs_of(&r.hop.peer)))
                    .collect()
            };
            let next = {
                let mut failed = lock(&self.probe_failed);
                failed.retain(|_, at| now.duration_since(*at) < PROBE_RETRY);
                let peers: Vec<PeerId> = listed
                    .iter()
                    .map(|(h, _)| h.peer)
                    .filter(|p| !failed.contains_key(p))
                    .collect();
                let mut measured = lock(&self.measured);
                measured.keep_only(&listed.iter().map(|(h, _)| h.peer).collect::<Vec<_>>());
                measured.next_to_probe(&peers, now, &mut rand::rng())
            };
            if let Some((hop, addrs)) =
                next.and_then(|p| listed.into_iter().find(|(h, _)| h.peer == p))
            {
                match self.probe(&hop, addrs).await {
                    Ok(rate) => {
                        tracing::debug!(target: "nodus::onion", relay = %hop.peer, "measured at {rate:.0} B/s");
                        lock(&self.measured).record(hop.peer, rate, Instant::now());
                    }
                    Err(e) => {
                        tracing::debug!(target: "nodus::onion", relay = %hop.peer, "bandwidth probe failed: {e}");
                        lock(&self.probe_failed).insert(hop.peer, Instant::now());
                    }
                }
            }
            tokio::time::sleep(every).await;
        }
    }

    async fn probe(
        &self,
        hop: &crate::client::Hop,
        addrs: Vec<libp2p::Multiaddr>,
    ) -> Result<f64, OnionError> {
        let dial = self.net.dial_peer_at(hop.peer, addrs);
        let _ = tokio::time::timeout(crate::relay::HANDSHAKE_TIMEOUT, dial).await;
        let c = Circuit::build(&self.net, std::slice::from_ref(hop)).await?;
        let cells = crate::bandwidth::PROBE_CELLS;
        let took = c.probe(cells, PROBE_WAIT).await?;
        Ok(crate::bandwidth::rate(cells, took))
    }

    /// Relays' bandwidth as measured here, fastest first.
    pub fn measured(&self) -> Vec<(PeerId, u64)> {
        lock(&self.measured).all()
    }

    /// The relays of the spare circuit, if one is ready.
    pub fn spare_hops(&self) -> Option<Vec<String>> {
        lock(&self.spare)
            .as_ref()
            .filter(|c| !c.is_closed())
            .map(|c| c.hops().iter().map(|p| p.to_string()).collect())
    }

    /// The guards to enter by, first choice first, refreshed from the relay list every
    /// [`GUARDS_EVERY`] (every time while fewer than [`guards::NUM`] are listed, but not
    /// more than once a second).
    pub fn guards(&self) -> Vec<PeerId> {
        let mut g = lock(&self.guards);
        let (guards, refreshed) = &mut *g;
        let since = refreshed.map(|t| t.elapsed());
        let due = match since {
            None => true,
            Some(d) if guards.listed().len() < guards::NUM => d >= Duration::from_secs(1),
            Some(d) => d >= GUARDS_EVERY,
        };
        if due {
            let listed: Vec<PeerId> = lock(&self.directory)
                .relays()
                .filter(|r| r.hop.peer != self.me && !r.ips.is_empty())
                .map(|r| r.hop.peer)
                .collect();
            if let Err(e) = guards.refresh(&listed, crate::service::now_ms(), &mut rand::rng()) {
                tracing::warn!(target: "nodus::onion", "guards not kept: {e}");
            }
            *refreshed = Some(Instant::now());
        }
        guards.listed().to_vec()
    }

    /// How long a request waits for a circuit of the configured length before it tries
    /// another path, once learned (see [`crate::build_timeout`]).
    pub fn build_timeout(&self) -> Option<Duration> {
        lock(&self.build_times).learned(longest_build(self.hops))
    }

    /// Relays left out of paths now, for status: for a time (unreachable, or failing
    /// circuits), and late (owing an answer to a build given up on).
    pub fn left_out(&self) -> (Vec<PeerId>, Vec<PeerId>) {
        let health = lock(&self.health);
        (health.left_out(Instant::now()), health.late())
    }

    /// The descriptor of service `id`, if one has arrived.
    pub fn service(&self, id: &ServiceId) -> Option<crate::hs::descriptor::Service> {
        lock(&self.services).get(id).cloned()
    }

    async fn make(
        &self,
        purpose: &Purpose,
        also_avoid: Option<PeerId>,
    ) -> Result<Circuit, OnionError> {
        match purpose {
            Purpose::Exit(_) => {
                let spare = lock(&self.spare).take().filter(|c| {
                    !c.is_closed() && also_avoid.is_none_or(|p| !c.hops().contains(&p))
                });
                self.spare_taken.notify_one();
                match spare {
                    Some(c) => Ok(c),
                    None => Ok(self
                        .build(End::Exit, also_avoid)
                        .await?
                        .into_circuit(crate::client::Role::Client)),
                }
            }
            Purpose::Onion(_, id) => {
                let service = self.service(id).ok_or(OnionError::NoPath(
                    "no descriptor of this onion service has arrived (is it running?)",
                ))?;
                connect::rendezvous(self, &service).await
            }
            Purpose::Overlay(_, peer) => Ok(self
                .build(End::Beside(peer), also_avoid)
                .await?
                .into_circuit(crate::client::Role::Client)),
        }
    }

    /// A stream to overlay peer `peer` on `protocol`, opened by the last hop of the
    /// circuit `isolation` names for that peer; as [`crate::proxy::open`], a circuit
    /// that closed under the request is replaced and the request tried again, once.
    pub async fn connect_peer(
        &self,
        isolation: Isolation,
        peer: PeerId,
        protocol: &str,
    ) -> Result<tokio::io::DuplexStream, OnionError> {
        crate::proxy::open_on(
            self,
            |avoid| self.circuit_for(Purpose::Overlay(isolation.clone(), peer), avoid),
            |c| async move { c.connect_peer(&peer, protocol).await },
        )
        .await
    }

    /// The kept circuit for `purpose`, or a new one without `also_avoid` (nor a kept one
    /// through it).
    async fn circuit_for(
        &self,
        purpose: Purpose,
        also_avoid: Option<PeerId>,
    ) -> Result<Arc<Circuit>, OnionError> {
        self.used.notify_one();
        let mut built = self.built.lock().await;
        if let Some((c, _)) = built.get(&purpose).filter(|(c, _)| !c.is_closed()) {
            return Ok(c.clone());
        }
        built.retain(|_, (c, _)| !c.is_closed());
        if built.len() >= MAX_CIRCUITS && !built.contains_key(&purpose) {
            // Room is made by closing the oldest circuit nobody uses: no stream on
            // it, and no request holding it to open one (clones are taken only here,
            // under this lock).
            let idle = built
                .iter()
                .filter(|(_, (c, _))| Arc::strong_count(c) == 1 && c.open_streams() == 0)
                .min_by_key(|(_, (_, at))| *at)
                .map(|(p, _)| p.clone());
            match idle {
                Some(p) => drop(built.remove(&p)),
                None => {
                    return Err(OnionError::NoPath(
                        "64 circuits (one per set of SOCKS credentials and service) carry streams",
                    ));
                }
            }
        }
        let c = Arc::new(self.make(&purpose, also_avoid).await?);
        built.insert(purpose, (c.clone(), Instant::now()));
        Ok(c)
    }
}

impl Circuits for DirectoryPaths {
    fn circuit(
        &self,
        isolation: Isolation,
        host: &str,
        also_avoid: Option<PeerId>,
    ) -> BoxFuture<'_, Result<Arc<Circuit>, OnionError>> {
        let purpose = if address::is_onion(host) {
            match address::decode(host) {
                Some(id) => Ok(Purpose::Onion(isolation, id)),
                None => Err(OnionError::NoPath(
                    "not an onion service address (56 characters, then .nodus)",
                )),
            }
        } else {
            Ok(Purpose::Exit(isolation))
        };
        Box::pin(async move { self.circuit_for(purpose?, also_avoid).await })
    }

    fn judge(&self, circuit: &Circuit, answered: bool) {
        let mut health = lock(&self.health);
        if answered {
            health.worked(circuit.hops());
        } else if let Some(last) = circuit.hops().last() {
            // The hop whose answer was awaited, as for a build (see crate::health).
            tracing::debug!(target: "nodus::onion", relay = %last, "a BEGIN went unanswered: its last hop is suspected");
            health.suspect(&[*last], Instant::now());
            circuit.close();
        }
    }
}

/// A build under way, as the request waiting for it and the build itself see it. Both
/// change it with the health lock held, so a relay is marked late only while the
/// build is under way, and the mark is taken off when it ends.
#[derive(Debug, Default)]
struct Pending {
    waiting_on: Option<PeerId>,
    /// The relay marked late, when the request gave up.
    late: Option<PeerId>,
    ended: bool,
}

/// Builds a circuit through `path` and judges it: a circuit that built teaches the
/// build timeout and credits its relays; one that failed blames whom the failure
/// points at (see [`crate::health`]).
async fn judged_build(
    net: NetworkHandle,
    first: Option<(PeerId, Vec<libp2p::Multiaddr>)>,
    path: Vec<Hop>,
    pending: Arc<Mutex<Pending>>,
    health: Arc<Mutex<Health>>,
    build_times: Arc<Mutex<BuildTimes>>,
) -> Result<Partial, OnionError> {
    let peers: Vec<PeerId> = path.iter().map(|h| h.peer).collect();
    let started = Instant::now();
    if let Some((peer, addrs)) = first {
        // A failure here shows as the first hop's stream not opening, judged below.
        let dial = net.dial_peer_at(peer, addrs);
        let _ = tokio::time::timeout(crate::relay::HANDSHAKE_TIMEOUT, dial).await;
    }
    let built = Partial::build_telling(&net, &path, |peer| {
        let _health = lock(&health);
        lock(&pending).waiting_on = Some(peer);
    })
    .await;
    let now = Instant::now();
    let mut health = lock(&health);
    {
        let mut pending = lock(&pending);
        pending.ended = true;
        if let Some(peer) = pending.late {
            health.ended_late(peer);
        }
    }
    match &built {
        Ok(_) => {
            health.worked(&peers);
            lock(&build_times).record(now - started);
        }
        Err(e) => {
            tracing::debug!(target: "nodus::onion", "a circuit did not build: {e}");
            match e {
                OnionError::ExtendFailed(peer) => health.unreachable(*peer, now),
                OnionError::Net(_) => health.unreachable(peers[0], now),
                OnionError::NoAnswer(peer) => health.suspect(&[*peer], now),
                OnionError::CircuitClosed | OnionError::Handshake(_) | OnionError::Tampered => {
                    health.suspect(&peers, now)
                }
                _ => {}
            }
        }
    }
    built
}

/// Whether `hops` enter by the guard a path to the same end would take now: the first
/// of `guards` not left out and not the end itself (any first hop if there is none).
fn enters_by_a_guard(hops: &[PeerId], guards: &[PeerId], avoid: &[PeerId]) -> bool {
    let (Some(first), Some(last)) = (hops.first(), hops.last()) else {
        return true;
    };
    guards
        .iter()
        .find(|g| !avoid.contains(g) && *g != last)
        .is_none_or(|g| g == first)
}
