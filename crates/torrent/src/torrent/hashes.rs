//! The v2 hash exchange (BEP 52): piece layers asked of peers, and answered.

use super::*;

impl Torrent {
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
}

/// The pieces covering the chosen files (numbered from 0 among non-pad files).
/// The v2 piece layers `meta` lacks: files longer than a piece whose layer is not in
/// the torrent (always so after a v2 magnet link, whose info has none).
pub(super) fn missing_layers(meta: &Metainfo) -> HashMap<crate::merkle::Hash32, LayerFetch> {
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
