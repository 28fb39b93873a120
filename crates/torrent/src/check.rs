//! Checking data already on disk against a torrent's hashes (adding a torrent whose
//! files exist, in whole or in part), on every core.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::bitfield::Bitfield;
use crate::metainfo::Metainfo;
use crate::storage::Storage;

/// The pieces whose data on disk matches its hash. Pieces whose files are missing or
/// short are not read.
pub fn check(meta: &Metainfo, storage: &Storage) -> Bitfield {
    check_only(meta, storage, |_| true)
}

/// The pieces recorded as had that still are: those of files changed since `stamps`
/// (size or modification time) are checked again, the rest trusted.
pub fn recheck_changed(
    meta: &Metainfo,
    storage: &Storage,
    have: &Bitfield,
    stamps: &[Option<crate::store::FileStamp>],
) -> Bitfield {
    let now = storage.stamps();
    let mut suspect = Bitfield::new(meta.info.num_pieces);
    for (i, f) in meta.info.files.iter().enumerate() {
        if !f.stored() || f.length == 0 || now.get(i) == stamps.get(i) {
            continue;
        }
        for p in storage.pieces_of_file(i) {
            if have.get(p) {
                suspect.set(p);
            }
        }
    }
    if suspect.count() == 0 {
        return have.clone();
    }
    tracing::info!(target: "nodus::torrent", name = %meta.info.name, pieces = suspect.count(), "files changed since the last run: checking their pieces again");
    let good = check_only(meta, storage, |p| suspect.get(p));
    let mut out = have.clone();
    for p in 0..meta.info.num_pieces {
        if suspect.get(p) && !good.get(p) {
            out.clear(p);
        }
    }
    out
}

/// [`check`], of the pieces `only` picks.
fn check_only(meta: &Metainfo, storage: &Storage, only: impl Fn(u32) -> bool + Sync) -> Bitfield {
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
                        if !only(i) || !storage.piece_on_disk(i) {
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
