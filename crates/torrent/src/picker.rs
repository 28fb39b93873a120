//! Which blocks to ask which peer for: rarest piece first (ties broken at random), or in
//! order when streaming; blocks of pieces already started before new pieces; endgame
//! (a block asked of a second peer) only when every missing block is already asked for.
//!
//! Streaming readers each hold a *window*: the pieces from the one under their cursor
//! to as far ahead as their rate asks for. Window pieces come before anything else,
//! nearest the cursors first, whether or not the file was selected; only peers not
//! marked slow get them (a slow peer gets one when no fast peer took it within
//! [`SLOW_GRACE`]), and a fast peer may ask again for a window block that only slow
//! peers were asked for.
//!
//! Invariants: a block is `Free`, asked of at most [`ENDGAME_DUP`] peers, or received;
//! at most `max_partials` pieces (plus [`URGENT_PARTIALS`] for windows) are in progress
//! or being verified (about [`BUFFER_BUDGET`] bytes), which bounds the memory their
//! buffers take; a piece is handed out for verification exactly once per completion.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::bitfield::Bitfield;
use crate::piecebuf::{PieceBuf, Pool};
use crate::wire::BLOCK;

pub type PeerKey = u64;

/// Most peers one block is asked of in endgame.
pub const ENDGAME_DUP: usize = 2;
/// Bytes of piece buffers (in progress or being verified) a torrent holds at most.
/// While pieces were written through the page cache they queued here for their turn
/// (ext4 serialises buffered writes per inode), and the budget set the pipeline's depth
/// (1 GiB bench: 32 MiB 97-186 MB/s, 128 MiB 348-383 MB/s). With O_DIRECT writes a piece
/// leaves at once; on the 2 GiB bench 32 MiB gave 391-610 MB/s (median 546) at 61-62 MB
/// peak RSS, 64 MiB 531-603 MB/s at 96 MB.
pub const BUFFER_BUDGET: u64 = 32 * 1024 * 1024;
/// How long a block waits for its peer before endgame asks another for it too. Without
/// it, a torrent whose every block fits in the first peer's pipeline was all asked
/// twice at once (a 3 MB video fetched as 6 MB).
pub const ENDGAME_AFTER: Duration = Duration::from_millis(250);
/// Window pieces that may be in progress beyond the buffer budget, so a seek is not
/// queued behind a full pipeline of background pieces.
pub const URGENT_PARTIALS: usize = 8;
/// How long a window piece waits for a fast peer before a slow one may have it.
pub const SLOW_GRACE: Duration = Duration::from_millis(1500);

/// A reader's window: pieces `first..=last`, the first under its cursor since `since`.
#[derive(Debug, Clone, Copy)]
struct Window {
    first: u32,
    last: u32,
    since: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockRef {
    pub index: u32,
    pub begin: u32,
    pub length: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Block {
    Free,
    /// Asked of these peers, first at this time.
    Asked(Vec<PeerKey>, Instant),
    Received,
}

struct Partial {
    blocks: Vec<Block>,
    data: PieceBuf,
    received: usize,
    /// Blocks each peer delivered (for blame on a hash failure, and credit).
    by_peer: HashMap<PeerKey, u32>,
}

/// A piece whose blocks have all arrived, ready to verify.
pub struct CompletePiece {
    pub index: u32,
    /// Give it back with [`Picker::recycle`] once written.
    pub data: PieceBuf,
    pub by_peer: HashMap<PeerKey, u32>,
}

pub enum BlockOutcome {
    /// Not asked for, already had, or malformed: drop it.
    Unwanted,
    Stored,
    Complete(CompletePiece),
}

pub struct Picker {
    piece_length: u64,
    total_length: u64,
    have: Bitfield,
    wanted: Bitfield,
    /// Pieces being verified (not to be picked again meanwhile).
    verifying: Bitfield,
    availability: Vec<u16>,
    partials: HashMap<u32, Partial>,
    max_partials: usize,
    buffers: Pool,
    pub sequential: bool,
    /// Streaming readers' windows, by reader.
    windows: BTreeMap<u64, Window>,
    /// Peers that are not to be given window pieces (see the module docs).
    slow: HashSet<PeerKey>,
    /// [`ENDGAME_AFTER`], or another wait (tests).
    pub endgame_after: Duration,
}

impl Picker {
    pub fn new(piece_length: u64, total_length: u64, have: Bitfield, wanted: Bitfield) -> Picker {
        let n = have.len();
        let max_partials = (BUFFER_BUDGET / piece_length.max(1)).clamp(4, 256) as usize;
        Picker {
            piece_length,
            total_length,
            have,
            wanted,
            verifying: Bitfield::new(n),
            availability: vec![0; n as usize],
            partials: HashMap::new(),
            max_partials,
            buffers: Pool::new(piece_length as usize, max_partials),
            sequential: false,
            windows: BTreeMap::new(),
            slow: HashSet::new(),
            endgame_after: ENDGAME_AFTER,
        }
    }

    /// Sets reader `reader`'s window to pieces `first..=last` (clipped to the torrent).
    /// Returns whether its first piece moved (a seek, or the cursor reached the next
    /// piece): peers should pick again at once.
    pub fn set_window(&mut self, reader: u64, first: u32, last: u32, now: Instant) -> bool {
        let n = self.have.len();
        if first >= n {
            return self.windows.remove(&reader).is_some();
        }
        let last = last.clamp(first, n - 1);
        match self.windows.get_mut(&reader) {
            Some(w) if w.first == first => {
                w.last = last;
                false
            }
            _ => {
                self.windows.insert(
                    reader,
                    Window {
                        first,
                        last,
                        since: now,
                    },
                );
                true
            }
        }
    }

    /// A reader closed: its pieces are no longer urgent.
    pub fn clear_window(&mut self, reader: u64) {
        self.windows.remove(&reader);
    }

    pub fn windows(&self) -> usize {
        self.windows.len()
    }

    /// The lowest piece under a reader's cursor, if any reader is open.
    pub fn lowest_cursor(&self) -> Option<u32> {
        self.windows.values().map(|w| w.first).min()
    }

    /// Marks which peers are slow (replacing the last marking).
    pub fn set_slow(&mut self, slow: HashSet<PeerKey>) {
        self.slow = slow;
    }

    pub fn is_slow(&self, peer: PeerKey) -> bool {
        self.slow.contains(&peer)
    }

    fn urgent(&self, i: u32) -> bool {
        self.windows
            .values()
            .any(|w| (w.first..=w.last).contains(&i))
    }

    /// Missing window pieces, nearest a cursor first (readers take turns), each with
    /// when its window's cursor got there.
    fn urgent_order(&self) -> Vec<(u32, Instant)> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let longest = self
            .windows
            .values()
            .map(|w| w.last - w.first)
            .max()
            .unwrap_or(0);
        for d in 0..=longest {
            for w in self.windows.values() {
                let i = w.first + d;
                if i <= w.last && !self.have.get(i) && seen.insert(i) {
                    out.push((i, w.since));
                }
            }
        }
        out
    }

    /// Blocks of window pieces for `peer`: free blocks first, then new pieces (within
    /// their own budget), then for a fast peer blocks only slow peers were asked for.
    fn pick_urgent(&mut self, peer: PeerKey, theirs: &Bitfield, n: usize, out: &mut Vec<BlockRef>) {
        let fast = !self.slow.contains(&peer);
        let now = Instant::now();
        let order: Vec<u32> = self
            .urgent_order()
            .into_iter()
            .filter(|&(i, since)| {
                theirs.get(i)
                    && !self.verifying.get(i)
                    && (fast || now.duration_since(since) >= SLOW_GRACE)
            })
            .map(|(i, _)| i)
            .collect();
        // Window pieces may take the whole buffer budget and URGENT_PARTIALS more.
        let mut in_progress = self.partials.len() + self.verifying.count() as usize;
        for &i in &order {
            if out.len() >= n {
                return;
            }
            if !self.partials.contains_key(&i) {
                if in_progress >= self.max_partials + URGENT_PARTIALS {
                    continue;
                }
                self.start(i);
                in_progress += 1;
            }
            self.take_free(i, peer, n, out);
        }
        if !fast {
            return;
        }
        for &i in &order {
            let len = self.piece_len(i);
            let Some(p) = self.partials.get_mut(&i) else {
                continue;
            };
            for (b, state) in p.blocks.iter_mut().enumerate() {
                if out.len() >= n {
                    return;
                }
                if let Block::Asked(by, _) = state
                    && by.len() < ENDGAME_DUP
                    && !by.contains(&peer)
                    && by.iter().all(|k| self.slow.contains(k))
                {
                    by.push(peer);
                    out.push(block_ref(i, b, len));
                }
            }
        }
    }

    fn start(&mut self, i: u32) {
        let blocks = self.blocks_in(i);
        let len = self.piece_len(i) as usize;
        self.partials.insert(
            i,
            Partial {
                blocks: vec![Block::Free; blocks],
                data: self.buffers.take(len),
                received: 0,
                by_peer: HashMap::new(),
            },
        );
    }

    pub fn have(&self) -> &Bitfield {
        &self.have
    }
    pub fn wanted(&self) -> &Bitfield {
        &self.wanted
    }

    pub fn set_wanted(&mut self, wanted: Bitfield) {
        self.wanted = wanted;
    }

    /// Every wanted piece is had.
    pub fn is_complete(&self) -> bool {
        self.wanted.ones().all(|i| self.have.get(i))
    }

    pub fn wanted_left_bytes(&self) -> u64 {
        self.wanted
            .ones()
            .filter(|&i| !self.have.get(i))
            .map(|i| self.piece_len(i) as u64)
            .sum()
    }

    pub fn piece_len(&self, index: u32) -> u32 {
        let start = index as u64 * self.piece_length;
        (self.total_length - start).min(self.piece_length) as u32
    }

    fn blocks_in(&self, index: u32) -> usize {
        self.piece_len(index).div_ceil(BLOCK) as usize
    }

    pub fn add_availability(&mut self, bits: &Bitfield) {
        for i in bits.ones() {
            if let Some(a) = self.availability.get_mut(i as usize) {
                *a = a.saturating_add(1);
            }
        }
    }
    pub fn remove_availability(&mut self, bits: &Bitfield) {
        for i in bits.ones() {
            if let Some(a) = self.availability.get_mut(i as usize) {
                *a = a.saturating_sub(1);
            }
        }
    }
    pub fn add_have(&mut self, index: u32) {
        if let Some(a) = self.availability.get_mut(index as usize) {
            *a = a.saturating_add(1);
        }
    }

    /// Whether `theirs` has a piece we want (or a reader waits for) and lack.
    pub fn interesting(&self, theirs: &Bitfield) -> bool {
        theirs.ones().any(|i| {
            (self.wanted.get(i) || self.urgent(i)) && !self.have.get(i) && !self.verifying.get(i)
        })
    }

    /// Whether piece `i` may be started for a peer with `theirs` outside the windows
    /// (a slow peer is kept off window pieces).
    fn pickable(&self, i: u32, theirs: &Bitfield, slow: bool) -> bool {
        theirs.get(i)
            && self.wanted.get(i)
            && !self.have.get(i)
            && !self.verifying.get(i)
            && !self.partials.contains_key(&i)
            && (!slow || !self.urgent(i))
    }

    /// Up to `n` blocks for `peer`, which has the pieces in `theirs`.
    pub fn pick(&mut self, peer: PeerKey, theirs: &Bitfield, n: usize) -> Vec<BlockRef> {
        let mut out = Vec::new();
        if !self.windows.is_empty() {
            self.pick_urgent(peer, theirs, n, &mut out);
            if out.len() >= n {
                return out;
            }
        }
        let slow = self.slow.contains(&peer);
        // 1. Free blocks of pieces in progress (lowest index first when streaming).
        let mut started: Vec<u32> = self
            .partials
            .keys()
            .copied()
            .filter(|&i| theirs.get(i) && (!slow || !self.urgent(i)))
            .collect();
        started.sort_unstable();
        for i in started {
            self.take_free(i, peer, n, &mut out);
            if out.len() >= n {
                return out;
            }
        }
        // 2. New pieces, while the buffer budget allows.
        let mut nothing_new = false;
        while out.len() < n {
            if self.partials.len() + self.verifying.count() as usize >= self.max_partials {
                // Waiting for room is not endgame: pieces remain to be started.
                return out;
            }
            let Some(i) = self.choose_new(theirs, slow) else {
                nothing_new = true;
                break;
            };
            self.start(i);
            self.take_free(i, peer, n, &mut out);
        }
        if !out.is_empty() || !nothing_new {
            return out;
        }
        // 3. Endgame: nothing new to start; ask again for blocks others were asked for
        // a while ago.
        let now = Instant::now();
        let mut idx: Vec<u32> = self
            .partials
            .keys()
            .copied()
            .filter(|&i| theirs.get(i) && (!slow || !self.urgent(i)))
            .collect();
        idx.sort_unstable();
        for i in idx {
            let len = self.piece_len(i);
            if let Some(p) = self.partials.get_mut(&i) {
                for (b, state) in p.blocks.iter_mut().enumerate() {
                    if out.len() >= n {
                        return out;
                    }
                    if let Block::Asked(by, at) = state
                        && by.len() < ENDGAME_DUP
                        && !by.contains(&peer)
                        && now.duration_since(*at) >= self.endgame_after
                    {
                        by.push(peer);
                        out.push(block_ref(i, b, len));
                    }
                }
            }
        }
        out
    }

    fn take_free(&mut self, i: u32, peer: PeerKey, n: usize, out: &mut Vec<BlockRef>) {
        let len = self.piece_len(i);
        if let Some(p) = self.partials.get_mut(&i) {
            for (b, state) in p.blocks.iter_mut().enumerate() {
                if out.len() >= n {
                    return;
                }
                if *state == Block::Free {
                    *state = Block::Asked(vec![peer], Instant::now());
                    out.push(block_ref(i, b, len));
                }
            }
        }
    }

    fn choose_new(&self, theirs: &Bitfield, slow: bool) -> Option<u32> {
        if self.sequential {
            return (0..self.have.len()).find(|&i| self.pickable(i, theirs, slow));
        }
        let mut best: Option<(u16, u32)> = None;
        let mut ties = 0u32;
        let mut rng = rand::rng();
        for i in theirs.ones() {
            if !self.pickable(i, theirs, slow) {
                continue;
            }
            let a = self.availability[i as usize];
            match best {
                Some((b, _)) if a > b => {}
                Some((b, _)) if a == b => {
                    ties += 1;
                    if rng.random_range(0..=ties) == 0 {
                        best = Some((a, i));
                    }
                }
                _ => {
                    best = Some((a, i));
                    ties = 0;
                }
            }
        }
        best.map(|(_, i)| i)
    }

    /// Gives back blocks asked of `peer` that it will not send (choked, rejected, gone).
    pub fn release(&mut self, peer: PeerKey, blocks: impl IntoIterator<Item = BlockRef>) {
        for r in blocks {
            if let Some(p) = self.partials.get_mut(&r.index)
                && let Some(state) = p.blocks.get_mut((r.begin / BLOCK) as usize)
                && let Block::Asked(by, _) = state
            {
                by.retain(|k| *k != peer);
                if by.is_empty() {
                    *state = Block::Free;
                }
            }
        }
    }

    /// A block arrived from `peer`.
    pub fn on_block(&mut self, peer: PeerKey, index: u32, begin: u32, data: &[u8]) -> BlockOutcome {
        let len = self.piece_len(index.min(self.have.len().saturating_sub(1)));
        let Some(p) = self.partials.get_mut(&index) else {
            return BlockOutcome::Unwanted;
        };
        let b = (begin / BLOCK) as usize;
        if !begin.is_multiple_of(BLOCK)
            || b >= p.blocks.len()
            || data.len() as u32 != block_ref(index, b, len).length
        {
            return BlockOutcome::Unwanted;
        }
        if p.blocks[b] == Block::Received {
            return BlockOutcome::Unwanted;
        }
        p.blocks[b] = Block::Received;
        p.data[begin as usize..begin as usize + data.len()].copy_from_slice(data);
        p.received += 1;
        *p.by_peer.entry(peer).or_default() += 1;
        if p.received < p.blocks.len() {
            return BlockOutcome::Stored;
        }
        let Some(p) = self.partials.remove(&index) else {
            return BlockOutcome::Unwanted;
        };
        self.verifying.set(index);
        BlockOutcome::Complete(CompletePiece {
            index,
            data: p.data,
            by_peer: p.by_peer,
        })
    }

    /// Drops what `peer` delivered to pieces still in progress (it was banned for bad
    /// data): each such piece starts over, so none of its blocks is used, nor blamed on
    /// the peers that finish the piece. Blocks asked of others stay asked. Returns the
    /// pieces started over.
    pub fn forget_blocks_of(&mut self, peer: PeerKey) -> usize {
        let mut n = 0;
        for p in self.partials.values_mut() {
            if !p.by_peer.contains_key(&peer) {
                continue;
            }
            for b in p.blocks.iter_mut() {
                if *b == Block::Received {
                    *b = Block::Free;
                }
            }
            p.received = 0;
            p.by_peer.clear();
            n += 1;
        }
        n
    }

    /// The verdict on a completed piece.
    /// A piece had is had no more (its data on disk went bad): it is wanted again.
    pub fn lose(&mut self, index: u32) {
        self.have.clear(index);
    }

    pub fn on_verified(&mut self, index: u32, ok: bool) {
        self.verifying.clear(index);
        if ok {
            self.have.set(index);
        }
    }

    /// A completed piece's buffer, done with, for the next piece.
    pub fn recycle(&mut self, data: PieceBuf) {
        self.buffers.give_back(data);
    }

    /// Lets go of the spare buffers (the download is complete).
    pub fn free_buffers(&mut self) {
        self.buffers.clear();
    }

    pub fn spare_buffers(&self) -> usize {
        self.buffers.spare()
    }

    /// Peers other than `except` asked for this block (to be cancelled in endgame).
    pub fn askers(&self, index: u32, begin: u32) -> Vec<PeerKey> {
        self.partials
            .get(&index)
            .and_then(|p| p.blocks.get((begin / BLOCK) as usize))
            .map(|b| match b {
                Block::Asked(by, _) => by.clone(),
                _ => Vec::new(),
            })
            .unwrap_or_default()
    }
}

fn block_ref(index: u32, b: usize, piece_len: u32) -> BlockRef {
    let begin = b as u32 * BLOCK;
    BlockRef {
        index,
        begin,
        length: (piece_len - begin).min(BLOCK),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picker(pieces: u32) -> Picker {
        let pl = 4 * BLOCK as u64;
        Picker::new(
            pl,
            pl * pieces as u64 - 100,
            Bitfield::new(pieces),
            Bitfield::full(pieces),
        )
    }

    #[test]
    fn rarest_first_then_finish_started_pieces() {
        let mut p = picker(4);
        let all = Bitfield::full(4);
        p.add_availability(&all);
        p.add_availability(&all);
        let mut rare = Bitfield::new(4);
        rare.set(2);
        p.add_availability(&rare);
        p.remove_availability(&all); // piece 2 now has 2, the rest 1
        let got = p.pick(1, &all, 4);
        assert_eq!(got.len(), 4);
        let first = got[0].index;
        assert_ne!(first, 2, "rarest (availability 1) first, not piece 2");
        assert!(got.iter().all(|b| b.index == first), "one piece at a time");
        // Another peer continues nothing already asked, starts a new piece.
        let other = p.pick(2, &all, 2);
        assert!(other.iter().all(|b| b.index != first));
    }

    #[test]
    fn last_block_is_short_and_piece_completes_once() {
        let mut p = picker(2);
        let all = Bitfield::full(2);
        p.sequential = true;
        let blocks = p.pick(1, &all, 8);
        assert_eq!(blocks.len(), 8);
        let last = blocks[7];
        assert_eq!(last.length, BLOCK - 100);
        let mut completes = 0;
        for b in &blocks {
            let data = vec![1u8; b.length as usize];
            if let BlockOutcome::Complete(c) = p.on_block(1, b.index, b.begin, &data) {
                completes += 1;
                p.on_verified(c.index, true);
            }
            assert!(matches!(
                p.on_block(1, b.index, b.begin, &data),
                BlockOutcome::Unwanted
            ));
        }
        assert_eq!(completes, 2);
        assert!(p.is_complete());
    }

    /// Delivers `blocks` from peer 1, each filled with `byte`; the piece they complete.
    fn deliver(p: &mut Picker, blocks: &[BlockRef], byte: u8) -> Option<CompletePiece> {
        let mut done = None;
        for b in blocks {
            if let BlockOutcome::Complete(c) =
                p.on_block(1, b.index, b.begin, &vec![byte; b.length as usize])
            {
                done = Some(c);
            }
        }
        done
    }

    #[test]
    fn a_banned_peers_blocks_are_dropped_and_others_finish_the_piece_alone() {
        let mut p = picker(1);
        let all = Bitfield::full(1);
        let (bad, good) = (7, 8);
        let asked = p.pick(bad, &all, 4);
        assert_eq!(asked.len(), 4);
        // Two corrupt blocks arrive, then the peer is banned and its requests released.
        for b in &asked[..2] {
            p.on_block(bad, b.index, b.begin, &vec![0xee; b.length as usize]);
        }
        assert_eq!(p.forget_blocks_of(bad), 1);
        p.release(bad, asked[2..].iter().copied());
        let again = p.pick(good, &all, 4);
        assert_eq!(again.len(), 4, "every block asked again");
        let mut done = None;
        for b in &again {
            if let BlockOutcome::Complete(c) =
                p.on_block(good, b.index, b.begin, &vec![1; b.length as usize])
            {
                done = Some(c);
            }
        }
        let c = done.expect("complete");
        assert!(c.data[..c.data.len() - 100].iter().all(|b| *b == 1));
        assert_eq!(c.by_peer.keys().copied().collect::<Vec<_>>(), vec![good]);
    }

    #[test]
    fn piece_buffers_are_reused_and_let_go() {
        let mut p = picker(2);
        let all = Bitfield::full(2);
        p.sequential = true;
        let blocks = p.pick(1, &all, 4);
        let c = deliver(&mut p, &blocks, 3).expect("piece 0 complete");
        let first = c.data.as_ptr();
        p.on_verified(c.index, true);
        p.recycle(c.data);
        assert_eq!(p.spare_buffers(), 1);
        // The next piece gets the same buffer back.
        let blocks = p.pick(1, &all, 4);
        let c = deliver(&mut p, &blocks, 4).expect("piece 1 complete");
        assert_eq!(c.data.as_ptr(), first, "the spare buffer is reused");
        assert!(
            c.data.iter().all(|x| *x == 4),
            "every byte is the new piece's"
        );
        p.on_verified(c.index, true);
        assert!(p.is_complete());
        p.free_buffers();
        assert_eq!(p.spare_buffers(), 0);
    }

    #[test]
    fn endgame_asks_a_second_peer_and_release_frees() {
        let mut p = picker(1);
        let all = Bitfield::full(1);
        let a = p.pick(1, &all, 10);
        assert_eq!(a.len(), 4);
        assert!(
            p.pick(2, &all, 10).is_empty(),
            "blocks just asked for are not asked again"
        );
        p.endgame_after = Duration::ZERO;
        let b = p.pick(2, &all, 10);
        assert_eq!(b.len(), 4, "endgame duplicates");
        assert!(p.pick(3, &all, 10).is_empty(), "at most two askers");
        p.release(1, a.clone());
        p.release(2, b);
        assert_eq!(p.pick(3, &all, 10), a);
    }

    #[test]
    fn failed_piece_is_picked_again() {
        let mut p = picker(1);
        let all = Bitfield::full(1);
        for b in p.pick(1, &all, 10) {
            if let BlockOutcome::Complete(c) =
                p.on_block(1, b.index, b.begin, &vec![0; b.length as usize])
            {
                p.on_verified(c.index, false);
            }
        }
        assert!(!p.is_complete());
        assert_eq!(p.pick(2, &all, 10).len(), 4);
    }

    fn indices(blocks: &[BlockRef]) -> Vec<u32> {
        let mut v: Vec<u32> = blocks.iter().map(|b| b.index).collect();
        v.dedup();
        v
    }

    #[test]
    fn window_pieces_come_first_nearest_the_cursors_readers_taking_turns() {
        let mut p = picker(20);
        let all = Bitfield::full(20);
        let now = Instant::now();
        assert!(p.set_window(1, 10, 12, now), "a new window moves");
        assert!(p.set_window(2, 3, 4, now));
        assert!(!p.set_window(2, 3, 5, now), "same cursor, longer window");
        // Four blocks a piece: the cursors' pieces first, then one further each.
        let got = p.pick(7, &all, 4 * 5);
        assert_eq!(indices(&got), vec![10, 3, 11, 4, 12]);
        // A reader that closes lets its pieces go: what remains is ordinary picking.
        p.clear_window(1);
        p.clear_window(2);
        assert_eq!(p.windows(), 0);
        p.sequential = true;
        let got = p.pick(8, &all, 4);
        assert_eq!(indices(&got), vec![0], "back to the torrent's own order");
    }

    #[test]
    fn a_window_fetches_pieces_of_files_not_selected() {
        let pl = 4 * BLOCK as u64;
        let mut wanted = Bitfield::new(6);
        wanted.set(0);
        let mut p = Picker::new(pl, pl * 6, Bitfield::new(6), wanted);
        let all = Bitfield::full(6);
        let mut only_5 = Bitfield::new(6);
        only_5.set(5);
        assert!(!p.interesting(&only_5));
        p.set_window(1, 5, 5, Instant::now());
        assert!(p.interesting(&only_5), "a reader waits for piece 5");
        assert_eq!(indices(&p.pick(1, &all, 8)), vec![5, 0]);
    }

    #[test]
    fn slow_peers_get_window_pieces_only_when_no_fast_peer_took_them() {
        let mut p = picker(10);
        p.sequential = true;
        let all = Bitfield::full(10);
        p.set_slow([9].into_iter().collect());
        p.set_window(1, 4, 5, Instant::now());
        let got = p.pick(9, &all, 8);
        assert!(
            got.iter().all(|b| b.index != 4 && b.index != 5),
            "the slow peer gets background pieces: {:?}",
            indices(&got)
        );
        // Past the grace, nobody fast having taken them, the slow peer may.
        let long_ago = Instant::now() - SLOW_GRACE - Duration::from_millis(10);
        p.set_window(1, 6, 7, long_ago);
        let got = p.pick(9, &all, 4);
        assert_eq!(indices(&got), vec![6]);
        // A fast peer asks again for what only the slow peer was asked for.
        let fast = p.pick(1, &all, 4);
        assert_eq!(indices(&fast), vec![7], "the window's free piece first");
        let again = p.pick(1, &all, 8);
        assert_eq!(
            indices(&again)[0],
            6,
            "then the slow peer's window blocks: {again:?}"
        );
    }

    #[test]
    fn window_pieces_start_beyond_the_buffer_budget() {
        let pl = 4 * BLOCK as u64;
        let mut p = Picker::new(pl, pl * 400, Bitfield::new(400), Bitfield::full(400));
        let all = Bitfield::full(400);
        // Fill the budget with background pieces, from the start.
        p.sequential = true;
        while !p.pick(1, &all, 64).is_empty() {}
        assert!(p.pick(1, &all, 4).is_empty());
        p.set_window(1, 399, 399, Instant::now());
        assert_eq!(indices(&p.pick(2, &all, 4)), vec![399]);
    }
}
