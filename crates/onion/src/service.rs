//! The onion service on a node: its onion key, the relay list fed by gossip, the SOCKS5
//! proxy onto circuits picked from it, and, opted in, a relay (or exit) that publishes
//! its signed descriptor.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libp2p::Multiaddr;
use libp2p::identity::Keypair;
use nodus_net::{NetworkHandle, Verdict};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::OnionError;
use crate::config::OnionConfig;
use crate::descriptor::Descriptor;
use crate::directory::Directory;
use crate::guards::Guards;
use crate::hosting::Hosting;
use crate::hs::descriptor::Services;
use crate::hs::host::{HostStatus, Publish};
use crate::lists::Lists;
use crate::lock;
use crate::ntor::OnionKey;
use crate::paths::{CircuitInfo, DirectoryPaths};
use crate::proxy;
use crate::relay::Relay;
use crate::role::{Relaying, Role};

/// The gossip topic relays publish their descriptors on.
pub const TOPIC: &str = "nodus/onion/relays/1";
/// The gossip topic onion services publish their descriptors on.
pub const SERVICES_TOPIC: &str = "nodus/onion/services/1";

/// What `GET /api/v1/onion` shows.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Status {
    pub relay: bool,
    pub exit: bool,
    /// Bytes a second the relay passes on for others at most (0: no limit).
    #[serde(default)]
    pub relay_bandwidth: u64,
    pub socks: String,
    pub relays_known: usize,
    pub exits_known: usize,
    /// Onion services whose descriptors this node holds.
    #[serde(default)]
    pub services_known: usize,
    pub circuits: Vec<CircuitInfo>,
    /// The relays of the circuit built ahead for the next new set of credentials.
    #[serde(default)]
    pub spare: Option<Vec<String>>,
    /// Descriptors new to this node that came in peers' lists (asked for on joining).
    #[serde(default)]
    pub from_lists: u64,
    /// The guards circuits enter by, first choice first (none while no relay is old
    /// enough).
    #[serde(default)]
    pub guards: Vec<String>,
    /// How long a request waits for a circuit before trying another path, once learned
    /// from this node's builds.
    #[serde(default)]
    pub build_timeout_ms: Option<u64>,
    /// Relays this node's paths leave out for now (unreachable, or failing circuits).
    #[serde(default)]
    pub avoided: Vec<String>,
    /// Relays left out until they answer a build this node gave up waiting for.
    #[serde(default)]
    pub late: Vec<String>,
    /// The onion services this node runs.
    #[serde(default)]
    pub services: Vec<HostStatus>,
    /// Relays' bandwidth as this node measured it, bytes a second, fastest first.
    #[serde(default)]
    pub measured: Vec<Measure>,
}

/// One relay's measured bandwidth.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Measure {
    pub relay: String,
    pub bytes_per_sec: u64,
}

#[derive(Clone)]
pub struct OnionHandle {
    socks: SocketAddr,
    directory: Arc<Mutex<Directory>>,
    paths: Arc<DirectoryPaths>,
    relaying: Arc<Relaying>,
    services: Arc<Mutex<Services>>,
    hosting: Arc<Hosting>,
    lists: Lists,
}

impl OnionHandle {
    pub async fn status(&self) -> Status {
        let (relays_known, exits_known) = {
            let d = lock(&self.directory);
            (d.len(), d.relays().filter(|r| r.exit).count())
        };
        let services_known = lock(&self.services).len();
        let role = self.relaying.role();
        let (avoided, late) = self.paths.left_out();
        let names = |peers: Vec<libp2p::PeerId>| peers.iter().map(|p| p.to_string()).collect();
        Status {
            relay: role.relay,
            exit: role.exit,
            relay_bandwidth: self.relaying.bandwidth(),
            socks: self.socks.to_string(),
            relays_known,
            exits_known,
            services_known,
            circuits: self.paths.circuits().await,
            spare: self.paths.spare_hops(),
            guards: names(self.paths.guards()),
            from_lists: self.lists.taken.load(std::sync::atomic::Ordering::Relaxed),
            build_timeout_ms: self.paths.build_timeout().map(|d| d.as_millis() as u64),
            avoided: names(avoided),
            late: names(late),
            services: self.hosting.status(),
            measured: self
                .paths
                .measured()
                .into_iter()
                .map(|(p, b)| Measure {
                    relay: p.to_string(),
                    bytes_per_sec: b,
                })
                .collect(),
        }
    }

    /// Runs local `port` as an onion service clients reach at `virtual_port`.
    pub fn serve(&self, port: u16, virtual_port: u16) -> Result<HostStatus, OnionError> {
        self.hosting.serve(port, virtual_port)
    }

    /// Runs local `port` as an onion service at `virtual_port` whose identity is
    /// `identity` (owned elsewhere, as messaging's anonymous one): its address is that
    /// key's. Registered again at each start; not listed in services.json.
    pub fn serve_as(
        &self,
        identity: Keypair,
        port: u16,
        virtual_port: u16,
    ) -> Result<HostStatus, OnionError> {
        let keys = crate::hs::address::ServiceKeys::from_identity(identity)?;
        self.hosting.serve_as(keys, port, virtual_port)
    }

    /// A stream to `target` (`host:port`, an onion service's or, through an exit, any
    /// other) on the circuit `isolation` names, as a SOCKS5 request with those
    /// credentials would get.
    pub async fn connect(
        &self,
        isolation: crate::proxy::Isolation,
        target: &str,
    ) -> Result<tokio::io::DuplexStream, OnionError> {
        proxy::open(&*self.paths, isolation, target).await
    }

    /// A stream to overlay peer `peer` on `protocol` (one the relays open for circuits,
    /// `[onion] relay_overlay_protocols`), through a circuit of its own whose last hop
    /// opens it: `peer` sees that relay, not this node.
    pub async fn connect_peer(
        &self,
        isolation: crate::proxy::Isolation,
        peer: libp2p::PeerId,
        protocol: &str,
    ) -> Result<tokio::io::DuplexStream, OnionError> {
        self.paths.connect_peer(isolation, peer, protocol).await
    }

    /// Stops the onion service of local `port` (its key, so its address, is kept).
    pub fn unserve(&self, port: u16) -> Result<bool, OnionError> {
        self.hosting.unserve(port)
    }

    /// When the newest descriptor held of the service at `address` was published.
    pub fn service_published_ms(&self, address: &str) -> Option<u64> {
        let id = crate::hs::address::decode(address)?;
        lock(&self.services).get(&id).map(|s| s.published_ms)
    }

    /// `host:port` of the SOCKS5 proxy.
    pub fn socks_addr(&self) -> SocketAddr {
        self.socks
    }

    /// This node's relay, when it is one (tests watch its views).
    pub fn relay(&self) -> Option<Arc<Relay>> {
        self.relaying.relay()
    }

    /// Relays (and exits) from now on, or stops; kept in `onion/role.json` across
    /// restarts.
    pub async fn set_role(
        &self,
        relay: bool,
        exit: bool,
        bandwidth: Option<u64>,
    ) -> Result<Role, OnionError> {
        if exit && !relay {
            return Err(OnionError::BadRequest(
                "an exit is a relay too: turn the relay on with --exit, not off".into(),
            ));
        }
        if bandwidth.is_some() && !relay {
            return Err(OnionError::BadRequest(
                "a bandwidth limit is for a relay: give it with `relay on`".into(),
            ));
        }
        let role = Role {
            relay,
            exit,
            bandwidth,
        };
        self.relaying.set(role, true).await?;
        Ok(self.relaying.role())
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The onion key kept in `onion.key` (0600), made on first start.
pub fn onion_key(dir: &Path) -> Result<OnionKey, OnionError> {
    let path = dir.join("onion.key");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let secret: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                OnionError::Key(format!(
                    "{} is not 32 bytes; remove it to make a new key",
                    path.display()
                ))
            })?;
            Ok(OnionKey::from_bytes(secret))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = OnionKey::generate();
            nodus_core::fsutil::write_atomic(&path, &key.secret_bytes()[..], 0o600)
                .map_err(|e| OnionError::Key(format!("{}: {e}", path.display())))?;
            Ok(key)
        }
        Err(e) => Err(OnionError::Key(format!("{}: {e}", path.display()))),
    }
}

#[derive(Clone)]
pub struct Metrics {
    pub descriptors_accepted: Counter,
    pub descriptors_refused: Counter,
}

impl Metrics {
    pub fn register(r: &mut prometheus_client::registry::Registry) -> Metrics {
        let m = Metrics {
            descriptors_accepted: Counter::default(),
            descriptors_refused: Counter::default(),
        };
        r.register(
            "descriptors_accepted",
            "Relay and onion service descriptors taken in",
            m.descriptors_accepted.clone(),
        );
        r.register(
            "descriptors_refused",
            "Relay and onion service descriptors refused (bad signature, malformed, from the future)",
            m.descriptors_refused.clone(),
        );
        m
    }
}

/// Starts the service's parts; returns the handle and its tasks.
pub async fn start(
    config: OnionConfig,
    dir: &Path,
    key: Keypair,
    net: NetworkHandle,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
) -> Result<(OnionHandle, Vec<JoinHandle<()>>), OnionError> {
    let onion_key = onion_key(dir)?;
    let directory = Arc::new(Mutex::new(Directory::with_cost(config.admission_bits)));
    let services = Arc::new(Mutex::new(Services::default()));
    let mut tasks = Vec::new();
    for (topic, list) in [
        (TOPIC, List::Relays(directory.clone())),
        (SERVICES_TOPIC, List::Services(services.clone())),
    ] {
        let gossip = net
            .subscribe_validated(topic)
            .await
            .map_err(|e| OnionError::Net(e.to_string()))?;
        tasks.push(tokio::spawn(take_descriptors(
            net.clone(),
            gossip,
            list,
            metrics.clone(),
            shutdown.clone(),
        )));
    }
    let addrs_of: crate::relay::AddrsOf = {
        let directory = directory.clone();
        Arc::new(move |peer| lock(&directory).addrs_of(peer))
    };
    let relaying = Arc::new(Relaying::new(
        net.clone(),
        key,
        onion_key,
        &config,
        (dir, addrs_of),
        shutdown.clone(),
    ));
    relaying.set(Role::load(dir, &config)?, false).await?;
    let (listener, socks) = nodus_service::server::bind(&config.socks_listen)
        .await
        .map_err(|source| OnionError::Listen {
            addr: config.socks_listen.clone(),
            source,
        })?;
    let paths = Arc::new(DirectoryPaths::new(
        net.clone(),
        config.hops,
        config.path_subnet_bits,
        directory.clone(),
        services.clone(),
        Guards::load(
            &dir.join("guards.json"),
            config.guard_min_age_secs.saturating_mul(1000),
        )?,
    ));
    let publish: Publish = {
        let (net, services) = (net.clone(), services.clone());
        Arc::new(move |signed: Vec<u8>| {
            let _ = lock(&services).insert(&signed, now_ms());
            let net = net.clone();
            Box::pin(async move { net.publish(SERVICES_TOPIC, signed).await.is_ok() })
        })
    };
    let hosting = Arc::new(Hosting::start(
        dir.to_path_buf(),
        paths.clone(),
        Duration::from_secs(config.publish_secs.max(1)),
        publish,
    )?);
    let lists = Lists {
        relays: directory.clone(),
        services: services.clone(),
        taken: Default::default(),
    };
    tasks.push(tokio::spawn(crate::lists::serve(
        net.clone(),
        lists.clone(),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(crate::lists::ask_on_joining(
        net.clone(),
        lists.clone(),
        shutdown.clone(),
    )));
    let serving = proxy::serve(listener, paths.clone());
    let spares = paths.clone();
    let probe_every = Duration::from_secs(config.bandwidth_probe_secs);
    let mut stop = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        let measuring = async {
            match probe_every.is_zero() {
                true => std::future::pending().await,
                false => spares.measure_bandwidth(probe_every).await,
            }
        };
        tokio::select! {
            _ = serving => {}
            _ = spares.keep_a_spare() => {}
            _ = measuring => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }));
    tracing::info!(target: "nodus::onion", "SOCKS5 proxy on {socks}{}", if relaying.role().relay { ", relaying" } else { "" });
    Ok((
        OnionHandle {
            socks,
            directory,
            paths,
            relaying,
            services,
            hosting,
            lists,
        },
        tasks,
    ))
}

/// A list gossip feeds.
enum List {
    Relays(Arc<Mutex<Directory>>),
    Services(Arc<Mutex<Services>>),
}

impl List {
    fn insert(&self, signed: &[u8], now: u64) -> Result<bool, OnionError> {
        match self {
            List::Relays(d) => lock(d).insert(signed, now),
            List::Services(s) => lock(s).insert(signed, now),
        }
    }

    fn expire(&self, now: u64) {
        match self {
            List::Relays(d) => lock(d).expire(now),
            List::Services(s) => lock(s).expire(now),
        }
    }
}

/// Feeds a list from gossip: a good descriptor is passed on, a bad one counts against
/// whoever forwarded it.
async fn take_descriptors(
    net: NetworkHandle,
    mut gossip: tokio::sync::mpsc::Receiver<nodus_net::GossipMessage>,
    list: List,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut expiry = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            m = gossip.recv() => {
                let Some(m) = m else { return };
                let taken = list.insert(&m.data, now_ms());
                let verdict = match taken {
                    Ok(true) => {
                        metrics.descriptors_accepted.inc();
                        Verdict::Accept
                    }
                    Ok(false) => Verdict::Ignore,
                    Err(e) => {
                        tracing::debug!(target: "nodus::onion", via = %m.via, "descriptor refused: {e}");
                        metrics.descriptors_refused.inc();
                        Verdict::Reject
                    }
                };
                net.validate(&m, verdict);
            }
            _ = expiry.tick() => list.expire(now_ms()),
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// The addresses a descriptor names, which paths keep apart by network: the ones peers
/// observed if any, else the listen addresses; never unspecified ones, and loopback ones
/// only when there is nothing else (a loopback test network). Every machine has
/// 127.0.0.1, so listing it beside a public address would put all relays in one /16.
fn published_addrs(external: &[String], listen: &[String]) -> Vec<Multiaddr> {
    let parse =
        |v: &[String]| -> Vec<Multiaddr> { v.iter().filter_map(|a| a.parse().ok()).collect() };
    let mut addrs = parse(external);
    if addrs.is_empty() {
        addrs = parse(listen);
    }
    let ip = |a: &Multiaddr| {
        a.iter().find_map(|p| match p {
            libp2p::multiaddr::Protocol::Ip4(ip) => Some(std::net::IpAddr::V4(ip)),
            libp2p::multiaddr::Protocol::Ip6(ip) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        })
    };
    addrs.retain(|a| ip(a).is_some_and(|ip| !ip.is_unspecified()));
    if addrs
        .iter()
        .any(|a| ip(a).is_some_and(|ip| !ip.is_loopback()))
    {
        addrs.retain(|a| ip(a).is_some_and(|ip| !ip.is_loopback()));
    }
    addrs
}

/// Publishes this relay's descriptor now and every `every` (a fresh one each time, so
/// gossip never takes it for a duplicate); until the first publish reaches a peer, every
/// second.
pub(crate) async fn publish(
    net: NetworkHandle,
    key: Keypair,
    onion_key: [u8; 32],
    exit: bool,
    every: Duration,
    (bits, dir): (u8, std::path::PathBuf),
    mut shutdown: watch::Receiver<bool>,
) {
    let me = net.local_peer_id();
    let mut tickets = Tickets::load(&dir, onion_key, bits);
    loop {
        let addrs = match net.status().await {
            Ok(s) => published_addrs(&s.external_addrs, &s.listen_addrs),
            Err(_) => return,
        };
        let now = now_ms();
        let ticket = tokio::select! {
            t = tickets.for_day(me, crate::admission::epoch_of(now)) => t,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let published = match Descriptor::new(me, onion_key, exit, &addrs, now, ticket).sign(&key) {
            Ok(signed) => net.publish(TOPIC, signed).await.is_ok(),
            Err(e) => {
                tracing::warn!(target: "nodus::onion", "cannot sign the relay descriptor: {e}");
                false
            }
        };
        let wait = if published {
            every
        } else {
            Duration::from_secs(1)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// This relay's admission ticket, solved once a day and kept in `onion/admission.json`
/// so a restart does not pay again.
struct Tickets {
    path: std::path::PathBuf,
    onion_key: [u8; 32],
    bits: u8,
    held: Option<crate::admission::Ticket>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SavedTicket {
    onion_key: String,
    bits: u8,
    ticket: crate::admission::Ticket,
}

impl Tickets {
    fn load(dir: &Path, onion_key: [u8; 32], bits: u8) -> Tickets {
        let path = dir.join("admission.json");
        let held =
            crate::state::read::<SavedTicket>(&path, "remove it: the ticket is solved again")
                .ok()
                .flatten()
                .filter(|s| s.onion_key == hex::encode(onion_key) && s.bits >= bits)
                .map(|s| s.ticket);
        Tickets {
            path,
            onion_key,
            bits,
            held,
        }
    }

    /// A ticket for `day`: the one held if it is that day's, else one solved now off
    /// the async threads (meanwhile the descriptor already out, with the day before's
    /// ticket, is still good). Dropping the future stops the solve.
    async fn for_day(&mut self, me: libp2p::PeerId, day: u32) -> crate::admission::Ticket {
        if let Some(t) = self.held
            && t.epoch == day
        {
            return t;
        }
        /// Stops the solve when the request for it goes away.
        struct StopOnDrop(Arc<std::sync::atomic::AtomicBool>);
        impl Drop for StopOnDrop {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let stop = StopOnDrop(Arc::default());
        let (key, bits, flag) = (self.onion_key, self.bits, stop.0.clone());
        let solving = tokio::task::spawn_blocking(move || {
            crate::admission::solve_until(&me, &key, day, bits, rand::random(), &flag)
        });
        let t = match solving.await {
            Ok(Some(t)) => t,
            // Solving never panics nor stops while awaited; were it to, the day
            // before's ticket is still good today.
            _ => {
                return self.held.unwrap_or(crate::admission::Ticket {
                    epoch: day,
                    nonce: 0,
                });
            }
        };
        tracing::info!(target: "nodus::onion", day, bits, "admission ticket solved");
        let saved = SavedTicket {
            onion_key: hex::encode(key),
            bits,
            ticket: t,
        };
        if let Err(e) = crate::state::write(&self.path, &saved) {
            tracing::warn!(target: "nodus::onion", "keeping the admission ticket: {e}");
        }
        self.held = Some(t);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_name_observed_addresses_and_no_loopback_beside_others() {
        let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        let listen = s(&[
            "/ip4/127.0.0.1/tcp/4001",
            "/ip4/192.168.1.5/tcp/4001",
            "/ip4/0.0.0.0/tcp/4001",
        ]);
        let got = published_addrs(&[], &listen);
        assert_eq!(
            got,
            vec!["/ip4/192.168.1.5/tcp/4001".parse::<Multiaddr>().unwrap()]
        );
        let got = published_addrs(&s(&["/ip4/203.0.113.7/tcp/4001"]), &listen);
        assert_eq!(
            got,
            vec!["/ip4/203.0.113.7/tcp/4001".parse::<Multiaddr>().unwrap()]
        );
        // A loopback test network keeps its loopback addresses.
        let got = published_addrs(&[], &s(&["/ip4/127.0.3.1/tcp/1"]));
        assert_eq!(got.len(), 1);
    }
}
