//! BEP 52 merkle trees: SHA-256 over 16 KiB blocks, leaves past the end of a file are
//! zero, and a file's `pieces root` is the root over its blocks padded to a power of two.

use sha2::{Digest, Sha256};

pub const BLOCK: u64 = 16 * 1024;
pub type Hash32 = [u8; 32];

pub fn sha256(data: &[u8]) -> Hash32 {
    Sha256::digest(data).into()
}

pub fn parent(left: &Hash32, right: &Hash32) -> Hash32 {
    let mut h = Sha256::new();
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The hash of a subtree of `2^height` zero leaves.
pub fn zero_subtree(height: u32) -> Hash32 {
    let mut h = [0u8; 32];
    for _ in 0..height {
        h = parent(&h, &h);
    }
    h
}

/// The root over `hashes` padded with `pad` up to `width` (a power of two, at least
/// `hashes.len()`).
pub fn root_padded(hashes: &[Hash32], width: usize, pad: Hash32) -> Hash32 {
    debug_assert!(width.is_power_of_two() && width >= hashes.len());
    let mut level: Vec<Hash32> = hashes.to_vec();
    level.resize(width.max(1), pad);
    while level.len() > 1 {
        level = level.chunks(2).map(|c| parent(&c[0], &c[1])).collect();
    }
    level[0]
}

/// Leaf hashes of `data`, one per 16 KiB block (the last may be short).
pub fn block_hashes(data: &[u8]) -> Vec<Hash32> {
    data.chunks(BLOCK as usize).map(sha256).collect()
}

/// Blocks per piece for a piece length (a power of two of at least 16 KiB).
pub fn blocks_per_piece(piece_length: u64) -> usize {
    (piece_length / BLOCK) as usize
}

/// The hash a piece layer holds for one piece: the root of its blocks padded with zero
/// leaves to `piece_length / 16 KiB`.
pub fn piece_hash(data: &[u8], piece_length: u64) -> Hash32 {
    root_padded(
        &block_hashes(data),
        blocks_per_piece(piece_length),
        [0u8; 32],
    )
}

/// A file's `pieces root` from its piece layer (files larger than one piece).
pub fn root_from_layer(layer: &[Hash32], piece_length: u64) -> Hash32 {
    let height = blocks_per_piece(piece_length).trailing_zeros();
    root_padded(layer, layer.len().next_power_of_two(), zero_subtree(height))
}

/// A file's `pieces root` from the whole file's data when it fits in one piece.
pub fn root_of_small_file(data: &[u8]) -> Hash32 {
    let leaves = block_hashes(data);
    root_padded(&leaves, leaves.len().next_power_of_two(), [0u8; 32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_root_equals_block_root() {
        // 5 blocks in pieces of 2 blocks: the root over all leaves (padded to 8) must
        // equal the root over the piece layer (padded to 4 with a zero 2-leaf subtree).
        let data: Vec<u8> = (0..5 * BLOCK as usize).map(|i| (i % 251) as u8).collect();
        let leaves = block_hashes(&data);
        let full = root_padded(&leaves, 8, [0u8; 32]);
        let layer: Vec<Hash32> = data
            .chunks(2 * BLOCK as usize)
            .map(|p| piece_hash(p, 2 * BLOCK))
            .collect();
        assert_eq!(layer.len(), 3);
        assert_eq!(root_from_layer(&layer, 2 * BLOCK), full);
    }
}
