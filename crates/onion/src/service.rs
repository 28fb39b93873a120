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
use crate::exit::ExitPolicy;
use crate::ntor::OnionKey;
use crate::paths::{CircuitInfo, DirectoryPaths};
use crate::proxy;
use crate::relay::{self, Relay};

/// The gossip topic relays publish their descriptors on.
pub const TOPIC: &str = "nodus/onion/relays/1";

/// What `GET /api/v1/onion` shows.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Status {
    pub relay: bool,
    pub exit: bool,
    pub socks: String,
    pub relays_known: usize,
    pub exits_known: usize,
    pub circuits: Vec<CircuitInfo>,
}

#[derive(Clone)]
pub struct OnionHandle {
    socks: SocketAddr,
    directory: Arc<Mutex<Directory>>,
    paths: Arc<DirectoryPaths>,
    relay: Option<Arc<Relay>>,
}

impl OnionHandle {
    pub async fn status(&self) -> Status {
        let (relays_known, exits_known) = {
            let d = lock(&self.directory);
            (d.len(), d.relays().filter(|r| r.exit).count())
        };
        Status {
            relay: self.relay.is_some(),
            exit: self.relay.as_ref().is_some_and(|r| r.exit.is_some()),
            socks: self.socks.to_string(),
            relays_known,
            exits_known,
            circuits: self.paths.circuits().await,
        }
    }

    /// `host:port` of the SOCKS5 proxy.
    pub fn socks_addr(&self) -> SocketAddr {
        self.socks
    }

    /// This node's relay, when it is one (tests watch its views).
    pub fn relay(&self) -> Option<&Arc<Relay>> {
        self.relay.as_ref()
    }
}

fn lock(d: &Mutex<Directory>) -> std::sync::MutexGuard<'_, Directory> {
    d.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms() -> u64 {
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
            "Relay descriptors taken into the relay list",
            m.descriptors_accepted.clone(),
        );
        r.register(
            "descriptors_refused",
            "Relay descriptors refused (bad signature, malformed, from the future)",
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
    let directory = Arc::new(Mutex::new(Directory::default()));
    let mut tasks = Vec::new();
    let gossip = net
        .subscribe_validated(TOPIC)
        .await
        .map_err(|e| OnionError::Net(e.to_string()))?;
    tasks.push(tokio::spawn(take_descriptors(
        net.clone(),
        gossip,
        directory.clone(),
        metrics,
        shutdown.clone(),
    )));
    let relay = if config.relay {
        let exit = config.exit.then(|| ExitPolicy {
            allow_private: config.exit_allow_private,
            reject_ports: config.exit_reject_ports.clone(),
        });
        let me = net.local_peer_id();
        let relay = Arc::new(Relay::new(&me, onion_key.clone(), exit));
        tasks.push(relay::spawn(net.clone(), relay.clone())?);
        tasks.push(tokio::spawn(publish(
            net.clone(),
            key,
            onion_key.public(),
            config.exit,
            Duration::from_secs(config.publish_secs.max(1)),
            shutdown.clone(),
        )));
        Some(relay)
    } else {
        None
    };
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
    ));
    let serving = proxy::serve(listener, paths.clone());
    let mut stop = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        tokio::select! {
            _ = serving => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }));
    tracing::info!(target: "nodus::onion", "SOCKS5 proxy on {socks}{}", if relay.is_some() { ", relaying" } else { "" });
    Ok((
        OnionHandle {
            socks,
            directory,
            paths,
            relay,
        },
        tasks,
    ))
}

/// Feeds the relay list from gossip: a good descriptor is passed on, a bad one counts
/// against whoever forwarded it.
async fn take_descriptors(
    net: NetworkHandle,
    mut gossip: tokio::sync::mpsc::Receiver<nodus_net::GossipMessage>,
    directory: Arc<Mutex<Directory>>,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut expiry = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            m = gossip.recv() => {
                let Some(m) = m else { return };
                let taken = lock(&directory).insert(&m.data, now_ms());
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
            _ = expiry.tick() => lock(&directory).expire(now_ms()),
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
async fn publish(
    net: NetworkHandle,
    key: Keypair,
    onion_key: [u8; 32],
    exit: bool,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let me = net.local_peer_id();
    loop {
        let addrs = match net.status().await {
            Ok(s) => published_addrs(&s.external_addrs, &s.listen_addrs),
            Err(_) => return,
        };
        let published = match Descriptor::new(me, onion_key, exit, &addrs, now_ms()).sign(&key) {
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
