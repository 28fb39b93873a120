//! Pieces verified ahead of a streaming reader's cursor, kept in memory until
//! the readers pass them, so a reader right behind the download serves them without
//! reading back what was just written (written with O_DIRECT, they are not in the page
//! cache: reading them back ran at the disk's speed, the stream's bottleneck).
//!
//! Invariants: at most [`FRESH_BUDGET`] bytes are held (the pieces farthest from the
//! cursors are dropped first); only verified pieces are inserted, and a piece found bad
//! on disk is removed with it.

use std::collections::BTreeMap;

use bytes::Bytes;

/// Bytes of fresh pieces a torrent keeps at most.
pub const FRESH_BUDGET: usize = 32 * 1024 * 1024;

#[derive(Default)]
pub struct FreshPieces {
    pieces: BTreeMap<u32, Bytes>,
    bytes: usize,
}

impl FreshPieces {
    /// Keeps verified piece `index`; over the budget, drops the highest indices.
    pub fn insert(&mut self, index: u32, data: Bytes) {
        self.bytes += data.len();
        if let Some(old) = self.pieces.insert(index, data) {
            self.bytes -= old.len();
        }
        while self.bytes > FRESH_BUDGET {
            let Some((_, b)) = self.pieces.pop_last() else {
                break;
            };
            self.bytes -= b.len();
        }
    }

    pub fn get(&self, index: u32) -> Option<Bytes> {
        self.pieces.get(&index).cloned()
    }

    pub fn remove(&mut self, index: u32) {
        if let Some(b) = self.pieces.remove(&index) {
            self.bytes -= b.len();
        }
    }

    /// Drops the pieces below `first` (every reader is past them); `None`: no reader
    /// is left, drop them all.
    pub fn forget_below(&mut self, first: Option<u32>) {
        let keep = match first {
            Some(f) => self.pieces.split_off(&f),
            None => BTreeMap::new(),
        };
        self.pieces = keep;
        self.bytes = self.pieces.values().map(Bytes::len).sum();
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_holds_and_the_farthest_pieces_go_first() {
        let mut f = FreshPieces::default();
        let piece = FRESH_BUDGET / 4;
        for i in 0..6 {
            f.insert(i, Bytes::from(vec![i as u8; piece]));
        }
        assert_eq!(f.bytes(), FRESH_BUDGET);
        assert!(f.get(3).is_some());
        assert!(f.get(4).is_none() && f.get(5).is_none());
        f.forget_below(Some(2));
        assert!(f.get(1).is_none());
        assert_eq!(f.get(2).unwrap()[0], 2);
        assert_eq!(f.bytes(), 2 * piece);
        f.remove(2);
        assert_eq!(f.bytes(), piece);
        f.forget_below(None);
        assert_eq!(f.bytes(), 0);
    }
}
