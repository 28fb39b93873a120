//! Running an onion service: circuits to a few introduction points kept up, the
//! descriptor naming them published, and each introduction answered with a circuit to
//! the client's rendezvous point whose streams reach the local target.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use super::address::ServiceKeys;
use super::descriptor;
use super::messages::{EstablishIntro, Introduce, Opened};
use crate::OnionError;
use crate::cell::{RelayCommand, RelayMsg};
use crate::client::{Circuit, Hop, Role};
use crate::directory::End;
use crate::lock;
use crate::ntor;
use crate::paths::DirectoryPaths;
use crate::relay::HANDSHAKE_TIMEOUT;

/// Introduction points a service keeps.
pub const INTRO_POINTS: usize = 3;
/// Rendezvous circuits being built at once; introductions past it are dropped.
const BUILDING: usize = 16;
/// Introductions remembered against replay.
const SEEN: usize = 65_536;

/// An onion service to run.
#[derive(Clone)]
pub struct Hosted {
    pub keys: ServiceKeys,
    /// The port clients ask for (80 for `http://<address>/`).
    pub port: u16,
    /// Where their streams go.
    pub target: SocketAddr,
}

/// How a hosted service is doing, for `nodus onion status`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct HostStatus {
    pub address: String,
    pub port: u16,
    pub target: String,
    pub intro_points: Vec<String>,
    pub circuits: usize,
    pub introductions: u64,
    pub dropped: u64,
}

/// Spreads a signed descriptor (gossip, and this node's own list); `false` if no peer
/// took it yet (tried again a second later).
pub type Publish = Arc<dyn Fn(Vec<u8>) -> futures::future::BoxFuture<'static, bool> + Send + Sync>;

struct Intro {
    hop: Hop,
    task: JoinHandle<()>,
}

impl Drop for Intro {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs `hosted` until the future is dropped.
pub async fn run(
    paths: Arc<DirectoryPaths>,
    hosted: Hosted,
    publish_every: Duration,
    publish: Publish,
    status: Arc<Mutex<HostStatus>>,
) {
    let (intro_tx, mut intro_rx) = mpsc::channel::<Vec<u8>>(64);
    let (served_tx, mut served_rx) = mpsc::channel::<Circuit>(64);
    let building = Arc::new(Semaphore::new(BUILDING));
    let mut intros: Vec<Intro> = Vec::new();
    let mut served: Vec<Circuit> = Vec::new();
    let mut seen: HashSet<[u8; 32]> = HashSet::new();
    let mut published: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let before = intros.len();
                intros.retain(|i| !i.task.is_finished());
                let mut changed = intros.len() != before;
                while intros.len() < INTRO_POINTS {
                    match establish(&paths, &hosted.keys, &intros, intro_tx.clone()).await {
                        Ok(i) => {
                            intros.push(i);
                            changed = true;
                        }
                        Err(e) => {
                            tracing::debug!(target: "nodus::onion", "no introduction point: {e}");
                            break;
                        }
                    }
                }
                served.retain(|c| !c.is_closed());
                if changed {
                    published = None;
                }
                let due = published.is_none_or(|at| at.elapsed() >= publish_every);
                if !intros.is_empty() && due {
                    let hops: Vec<Hop> = intros.iter().map(|i| i.hop.clone()).collect();
                    match descriptor::sign(&hosted.keys, &hops, crate::service::now_ms()) {
                        Ok(signed) => {
                            if publish(signed).await {
                                published = Some(Instant::now());
                            }
                        }
                        Err(e) => tracing::warn!(target: "nodus::onion", "cannot sign a service descriptor: {e}"),
                    }
                }
                let mut s = lock(&status);
                s.intro_points = intros.iter().map(|i| i.hop.peer.to_string()).collect();
                s.circuits = served.len();
            }
            Some(data) = intro_rx.recv() => {
                let opened = Introduce::decode(&data).and_then(|i| i.open(&hosted.keys));
                let Ok(opened) = opened else {
                    lock(&status).dropped += 1;
                    continue;
                };
                if seen.len() >= SEEN {
                    seen.clear();
                }
                let permit = building.clone().try_acquire_owned();
                if !seen.insert(opened.seal_id) || permit.is_err() {
                    lock(&status).dropped += 1;
                    continue;
                }
                lock(&status).introductions += 1;
                let (paths, hosted, served_tx) = (paths.clone(), hosted.clone(), served_tx.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    match answer(&paths, &hosted, &opened).await {
                        Ok(c) => {
                            let _ = served_tx.send(c).await;
                        }
                        Err(e) => tracing::debug!(target: "nodus::onion", "rendezvous failed: {e}"),
                    }
                });
            }
            Some(c) = served_rx.recv() => served.push(c),
        }
    }
}

/// A new introduction point, not one of `current`.
async fn establish(
    paths: &DirectoryPaths,
    keys: &ServiceKeys,
    current: &[Intro],
    tx: mpsc::Sender<Vec<u8>>,
) -> Result<Intro, OnionError> {
    let taken: HashSet<PeerId> = current.iter().map(|i| i.hop.peer).collect();
    let mut p = None;
    for _ in 0..3 {
        let c = paths.partial(End::Any).await?;
        if !taken.contains(&c.hops()[c.last()]) {
            p = Some(c);
            break;
        }
    }
    let mut p = p.ok_or(OnionError::NoPath("no relay left to introduce through"))?;
    let last = p.last();
    let binding = p.binding(last).expect("a hop of this circuit");
    let m = EstablishIntro::new(keys, &binding)?.encode();
    p.send(last, RelayMsg::new(RelayCommand::EstablishIntro, 0, m))
        .await?;
    p.expect(last, RelayCommand::IntroEstablished, HANDSHAKE_TIMEOUT)
        .await?;
    let hop = Hop {
        peer: p.hops()[last],
        onion_key: p.onion_key(last),
    };
    let task = tokio::spawn(async move {
        loop {
            match p.recv(None).await {
                Ok((from, m)) if from == last && m.command == RelayCommand::Introduce2 => {
                    if tx.send(m.data).await.is_err() {
                        return;
                    }
                }
                Ok((
                    _,
                    RelayMsg {
                        command: RelayCommand::Drop,
                        ..
                    },
                )) => {}
                _ => return,
            }
        }
    });
    Ok(Intro { hop, task })
}

/// The service's circuit to the client's rendezvous point, joined to the client.
async fn answer(
    paths: &DirectoryPaths,
    hosted: &Hosted,
    opened: &Opened,
) -> Result<Circuit, OnionError> {
    let keys = &hosted.keys;
    let (created, hop_keys) = ntor::respond(&keys.id(), &[&keys.ntor], &opened.create)?;
    let mut p = paths.partial(End::At(&opened.rendezvous)).await?;
    let last = p.last();
    let mut data = opened.cookie.to_vec();
    data.extend_from_slice(&created);
    p.send(last, RelayMsg::new(RelayCommand::Rendezvous1, 0, data))
        .await?;
    p.join_client(&hop_keys);
    Ok(p.into_circuit(Role::Service {
        port: hosted.port,
        target: hosted.target,
    }))
}
