//! Streaming: reading one of a torrent's files while it downloads.
//!
//! A [`FileReader`] serves bytes only from pieces that passed their hash check and were
//! written. Each read sets the reader's window in the picker: from the piece under the
//! cursor to as far ahead as the reader's measured rate needs for [`READ_AHEAD`]
//! (at least [`MIN_AHEAD`] pieces and [`MIN_AHEAD_BYTES`], at most [`MAX_AHEAD_BYTES`]), so those pieces are
//! fetched first, from fast peers; the rest of the torrent goes on rarest-first. When a
//! read moves the cursor to another piece (a seek), peers pick again at once. Dropping
//! the reader lets its window go.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::TorrentError;
use crate::storage::Storage;
use crate::torrent::{PeerCmd, Torrent};

/// Seconds of playback the window holds at the reader's rate.
pub const READ_AHEAD: Duration = Duration::from_secs(10);
/// Pieces the window holds at least, the one under the cursor included.
pub const MIN_AHEAD: u32 = 3;
/// Bytes the window holds at least: before a reader's rate is known, 16 MiB (about 25 s
/// of a 5 Mbit/s video) is what a player buffers ahead anyway.
pub const MIN_AHEAD_BYTES: u64 = 16 * 1024 * 1024;
/// Bytes the window holds at most.
pub const MAX_AHEAD_BYTES: u64 = 64 * 1024 * 1024;
/// The most one read returns.
pub const MAX_READ: usize = 1024 * 1024;

/// What a reader reads: one file of a torrent.
#[derive(Debug, Clone)]
pub struct FileMeta {
    /// Its path in the torrent, `/`-joined (multi-file torrents start with the name).
    pub path: String,
    pub length: u64,
}

/// An open file of a torrent (see the module docs).
pub struct FileReader {
    t: Arc<Torrent>,
    reader: u64,
    file: FileMeta,
    /// Where the file starts in the piece space.
    start: u64,
    piece_length: u64,
    storage: Arc<Storage>,
    progress: tokio::sync::watch::Receiver<u64>,
    opened: Instant,
    read_bytes: u64,
}

impl FileReader {
    pub(crate) fn open(t: Arc<Torrent>, reader: u64, file: usize) -> Result<Self, TorrentError> {
        let (meta, storage) = {
            let g = t.lock();
            match (g.meta.clone(), g.storage.clone()) {
                (Some(m), Some(s)) => (m, s),
                _ => return Err(TorrentError::NoMetadata(t.id.clone())),
            }
        };
        let files: Vec<_> = meta.info.files.iter().filter(|f| !f.pad).collect();
        let f = files
            .get(file.wrapping_sub(1))
            .ok_or_else(|| TorrentError::NoSuchFile {
                id: t.id.clone(),
                file,
                count: files.len(),
            })?;
        let progress = t.progress.subscribe();
        Ok(FileReader {
            file: FileMeta {
                path: f.path.join("/"),
                length: f.length,
            },
            start: f.offset,
            piece_length: meta.info.piece_length,
            storage,
            progress,
            opened: Instant::now(),
            read_bytes: 0,
            reader,
            t,
        })
    }

    pub fn meta(&self) -> &FileMeta {
        &self.file
    }

    /// Bytes per second this reader has taken since it opened.
    pub fn rate(&self) -> u64 {
        let secs = self.opened.elapsed().as_secs_f64().max(1.0);
        (self.read_bytes as f64 / secs) as u64
    }

    /// Up to `max` bytes (at most [`MAX_READ`]) at `pos` in the file, from verified
    /// pieces, waiting up to `wait` for the piece under `pos`. Empty at the end.
    pub async fn read(
        &mut self,
        pos: u64,
        max: usize,
        wait: Duration,
    ) -> Result<Bytes, TorrentError> {
        let len = self.file.length;
        if pos >= len || max == 0 {
            return Ok(Bytes::new());
        }
        let global = self.start + pos;
        let piece = (global / self.piece_length) as u32;
        let last_piece = ((self.start + len - 1) / self.piece_length) as u32;
        let ahead_bytes = ((self.rate() as f64 * READ_AHEAD.as_secs_f64()) as u64)
            .clamp(MIN_AHEAD_BYTES, MAX_AHEAD_BYTES);
        let ahead = (ahead_bytes / self.piece_length) as u32;
        let last = piece
            .saturating_add(ahead.max(MIN_AHEAD - 1))
            .min(last_piece);
        self.t.set_window(self.reader, piece, last);
        self.wait_for(piece, wait).await?;
        let piece_start = piece as u64 * self.piece_length;
        if let Some(data) = self.t.fresh_piece(piece) {
            let from = (global - piece_start) as usize;
            let to = (self.start + (pos + max.min(MAX_READ) as u64).min(len) - piece_start)
                .min(data.len() as u64) as usize;
            self.read_bytes += (to - from) as u64;
            self.t
                .shared
                .metrics
                .stream_bytes_memory
                .inc_by((to - from) as u64);
            return Ok(data.slice(from..to));
        }
        // As many bytes as verified pieces from the cursor on hold, up to `max`.
        let want_end = (pos + max.min(MAX_READ) as u64).min(len);
        let mut end = global;
        let mut i = piece;
        while end < self.start + want_end && self.t.have_piece(i) {
            end = (i as u64 + 1) * self.piece_length;
            i += 1;
        }
        let end = end.min(self.start + want_end);
        let n = (end - global) as usize;
        let storage = self.storage.clone();
        let data = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; n];
            storage.read(global, &mut buf).map(|()| buf)
        })
        .await
        .map_err(|_| TorrentError::Stopped)??;
        self.read_bytes += n as u64;
        self.t.shared.metrics.stream_bytes_disk.inc_by(n as u64);
        Ok(Bytes::from(data))
    }

    async fn wait_for(&mut self, piece: u32, wait: Duration) -> Result<(), TorrentError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            self.progress.borrow_and_update();
            if self.t.have_piece(piece) {
                return Ok(());
            }
            if self.t.lock().settings.paused {
                return Err(TorrentError::Paused(self.t.id.clone()));
            }
            match tokio::time::timeout_at(deadline, self.progress.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(TorrentError::Stopped),
                Err(_) => {
                    return Err(TorrentError::NotYet {
                        id: self.t.id.clone(),
                        piece,
                        waited: wait,
                        peers: self.t.lock().peers.len(),
                    });
                }
            }
        }
    }
}

impl Drop for FileReader {
    fn drop(&mut self) {
        self.t.clear_window(self.reader);
    }
}

impl Torrent {
    /// Sets a streaming reader's window; when its cursor moved, every peer picks again.
    pub(crate) fn set_window(&self, reader: u64, first: u32, last: u32) {
        let mut g = self.lock();
        let Some(picker) = g.picker.as_mut() else {
            return;
        };
        if picker.set_window(reader, first, last, Instant::now()) {
            let lowest = picker.lowest_cursor();
            for p in g.peers.values() {
                let _ = p.tx.try_send(PeerCmd::Refill);
            }
            drop(g);
            self.forget_fresh_below(lowest);
        }
    }

    pub(crate) fn clear_window(&self, reader: u64) {
        let mut g = self.lock();
        let Some(picker) = g.picker.as_mut() else {
            return;
        };
        picker.clear_window(reader);
        let lowest = picker.lowest_cursor();
        drop(g);
        self.forget_fresh_below(lowest);
    }

    fn forget_fresh_below(&self, lowest: Option<u32>) {
        self.fresh
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forget_below(lowest);
    }

    /// Piece `index`, if it is held in memory as fresh.
    fn fresh_piece(&self, index: u32) -> Option<Bytes> {
        self.fresh
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(index)
    }

    /// Readers holding a window now.
    pub(crate) fn windows(&self) -> usize {
        self.lock().picker.as_ref().map_or(0, |p| p.windows())
    }
}
