//! One torrent: its shared state (behind a short-held mutex that peer tasks lock per
//! message), and the task that runs it once a second: connecting to known peers,
//! announcing to trackers, choking, recording progress.
//!
//! Invariants:
//! - A piece is marked had only after its hash matched and it was written; it is
//!   recorded in the store only after the files were synced.
//! - Peers that sent data failing a hash get a strike; three strikes ban their IP.
//! - At most `max_peers_per_torrent` peers are connected.
//!
//! The struct and its state live here; its methods are grouped by what they do:
//! `peers` (candidates, connections, bans), `pieces` (picking, verifying, storing,
//! completion), `metadata` (BEP 9), `hashes` (BEP 52 hash exchange), `choke`
//! (tit-for-tat, rates, PEX), `announce` (trackers, DHT, web seeds), `journal` (resume
//! state) and `task` (the loop that drives them).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::seq::IndexedRandom;
use tokio::sync::{Notify, mpsc};

use crate::bitfield::Bitfield;
use crate::magnet::Magnet;
use crate::metainfo::{Hash20, InfoHashes, Metainfo};
use crate::picker::{BlockRef, CompletePiece, PeerKey, Picker};
use crate::piecebuf::PieceBuf;
use crate::session::Shared;
use crate::storage::Storage;
use crate::store::Settings;
use crate::types::{PeerInfo, TorrentEvent, TorrentInfo, TorrentState};
use crate::wire::{self, METADATA_PIECE};

mod announce;
mod choke;
mod hashes;
mod journal;
mod metadata;
mod peers;
mod pieces;
mod task;

use hashes::missing_layers;

/// Hash failures before a peer's IP is banned from the torrent.
pub const MAX_STRIKES: u32 = 3;
/// Peer addresses remembered per torrent.
const MAX_CANDIDATES: usize = 1000;
/// Peers named by the user kept with one torrent.
pub(crate) const MAX_NAMED_PEERS: usize = 64;
/// Least time between two dials of one address.
const RETRY: Duration = Duration::from_secs(30);
/// DHT lookups: every 15 minutes once the DHT knows peers and took our announce (as
/// libtorrent), sooner while it does not.
const DHT_INTERVAL: Duration = Duration::from_secs(15 * 60);
const DHT_RETRY_MIN: Duration = Duration::from_secs(5);

/// Orders the torrent task sends a peer task.
#[derive(Debug, Clone)]
pub enum PeerCmd {
    Have(u32),
    Choke,
    Unchoke,
    /// Metadata arrived (magnet): apply the peer's bitfield and start.
    MetadataReady,
    /// A streaming reader moved: reconsider interest and pick now.
    Refill,
    /// Another peer delivered this block first (endgame).
    Cancel(BlockRef),
    /// PEX: peers to tell this one about.
    Pex(Vec<SocketAddr>),
    Close,
}

pub(crate) struct PeerEntry {
    pub addr: SocketAddr,
    pub tx: mpsc::Sender<PeerCmd>,
    pub am_choking: bool,
    pub interested: bool,
    pub client: String,
    pub incoming: bool,
    /// The connection is RC4-encrypted (MSE).
    pub encrypted: bool,
    /// Over uTP rather than TCP.
    pub utp: bool,
    pub listen_addr: Option<SocketAddr>,
    pub down: u64,
    pub up: u64,
    /// Bytes at the last choke round, for tit-for-tat.
    pub down_mark: u64,
    pub up_mark: u64,
    pub pieces: u32,
    pub seed: bool,
    /// From asking for a block to receiving it, smoothed: round trip plus the queue
    /// at the peer. What marks a peer slow for streaming.
    pub latency: Option<Duration>,
}

/// A peer is slow for streaming when its block latency exceeds both this multiple of
/// the quickest peer's and the quickest's plus [`SLOW_MARGIN`].
const SLOW_FACTOR: u32 = 3;
const SLOW_MARGIN: Duration = Duration::from_millis(30);

/// A piece layer being fetched from peers.
struct LayerFetch {
    tree: crate::hashes::FileTree,
    got: Vec<Option<crate::merkle::Hash32>>,
    /// Requests out, by their first index, and when they were sent.
    asked: HashMap<u32, Instant>,
}

/// A hash request unanswered for this long is asked of another peer.
const HASH_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Metadata being fetched (magnet links).
struct MetadataFetch {
    size: u32,
    pieces: Vec<Option<Bytes>>,
}

pub(crate) struct Inner {
    pub meta: Option<Arc<Metainfo>>,
    pub storage: Option<Arc<Storage>>,
    pub picker: Option<Picker>,
    fetch: Option<MetadataFetch>,
    pub peers: HashMap<PeerKey, PeerEntry>,
    candidates: VecDeque<SocketAddr>,
    known: HashSet<SocketAddr>,
    connecting: HashSet<SocketAddr>,
    /// When each address may be dialled again (a peer that closed on us is not redialled
    /// at once).
    retry_after: HashMap<SocketAddr, Instant>,
    banned: HashSet<IpAddr>,
    strikes: HashMap<IpAddr, u32>,
    pub settings: Settings,
    pub name: String,
    pub error: Option<String>,
    have_dirty: bool,
    /// Pieces credited per peer address (demo and API).
    pieces_from: HashMap<String, u32>,
    /// Per piece, `2 + k` if it came from `sources[k]` (0 otherwise): the piece map.
    piece_source: Vec<u16>,
    sources: Vec<String>,
    /// Web seeds running (BEP 19): their URL and the bad pieces they sent.
    web_seeds: HashMap<PeerKey, (String, u32)>,
    /// Web seed URLs (the torrent's url-list and the magnet link's ws=).
    web_urls: Vec<String>,
    web_started: bool,
    /// v2 piece layers still to fetch from peers (BEP 52), by pieces root: nothing is
    /// downloaded until they are all here, since pieces could not be checked.
    layers_missing: HashMap<crate::merkle::Hash32, LayerFetch>,
    rate_down: f64,
    rate_up: f64,
    last_down: u64,
    last_up: u64,
    optimistic: Option<PeerKey>,
    completed_announced: bool,
    pub trackers: Vec<String>,
    next_announce: Option<Instant>,
    /// When to ask the DHT again (None while a lookup runs), and the wait after a
    /// lookup that found nobody (doubling, so an empty DHT is not hammered).
    next_dht: Option<Instant>,
    dht_retry: Duration,
    /// Peers whose data failed a hash check, in all.
    pub hash_failures: u64,
}

pub struct Torrent {
    pub id: String,
    pub hashes: InfoHashes,
    pub save_dir: PathBuf,
    pub(crate) shared: Arc<Shared>,
    inner: Mutex<Inner>,
    pub(crate) downloaded: AtomicU64,
    pub(crate) uploaded: AtomicU64,
    pub(crate) wake: Notify,
    /// Bumped when the metadata arrives and when a piece is verified and written:
    /// streaming readers wait on it for the piece under their cursor.
    pub(crate) progress: tokio::sync::watch::Sender<u64>,
    /// Indices of pieces verified and written since the store last recorded them
    /// (appended before peers are told, truncated when the store catches up), so a
    /// kill -9 loses no piece the node announced.
    journal: Mutex<Option<std::fs::File>>,
    /// Verified window pieces the readers have not passed yet (see `fresh`).
    pub(crate) fresh: Mutex<crate::fresh::FreshPieces>,
}

/// Sources past this many share the last entry: the map's entries are `u16`.
const MAX_SOURCES: usize = u16::MAX as usize - 2;

impl Inner {
    /// Records that piece `index` was verified from `source`.
    fn note_source(&mut self, index: u32, source: String) {
        let k = match self.sources.iter().position(|s| *s == source) {
            Some(k) => k,
            None if self.sources.len() < MAX_SOURCES => {
                self.sources.push(source);
                self.sources.len() - 1
            }
            None => MAX_SOURCES - 1,
        };
        let i = index as usize;
        if self.piece_source.len() <= i {
            self.piece_source.resize(i + 1, 0);
        }
        self.piece_source[i] = (k + 2) as u16;
    }
}

impl Torrent {
    pub(crate) fn new(
        shared: Arc<Shared>,
        hashes: InfoHashes,
        meta: Option<Arc<Metainfo>>,
        magnet: Option<&Magnet>,
        settings: Settings,
        have: Option<Bitfield>,
    ) -> Arc<Torrent> {
        let id = hex::encode(hashes.wire_id());
        let save_dir = PathBuf::from(&settings.save_dir);
        let name = meta
            .as_ref()
            .map(|m| m.info.name.clone())
            .or_else(|| magnet.and_then(|m| m.name.clone()))
            .unwrap_or_else(|| id.clone());
        let mut trackers: Vec<String> = meta
            .as_ref()
            .map(|m| m.trackers.iter().flatten().cloned().collect())
            .unwrap_or_default();
        if let Some(m) = magnet {
            trackers.extend(m.trackers.iter().cloned());
        }
        trackers.dedup();
        let mut web_urls: Vec<String> = meta
            .as_ref()
            .map(|m| m.web_seeds.clone())
            .unwrap_or_default();
        if let Some(m) = magnet {
            web_urls.extend(m.web_seeds.iter().cloned());
        }
        web_urls.dedup();
        let named: Vec<SocketAddr> = settings
            .peers
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect();
        let t = Arc::new(Torrent {
            id,
            hashes,
            save_dir,
            downloaded: AtomicU64::new(settings.downloaded),
            uploaded: AtomicU64::new(settings.uploaded),
            shared,
            inner: Mutex::new(Inner {
                meta: None,
                storage: None,
                picker: None,
                fetch: None,
                peers: HashMap::new(),
                candidates: VecDeque::new(),
                known: HashSet::new(),
                connecting: HashSet::new(),
                retry_after: HashMap::new(),
                banned: HashSet::new(),
                strikes: HashMap::new(),
                settings,
                name,
                error: None,
                have_dirty: false,
                pieces_from: HashMap::new(),
                piece_source: Vec::new(),
                sources: Vec::new(),
                web_seeds: HashMap::new(),
                web_urls,
                web_started: false,
                layers_missing: HashMap::new(),
                rate_down: 0.0,
                rate_up: 0.0,
                last_down: 0,
                last_up: 0,
                optimistic: None,
                completed_announced: false,
                trackers,
                next_announce: Some(Instant::now()),
                next_dht: Some(Instant::now()),
                dht_retry: DHT_RETRY_MIN,
                hash_failures: 0,
            }),
            wake: Notify::new(),
            progress: tokio::sync::watch::Sender::new(0),
            journal: Mutex::new(None),
            fresh: Mutex::default(),
        });
        if let Some(m) = magnet {
            t.add_peers(&m.peers);
        }
        t.add_peers(&named);
        if let Some(meta) = meta {
            let n = meta.info.num_pieces;
            let mut have = have
                .filter(|h| h.len() == n)
                .unwrap_or_else(|| Bitfield::new(n));
            for i in t.read_journal() {
                have.set(i);
            }
            t.install_metadata(meta, Some(have));
            // Complete already (resumed, or our own files shared): nothing to report; a
            // "completed" event or announce is for a download that just finished.
            let mut g = t.lock();
            g.completed_announced = g.picker.as_ref().is_some_and(|p| p.is_complete());
        }
        t
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets up storage and the picker once the metainfo is known. Pieces recorded as
    /// had are trusted if their files are on disk.
    pub(super) fn install_metadata(&self, meta: Arc<Metainfo>, have: Option<Bitfield>) {
        let n = meta.info.num_pieces;
        let storage = Arc::new(Storage::new(&self.save_dir, &meta.info));
        let mut have = have
            .filter(|h| h.len() == n)
            .unwrap_or_else(|| Bitfield::new(n));
        for i in have.clone().ones() {
            if !storage.piece_on_disk(i) {
                have.clear(i);
            }
        }
        let mut g = self.lock();
        g.layers_missing = missing_layers(&meta);
        let wanted = wanted_pieces(&meta, g.settings.files.as_deref());
        let mut picker = Picker::new(meta.info.piece_length, meta.info.total_length, have, wanted);
        picker.sequential = g.settings.sequential;
        g.name = meta.info.name.clone();
        g.meta = Some(meta);
        g.storage = Some(storage);
        g.picker = Some(picker);
        g.fetch = None;
        g.have_dirty = true;
        drop(g);
        self.progress.send_modify(|n| *n += 1);
    }

    pub fn metadata(&self) -> Option<Arc<Metainfo>> {
        self.lock().meta.clone()
    }

    pub(crate) fn storage(&self) -> Option<Arc<Storage>> {
        self.lock().storage.clone()
    }

    pub(crate) fn set_paused(&self, paused: bool) {
        let mut g = self.lock();
        g.settings.paused = paused;
        if paused {
            for p in g.peers.values() {
                let _ = p.tx.try_send(PeerCmd::Close);
            }
        } else {
            // Resuming is the user saying the cause (a full disk, a link) is dealt with.
            g.error = None;
            let known: Vec<SocketAddr> = g.known.iter().copied().collect();
            g.candidates.extend(known);
            g.next_announce = Some(Instant::now());
            g.next_dht = g.next_dht.map(|_| Instant::now());
        }
        drop(g);
        self.persist(None);
        self.wake.notify_one();
    }

    pub(crate) fn close_all(&self) {
        let g = self.lock();
        for p in g.peers.values() {
            let _ = p.tx.try_send(PeerCmd::Close);
        }
    }

    /// Where each piece came from (see [`PieceMap`]).
    pub fn piece_map(&self) -> crate::types::PieceMap {
        let g = self.lock();
        let Some(p) = g.picker.as_ref() else {
            return crate::types::PieceMap {
                pieces: 0,
                sources: Vec::new(),
                map: Vec::new(),
            };
        };
        let map = (0..p.have().len())
            .map(
                |i| match (p.have().get(i), g.piece_source.get(i as usize)) {
                    (false, _) => 0,
                    (true, Some(&s)) if s >= 2 => s,
                    (true, _) => 1,
                },
            )
            .collect();
        crate::types::PieceMap {
            pieces: p.have().len(),
            sources: g.sources.clone(),
            map,
        }
    }

    pub fn info(&self) -> TorrentInfo {
        let g = self.lock();
        let (pieces_total, pieces_have, size, left) = match g.picker.as_ref() {
            Some(p) => {
                let wanted_bytes: u64 = p.wanted().ones().map(|i| p.piece_len(i) as u64).sum();
                (
                    p.have().len(),
                    p.have().count(),
                    wanted_bytes,
                    p.wanted_left_bytes(),
                )
            }
            None => (0, 0, 0, 0),
        };
        let done = size - left;
        // Complete once the files are finished too (on_complete), not at the last piece.
        let complete = g.completed_announced && g.picker.as_ref().is_some_and(|p| p.is_complete());
        let state = if g.error.is_some() {
            TorrentState::Error
        } else if g.settings.paused {
            TorrentState::Paused
        } else if g.meta.is_none() {
            TorrentState::FetchingMetadata
        } else if complete {
            TorrentState::Seeding
        } else {
            TorrentState::Downloading
        };
        let downloaded = self.downloaded.load(Ordering::Relaxed);
        let uploaded = self.uploaded.load(Ordering::Relaxed);
        let mut pieces_from: Vec<(String, u32)> =
            g.pieces_from.iter().map(|(a, n)| (a.clone(), *n)).collect();
        pieces_from.sort();
        TorrentInfo {
            id: self.id.clone(),
            name: g.name.clone(),
            infohash_v1: self.hashes.v1_hex(),
            infohash_v2: self.hashes.v2_hex(),
            state,
            progress: if size == 0 {
                0.0
            } else {
                done as f64 / size as f64
            },
            size,
            done,
            pieces_total,
            pieces_have,
            download_rate: g.rate_down as u64,
            upload_rate: g.rate_up as u64,
            downloaded,
            uploaded,
            ratio: if downloaded == 0 {
                0.0
            } else {
                uploaded as f64 / downloaded as f64
            },
            eta_secs: (g.rate_down > 1.0 && !complete).then(|| (left as f64 / g.rate_down) as u64),
            save_dir: self.save_dir.display().to_string(),
            sequential: g.settings.sequential,
            error: g.error.clone(),
            hash_failures: g.hash_failures,
            pieces_from,
            peers: g
                .peers
                .iter()
                .map(|(k, p)| PeerInfo {
                    latency_ms: p.latency.map(|l| l.as_secs_f64() * 1000.0),
                    slow: g.picker.as_ref().is_some_and(|pk| pk.is_slow(*k)),
                    addr: p.addr.to_string(),
                    client: p.client.clone(),
                    incoming: p.incoming,
                    encrypted: p.encrypted,
                    transport: if p.utp { "utp" } else { "tcp" }.to_string(),
                    downloaded: p.down,
                    uploaded: p.up,
                    pieces: p.pieces,
                    seed: p.seed,
                    choked: p.am_choking,
                    interested: p.interested,
                })
                .collect(),
            magnet: g.meta.as_ref().map(|m| Magnet::of(m).to_link()),
            files: g
                .meta
                .as_ref()
                .map(|m| {
                    m.info
                        .files
                        .iter()
                        .filter(|f| !f.pad)
                        .map(|f| (f.path.join("/"), f.length))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

pub fn wanted_pieces(meta: &Metainfo, files: Option<&[usize]>) -> Bitfield {
    let n = meta.info.num_pieces;
    let Some(sel) = files else {
        return Bitfield::full(n);
    };
    let mut w = Bitfield::new(n);
    let pl = meta.info.piece_length;
    for (i, f) in meta.info.files.iter().filter(|f| !f.pad).enumerate() {
        if sel.contains(&i) && f.length > 0 {
            let first = (f.offset / pl) as u32;
            let last = ((f.end() - 1) / pl) as u32;
            for p in first..=last {
                w.set(p);
            }
        }
    }
    w
}
