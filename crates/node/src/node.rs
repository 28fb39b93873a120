//! Starting and stopping a node.

use std::any::Any;
use std::fs::File;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use nodus_core::{Config, DataDir, Endpoints, identity, token};
use nodus_net::{NetConfig, NetEvent, NetworkHandle};
use nodus_service::ServiceContext;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::NodeError;
use crate::api::{self, ApiState};
use crate::events::EventSource;
use crate::narration::Narration;

pub struct StartOptions {
    pub data_dir: DataDir,
    /// Overrides config.toml when set (the testnet harness builds configs in code).
    pub config: Option<Config>,
}

/// A node that is running. Dropping it without [`RunningNode::shutdown`] aborts its tasks,
/// which is how the harness simulates a crash.
pub struct RunningNode {
    pub net: NetworkHandle,
    events: EventSource,
    narration: Narration,
    /// The services that started, with their handles (see [`RunningNode::service`]).
    services: Vec<(&'static str, Box<dyn Any + Send + Sync>)>,
    pub endpoints: Endpoints,
    pub data_dir: DataDir,
    api_addr: SocketAddr,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    _lock: File,
}

pub struct Node;

impl Node {
    pub async fn start(opts: StartOptions) -> Result<RunningNode, NodeError> {
        let dir = opts.data_dir;
        if !dir.is_initialised() {
            return Err(nodus_core::CoreError::NotInitialised(dir.root().to_path_buf()).into());
        }
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.lock_path())
            .map_err(|e| nodus_core::CoreError::io(dir.lock_path(), e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(NodeError::Locked(dir.root().display().to_string()));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(nodus_core::CoreError::io(dir.lock_path(), e).into());
            }
        }
        let key = identity::load(&dir.identity_path())?;
        let config = match opts.config {
            Some(c) => {
                crate::init::check_config(&c)?;
                c
            }
            None => crate::init::load_config(&dir)?,
        };
        let services = crate::services::all();
        let mut enabled = Vec::with_capacity(services.len());
        for s in &services {
            enabled.push(s.enabled(&config)?);
        }
        let mut net_config = NetConfig::from_config(&config.p2p)?;
        net_config.record_store = Some(dir.net_store_path());
        for (s, on) in services.iter().zip(&enabled) {
            if *on {
                s.register_records(&config, &mut net_config.validators)?;
            }
        }
        let wanted_listeners = net_config.listen.len();

        let mut registry = Registry::default();
        let (net, net_task) = nodus_net::spawn(key.clone(), net_config, &mut registry)?;
        let api_metrics = api::ApiMetrics::register(&mut registry);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);

        let mut tasks = vec![net_task];
        let mut handles = Vec::new();
        let mut routes = Vec::new();
        let mut feeds = Vec::new();
        let mut panels = Vec::new();
        let mut extra = Vec::new();
        let mut provided = nodus_service::Provided::default();
        for (s, on) in services.iter().zip(enabled) {
            let name = s.name();
            if let Some(panel) = s.panel() {
                panels.push(api::ui::PanelEntry {
                    service: name,
                    panel,
                    running: on,
                });
            }
            if !on {
                routes.push((
                    format!("/api/v1/{name}"),
                    nodus_service::http::disabled(name, &dir.config_path()),
                ));
                continue;
            }
            dir.adopt_legacy(name, s.legacy_files())?;
            let service_dir = dir.service_dir(name);
            nodus_core::datadir::create_private_dir(&service_dir)?;
            let ctx = ServiceContext {
                dir: service_dir,
                data_dir: dir.clone(),
                key: key.clone(),
                net: net.clone(),
                metrics: registry.sub_registry_with_prefix(format!("nodus_{name}")),
                shutdown: shutdown_rx.clone(),
                provided: &provided,
            };
            let running = match s.start(ctx, &config).await {
                Ok(r) => r,
                Err(e) => {
                    // What started before it stops now, closing its files, so the data
                    // dir can be opened again at once (by this process, too).
                    let _ = shutdown_tx.send(true);
                    for t in tasks.drain(..) {
                        t.abort();
                        let _ = t.await;
                    }
                    return Err(e.into());
                }
            };
            tracing::info!(target: "nodus::node", service = name, "service started");
            routes.push((format!("/api/v1/{name}"), running.routes));
            for (path, r) in running.root {
                if routes.iter().any(|(p, _)| p == path) {
                    // Two services of this build claim one path: a bug, stopped as a
                    // failed start is.
                    let _ = shutdown_tx.send(true);
                    for t in tasks.drain(..).chain(running.tasks) {
                        t.abort();
                        let _ = t.await;
                    }
                    return Err(NodeError::RouteTaken {
                        path: path.to_string(),
                        service: name,
                    });
                }
                routes.push((path.to_string(), r));
            }
            if let Some(f) = running.events {
                feeds.push((name, f));
            }
            extra.extend(running.endpoints);
            tasks.extend(running.tasks);
            crate::services::provide(running.handle.as_ref(), &key, &mut provided);
            handles.push((name, running.handle));
        }

        let listener = tokio::net::TcpListener::bind(&config.api.listen)
            .await
            .map_err(|source| NodeError::ApiBind {
                addr: config.api.listen.clone(),
                source,
            })?;
        let api_addr = listener.local_addr().map_err(|source| NodeError::ApiBind {
            addr: config.api.listen.clone(),
            source,
        })?;
        let api_token = token::generate();
        token::write(&dir.cookie_path(), &api_token)?;

        let narration = Narration::default();
        feeds.push(("narration", narration.feed()));
        let events = EventSource::new(net.clone(), feeds);
        let state = ApiState {
            net: net.clone(),
            events: events.clone(),
            narration: narration.clone(),
            panels: Arc::new(panels),
            token: Arc::new(api_token),
            registry: Arc::new(registry),
            metrics: api_metrics,
            shutdown: shutdown_tx.clone(),
            data_dir: dir.root().display().to_string(),
        };
        let rx = shutdown_rx.clone();
        let api_task = tokio::spawn(async move {
            let app = api::router(state, routes);
            nodus_service::server::serve("api", listener, app, Default::default(), rx).await;
        });
        tasks.push(api_task);

        let p2p = wait_for_listeners(&net, wanted_listeners).await?;
        let endpoints = Endpoints {
            api: format!("http://{api_addr}"),
            peer_id: net.local_peer_id().to_string(),
            p2p,
            pid: std::process::id(),
            extra: extra.into_iter().collect(),
        };
        endpoints.write(&dir.endpoints_path())?;
        tasks.push(tokio::spawn(keep_endpoints_current(
            net.clone(),
            endpoints.clone(),
            dir.clone(),
            shutdown_rx.clone(),
        )));
        let locked = lock
            .metadata()
            .map_err(|e| nodus_core::CoreError::io(dir.lock_path(), e))?;
        tasks.push(tokio::spawn(stop_if_data_dir_goes(
            dir.clone(),
            locked,
            shutdown_tx.clone(),
            shutdown_rx,
        )));
        tracing::info!(target: "nodus::node", peer_id = %endpoints.peer_id, api = %endpoints.api, "node started");
        Ok(RunningNode {
            net,
            events,
            narration,
            services: handles,
            endpoints,
            data_dir: dir,
            api_addr,
            shutdown_tx,
            tasks,
            _lock: lock,
        })
    }
}

fn with_peer(addr: &str, peer: &str) -> String {
    if addr.ends_with(&format!("/p2p/{peer}")) {
        addr.to_string()
    } else {
        format!("{addr}/p2p/{peer}")
    }
}

async fn p2p_addrs(net: &NetworkHandle) -> Result<Vec<String>, NodeError> {
    let status = net.status().await?;
    Ok(status
        .listen_addrs
        .iter()
        .map(|a| with_peer(a, &status.peer_id))
        .collect())
}

/// Waits (at most 5 s) until every configured listener reports an address.
async fn wait_for_listeners(net: &NetworkHandle, wanted: usize) -> Result<Vec<String>, NodeError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let addrs = p2p_addrs(net).await?;
        if addrs.len() >= wanted || tokio::time::Instant::now() >= deadline {
            return Ok(addrs);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How often the node looks for its data dir.
const DATA_DIR_CHECK: Duration = Duration::from_secs(2);

/// Stops the node, cleanly and saying why, when its data dir is deleted or replaced
/// while it runs (its node.lock gone, or another file in its place): it would otherwise
/// go on writing into deleted files, `status` and `stop` would not find it, and a new
/// node on the path would find its ports taken.
async fn stop_if_data_dir_goes(
    dir: DataDir,
    locked: std::fs::Metadata,
    stop: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    use std::os::unix::fs::MetadataExt;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(DATA_DIR_CHECK) => {}
        }
        let same = std::fs::metadata(dir.lock_path())
            .is_ok_and(|m| m.dev() == locked.dev() && m.ino() == locked.ino());
        if !same {
            tracing::error!(
                target: "nodus::node",
                "the data dir {} was deleted or replaced while the node ran (its node.lock is gone): stopping, so that nothing more is written into deleted files; run `nodus init` there (or restore it) and `nodus up` again",
                dir.root().display()
            );
            let _ = stop.send(true);
            return;
        }
    }
}

async fn keep_endpoints_current(
    net: NetworkHandle,
    mut endpoints: Endpoints,
    dir: DataDir,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut events = net.events();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            ev = events.recv() => match ev {
                Ok(NetEvent::ListenAddr { .. } | NetEvent::ListenAddrExpired { .. })
                | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    let Ok(p2p) = p2p_addrs(&net).await else { return };
                    if p2p != endpoints.p2p {
                        endpoints.p2p = p2p;
                        if let Err(e) = endpoints.write(&dir.endpoints_path()) {
                            tracing::warn!(target: "nodus::node", "endpoints.json: {e}");
                        }
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    }
}

impl RunningNode {
    /// The handle of a running service, by its type (`node.service::<MsgHandle>()`);
    /// None when that service is disabled.
    pub fn service<H: Any>(&self) -> Option<&H> {
        self.services.iter().find_map(|(_, h)| h.downcast_ref())
    }

    /// The node's events (the overlay's and its services'), for in-process watchers.
    pub fn events(&self) -> &EventSource {
        &self.events
    }

    /// What is narrated here shows on this node's dashboard.
    pub fn narration(&self) -> &Narration {
        &self.narration
    }

    /// The names of the services running.
    pub fn service_names(&self) -> Vec<&'static str> {
        self.services.iter().map(|(n, _)| *n).collect()
    }

    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    pub fn peer_id(&self) -> libp2p::PeerId {
        self.net.local_peer_id()
    }

    /// The node's first P2P address of the given transport (`"tcp"` or `"quic-v1"`),
    /// ending in /p2p/<peer id>.
    pub fn p2p_addr(&self, transport: &str) -> Option<Multiaddr> {
        self.endpoints
            .p2p
            .iter()
            .filter_map(|a| a.parse::<Multiaddr>().ok())
            .find(|a| {
                a.iter().any(|p| match p {
                    Protocol::Tcp(_) => transport == "tcp",
                    Protocol::QuicV1 => transport == "quic-v1",
                    _ => false,
                }) && !a.iter().any(|p| p == Protocol::P2pCircuit)
            })
    }

    /// A receiver that turns true when the API asks the node to stop.
    pub fn stop_requested(&self) -> watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }

    /// Clean shutdown: stop the API and the overlay, remove endpoints.json.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        self.net.shutdown().await;
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        let _ = std::fs::remove_file(self.data_dir.endpoints_path());
        tracing::info!(target: "nodus::node", "node stopped");
    }

    /// Abrupt stop, as a crash: tasks aborted, no goodbye to peers, files left behind.
    /// Resolves once the aborted tasks are gone, so their files (the record store) are
    /// closed and the data dir can be opened again.
    pub async fn kill(mut self) {
        let tasks: Vec<_> = self.tasks.drain(..).collect();
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}
