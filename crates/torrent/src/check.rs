//! Checking data already on disk against a torrent's hashes (adding a torrent whose
//! files exist, in whole or in part), on every core.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::bitfield::Bitfield;
use crate::metainfo::Metainfo;
use crate::storage::Storage;

/// The pieces whose data on disk matches its hash. Pieces whose files are missing or
/// short are not read.
pub fn check(meta: &Metainfo, storage: &Storage) -> Bitfield {
    let n = meta.info.num_pieces;
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .min(8) as u32;
    let next = AtomicU32::new(0);
    let found: Vec<Vec<u32>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut ok = Vec::new();
                    let mut buf = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return ok;
                        }
                        if !storage.piece_on_disk(i) {
                            continue;
                        }
                        let (start, len) = storage.piece_range(i);
                        buf.resize(len, 0);
                        if storage.read(start, &mut buf).is_err() {
                            continue;
                        }
                        if meta
                            .expected_piece_hash(i)
                            .is_some_and(|h| h.verify(&buf, meta.info.piece_length))
                        {
                            ok.push(i);
                        }
                    }
                })
            })
            .collect();
        workers.into_iter().filter_map(|w| w.join().ok()).collect()
    });
    let mut have = Bitfield::new(n);
    for i in found.into_iter().flatten() {
        have.set(i);
    }
    have
}

/// Whether any stored file of the torrent exists under the storage root.
pub fn any_file_exists(meta: &Metainfo, storage: &Storage) -> bool {
    meta.info
        .files
        .iter()
        .filter(|f| f.stored())
        .any(|f| storage.path_of(f).exists())
}
