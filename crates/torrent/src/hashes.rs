//! BEP 52 hash exchange: the piece layers a v2 torrent's info dictionary leaves out
//! (a magnet link gives only the info), asked of peers in chunks and proven against
//! each file's `pieces root`; and the same answered for peers from our own layers.
//!
//! Tree geometry, for a file of `blocks` 16 KiB blocks: `num_leafs` is `blocks`
//! rounded up to a power of two, the tree has `num_layers = log2(num_leafs)` layers
//! above the leaves, and the piece layer is layer `log2(blocks per piece)`, padded
//! with the hash of an all-zero piece. A request names a layer (`base`), a run of
//! `length` hashes from `index`, and `proof_layers`: libtorrent, the reference, sends
//! `max(0, proof_layers - (log2(length) - 1))` uncle hashes after the run, the
//! siblings on the path from the run's subtree root up.

use crate::merkle::{BLOCK, Hash32, parent, root_padded, zero_subtree};
use crate::wire::HashRange;

/// Hashes asked for in one request (libtorrent accepts up to 8192).
pub const CHUNK: u32 = 512;
const MAX_LENGTH: u32 = 8192;

/// One file's merkle tree shape.
#[derive(Debug, Clone, Copy)]
pub struct FileTree {
    pub root: Hash32,
    /// Pieces of the file (its piece layer's real length).
    pub pieces: u32,
    /// The piece layer: log2(blocks per piece).
    pub base: u32,
    /// log2(leaves, rounded up to a power of two).
    pub num_layers: u32,
}

impl FileTree {
    pub fn new(root: Hash32, length: u64, piece_length: u64) -> FileTree {
        let blocks = length.div_ceil(BLOCK).max(1);
        let num_leafs = blocks.next_power_of_two();
        FileTree {
            root,
            pieces: length.div_ceil(piece_length) as u32,
            base: (piece_length / BLOCK).trailing_zeros(),
            num_layers: num_leafs.trailing_zeros(),
        }
    }

    /// Hashes in the piece layer, padding included.
    fn level_size(&self) -> u32 {
        1u32 << (self.num_layers.saturating_sub(self.base))
    }

    fn pad(&self) -> Hash32 {
        zero_subtree(self.base)
    }

    /// The requests that fetch the whole piece layer, each with a full proof.
    pub fn requests(&self) -> Vec<HashRange> {
        let size = self.level_size();
        let length = size.min(CHUNK);
        (0..size)
            .step_by(length as usize)
            .filter(|i| *i < self.pieces)
            .map(|index| HashRange {
                pieces_root: self.root,
                base: self.base,
                index,
                length,
                proof_layers: self.num_layers - self.base - 1,
            })
            .collect()
    }

    /// Whether `r` is a request we could answer for this file (the piece layer only).
    fn valid(&self, r: &HashRange) -> bool {
        r.pieces_root == self.root
            && r.base == self.base
            && self.num_layers > self.base
            && r.length.is_power_of_two()
            && r.length <= MAX_LENGTH
            && r.index.is_multiple_of(r.length)
            && r.index as u64 + r.length as u64 <= self.level_size() as u64
            && r.proof_layers < self.num_layers - self.base
    }

    /// The uncle hashes that follow a run of `length`, as libtorrent counts them.
    fn proof_len(r: &HashRange) -> u32 {
        let above = r.length.trailing_zeros() as i64 - 1;
        (r.proof_layers as i64 - above).max(0) as u32
    }

    /// Our answer to `r` from the file's piece `layer`: None to reject it.
    pub fn answer(&self, layer: &[Hash32], r: &HashRange) -> Option<Vec<Hash32>> {
        if !self.valid(r) || layer.len() != self.pieces as usize {
            return None;
        }
        let mut level: Vec<Hash32> = layer.to_vec();
        level.resize(self.level_size() as usize, self.pad());
        let mut out = level[r.index as usize..(r.index + r.length) as usize].to_vec();
        // Up to the run's subtree root, then one sibling per layer.
        let mut pos = r.index as usize;
        for _ in 0..r.length.trailing_zeros() {
            level = level.chunks(2).map(|c| parent(&c[0], &c[1])).collect();
            pos /= 2;
        }
        for _ in 0..Self::proof_len(r) {
            if level.len() < 2 {
                break;
            }
            out.push(level[pos ^ 1]);
            level = level.chunks(2).map(|c| parent(&c[0], &c[1])).collect();
            pos /= 2;
        }
        Some(out)
    }

    /// Checks an answer to our request `r` against the file's root; returns the run's
    /// hashes when they are proven.
    pub fn verify(&self, r: &HashRange, hashes: &[Hash32]) -> Option<Vec<Hash32>> {
        let proof = Self::proof_len(r) as usize;
        if !self.valid(r) || hashes.len() != r.length as usize + proof {
            return None;
        }
        let (run, uncles) = hashes.split_at(r.length as usize);
        let mut node = root_padded(run, run.len(), [0; 32]);
        let mut pos = (r.index / r.length) as usize;
        let mut height = r.length.trailing_zeros();
        for u in uncles {
            node = if pos.is_multiple_of(2) {
                parent(&node, u)
            } else {
                parent(u, &node)
            };
            pos /= 2;
            height += 1;
        }
        // Proven only if the path reached the top of the tree and matches the root.
        (height == self.num_layers - self.base && node == self.root).then(|| run.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{piece_hash, root_from_layer};

    fn file(pieces: usize, piece_length: u64) -> (FileTree, Vec<Hash32>) {
        let data: Vec<u8> = (0..pieces * piece_length as usize - 1000)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let layer: Vec<Hash32> = data
            .chunks(piece_length as usize)
            .map(|p| piece_hash(p, piece_length))
            .collect();
        let root = root_from_layer(&layer, piece_length);
        (FileTree::new(root, data.len() as u64, piece_length), layer)
    }

    #[test]
    fn a_layer_fetched_in_chunks_is_proven_and_complete() {
        // 1300 pieces of 32 KiB: a layer of 2048, fetched in three chunks of 512 with
        // two uncles each.
        let (tree, layer) = file(1300, 32 * 1024);
        let mut got = vec![None; layer.len()];
        let reqs = tree.requests();
        assert_eq!(reqs.len(), 3);
        for r in reqs {
            let answer = tree.answer(&layer, &r).expect("answerable");
            let run = tree.verify(&r, &answer).expect("proven");
            for (i, h) in run.into_iter().enumerate() {
                if let Some(slot) = got.get_mut(r.index as usize + i) {
                    *slot = Some(h);
                }
            }
        }
        let got: Vec<Hash32> = got.into_iter().map(Option::unwrap).collect();
        assert_eq!(got, layer);
    }

    #[test]
    fn a_forged_hash_or_proof_is_refused() {
        let (tree, layer) = file(40, 16 * 1024);
        let r = tree.requests()[0];
        let mut answer = tree.answer(&layer, &r).unwrap();
        assert!(tree.verify(&r, &answer).is_some());
        answer[3][0] ^= 1;
        assert!(tree.verify(&r, &answer).is_none());
        let short = &tree.answer(&layer, &r).unwrap()[1..];
        assert!(tree.verify(&r, short).is_none());
        let mut bad = r;
        bad.index = 3; // not a multiple of the length
        assert!(tree.answer(&layer, &bad).is_none());
    }
}
