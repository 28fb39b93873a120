//! The adaptive jitter buffer: frames go in as they arrive (any order, some never, some
//! twice: a packet may carry the frame before it, RFC 2198), and one comes out every
//! 20 ms. It waits until it holds as much as the measured jitter needs, then plays in
//! sequence: a frame that is here plays; one that is missing is rebuilt from the next
//! one's in-band FEC when that is here, else concealed. When nothing from the frame due
//! on has come (an underrun) it conceals and keeps the frame's place; when what comes
//! next is newer, play resumes there. A frame that arrives after its turn is dropped.
//! The depth follows the jitter (RFC 3550's interarrival estimate, about three times
//! it): it grows when frames come late or not in time, and shrinks only after two calm
//! seconds, by skipping silent frames (a speech frame at most every five seconds).
//!
//! Time is given by the caller (milliseconds), so it is tested without a clock.

use std::collections::BTreeMap;

use crate::media::TICKS_PER_FRAME;

/// Frames held at most; more are dropped (oldest first).
const MAX_FRAMES: usize = 50;
const FRAME_MS: f64 = 20.0;

/// What to play for the next 20 ms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// This frame's packet.
    Frame(Vec<u8>),
    /// This frame was lost: decode the next one's packet with FEC.
    Recover(Vec<u8>),
    /// Lost, and no FEC to hand: conceal.
    Conceal,
    /// Not started yet (or nothing came): silence.
    Wait,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub played: u64,
    pub recovered: u64,
    pub concealed: u64,
    pub late: u64,
    /// Turns when nothing from the frame due on had come (concealed, place kept).
    pub underruns: u64,
    /// Lost frames taken whole from the packet after them (RFC 2198).
    pub rebuilt: u64,
}

pub struct JitterBuffer {
    frames: BTreeMap<u64, Vec<u8>>,
    /// The extended sequence number to play next, once started.
    next: Option<u64>,
    highest: Option<u64>,
    /// RFC 3550 interarrival jitter, in ms.
    jitter_ms: f64,
    last: Option<(f64, u32)>,
    /// Frames to hold before playing.
    target: usize,
    /// Pops since a frame was last skipped to shorten the delay.
    since_skip: u32,
    /// The last turn found nothing from its frame on.
    underrun: bool,
    /// Turns since an underrun or a late frame.
    since_trouble: u32,
    pub stats: Stats,
}

/// To shorten the delay a quiet frame (an Opus packet this small is silence: speech
/// takes about a hundred bytes at our rates) is skipped whenever there is one; a frame
/// of speech at most once in this many turns (five seconds), since skipping it is heard.
const QUIET_BYTES: usize = 16;
const SKIP_SPEECH_EVERY: u32 = 250;
/// The depth shrinks only after this many turns (two seconds) without an underrun or
/// a late frame.
const CALM: u32 = 100;

impl Default for JitterBuffer {
    fn default() -> Self {
        JitterBuffer::new()
    }
}

impl JitterBuffer {
    pub fn new() -> JitterBuffer {
        JitterBuffer {
            frames: BTreeMap::new(),
            next: None,
            highest: None,
            jitter_ms: 0.0,
            last: None,
            target: 2,
            since_skip: 0,
            underrun: false,
            since_trouble: 0,
            stats: Stats::default(),
        }
    }

    /// Frames held before playing, as the jitter now asks.
    pub fn target(&self) -> usize {
        self.target
    }

    pub fn jitter_ms(&self) -> f64 {
        self.jitter_ms
    }

    /// `seq` as a 64-bit number near the highest seen (wrap-around of 16 bits).
    fn extend(&self, seq: u16) -> u64 {
        let Some(h) = self.highest else {
            return (1 << 16) + seq as u64;
        };
        let base = h & !0xffff;
        let candidates = [base.wrapping_sub(1 << 16), base, base + (1 << 16)];
        candidates
            .into_iter()
            .map(|b| b + seq as u64)
            .min_by_key(|c| c.abs_diff(h))
            .unwrap_or(h)
    }

    /// A frame that arrived at `now_ms`.
    pub fn push(&mut self, seq: u16, timestamp: u32, now_ms: f64, payload: Vec<u8>) {
        let ext = self.extend(seq);
        if let Some((t, ts)) = self.last {
            let sent_ms =
                timestamp.wrapping_sub(ts) as i32 as f64 / (TICKS_PER_FRAME as f64 / FRAME_MS);
            let d = (now_ms - t) - sent_ms;
            self.jitter_ms += (d.abs() - self.jitter_ms) / 16.0;
        }
        self.last = Some((now_ms, timestamp));
        if self.next.is_some_and(|n| ext < n) {
            self.stats.late += 1;
            self.grow();
            return;
        }
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
        self.frames.insert(ext, payload);
        while self.frames.len() > MAX_FRAMES {
            self.frames.pop_first();
        }
    }

    /// A frame carried again in the packet after it (RFC 2198): kept only when it is
    /// still to play and not here already. It says nothing of the jitter.
    pub fn push_previous(&mut self, seq: u16, payload: Vec<u8>) {
        let ext = self.extend(seq);
        if self.next.is_some_and(|n| ext < n) || self.frames.contains_key(&ext) {
            return;
        }
        self.frames.insert(ext, payload);
        self.stats.rebuilt += 1;
        while self.frames.len() > MAX_FRAMES {
            self.frames.pop_first();
        }
    }

    /// Deeper, after a frame came too late or not in time: and no shallower for
    /// [`CALM`] turns.
    fn grow(&mut self) {
        self.since_trouble = 0;
        self.target = (self.target + 1).min(MAX_FRAMES / 2);
    }

    fn wanted(&self) -> usize {
        // Enough for about three times the jitter (RFC 3550's is a mean deviation; the
        // late tail reaches about three of it), and never fewer than one frame.
        ((3.0 * self.jitter_ms / FRAME_MS).ceil() as usize + 1).clamp(1, MAX_FRAMES / 2)
    }

    /// What to play for the next 20 ms.
    pub fn pop(&mut self) -> Out {
        let wanted = self.wanted();
        if wanted > self.target {
            self.target = wanted;
        }
        let (mut next, started) = match self.next {
            Some(n) => (n, true),
            None => {
                if self.frames.len() < self.target {
                    return Out::Wait;
                }
                (*self.frames.keys().next().expect("not empty"), false)
            }
        };
        // After an underrun, what never came by now is skipped: play on from the frame
        // before the first one held (rebuilt from that one's FEC), so the buffer is a
        // frame deeper than before, not the length of the gap deeper.
        if self.underrun
            && let Some((&first, _)) = self.frames.range(next..).next()
        {
            next = next.max(first - 1);
            self.underrun = false;
        }
        // Shrink toward what the jitter needs: held beyond it is delay nobody needs.
        self.since_skip = self.since_skip.saturating_add(1);
        let held = self.frames.range(next..).count();
        self.since_trouble = self.since_trouble.saturating_add(1);
        if self.target > wanted && held > wanted + 1 && self.since_trouble >= CALM {
            self.target -= 1;
        }
        let quiet = self
            .frames
            .get(&next)
            .is_some_and(|p| p.len() <= QUIET_BYTES);
        if started && held > self.target + 2 && (quiet || self.since_skip >= SKIP_SPEECH_EVERY) {
            self.since_skip = 0;
            self.frames.remove(&next);
            next += 1;
        }
        while self
            .frames
            .first_key_value()
            .is_some_and(|(k, _)| *k < next)
        {
            self.frames.pop_first();
        }
        if self.highest.is_none_or(|h| h < next) {
            // Nothing from this frame on has come: it is late (jitter) or its path died.
            // Conceal, and keep its place: if it comes it plays, a frame later than it
            // would have (the buffer deepens); if what comes is newer, play resumes there.
            self.next = Some(next);
            self.underrun = true;
            self.stats.underruns += 1;
            self.grow();
            return Out::Conceal;
        }
        self.next = Some(next + 1);
        if let Some(p) = self.frames.remove(&next) {
            self.stats.played += 1;
            Out::Frame(p)
        } else if let Some(p) = self.frames.get(&(next + 1)) {
            self.stats.recovered += 1;
            Out::Recover(p.clone())
        } else {
            self.stats.concealed += 1;
            self.grow();
            Out::Conceal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(i: u16) -> Vec<u8> {
        i.to_be_bytes().to_vec()
    }

    #[test]
    fn in_order_frames_play_in_order_after_the_target_fills() {
        let mut j = JitterBuffer::new();
        let mut out = Vec::new();
        for i in 0..20u16 {
            j.push(i, i as u32 * TICKS_PER_FRAME, i as f64 * 20.0, frame(i));
            out.push(j.pop());
        }
        assert_eq!(out[0], Out::Wait);
        let played: Vec<Vec<u8>> = out
            .into_iter()
            .filter_map(|o| match o {
                Out::Frame(p) => Some(p),
                _ => None,
            })
            .collect();
        assert_eq!(played, (0..19).map(frame).collect::<Vec<_>>());
        assert_eq!(j.stats.concealed, 0);
    }

    /// One frame arrives per 20 ms tick, in this order, and one is played.
    fn play(order: &[u16]) -> (JitterBuffer, Vec<Out>) {
        let mut j = JitterBuffer::new();
        let mut out = Vec::new();
        for (t, i) in order.iter().enumerate() {
            let sent = i.wrapping_sub(order[0]) as u32;
            j.push(*i, sent * TICKS_PER_FRAME, t as f64 * 20.0, frame(*i));
            out.push(j.pop());
        }
        (j, out)
    }

    #[test]
    fn a_lost_frame_is_recovered_from_the_next_and_reordering_is_undone() {
        // 0, 2, 1, (3 lost), 4, 5 ...
        let (j, out) = play(&[0, 2, 1, 4, 5, 6]);
        assert_eq!(
            out,
            vec![
                Out::Wait,
                Out::Frame(frame(0)),
                Out::Frame(frame(1)),
                Out::Frame(frame(2)),
                Out::Recover(frame(4)),
                Out::Frame(frame(4)),
            ]
        );
        assert_eq!(j.stats.recovered, 1);
    }

    #[test]
    fn an_underrun_conceals_keeps_the_place_and_deepens_the_buffer() {
        let mut j = JitterBuffer::new();
        j.push(0, 0, 0.0, frame(0));
        j.push(1, TICKS_PER_FRAME, 20.0, frame(1));
        assert_eq!(j.pop(), Out::Frame(frame(0)));
        assert_eq!(j.pop(), Out::Frame(frame(1)));
        // Frame 2 is late: concealed, and it still plays when it comes.
        let before = j.target();
        assert_eq!(j.pop(), Out::Conceal);
        assert!(j.target() > before);
        j.push(2, 2 * TICKS_PER_FRAME, 70.0, frame(2));
        assert_eq!(j.pop(), Out::Frame(frame(2)));
        assert_eq!((j.stats.late, j.stats.underruns), (0, 1));
    }

    #[test]
    fn after_a_dead_path_play_resumes_at_what_comes_next() {
        let mut j = JitterBuffer::new();
        j.push(0, 0, 0.0, frame(0));
        j.push(1, TICKS_PER_FRAME, 20.0, frame(1));
        j.pop();
        j.pop();
        // Frames 2..=11 die with the path: ten turns concealed.
        for _ in 0..10 {
            assert_eq!(j.pop(), Out::Conceal);
        }
        // The new path brings 12 and 13: play goes on from 11 (rebuilt from 12), not
        // from 2.
        j.push(12, 12 * TICKS_PER_FRAME, 240.0, frame(12));
        j.push(13, 13 * TICKS_PER_FRAME, 260.0, frame(13));
        assert_eq!(j.pop(), Out::Recover(frame(12)));
        assert_eq!(j.pop(), Out::Frame(frame(12)));
        assert_eq!(j.pop(), Out::Frame(frame(13)));
        assert_eq!(j.stats.underruns, 10);
    }

    #[test]
    fn frames_after_their_turn_are_dropped_as_late() {
        let mut j = JitterBuffer::new();
        for i in 0..3u16 {
            j.push(i, i as u32 * TICKS_PER_FRAME, i as f64 * 20.0, frame(i));
        }
        j.push(4, 4 * TICKS_PER_FRAME, 80.0, frame(4));
        for _ in 0..5 {
            j.pop();
        }
        // 3's turn went by (rebuilt from 4's FEC); 3 itself is late now.
        j.push(3, 3 * TICKS_PER_FRAME, 100.0, frame(3));
        assert_eq!((j.stats.late, j.stats.recovered), (1, 1));
    }

    #[test]
    fn sequence_numbers_wrap() {
        let (_, out) = play(&[65534, 65535, 0, 1, 2]);
        assert_eq!(
            out[1..],
            [
                Out::Frame(frame(65534)),
                Out::Frame(frame(65535)),
                Out::Frame(frame(0)),
                Out::Frame(frame(1)),
            ]
        );
    }

    #[test]
    fn jitter_is_measured() {
        let mut j = JitterBuffer::new();
        for i in 0..200u16 {
            let wobble = if i % 2 == 0 { 0.0 } else { 30.0 };
            j.push(
                i,
                i as u32 * TICKS_PER_FRAME,
                i as f64 * 20.0 + wobble,
                frame(i),
            );
            j.pop();
        }
        assert!(j.jitter_ms() > 20.0, "{}", j.jitter_ms());
        assert!(j.target() >= 3, "{}", j.target());
    }
}
