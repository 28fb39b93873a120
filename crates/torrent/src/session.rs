//! The session: every torrent of the node, the TCP listener BitTorrent peers connect
//! to, and the handle the node's API uses.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use crate::config::TorrentConfig;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::TorrentError;
use crate::bitfield::Bitfield;
use crate::create::{self, CreateOptions};
use crate::magnet::Magnet;
use crate::metainfo::{Hash20, InfoHashes, Metainfo, Version};
use crate::mse::{self, MseStream, Policy};
use crate::store::{Settings, Store};
use crate::torrent::Torrent;
use crate::types::{AddRequest, ShareRequest, Shared as SharedInfo, TorrentEvent, TorrentInfo};

#[derive(Clone)]
pub struct Metrics {
    pub peers_connected: Gauge,
    pub bad_messages: Counter,
    pub handshakes_evicted: Counter,
    pub hash_failures: Counter,
    pub peers_banned: Counter,
    pub dht_bad_packets: Counter,
    pub stream_bytes_memory: Counter,
    pub stream_bytes_disk: Counter,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Metrics {
        let r = registry;
        let m = Metrics {
            peers_connected: Gauge::default(),
            bad_messages: Counter::default(),
            handshakes_evicted: Counter::default(),
            hash_failures: Counter::default(),
            peers_banned: Counter::default(),
            dht_bad_packets: Counter::default(),
            stream_bytes_memory: Counter::default(),
            stream_bytes_disk: Counter::default(),
        };
        r.register(
            "peers_connected",
            "BitTorrent peers connected",
            m.peers_connected.clone(),
        );
        r.register(
            "bad_messages",
            "Malformed messages from peers (connection dropped)",
            m.bad_messages.clone(),
        );
        r.register(
            "handshakes_evicted",
            "Incoming connections closed before their handshake to make room for a newer one",
            m.handshakes_evicted.clone(),
        );
        r.register(
            "hash_failures",
            "Pieces from peers that failed their hash check",
            m.hash_failures.clone(),
        );
        r.register(
            "peers_banned",
            "Peers banned after repeated bad pieces",
            m.peers_banned.clone(),
        );
        r.register(
            "dht_bad_packets",
            "DHT datagrams that did not decode (dropped unanswered)",
            m.dht_bad_packets.clone(),
        );
        r.register(
            "stream_bytes_memory",
            "Bytes streaming readers took from verified pieces still in memory",
            m.stream_bytes_memory.clone(),
        );
        r.register(
            "stream_bytes_disk",
            "Bytes streaming readers read back from disk",
            m.stream_bytes_disk.clone(),
        );
        m
    }
}

/// A torrent and the task that runs it.
type Running = (Arc<Torrent>, JoinHandle<()>);

pub(crate) struct Shared {
    pub config: TorrentConfig,
    /// The address outgoing connections come from, when the listener has a specific one.
    pub bind_ip: Option<std::net::IpAddr>,
    pub peer_id: Hash20,
    listen: OnceLock<SocketAddr>,
    pub store: Store,
    /// Pieces verified since the store was last written, one file per torrent.
    pub journal_dir: PathBuf,
    pub up_limit: nodus_service::rate::RateLimiter,
    pub down_limit: nodus_service::rate::RateLimiter,
    pub metrics: Metrics,
    pub http: reqwest::Client,
    /// The mainline DHT node, once it is up (off when `[torrent] dht = false`).
    pub dht: OnceLock<crate::dht::Dht>,
    /// The uTP socket on the listen port (off when `[torrent] utp = false`).
    pub utp: OnceLock<Arc<librqbit_utp::UtpSocketUdp>>,
    events: broadcast::Sender<TorrentEvent>,
    /// Incoming connections still handshaking, at most [`PENDING_HANDSHAKES`].
    pending: nodus_service::slots::Slots,
    torrents: RwLock<HashMap<String, Running>>,
    /// Handshake infohash (v1, or v2 truncated) to torrent id.
    by_wire: RwLock<HashMap<Hash20, String>>,
    next_key: AtomicU64,
    download_dir: PathBuf,
    torrents_dir: PathBuf,
    shutdown: watch::Receiver<bool>,
}

impl Shared {
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen.get().copied()
    }
    pub fn next_key(&self) -> u64 {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }
    pub fn emit(&self, e: TorrentEvent) {
        let _ = self.events.send(e);
    }
    fn get(&self, id: &str) -> Option<Arc<Torrent>> {
        let map = self.torrents.read().unwrap_or_else(|e| e.into_inner());
        if let Some((t, _)) = map.get(id) {
            return Some(t.clone());
        }
        // Also by v2 hash, or any unique prefix of an id.
        let matches: Vec<&Arc<Torrent>> = map
            .values()
            .map(|(t, _)| t)
            .filter(|t| {
                t.id.starts_with(id) || t.hashes.v2_hex().is_some_and(|h| h.starts_with(id))
            })
            .collect();
        (matches.len() == 1 && id.len() >= 4).then(|| matches[0].clone())
    }
    fn by_wire(&self, h: &Hash20) -> Option<Arc<Torrent>> {
        let id = self
            .by_wire
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(h)
            .cloned()?;
        self.get(&id)
    }
}

/// The handle the node uses. Cloning is cheap.
#[derive(Clone)]
pub struct TorrentHandle {
    shared: Arc<Shared>,
}

pub struct SpawnOptions<'a> {
    pub config: TorrentConfig,
    pub store_path: &'a Path,
    pub download_dir: PathBuf,
    pub torrents_dir: PathBuf,
}

/// File sharing, as the node's service list names it.
pub struct TorrentService;

impl nodus_service::Service for TorrentService {
    type Config = TorrentConfig;
    type Handle = TorrentHandle;
    type Error = TorrentError;

    const PANEL: Option<nodus_service::Panel> = Some(nodus_service::Panel {
        title: "Torrents",
        script: include_str!("../ui/panel.js"),
    });

    const LEGACY_FILES: &'static [(&'static str, &'static str)] = &[
        ("torrent.redb", "torrent.redb"),
        ("torrent.journal", "torrent.journal"),
    ];

    fn testnet(config: &mut TorrentConfig, ip: std::net::Ipv4Addr) {
        config.listen = format!("{ip}:0");
        // The testnet is its own world: its DHT nodes learn of each other from peers.
        config.dht_bootstrap = vec![];
    }

    async fn start(
        ctx: nodus_service::ServiceContext<'_>,
        config: TorrentConfig,
    ) -> Result<nodus_service::Started<TorrentHandle>, TorrentError> {
        // What a person reads directly stays at the data dir's root: downloads, and the
        // .torrent files `nodus share` makes.
        let download_dir = match config.download_dir.as_str() {
            "" => ctx.data_dir.root().join("downloads"),
            d => PathBuf::from(d),
        };
        let (handle, tasks) = spawn(
            SpawnOptions {
                config,
                store_path: &ctx.dir.join("torrent.redb"),
                download_dir,
                torrents_dir: ctx.data_dir.root().join("torrents"),
            },
            ctx.metrics,
            ctx.shutdown,
        )
        .await?;
        let mut endpoints = Vec::new();
        if let Some(a) = handle.listen_addr() {
            endpoints.push(("bittorrent".to_string(), a.to_string()));
        }
        if let Some(a) = handle.dht_addr() {
            endpoints.push(("bittorrent_dht".to_string(), format!("udp://{a}")));
        }
        Ok(nodus_service::Started {
            root: vec![],
            routes: crate::http::routes(handle.clone()),
            events: Some(nodus_service::EventFeed::broadcast(
                handle.shared.events.clone(),
            )),
            endpoints,
            tasks,
            handle,
        })
    }
}

/// Largest .torrent file taken (a real one of 120,000 pieces is 2.4 MB).
pub const MAX_TORRENT_FILE: u64 = 32 * 1024 * 1024;

/// Reads a .torrent file: only a regular file, and no more than [`MAX_TORRENT_FILE`]
/// bytes whatever it claims (a device or a growing file is not read without end).
pub fn read_torrent_file(path: &Path) -> Result<Vec<u8>, TorrentError> {
    use std::io::Read;
    let shown = || path.display().to_string();
    let file = std::fs::File::open(path).map_err(|_| TorrentError::BadSource(shown()))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(TorrentError::NotAFile(shown()));
    }
    let too_large = |size| TorrentError::TorrentFileTooLarge {
        path: shown(),
        size,
        max: MAX_TORRENT_FILE,
    };
    if meta.len() > MAX_TORRENT_FILE {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_TORRENT_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_TORRENT_FILE {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Starts the service: opens the store, binds the listener, resumes stored torrents.
pub async fn spawn(
    opts: SpawnOptions<'_>,
    registry: &mut Registry,
    shutdown: watch::Receiver<bool>,
) -> Result<(TorrentHandle, Vec<JoinHandle<()>>), TorrentError> {
    let store = Store::open(opts.store_path)?;
    std::fs::create_dir_all(opts.store_path.with_extension("journal"))?;
    let listener = TcpListener::bind(&opts.config.listen)
        .await
        .map_err(|source| TorrentError::Listen {
            addr: opts.config.listen.clone(),
            source,
        })?;
    let mut peer_id = *b"-ND0100-000000000000";
    let suffix: [u8; 12] = rand::random();
    for (d, s) in peer_id[8..].iter_mut().zip(suffix) {
        *d = b"0123456789abcdefghijklmnopqrstuvwxyz"[(s % 36) as usize];
    }
    let (events, _) = broadcast::channel(1024);
    // A node told to listen on one address also speaks from it (to trackers and
    // peers), so that what others see of it is where it can be reached.
    let bound = listener.local_addr()?.ip();
    let bind_ip = (!bound.is_unspecified()).then_some(bound);
    let mut http =
        reqwest::Client::builder().user_agent(concat!("nodus/", env!("CARGO_PKG_VERSION")));
    if let Some(ip) = bind_ip {
        http = http.local_address(ip);
    }
    let up_limit = nodus_service::rate::RateLimiter::new(opts.config.upload_limit_kib * 1024);
    let down_limit = nodus_service::rate::RateLimiter::new(opts.config.download_limit_kib * 1024);
    let shared = Arc::new(Shared {
        bind_ip,
        config: opts.config,
        peer_id,
        listen: OnceLock::new(),
        store,
        journal_dir: opts.store_path.with_extension("journal"),
        up_limit,
        down_limit,
        metrics: Metrics::register(registry),
        http: http.build().map_err(TorrentError::HttpClient)?,
        dht: OnceLock::new(),
        utp: OnceLock::new(),
        events,
        pending: nodus_service::slots::Slots::new(PENDING_HANDSHAKES),
        torrents: RwLock::new(HashMap::new()),
        by_wire: RwLock::new(HashMap::new()),
        next_key: AtomicU64::new(1),
        download_dir: opts.download_dir,
        torrents_dir: opts.torrents_dir,
        shutdown: shutdown.clone(),
    });
    let mut local = listener.local_addr()?;
    if local.ip().is_unspecified() {
        // Peers we tell our address to see our real one; this is for our own checks.
        local.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let _ = shared.listen.set(local);
    let mut tasks = Vec::new();
    if shared.config.utp {
        let cancel = tokio_util::sync::CancellationToken::new();
        let opts = librqbit_utp::SocketOpts {
            cancellation_token: cancel.clone(),
            ..Default::default()
        };
        let at = SocketAddr::new(bound, local.port());
        match librqbit_utp::UtpSocketUdp::new_udp_with_opts(at, opts, Default::default()).await {
            Ok(sock) => {
                tracing::info!(target: "nodus::torrent", "uTP on udp {at}");
                let _ = shared.utp.set(sock.clone());
                tasks.push(tokio::spawn(utp_accept_loop(
                    shared.clone(),
                    sock,
                    cancel,
                    shutdown.clone(),
                )));
            }
            Err(e) => tracing::warn!(target: "nodus::torrent", "uTP off: udp {at}: {e}"),
        }
    }
    if shared.config.dht {
        let ip = match bound {
            std::net::IpAddr::V4(ip) => ip,
            std::net::IpAddr::V6(_) => std::net::Ipv4Addr::UNSPECIFIED,
        };
        let bootstrap = shared.config.dht_bootstrap.clone();
        let bad = shared.metrics.dht_bad_packets.clone();
        // The listen port's UDP side belongs to uTP when it is on.
        let port = match shared.utp.get() {
            Some(_) => local.port().checked_add(1).unwrap_or(0),
            None => local.port(),
        };
        match crate::dht::Dht::start(ip, port, bootstrap, bad, shutdown.clone()).await {
            Ok(d) => {
                tracing::info!(target: "nodus::torrent", "DHT node on udp {}", d.local_addr());
                let _ = shared.dht.set(d);
            }
            Err(e) => tracing::warn!(target: "nodus::torrent", "DHT off: {e}"),
        }
    }
    let handle = TorrentHandle {
        shared: shared.clone(),
    };
    for stored in shared.store.load_all()? {
        if let Err(e) = handle.resume_stored(stored).await {
            tracing::warn!(target: "nodus::torrent", "a stored torrent could not be resumed: {e}");
        }
    }
    tasks.push(tokio::spawn(accept_loop(
        shared.clone(),
        listener,
        shutdown.clone(),
    )));
    let stopper = {
        let h = handle.clone();
        let mut rx = shutdown;
        tokio::spawn(async move {
            let _ = rx.wait_for(|s| *s).await;
            h.stop_all().await;
        })
    };
    tasks.push(stopper);
    Ok((handle, tasks))
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, addr) = tokio::select! {
            _ = shutdown.changed() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(target: "nodus::torrent", "accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        // Admitted here, in arrival order, so the oldest is the first to go. Never None:
        // no pending connection has spoken, so the oldest always makes room.
        if let Some(pending) = shared.pending.admit() {
            tokio::spawn(incoming(shared.clone(), stream, addr, false, pending));
        }
    }
}

async fn utp_accept_loop(
    shared: Arc<Shared>,
    sock: Arc<librqbit_utp::UtpSocketUdp>,
    cancel: tokio_util::sync::CancellationToken,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.changed() => {
                cancel.cancel();
                return;
            }
            r = sock.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(target: "nodus::torrent", "uTP accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let addr = stream.remote_addr();
        if let Some(pending) = shared.pending.admit() {
            tokio::spawn(incoming(shared.clone(), stream, addr, true, pending));
        }
    }
}

/// Incoming connections (TCP and uTP) that may be handshaking at once. At the cap a new
/// one pushes out the oldest: a flood of idle connections then cannot lock real peers
/// out, whose handshakes take one round trip, and costs bounded descriptors.
pub const PENDING_HANDSHAKES: usize = 64;

/// Longest an incoming connection may take to handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One incoming connection, TCP or uTP: handshakes, then runs it.
async fn incoming<S>(
    shared: Arc<Shared>,
    stream: S,
    addr: SocketAddr,
    utp: bool,
    pending: nodus_service::slots::Admitted,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut evicted = pending.evicted;
    let accepted = tokio::select! {
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, accept_handshake(&shared, stream)) => r,
        _ = &mut evicted => {
            shared.metrics.handshakes_evicted.inc();
            return;
        }
    };
    drop(pending.slot);
    let Ok(Some((mut stream, theirs))) = accepted else {
        shared.metrics.bad_messages.inc();
        return;
    };
    let Some(t) = shared.by_wire(&theirs.info_hash) else {
        return;
    };
    if theirs.peer_id == shared.peer_id || t.is_banned(addr.ip()) {
        return;
    }
    let ours = crate::wire::Handshake {
        reserved: crate::wire::reserved::ours(shared.dht.get().is_some()),
        info_hash: theirs.info_hash,
        peer_id: shared.peer_id,
    };
    if stream.write_all(&ours.encode()).await.is_err() || stream.flush().await.is_err() {
        return;
    }
    let link = crate::peer::Link {
        incoming: true,
        encrypted: stream.is_encrypted(),
        utp,
    };
    crate::peer::run(t, stream, addr, theirs, link).await;
}

/// Reads an incoming connection's opening: a plain BitTorrent handshake, or an MSE
/// handshake (anything else in the first 20 bytes) followed by the BitTorrent one.
/// None when it is neither, or is what `[torrent] encryption` refuses.
async fn accept_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    mut stream: S,
) -> Option<(MseStream<S>, crate::wire::Handshake)> {
    let policy = shared.config.encryption;
    let mut first = [0u8; 20];
    stream.read_exact(&mut first).await.ok()?;
    let mut stream = if first == *crate::wire::PROTOCOL_PREFIX {
        if policy == Policy::Require {
            return None;
        }
        MseStream::plain(stream, first.to_vec())
    } else {
        if policy == Policy::Off {
            return None;
        }
        let skeys: Vec<Hash20> = shared
            .by_wire
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect();
        let acc = mse::respond(stream, &first, &skeys, policy).await.ok()?;
        let mut stream = acc.stream;
        let theirs = crate::peer::read_handshake(&mut stream).await.ok()?;
        // The handshake inside must name the torrent the MSE exchange proved.
        return (theirs.info_hash == acc.skey).then_some((stream, theirs));
    };
    let theirs = crate::peer::read_handshake(&mut stream).await.ok()?;
    Some((stream, theirs))
}

impl TorrentHandle {
    /// Where BitTorrent peers reach this node.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.shared.listen_addr()
    }

    /// Incoming connections closed before their handshake to make room for newer ones.
    pub fn handshakes_evicted(&self) -> u64 {
        self.shared.metrics.handshakes_evicted.get()
    }

    /// Where DHT nodes reach this node (UDP), when the DHT is on.
    pub fn dht_addr(&self) -> Option<SocketAddr> {
        self.shared.dht.get().map(|d| d.local_addr())
    }

    /// Nodes in the DHT routing table (0 when the DHT is off).
    pub fn dht_nodes(&self) -> usize {
        self.shared.dht.get().map_or(0, |d| d.nodes())
    }

    /// DHT datagrams dropped because they did not decode.
    pub fn dht_bad_packets(&self) -> u64 {
        self.shared.dht.get().map_or(0, |d| d.bad_packets())
    }

    pub fn events(&self) -> broadcast::Receiver<TorrentEvent> {
        self.shared.events.subscribe()
    }

    fn insert(&self, t: Arc<Torrent>) -> Result<(), TorrentError> {
        let mut map = self
            .shared
            .torrents
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if map.contains_key(&t.id) {
            return Err(TorrentError::Duplicate(t.id.clone()));
        }
        let mut wire = self
            .shared
            .by_wire
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(v1) = t.hashes.v1 {
            wire.insert(v1, t.id.clone());
        }
        if let Some(v2) = t.hashes.v2 {
            wire.insert(crate::metainfo::truncate(&v2), t.id.clone());
        }
        let task = tokio::spawn(t.clone().run(self.shared.shutdown.clone()));
        map.insert(t.id.clone(), (t.clone(), task));
        self.shared.emit(TorrentEvent::Added {
            id: t.id.clone(),
            name: t.info().name,
        });
        Ok(())
    }

    async fn resume_stored(&self, s: crate::store::Stored) -> Result<(), TorrentError> {
        let (meta, magnet) = match (&s.metainfo, &s.settings.magnet) {
            (Some(bytes), _) => (Some(Arc::new(Metainfo::from_bytes(bytes)?)), None),
            (None, Some(link)) => (None, Some(Magnet::parse(link)?)),
            (None, None) => {
                return Err(TorrentError::NothingToResume(s.id.clone()));
            }
        };
        let hashes = meta
            .as_ref()
            .map(|m| m.hashes)
            .or(magnet.as_ref().map(|m| m.hashes));
        let Some(hashes) = hashes else {
            return Ok(());
        };
        let mut have = match (&meta, &s.have) {
            (Some(m), Some(h)) => Bitfield::from_bytes(h, m.info.num_pieces),
            _ => None,
        };
        // Files changed while the node was not running (edited in place, truncated):
        // their pieces are checked again instead of served as they are.
        if let (Some(m), Some(h), Some(stamps)) = (&meta, &have, &s.settings.stamps) {
            let (m, stored, stamps) = (m.clone(), h.clone(), stamps.clone());
            let dir = PathBuf::from(&s.settings.save_dir);
            let checked = tokio::task::spawn_blocking(move || {
                let storage = crate::storage::Storage::new(&dir, &m.info);
                crate::check::recheck_changed(&m, &storage, &stored, &stamps)
            })
            .await;
            // A check that could not run leaves the record as it was, never emptier.
            if let Ok(checked) = checked {
                have = Some(checked);
            }
        }
        let t = Torrent::new(
            self.shared.clone(),
            hashes,
            meta,
            magnet.as_ref(),
            s.settings,
            have,
        );
        self.insert(t)
    }

    /// Makes a torrent of a file or directory and seeds it.
    pub async fn share(&self, req: ShareRequest) -> Result<SharedInfo, TorrentError> {
        let path = PathBuf::from(&req.path);
        let path = std::fs::canonicalize(&path).map_err(|source| {
            TorrentError::Create(crate::create::CreateError::Io {
                path: path.clone(),
                source,
            })
        })?;
        let version = match req.version.as_deref() {
            // v1 by default: the one format every common client downloads (issue 17).
            None | Some("v1") => Version::V1,
            Some("hybrid") => Version::Hybrid,
            Some("v2") => Version::V2,
            Some(other) => {
                return Err(TorrentError::BadSource(format!(
                    "version {other} (hybrid, v1 or v2)"
                )));
            }
        };
        let opts = CreateOptions {
            version,
            trackers: req.trackers,
            web_seeds: req.web_seeds,
            piece_length: req.piece_length,
            ..Default::default()
        };
        let p = path.clone();
        let meta = tokio::task::spawn_blocking(move || create::create(&p, &opts))
            .await
            .map_err(|_| TorrentError::Stopped)??;
        let save_dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        std::fs::create_dir_all(&self.shared.torrents_dir)?;
        let torrent_path = self
            .shared
            .torrents_dir
            .join(format!("{}.torrent", meta.info.name));
        let bytes = meta.to_bytes();
        std::fs::write(&torrent_path, &bytes)?;
        let info = SharedInfo {
            id: hex::encode(meta.hashes.wire_id()),
            name: meta.info.name.clone(),
            infohash_v1: meta.hashes.v1_hex(),
            infohash_v2: meta.hashes.v2_hex(),
            magnet: Magnet::of(&meta).to_link(),
            torrent_path: torrent_path.display().to_string(),
            pieces: meta.info.num_pieces,
            piece_length: meta.info.piece_length,
            size: meta.info.content_length(),
            leaves_out: (version != Version::V1).then(|| crate::types::V2_LEAVES_OUT.to_string()),
        };
        if self.shared.get(&info.id).is_some() {
            return Ok(info);
        }
        let have = Bitfield::full(meta.info.num_pieces);
        self.forget_journal(&info.id);
        let settings = Settings {
            stamps: Some(crate::storage::Storage::new(&save_dir, &meta.info).stamps()),
            ..Settings::new(&save_dir)
        };
        self.shared
            .store
            .save(&info.id, &settings, Some(&bytes), Some(have.as_bytes()))?;
        let t = Torrent::new(
            self.shared.clone(),
            meta.hashes,
            Some(Arc::new(meta)),
            None,
            settings,
            Some(have),
        );
        self.insert(t)?;
        Ok(info)
    }

    /// Adds a torrent to download (and then seed).
    pub async fn add(&self, req: AddRequest) -> Result<TorrentInfo, TorrentError> {
        let (meta, magnet) = if let Some(b64) = &req.torrent_base64 {
            let bytes = data_encoding::BASE64
                .decode(b64.as_bytes())
                .map_err(|_| TorrentError::BadSource("torrent_base64".into()))?;
            (Some(Metainfo::from_bytes(&bytes)?), None)
        } else if req.source.starts_with("magnet:") {
            (None, Some(Magnet::parse(&req.source)?))
        } else if req.source.len() == 40 && req.source.chars().all(|c| c.is_ascii_hexdigit()) {
            (None, Some(Magnet::from_hex(&req.source)?))
        } else {
            let bytes = read_torrent_file(Path::new(&req.source))?;
            (Some(Metainfo::from_bytes(&bytes)?), None)
        };
        let hashes: InfoHashes = meta
            .as_ref()
            .map(|m| m.hashes)
            .or(magnet.as_ref().map(|m| m.hashes))
            .ok_or_else(|| TorrentError::BadSource(req.source.clone()))?;
        let id = hex::encode(hashes.wire_id());
        if let Some(existing) = self.shared.get(&id) {
            existing.add_named_peers(&parse_peers(&req.peers));
            return Err(TorrentError::Duplicate(id));
        }
        let files = match (&req.files, &meta) {
            (Some(sel), Some(m)) => {
                let count = m.info.files.iter().filter(|f| !f.pad).count();
                let bad: Vec<usize> = sel
                    .iter()
                    .copied()
                    .filter(|&i| i == 0 || i > count)
                    .collect();
                if !bad.is_empty() {
                    return Err(TorrentError::BadFileSelection(bad, count));
                }
                Some(sel.iter().map(|i| i - 1).collect())
            }
            (Some(sel), None) => Some(sel.iter().map(|i| i.saturating_sub(1)).collect()),
            _ => None,
        };
        let save_dir = req
            .out_dir
            .clone()
            .map(PathBuf::from)
            .unwrap_or_else(|| self.shared.download_dir.clone());
        std::fs::create_dir_all(&save_dir)?;
        let save_dir = std::fs::canonicalize(&save_dir)?;
        let named = parse_peers(&req.peers);
        let settings = Settings {
            magnet: magnet.as_ref().map(Magnet::to_link),
            sequential: req.sequential,
            files,
            peers: named
                .iter()
                .take(crate::torrent::MAX_NAMED_PEERS)
                .map(SocketAddr::to_string)
                .collect(),
            ..Settings::new(&save_dir)
        };
        let meta_bytes = meta.as_ref().map(Metainfo::to_bytes);
        self.forget_journal(&id);
        // Data already there (a partial download, or files from elsewhere) is checked
        // and kept where it matches.
        let have = match &meta {
            Some(m) => {
                let m = m.clone();
                let dir = save_dir.clone();
                tokio::task::spawn_blocking(move || {
                    let storage = crate::storage::Storage::new(&dir, &m.info);
                    crate::check::any_file_exists(&m, &storage)
                        .then(|| crate::check::check(&m, &storage))
                })
                .await
                .map_err(|_| TorrentError::Stopped)?
            }
            None => None,
        };
        self.shared.store.save(
            &id,
            &settings,
            meta_bytes.as_deref(),
            have.as_ref().map(|h| h.as_bytes()),
        )?;
        let t = Torrent::new(
            self.shared.clone(),
            hashes,
            meta.map(Arc::new),
            magnet.as_ref(),
            settings,
            have,
        );
        // As added, before its task connects to anyone.
        let info = t.info();
        self.insert(t)?;
        Ok(info)
    }

    /// A journal left by a torrent of the same id that was removed is not evidence.
    fn forget_journal(&self, id: &str) {
        let _ = std::fs::remove_file(self.shared.journal_dir.join(id));
        let _ = std::fs::remove_file(self.shared.journal_dir.join(format!("{id}.prev")));
    }

    pub fn list(&self) -> Vec<TorrentInfo> {
        let map = self
            .shared
            .torrents
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<TorrentInfo> = map.values().map(|(t, _)| t.info()).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub fn get(&self, id: &str) -> Result<TorrentInfo, TorrentError> {
        self.torrent(id).map(|t| t.info())
    }

    /// Where each of a torrent's pieces came from.
    pub fn piece_map(&self, id: &str) -> Result<crate::types::PieceMap, TorrentError> {
        self.torrent(id).map(|t| t.piece_map())
    }

    fn torrent(&self, id: &str) -> Result<Arc<Torrent>, TorrentError> {
        self.shared
            .get(id)
            .ok_or_else(|| TorrentError::NotFound(id.to_string()))
    }

    pub fn pause(&self, id: &str) -> Result<TorrentInfo, TorrentError> {
        let t = self.torrent(id)?;
        t.set_paused(true);
        Ok(t.info())
    }

    pub fn resume(&self, id: &str) -> Result<TorrentInfo, TorrentError> {
        let t = self.torrent(id)?;
        t.set_paused(false);
        Ok(t.info())
    }

    /// Opens file `file` (numbered from 1, as `files` lists them) of torrent `id` for
    /// streaming (see [`crate::stream`]).
    pub fn open_file(&self, id: &str, file: usize) -> Result<crate::FileReader, TorrentError> {
        let t = self.torrent(id)?;
        crate::FileReader::open(t, self.shared.next_key(), file)
    }

    /// Waits up to `wait` for torrent `id`'s metadata (a magnet link's comes from peers).
    pub async fn wait_metadata(
        &self,
        id: &str,
        wait: Duration,
    ) -> Result<TorrentInfo, TorrentError> {
        let t = self.torrent(id)?;
        let mut progress = t.progress.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            progress.borrow_and_update();
            if t.metadata().is_some() {
                return Ok(t.info());
            }
            if tokio::time::timeout_at(deadline, progress.changed())
                .await
                .is_err()
            {
                return Err(TorrentError::NoMetadata(t.id.clone()));
            }
        }
    }

    /// Streaming readers that hold a window on torrent `id` now.
    pub fn readers(&self, id: &str) -> Result<usize, TorrentError> {
        Ok(self.torrent(id)?.windows())
    }

    pub fn add_peers(&self, id: &str, peers: &[String]) -> Result<(), TorrentError> {
        self.torrent(id)?.add_named_peers(&parse_peers(peers));
        Ok(())
    }

    /// Removes a torrent (its downloaded files stay unless `delete_files`).
    pub async fn remove(&self, id: &str, delete_files: bool) -> Result<(), TorrentError> {
        let t = self.torrent(id)?;
        let task = {
            let mut map = self
                .shared
                .torrents
                .write()
                .unwrap_or_else(|e| e.into_inner());
            let mut wire = self
                .shared
                .by_wire
                .write()
                .unwrap_or_else(|e| e.into_inner());
            wire.retain(|_, v| *v != t.id);
            map.remove(&t.id).map(|(_, task)| task)
        };
        if let Some(task) = task {
            task.abort();
        }
        t.close_all();
        self.shared.store.remove(&t.id)?;
        t.remove_journal();
        if let Some(m) = t.metadata() {
            self.remove_shared_torrent_file(&t.id, &m.info.name);
        }
        if delete_files && let Some(m) = t.metadata() {
            let s = crate::storage::Storage::new(&t.save_dir, &m.info);
            for f in m.info.files.iter().filter(|f| f.stored()) {
                let _ = std::fs::remove_file(s.path_of(f));
            }
        }
        self.shared.emit(TorrentEvent::Removed { id: t.id.clone() });
        Ok(())
    }

    /// Deletes the .torrent file `share` wrote for this torrent, if it is still that
    /// torrent's (another share of the same name may have replaced it).
    fn remove_shared_torrent_file(&self, id: &str, name: &str) {
        let path = self.shared.torrents_dir.join(format!("{name}.torrent"));
        let ours = read_torrent_file(&path)
            .ok()
            .and_then(|b| Metainfo::from_bytes(&b).ok())
            .is_some_and(|m| hex::encode(m.hashes.wire_id()) == id);
        if ours {
            let _ = std::fs::remove_file(&path);
        }
    }

    async fn stop_all(&self) {
        let tasks: Vec<(Arc<Torrent>, JoinHandle<()>)> = {
            let mut map = self
                .shared
                .torrents
                .write()
                .unwrap_or_else(|e| e.into_inner());
            map.drain().map(|(_, v)| v).collect()
        };
        for (_, task) in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

fn parse_peers(peers: &[String]) -> Vec<SocketAddr> {
    peers.iter().filter_map(|p| p.parse().ok()).collect()
}
