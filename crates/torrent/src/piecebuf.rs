//! Piece buffers: page-aligned (so a verified piece can go to disk with O_DIRECT, see
//! [`crate::storage`]) and reused from a pool instead of allocated per piece.
//!
//! Reuse matters beyond the allocation: a fresh buffer costs a page fault per 4 KiB on
//! first touch (and on a VM that returns freed memory to its host, a fault on the host
//! too), a pooled one costs none. The pool holds at most what the picker's budget lets
//! be in flight at once, so it bounds memory rather than adding to it.

use std::ops::{Deref, DerefMut};

/// Alignment of a buffer's start: the page size, a multiple of every disk's logical
/// block size, which is what O_DIRECT asks of buffers, offsets and lengths.
pub const ALIGN: usize = 4096;

/// `len` bytes starting on an [`ALIGN`] boundary. Contents are whatever was there
/// before: a user overwrites all of it (a piece completes only when every block came).
pub struct PieceBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl PieceBuf {
    /// A buffer with room for `capacity` bytes, holding `len` of them.
    pub fn new(capacity: usize, len: usize) -> PieceBuf {
        let raw = vec![0u8; capacity + ALIGN];
        let start = raw.as_ptr().align_offset(ALIGN);
        let mut b = PieceBuf { raw, start, len: 0 };
        b.set_len(len);
        b
    }

    pub fn capacity(&self) -> usize {
        self.raw.len() - ALIGN
    }

    /// Sets the length (at most the capacity) without touching the contents.
    pub fn set_len(&mut self, len: usize) {
        self.len = len.min(self.capacity());
    }
}

impl Deref for PieceBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }
}

impl DerefMut for PieceBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

/// Spare buffers of one capacity (a torrent's piece length).
pub struct Pool {
    capacity: usize,
    spare: Vec<PieceBuf>,
    max_spare: usize,
}

impl Pool {
    pub fn new(capacity: usize, max_spare: usize) -> Pool {
        Pool {
            capacity,
            spare: Vec::new(),
            max_spare,
        }
    }

    /// A buffer of `len` bytes (at most the pool's capacity).
    pub fn take(&mut self, len: usize) -> PieceBuf {
        match self.spare.pop() {
            Some(mut b) => {
                b.set_len(len);
                b
            }
            None => PieceBuf::new(self.capacity, len),
        }
    }

    /// Keeps `b` for reuse, unless the pool is full or it is of another size.
    pub fn give_back(&mut self, b: PieceBuf) {
        if b.capacity() == self.capacity && self.spare.len() < self.max_spare {
            self.spare.push(b);
        }
    }

    pub fn spare(&self) -> usize {
        self.spare.len()
    }

    pub fn clear(&mut self) {
        self.spare = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_reused() {
        let mut pool = Pool::new(3 * ALIGN + 100, 1);
        let mut a = pool.take(10);
        assert_eq!(a.as_ptr() as usize % ALIGN, 0);
        assert_eq!(a.len(), 10);
        a[9] = 7;
        let ptr = a.as_ptr();
        pool.give_back(a);
        let b = pool.take(3 * ALIGN + 100);
        assert_eq!(b.as_ptr(), ptr, "the spare buffer comes back");
        assert_eq!(b.len(), 3 * ALIGN + 100);
        assert_eq!(b[9], 7, "contents are not cleared");
        pool.give_back(b);
        pool.give_back(PieceBuf::new(3 * ALIGN + 100, 0));
        assert_eq!(pool.spare(), 1, "at most max_spare kept");
        pool.give_back(PieceBuf::new(ALIGN, 0));
        assert_eq!(pool.spare(), 1, "another size is not kept");
        assert_eq!(pool.take(1 << 30).len(), 3 * ALIGN + 100, "len capped");
    }
}
