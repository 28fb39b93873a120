//! One torrent: its shared state (behind a short-held mutex that peer tasks lock per
//! message), and the task that runs it once a second: connecting to known peers,
//! announcing to trackers, choking, recording progress.
//!
//! Invariants:
//! - A piece is marked had only after its hash matched and it was written; it is
//!   recorded in the store only after the files were synced.
//! - Peers that sent data failing a hash get a strike; three strikes ban their IP.
//! - At most `max_peers_per_torrent` peers are connected.

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

/// Hash failures before a peer's IP is banned from the torrent.
pub const MAX_STRIKES: u32 = 3;
/// Peer addresses remembered per torrent.
const MAX_CANDIDATES: usize = 1000;
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
}

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
    /// Indices of pieces verified and written since the store last recorded them
    /// (appended before peers are told, truncated when the store catches up), so a
    /// kill -9 loses no piece the node announced.
    journal: Mutex<Option<std::fs::File>>,
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
            journal: Mutex::new(None),
        });
        if let Some(m) = magnet {
            t.add_peers(&m.peers);
        }
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

    fn journal_path(&self) -> PathBuf {
        self.shared.journal_dir.join(&self.id)
    }

    /// The journal set aside while the store records a snapshot.
    fn journal_path_prev(&self) -> PathBuf {
        self.shared.journal_dir.join(format!("{}.prev", self.id))
    }

    /// Pieces journaled by an earlier run that the store did not record yet.
    fn read_journal(&self) -> Vec<u32> {
        [self.journal_path_prev(), self.journal_path()]
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .flat_map(|b| {
                b.chunks_exact(4)
                    .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn journal_append(&self, j: &mut Option<std::fs::File>, index: u32) -> std::io::Result<()> {
        use std::io::Write;
        if j.is_none() {
            *j = Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.journal_path())?,
            );
        }
        match j.as_mut() {
            Some(f) => f.write_all(&index.to_be_bytes()),
            None => Ok(()),
        }
    }

    pub(crate) fn remove_journal(&self) {
        let _ = std::fs::remove_file(self.journal_path());
        let _ = std::fs::remove_file(self.journal_path_prev());
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets up storage and the picker once the metainfo is known. Pieces recorded as
    /// had are trusted if their files are on disk.
    fn install_metadata(&self, meta: Arc<Metainfo>, have: Option<Bitfield>) {
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
    }

    pub fn metadata(&self) -> Option<Arc<Metainfo>> {
        self.lock().meta.clone()
    }

    pub(crate) fn storage(&self) -> Option<Arc<Storage>> {
        self.lock().storage.clone()
    }

    pub fn add_peers(&self, addrs: &[SocketAddr]) {
        let mut g = self.lock();
        for a in addrs {
            if a.port() == 0 || g.banned.contains(&a.ip()) || Some(*a) == self.shared.listen_addr()
            {
                continue;
            }
            if !g.known.contains(a) {
                if g.known.len() >= MAX_CANDIDATES {
                    continue;
                }
                g.known.insert(*a);
            }
            // Known before (a tracker repeating itself, a peer that went away): try it
            // again, no sooner than its retry time.
            if !g.candidates.contains(a) {
                g.candidates.push_back(*a);
            }
        }
        drop(g);
        self.wake.notify_one();
    }

    pub(crate) fn is_banned(&self, ip: IpAddr) -> bool {
        self.lock().banned.contains(&ip)
    }

    /// Registers a connected peer, or refuses it (too many, banned, paused, ourselves).
    pub(crate) fn register(
        &self,
        addr: SocketAddr,
        link: crate::peer::Link,
        tx: mpsc::Sender<PeerCmd>,
    ) -> Option<PeerKey> {
        let incoming = link.incoming;
        let mut g = self.lock();
        if g.settings.paused
            || g.banned.contains(&addr.ip())
            || g.peers.len() >= self.shared.config.max_peers_per_torrent
            || g.peers.values().any(|p| p.addr == addr)
        {
            return None;
        }
        let key = self.shared.next_key();
        g.peers.insert(
            key,
            PeerEntry {
                addr,
                tx,
                am_choking: true,
                interested: false,
                client: String::new(),
                incoming,
                encrypted: link.encrypted,
                utp: link.utp,
                listen_addr: (!incoming).then_some(addr),
                down: 0,
                up: 0,
                down_mark: 0,
                up_mark: 0,
                pieces: 0,
                seed: false,
            },
        );
        if !incoming {
            g.known.insert(addr);
        }
        Some(key)
    }

    pub(crate) fn unregister(
        &self,
        key: PeerKey,
        bits: Option<&Bitfield>,
        inflight: Vec<BlockRef>,
    ) {
        let mut g = self.lock();
        if let Some(p) = g.picker.as_mut() {
            if let Some(b) = bits {
                p.remove_availability(b);
            }
            p.release(key, inflight);
        }
        if let Some(e) = g.peers.remove(&key)
            && let Some(l) = e.listen_addr
            && !g.banned.contains(&l.ip())
        {
            // Worth trying again later.
            g.candidates.push_back(l);
        }
        drop(g);
        self.wake.notify_one();
    }

    pub(crate) fn connecting_done(&self, addr: SocketAddr) {
        self.lock().connecting.remove(&addr);
    }

    pub(crate) fn set_peer_info(
        &self,
        key: PeerKey,
        client: Option<String>,
        listen_port: Option<u16>,
    ) {
        let mut g = self.lock();
        if let Some(p) = g.peers.get_mut(&key) {
            if let Some(c) = client {
                p.client = c;
            }
            if let Some(port) = listen_port {
                let l = SocketAddr::new(p.addr.ip(), port);
                p.listen_addr = Some(l);
                g.known.insert(l);
            }
        }
    }

    pub(crate) fn set_interested(&self, key: PeerKey, interested: bool) -> bool {
        let mut g = self.lock();
        let slots = self.shared.config.upload_slots;
        let unchoked = g.peers.values().filter(|p| !p.am_choking).count();
        let Some(p) = g.peers.get_mut(&key) else {
            return false;
        };
        p.interested = interested;
        // A free slot is given at once instead of at the next choke round.
        if interested && p.am_choking && unchoked < slots {
            p.am_choking = false;
            return true;
        }
        false
    }

    pub(crate) fn am_choking(&self, key: PeerKey) -> bool {
        self.lock().peers.get(&key).is_none_or(|p| p.am_choking)
    }

    pub(crate) fn mark_seed(&self, key: PeerKey, seed: bool) {
        if let Some(p) = self.lock().peers.get_mut(&key) {
            p.seed = seed;
        }
    }

    /// Adds a peer's pieces to availability; returns whether it has something we want.
    pub(crate) fn on_bitfield(&self, bits: &Bitfield) -> bool {
        let mut g = self.lock();
        match g.picker.as_mut() {
            Some(p) => {
                p.add_availability(bits);
                p.interesting(bits)
            }
            None => false,
        }
    }

    pub(crate) fn on_have(&self, index: u32) -> bool {
        let mut g = self.lock();
        match g.picker.as_mut() {
            Some(p) => {
                p.add_have(index);
                p.wanted().get(index) && !p.have().get(index)
            }
            None => false,
        }
    }

    pub(crate) fn interesting(&self, bits: &Bitfield) -> bool {
        self.lock()
            .picker
            .as_ref()
            .is_some_and(|p| p.interesting(bits))
    }

    pub(crate) fn pick(&self, key: PeerKey, theirs: &Bitfield, n: usize) -> Vec<BlockRef> {
        let mut g = self.lock();
        if g.settings.paused || !g.layers_missing.is_empty() {
            return Vec::new();
        }
        g.picker
            .as_mut()
            .map(|p| p.pick(key, theirs, n))
            .unwrap_or_default()
    }

    pub(crate) fn release(&self, key: PeerKey, blocks: Vec<BlockRef>) {
        if let Some(p) = self.lock().picker.as_mut() {
            p.release(key, blocks);
        }
    }

    /// A block arrived. Returns a completed piece to verify, and the other peers asked
    /// for the same block (endgame) to cancel it with.
    pub(crate) fn on_block(
        &self,
        key: PeerKey,
        index: u32,
        begin: u32,
        data: &[u8],
    ) -> Option<CompletePiece> {
        self.downloaded
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let mut g = self.lock();
        if let Some(p) = g.peers.get_mut(&key) {
            p.down += data.len() as u64;
        }
        let picker = g.picker.as_mut()?;
        let askers = picker.askers(index, begin);
        let outcome = picker.on_block(key, index, begin, data);
        let cancel = BlockRef {
            index,
            begin,
            length: data.len() as u32,
        };
        for other in askers.into_iter().filter(|k| *k != key) {
            if let Some(p) = g.peers.get(&other) {
                let _ = p.tx.try_send(PeerCmd::Cancel(cancel));
            }
        }
        match outcome {
            crate::picker::BlockOutcome::Complete(c) => Some(c),
            _ => None,
        }
    }

    /// Verifies a completed piece off the async threads, writes it, and records the
    /// verdict.
    pub(crate) async fn verify_and_store(self: &Arc<Self>, piece: CompletePiece) {
        let (meta, storage) = {
            let g = self.lock();
            match (g.meta.clone(), g.storage.clone()) {
                (Some(m), Some(s)) => (m, s),
                _ => return,
            }
        };
        let me = self.clone();
        // All of it on the blocking pool: hashing, the write, and the journal (whose lock
        // the flush may hold while it renames the file), never on an async worker.
        let _ = tokio::task::spawn_blocking(move || {
            let CompletePiece {
                index,
                data,
                by_peer,
            } = piece;
            let ok = meta
                .expected_piece_hash(index)
                .is_some_and(|h| h.verify(&data, meta.info.piece_length));
            let ok = ok && {
                let (start, _) = storage.piece_range(index);
                match storage.write(start, &data) {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::error!(target: "nodus::torrent", id = %me.id, "writing piece {index}: {e}");
                        me.lock().error = Some(format!("disk write failed: {e}"));
                        false
                    }
                }
            };
            // Journal first, then mark and announce: what peers hear of survives a kill.
            let mut j = me.journal.lock().unwrap_or_else(|e| e.into_inner());
            if ok && let Err(e) = me.journal_append(&mut j, index) {
                tracing::warn!(target: "nodus::torrent", id = %me.id, "piece journal: {e}");
            }
            me.finish_piece(index, ok, by_peer, data);
        })
        .await;
    }

    fn finish_piece(&self, index: u32, ok: bool, by_peer: HashMap<PeerKey, u32>, buffer: PieceBuf) {
        let mut g = self.lock();
        let Some(picker) = g.picker.as_mut() else {
            return;
        };
        picker.on_verified(index, ok);
        let complete = picker.is_complete();
        if complete {
            // Seeding needs no piece buffers: do not keep the spares for as long as it lasts.
            drop(buffer);
            picker.free_buffers();
        } else {
            picker.recycle(buffer);
        }
        if ok {
            g.have_dirty = true;
            if let Some((best, _)) = by_peer.iter().max_by_key(|(_, n)| **n)
                && let Some(p) = g.peers.get_mut(best)
            {
                p.pieces += 1;
                let addr = p.listen_addr.unwrap_or(p.addr);
                *g.pieces_from.entry(addr.to_string()).or_default() += 1;
            } else if let Some((best, _)) = by_peer.iter().max_by_key(|(_, n)| **n)
                && let Some((url, _)) = g.web_seeds.get(best)
            {
                let url = url.clone();
                *g.pieces_from.entry(url).or_default() += 1;
            }
            for p in g.peers.values() {
                let _ = p.tx.try_send(PeerCmd::Have(index));
            }
            if complete {
                drop(g);
                // The torrent's task finishes the files and reports it (on_complete).
                self.wake.notify_one();
            }
            return;
        }
        g.hash_failures += 1;
        tracing::warn!(target: "nodus::torrent", id = %self.id, "piece {index} failed its hash check");
        for key in by_peer.keys() {
            if let Some((url, strikes)) = g.web_seeds.get_mut(key) {
                *strikes += 1;
                self.shared.metrics.hash_failures.inc();
                tracing::warn!(target: "nodus::torrent", id = %self.id, %url, "web seed sent a bad piece ({strikes})");
            }
        }
        let culprits: Vec<(PeerKey, IpAddr)> = by_peer
            .keys()
            .filter_map(|k| g.peers.get(k).map(|p| (*k, p.addr.ip())))
            .collect();
        for (key, ip) in culprits {
            let strikes = {
                let s = g.strikes.entry(ip).or_default();
                *s += 1;
                *s
            };
            self.shared.metrics.hash_failures.inc();
            if strikes >= MAX_STRIKES {
                tracing::warn!(target: "nodus::torrent", id = %self.id, %ip, "banned after {strikes} bad pieces");
                g.banned.insert(ip);
                self.shared.metrics.peers_banned.inc();
                if let Some(p) = g.peers.get(&key) {
                    let _ = p.tx.try_send(PeerCmd::Close);
                }
            }
        }
    }

    pub(crate) fn have_piece(&self, index: u32) -> bool {
        self.lock()
            .picker
            .as_ref()
            .is_some_and(|p| p.have().get(index))
    }

    pub(crate) fn have_bits(&self) -> Option<Bitfield> {
        self.lock().picker.as_ref().map(|p| p.have().clone())
    }

    pub(crate) fn add_uploaded(&self, key: PeerKey, n: u64) {
        self.uploaded.fetch_add(n, Ordering::Relaxed);
        if let Some(p) = self.lock().peers.get_mut(&key) {
            p.up += n;
        }
    }

    // ---- metadata exchange (BEP 9)

    pub(crate) fn metadata_size(&self) -> Option<u32> {
        self.lock().meta.as_ref().map(|m| m.info_bytes.len() as u32)
    }

    pub(crate) fn metadata_piece(&self, piece: u32) -> Option<(u32, Bytes)> {
        let g = self.lock();
        let m = g.meta.as_ref()?;
        let start = piece as usize * METADATA_PIECE as usize;
        if start >= m.info_bytes.len() {
            return None;
        }
        let end = (start + METADATA_PIECE as usize).min(m.info_bytes.len());
        Some((
            m.info_bytes.len() as u32,
            Bytes::copy_from_slice(&m.info_bytes[start..end]),
        ))
    }

    /// Metadata pieces still missing, given the size a peer announced.
    pub(crate) fn metadata_wanted(&self, size: u32) -> Vec<u32> {
        let mut g = self.lock();
        if g.meta.is_some() || size == 0 || size > wire::MAX_METADATA {
            return Vec::new();
        }
        let n = size.div_ceil(METADATA_PIECE) as usize;
        let fetch = g.fetch.get_or_insert_with(|| MetadataFetch {
            size,
            pieces: vec![None; n],
        });
        if fetch.size != size {
            return Vec::new();
        }
        (0..n as u32)
            .filter(|&i| fetch.pieces[i as usize].is_none())
            .collect()
    }

    /// A metadata piece arrived; when all have, they are checked against the infohash.
    /// Returns Some(true) when metadata is now complete and valid, Some(false) when the
    /// assembled metadata was bad (the sender is to blame).
    pub(crate) fn on_metadata_piece(&self, piece: u32, total: u32, data: Bytes) -> Option<bool> {
        let assembled = {
            let mut g = self.lock();
            let fetch = g.fetch.as_mut()?;
            if total != fetch.size || piece as usize >= fetch.pieces.len() {
                return Some(false);
            }
            let expect = (fetch.size - piece * METADATA_PIECE).min(METADATA_PIECE) as usize;
            if data.len() != expect {
                return Some(false);
            }
            fetch.pieces[piece as usize] = Some(data);
            if fetch.pieces.iter().any(Option::is_none) {
                return None;
            }
            let bytes: Vec<u8> = fetch
                .pieces
                .iter()
                .flatten()
                .flat_map(|b| b.iter().copied())
                .collect();
            g.fetch = None;
            bytes
        };
        let valid = {
            use sha1::Digest;
            let v1 = self
                .hashes
                .v1
                .is_some_and(|h| <[u8; 20]>::from(sha1::Sha1::digest(&assembled)) == h);
            let v2 = self
                .hashes
                .v2
                .is_some_and(|h| crate::merkle::sha256(&assembled) == h);
            v1 || v2
        };
        if !valid {
            return Some(false);
        }
        let Ok(mut meta) = Metainfo::from_info_bytes(&assembled) else {
            return Some(false);
        };
        meta.trackers = vec![self.lock().trackers.clone()];
        let meta = Arc::new(meta);
        self.install_metadata(meta.clone(), None);
        let store_bytes = meta.to_bytes();
        self.persist(Some(store_bytes));
        let g = self.lock();
        for p in g.peers.values() {
            let _ = p.tx.try_send(PeerCmd::MetadataReady);
        }
        Some(true)
    }

    // ---- the torrent's own task

    /// Settings and pieces had, as they are now.
    fn snapshot(&self) -> (Settings, Option<Vec<u8>>) {
        let mut g = self.lock();
        g.settings.uploaded = self.uploaded.load(Ordering::Relaxed);
        g.settings.downloaded = self.downloaded.load(Ordering::Relaxed);
        let have = g.picker.as_ref().map(|p| p.have().as_bytes().to_vec());
        (g.settings.clone(), have)
    }

    fn save(&self, (settings, have): (Settings, Option<Vec<u8>>), metainfo: Option<&[u8]>) {
        if let Err(e) = self
            .shared
            .store
            .save(&self.id, &settings, metainfo, have.as_deref())
        {
            tracing::error!(target: "nodus::torrent", id = %self.id, "saving resume state: {e}");
        }
    }

    /// Saves settings (and metainfo when given) now.
    pub(crate) fn persist(&self, metainfo: Option<Vec<u8>>) {
        self.save(self.snapshot(), metainfo.as_deref());
    }

    /// Syncs written data, then records the pieces had. The journal is set aside (renamed)
    /// with the snapshot under its lock, and deleted once the store has the snapshot, so
    /// the lock is never held across a disk sync and no journaled piece falls between.
    async fn flush(self: &Arc<Self>) {
        let storage = {
            let mut g = self.lock();
            if !g.have_dirty {
                return;
            }
            g.have_dirty = false;
            g.storage.clone()
        };
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(s) = storage
                && let Err(e) = s.sync()
            {
                tracing::error!(target: "nodus::torrent", id = %me.id, "sync: {e}");
                return;
            }
            let snapshot = {
                let mut j = me.journal.lock().unwrap_or_else(|e| e.into_inner());
                if j.take().is_some() {
                    let _ = std::fs::rename(me.journal_path(), me.journal_path_prev());
                }
                me.snapshot()
            };
            me.save(snapshot, None);
            let _ = std::fs::remove_file(me.journal_path_prev());
        })
        .await;
    }

    pub(crate) async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut rounds = 0u64;
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tick.tick() => {}
                _ = self.wake.notified() => {}
            }
            if *shutdown.borrow() {
                break;
            }
            rounds += 1;
            self.connect_more();
            self.start_web_seeds(&shutdown);
            self.announce_if_due();
            self.dht_if_due();
            if rounds.is_multiple_of(2) {
                self.update_rates();
                self.shared
                    .emit(TorrentEvent::Progress(Box::new(self.info())));
            }
            if rounds.is_multiple_of(20) {
                self.choke_round(rounds.is_multiple_of(60));
            }
            if rounds.is_multiple_of(120) {
                self.send_pex();
            }
            self.flush().await;
            self.on_complete().await;
        }
        self.flush().await;
        self.persist(None);
        let g = self.lock();
        for p in g.peers.values() {
            let _ = p.tx.try_send(PeerCmd::Close);
        }
    }

    /// Once every wanted piece is here: gives the finished files their lengths (and
    /// creates the empty ones), then reports the torrent complete: state, event and
    /// tracker. In that order, so whoever hears "complete" finds every file in place.
    async fn on_complete(self: &Arc<Self>) {
        let (due, storage, have) = {
            let g = self.lock();
            let wanted_done = g.picker.as_ref().is_some_and(|p| p.is_complete());
            let have = g.picker.as_ref().map(|p| p.have().clone());
            (
                wanted_done && !g.completed_announced,
                g.storage.clone(),
                have,
            )
        };
        if !due {
            return;
        }
        if let (Some(s), Some(have)) = (storage, have) {
            let done = move |a: u32, b: u32| (a..=b).all(|i| have.get(i));
            let _ = tokio::task::spawn_blocking(move || s.finalize_lengths(done)).await;
        }
        self.lock().completed_announced = true;
        self.shared.emit(TorrentEvent::Completed {
            id: self.id.clone(),
        });
        self.announce_now(Some("completed"));
    }

    fn update_rates(&self) {
        let down = self.downloaded.load(Ordering::Relaxed);
        let up = self.uploaded.load(Ordering::Relaxed);
        let mut g = self.lock();
        let (dd, du) = (
            down.saturating_sub(g.last_down),
            up.saturating_sub(g.last_up),
        );
        g.last_down = down;
        g.last_up = up;
        // Per second (ticks of one second), smoothed.
        g.rate_down = 0.5 * g.rate_down + 0.5 * dd as f64;
        g.rate_up = 0.5 * g.rate_up + 0.5 * du as f64;
    }

    fn connect_more(self: &Arc<Self>) {
        let addrs: Vec<SocketAddr> = {
            let mut g = self.lock();
            if g.settings.paused
                || g.picker.as_ref().is_some_and(|p| p.is_complete()) && g.peers.len() >= 4
            {
                return;
            }
            let room = self
                .shared
                .config
                .max_peers_per_torrent
                .saturating_sub(g.peers.len() + g.connecting.len());
            let connected: HashSet<SocketAddr> = g
                .peers
                .values()
                .flat_map(|p| [Some(p.addr), p.listen_addr])
                .flatten()
                .collect();
            let mut out = Vec::new();
            let mut tries = g.candidates.len();
            while out.len() < room.min(8) && tries > 0 {
                tries -= 1;
                let Some(a) = g.candidates.pop_front() else {
                    break;
                };
                if connected.contains(&a) || g.connecting.contains(&a) || g.banned.contains(&a.ip())
                {
                    continue;
                }
                if g.retry_after.get(&a).is_some_and(|t| Instant::now() < *t) {
                    g.candidates.push_back(a);
                    continue;
                }
                g.retry_after.insert(a, Instant::now() + RETRY);
                g.connecting.insert(a);
                out.push(a);
            }
            out
        };
        for a in addrs {
            let t = self.clone();
            tokio::spawn(async move {
                crate::peer::connect(t.clone(), a).await;
                t.connecting_done(a);
            });
        }
    }

    /// Tit-for-tat: the upload slots go to the peers that gave us the most since the last
    /// round (when seeding: those we could give the most), plus one optimistic unchoke
    /// that rotates every 30 s.
    fn choke_round(&self, rotate_optimistic: bool) {
        let slots = self.shared.config.upload_slots.max(1);
        let mut g = self.lock();
        let seeding = g.picker.as_ref().is_some_and(|p| p.is_complete());
        let mut ranked: Vec<(PeerKey, u64)> = g
            .peers
            .iter()
            .filter(|(_, p)| p.interested)
            .map(|(k, p)| {
                let score = if seeding {
                    p.up - p.up_mark
                } else {
                    p.down - p.down_mark
                };
                (*k, score)
            })
            .collect();
        ranked.sort_by_key(|r| std::cmp::Reverse(r.1));
        let mut unchoke: HashSet<PeerKey> =
            ranked.iter().take(slots - 1).map(|(k, _)| *k).collect();
        let rest: Vec<PeerKey> = ranked.iter().skip(slots - 1).map(|(k, _)| *k).collect();
        if rotate_optimistic || g.optimistic.is_none_or(|o| !rest.contains(&o)) {
            g.optimistic = rest.choose(&mut rand::rng()).copied();
        }
        if let Some(o) = g.optimistic {
            unchoke.insert(o);
        }
        for (k, p) in g.peers.iter_mut() {
            p.down_mark = p.down;
            p.up_mark = p.up;
            let want_choke = !unchoke.contains(k);
            if want_choke != p.am_choking {
                p.am_choking = want_choke;
                let _ = p.tx.try_send(if want_choke {
                    PeerCmd::Choke
                } else {
                    PeerCmd::Unchoke
                });
            }
        }
    }

    fn send_pex(&self) {
        let g = self.lock();
        let addrs: Vec<SocketAddr> = g
            .peers
            .values()
            .filter_map(|p| p.listen_addr)
            .take(50)
            .collect();
        for p in g.peers.values() {
            let others: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| Some(*a) != p.listen_addr)
                .collect();
            if !others.is_empty() {
                let _ = p.tx.try_send(PeerCmd::Pex(others));
            }
        }
    }

    fn announce_if_due(self: &Arc<Self>) {
        let due = {
            let g = self.lock();
            !g.settings.paused
                && !g.trackers.is_empty()
                && g.next_announce.is_some_and(|t| Instant::now() >= t)
        };
        if due {
            let first = self.lock().settings.downloaded == 0;
            self.announce_now(first.then_some("started"));
        }
    }

    pub(crate) fn announce_now(self: &Arc<Self>, event: Option<&'static str>) {
        let (trackers, left) = {
            let mut g = self.lock();
            if g.trackers.is_empty() {
                return;
            }
            // Until the answer says otherwise, try again in a minute.
            g.next_announce = Some(Instant::now() + Duration::from_secs(60));
            let left = g
                .picker
                .as_ref()
                .map(|p| p.wanted_left_bytes())
                .unwrap_or(1);
            (g.trackers.clone(), left)
        };
        let t = self.clone();
        tokio::spawn(async move {
            let port = t.shared.listen_addr().map(|a| a.port()).unwrap_or(0);
            for url in trackers {
                for id in &t.announce_ids() {
                    let req = crate::tracker::Announce {
                        info_hash: *id,
                        peer_id: t.shared.peer_id,
                        port,
                        uploaded: t.uploaded.load(Ordering::Relaxed),
                        downloaded: t.downloaded.load(Ordering::Relaxed),
                        left,
                        event,
                    };
                    match crate::tracker::announce(&t.shared.http, t.shared.bind_ip, &url, &req)
                        .await
                    {
                        Ok(resp) => {
                            t.add_peers(&resp.peers);
                            // The tracker's interval, within bounds that keep a hostile one from
                            // making us hammer it or fall silent.
                            let next = Duration::from_secs(resp.interval.clamp(5, 3600));
                            t.lock().next_announce = Some(Instant::now() + next);
                        }
                        Err(e) => {
                            tracing::debug!(target: "nodus::torrent", %url, "announce: {e}");
                        }
                    }
                }
            }
        });
    }

    /// The infohashes peers may know this torrent by: v1 (or truncated v2) and, for a
    /// hybrid, the truncated v2 too.
    fn announce_ids(&self) -> Vec<Hash20> {
        let mut ids = vec![self.hashes.wire_id()];
        if let (Some(_), Some(v2)) = (self.hashes.v1, self.hashes.v2) {
            ids.push(crate::metainfo::truncate(&v2));
        }
        ids
    }

    /// Looks the torrent up in the DHT and announces it there, when due. Never for a
    /// private torrent (BEP 27: its peers come from its trackers only).
    fn dht_if_due(self: &Arc<Self>) {
        let Some(dht) = self.shared.dht.get().cloned() else {
            return;
        };
        {
            let mut g = self.lock();
            let private = g.meta.as_ref().is_some_and(|m| m.info.private);
            if g.settings.paused || private || g.next_dht.is_none_or(|t| Instant::now() < t) {
                return;
            }
            if dht.nodes() == 0 {
                // Still joining: look again soon, without counting it as a failed lookup.
                g.next_dht = Some(Instant::now() + Duration::from_secs(1));
                return;
            }
            g.next_dht = None;
        }
        let t = self.clone();
        tokio::spawn(async move {
            let port = t.shared.listen_addr().map(|a| a.port()).unwrap_or(0);
            let (mut found, mut announced) = (0, false);
            for id in t.announce_ids() {
                let f = dht.get_peers(id, Some(port)).await;
                found += f.peers.len();
                announced |= f.announced > 0;
                t.add_peers(&f.peers);
            }
            let mut g = t.lock();
            let wait = if found > 0 && announced {
                g.dht_retry = DHT_RETRY_MIN;
                DHT_INTERVAL
            } else {
                let w = g.dht_retry;
                g.dht_retry = (w * 2).min(DHT_INTERVAL);
                w
            };
            tracing::debug!(target: "nodus::torrent", id = %t.id, found, announced, "DHT lookup; next in {wait:?}");
            g.next_dht = Some(Instant::now() + wait);
        });
    }

    /// Starts a task per web seed once the metadata is known.
    fn start_web_seeds(self: &Arc<Self>, shutdown: &tokio::sync::watch::Receiver<bool>) {
        let urls = {
            let mut g = self.lock();
            if g.web_started || g.meta.is_none() || g.web_urls.is_empty() {
                return;
            }
            g.web_started = true;
            g.web_urls.clone()
        };
        for url in urls {
            tokio::spawn(crate::webseed::run(self.clone(), url, shutdown.clone()));
        }
    }

    pub(crate) fn add_web_seed(&self, key: PeerKey, url: &str) {
        self.lock().web_seeds.insert(key, (url.to_string(), 0));
    }

    pub(crate) fn remove_web_seed(&self, key: PeerKey) {
        self.lock().web_seeds.remove(&key);
    }

    pub(crate) fn web_seed_banned(&self, key: PeerKey) -> bool {
        self.lock()
            .web_seeds
            .get(&key)
            .is_none_or(|(_, s)| *s >= MAX_STRIKES)
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.lock()
            .picker
            .as_ref()
            .is_some_and(|p| p.is_complete() && p.have().is_full())
    }

    // ---- BEP 52 hash exchange

    /// A piece-layer request to send a peer, if any is due.
    pub(crate) fn next_hash_request(&self) -> Option<crate::wire::HashRange> {
        let mut g = self.lock();
        for fetch in g.layers_missing.values_mut() {
            for r in fetch.tree.requests() {
                let have = fetch.got[r.index as usize..]
                    .iter()
                    .take(r.length as usize)
                    .all(Option::is_some);
                let out = fetch
                    .asked
                    .get(&r.index)
                    .is_some_and(|t| t.elapsed() < HASH_REQUEST_TIMEOUT);
                if !have && !out {
                    fetch.asked.insert(r.index, Instant::now());
                    return Some(r);
                }
            }
        }
        None
    }

    /// A peer could not answer `r`: someone else may.
    pub(crate) fn hashes_rejected(&self, r: &crate::wire::HashRange) {
        if let Some(f) = self.lock().layers_missing.get_mut(&r.pieces_root) {
            f.asked.remove(&r.index);
        }
    }

    /// Hashes a peer sent for our request `r`. False when they are not proven (the
    /// peer lies or answers what we did not ask): the caller drops it.
    pub(crate) fn on_hashes(&self, r: &crate::wire::HashRange, hashes: &[[u8; 32]]) -> bool {
        let mut g = self.lock();
        let Some(f) = g.layers_missing.get_mut(&r.pieces_root) else {
            // Already complete, or not a file of ours: unasked, but harmless.
            return g.meta.as_ref().is_some_and(|m| {
                m.info
                    .files
                    .iter()
                    .any(|f| f.pieces_root == Some(r.pieces_root))
            });
        };
        if f.tree.requests().iter().all(|q| q != r) {
            return false;
        }
        let Some(run) = f.tree.verify(r, hashes) else {
            return false;
        };
        f.asked.remove(&r.index);
        for (slot, h) in f.got.iter_mut().skip(r.index as usize).zip(run) {
            *slot = Some(h);
        }
        if f.got.iter().all(Option::is_some) {
            let layer: Vec<_> = f.got.iter().flatten().copied().collect();
            g.layers_missing.remove(&r.pieces_root);
            let Some(meta) = g.meta.clone() else {
                return true;
            };
            let mut m = (*meta).clone();
            m.piece_layers.insert(r.pieces_root, layer);
            g.meta = Some(Arc::new(m.clone()));
            let done = g.layers_missing.is_empty();
            drop(g);
            tracing::debug!(target: "nodus::torrent", id = %self.id, "piece layer fetched; all: {done}");
            self.persist(Some(m.to_bytes()));
            self.wake.notify_one();
        }
        true
    }

    /// Our answer to a peer's hash request: the hashes, or None to reject it.
    pub(crate) fn answer_hashes(&self, r: &crate::wire::HashRange) -> Option<Vec<[u8; 32]>> {
        let meta = self.metadata()?;
        let file =
            meta.info.files.iter().find(|f| {
                f.pieces_root == Some(r.pieces_root) && f.length > meta.info.piece_length
            })?;
        let layer = meta.piece_layers.get(&r.pieces_root)?;
        crate::hashes::FileTree::new(r.pieces_root, file.length, meta.info.piece_length)
            .answer(layer, r)
    }

    // ---- control

    pub(crate) fn set_paused(&self, paused: bool) {
        let mut g = self.lock();
        g.settings.paused = paused;
        if paused {
            for p in g.peers.values() {
                let _ = p.tx.try_send(PeerCmd::Close);
            }
        } else {
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
                .values()
                .map(|p| PeerInfo {
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

/// The pieces covering the chosen files (numbered from 0 among non-pad files).
/// The v2 piece layers `meta` lacks: files longer than a piece whose layer is not in
/// the torrent (always so after a v2 magnet link, whose info has none).
fn missing_layers(meta: &Metainfo) -> HashMap<crate::merkle::Hash32, LayerFetch> {
    if !meta.info.v1_pieces.is_empty() {
        return HashMap::new();
    }
    meta.info
        .files
        .iter()
        .filter(|f| f.stored() && f.length > meta.info.piece_length)
        .filter_map(|f| {
            let root = f.pieces_root?;
            if meta.piece_layers.contains_key(&root) {
                return None;
            }
            let tree = crate::hashes::FileTree::new(root, f.length, meta.info.piece_length);
            Some((
                root,
                LayerFetch {
                    tree,
                    got: vec![None; tree.pieces as usize],
                    asked: HashMap::new(),
                },
            ))
        })
        .collect()
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
