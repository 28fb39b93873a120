//! Metadata exchange (BEP 9): serving the info dictionary, and fetching it for a
//! magnet link piece by piece.

use super::*;

impl Torrent {
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
}
