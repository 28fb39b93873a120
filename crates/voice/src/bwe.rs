//! The receiver's estimate of what the path carries, sent back as REMB (RTCP's
//! "receiver estimated maximum bitrate", draft-alvestrand-rmcat-remb), delay-based as
//! WebRTC's congestion control is, simplified: a path that carries less than is sent
//! queues the excess before it drops any, so each frame takes longer than the one
//! before. The receiver keeps the lowest one-way delay offset of the last ten seconds
//! (arrival time minus RTP time: the two clocks need not agree) as the empty path's;
//! what a frame takes beyond it, smoothed, is the queue. When the queue is past
//! [`QUEUE_HIGH`] and still growing (the offsets of the last [`TREND_FRAMES`] frames
//! slope up: a call that moves to a longer path sees a step, not a slope) the estimate is cut to a little under what arrived in the last second
//! (the path's rate, as the bottleneck drains it); while the queue is short the
//! estimate grows by [`GROWTH`] a report, so a path that frees up is found again.
//!
//! Loss alone would find the same bottleneck only once its buffer overflowed, by then
//! holding as much delay as the buffer is deep (a second is common): the estimate
//! reacts to the queue first. Time is given by the caller (milliseconds).

use std::collections::VecDeque;

use crate::media::TICKS_PER_FRAME;

/// Queuing delay (ms) above which the path is taken to carry less than is sent.
pub const QUEUE_HIGH: f64 = 60.0;
/// Below this the estimate may grow.
const QUEUE_LOW: f64 = 20.0;
/// The slope of the offsets over this many frames says whether the queue is filling.
pub const TREND_FRAMES: usize = 20;
/// A slope (ms of delay per ms) above this is a queue filling: 50 ms a second, well
/// above what 30 ms of jitter makes over 20 frames.
const FILLING: f64 = 0.05;
/// A cut sets the estimate to this share of what arrived.
const CUT: f64 = 0.85;
/// Growth per report while the queue is short.
pub const GROWTH: f64 = 1.08;
/// The empty path's delay is the lowest of this long.
const BASE_WINDOW_MS: f64 = 10_000.0;
/// What arrived is counted over this long.
const RATE_WINDOW_MS: f64 = 1_000.0;
/// Weight of a new frame in the smoothed queue.
const SMOOTHING: f64 = 0.1;
/// The estimate never goes below this (bits a second, datagrams whole).
pub const FLOOR_BPS: f64 = 16_000.0;
/// Nor above this: no limit is sent beyond it.
const CEILING_BPS: f64 = 10_000_000.0;

#[derive(Debug, Clone, Default)]
pub struct Estimator {
    /// The first frame's RTP timestamp: later ones are counted from it.
    first_ts: Option<u32>,
    /// (when, lowest offset) per second, oldest first.
    minima: VecDeque<(f64, f64)>,
    queue_ms: f64,
    /// (when, offset) of the last frames.
    recent: VecDeque<(f64, f64)>,
    /// (when, bytes) of the last second's arrivals.
    arrivals: VecDeque<(f64, usize)>,
    estimate: Option<f64>,
}

impl Estimator {
    pub fn new() -> Estimator {
        Estimator::default()
    }

    /// A frame of `bytes` (the datagram as it came) stamped `timestamp` arrived at
    /// `now_ms`.
    pub fn arrived(&mut self, now_ms: f64, timestamp: u32, bytes: usize) {
        let first = *self.first_ts.get_or_insert(timestamp);
        // Signed: a frame a little older than the first (reordered) is fine.
        let sent_ms = timestamp.wrapping_sub(first) as i32 as f64 * 20.0 / TICKS_PER_FRAME as f64;
        let offset = now_ms - sent_ms;
        match self.minima.back_mut() {
            Some((at, low)) if now_ms - *at < 1_000.0 => *low = low.min(offset),
            _ => self.minima.push_back((now_ms, offset)),
        }
        while self
            .minima
            .front()
            .is_some_and(|(at, _)| now_ms - at > BASE_WINDOW_MS)
        {
            self.minima.pop_front();
        }
        let base = self
            .minima
            .iter()
            .map(|(_, low)| *low)
            .fold(f64::INFINITY, f64::min);
        self.queue_ms += ((offset - base) - self.queue_ms) * SMOOTHING;
        self.recent.push_back((now_ms, offset));
        if self.recent.len() > TREND_FRAMES {
            self.recent.pop_front();
        }
        self.arrivals.push_back((now_ms, bytes));
        while self
            .arrivals
            .front()
            .is_some_and(|(at, _)| now_ms - at > RATE_WINDOW_MS)
        {
            self.arrivals.pop_front();
        }
    }

    /// The least-squares slope of the recent offsets over their arrival times.
    fn slope(&self) -> f64 {
        let n = self.recent.len() as f64;
        if n < 2.0 {
            return 0.0;
        }
        let (mt, mo) = self
            .recent
            .iter()
            .fold((0.0, 0.0), |(t, o), (at, off)| (t + at / n, o + off / n));
        let (num, den) = self
            .recent
            .iter()
            .fold((0.0, 0.0), |(num, den), (at, off)| {
                (num + (at - mt) * (off - mo), den + (at - mt).powi(2))
            });
        if den == 0.0 { 0.0 } else { num / den }
    }

    /// The queue now, ms (smoothed).
    pub fn queue_ms(&self) -> f64 {
        self.queue_ms
    }

    /// What arrived over the last second (or since the first frame, early in a
    /// call), bits a second.
    pub fn received_bps(&self) -> f64 {
        let (Some((first, _)), Some((last, _))) = (self.arrivals.front(), self.arrivals.back())
        else {
            return 0.0;
        };
        // The span the frames arrived over, one frame's time counted for the last.
        let span = (last - first + 20.0).clamp(100.0, RATE_WINDOW_MS);
        self.arrivals
            .iter()
            .map(|(_, b)| *b as f64 * 8.0)
            .sum::<f64>()
            * 1000.0
            / span
    }

    /// Whether the queue is past [`QUEUE_HIGH`] and filling: the sender should hear
    /// now, not at the next regular report.
    pub fn overused(&self) -> bool {
        self.queue_ms > QUEUE_HIGH && self.slope() > FILLING
    }

    /// The estimate to report now (about once a second, and at once when
    /// [`Self::overused`]), bits a second; None while nothing has said the path is short.
    pub fn report(&mut self) -> Option<u32> {
        if self.overused() {
            let cut = (self.received_bps() * CUT).max(FLOOR_BPS);
            self.estimate = Some(self.estimate.map_or(cut, |e| e.min(cut)));
        } else if self.queue_ms < QUEUE_LOW
            && let Some(e) = self.estimate
        {
            let grown = e * GROWTH;
            self.estimate = (grown < CEILING_BPS).then_some(grown);
        }
        self.estimate.map(|e| e as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames of `bytes` every 20 ms for `secs` through a link of `link_bps` with an
    /// unbounded buffer, starting at `t0` with frame `k0`; reports once a second.
    fn run(
        e: &mut Estimator,
        t0: f64,
        k0: u32,
        secs: u32,
        bytes: usize,
        link_bps: f64,
    ) -> Vec<Option<u32>> {
        let mut free_at = t0;
        let mut reports = Vec::new();
        for i in 0..secs * 50 {
            let k = k0 + i;
            let sent = t0 + i as f64 * 20.0;
            let done = sent.max(free_at) + bytes as f64 * 8.0 * 1000.0 / link_bps;
            free_at = done;
            e.arrived(done, k * TICKS_PER_FRAME, bytes);
            if i % 50 == 49 {
                reports.push(e.report());
            }
        }
        reports
    }

    #[test]
    fn a_path_that_keeps_up_sets_no_limit() {
        let mut e = Estimator::new();
        // 150 bytes every 20 ms is 60 kbps, on a 1 Mbps link.
        let r = run(&mut e, 0.0, 0, 5, 150, 1e6);
        assert!(r.iter().all(Option::is_none), "{r:?}");
        assert!(e.queue_ms() < 5.0);
    }

    #[test]
    fn a_queue_that_grows_cuts_the_estimate_below_the_link_and_it_grows_back_when_freed() {
        let mut e = Estimator::new();
        // 60 kbps into a 40 kbps link: the queue grows by half the sent time.
        let r = run(&mut e, 0.0, 0, 3, 150, 40_000.0);
        let cut = r
            .iter()
            .flatten()
            .next()
            .copied()
            .expect("a limit once the queue grew");
        assert!(
            (30_000..=40_000).contains(&cut),
            "{cut} against a 40 kbps link"
        );
        // The sender keeps under it (80 bytes, 32 kbps): the queue drains, and the
        // estimate grows back a report at a time.
        let later = run(&mut e, 3_000.0 + 2_000.0, 150, 20, 80, 40_000.0);
        let last = later.last().copied().flatten();
        assert!(e.queue_ms() < QUEUE_LOW, "{}", e.queue_ms());
        assert!(last.is_some_and(|l| l > cut), "{later:?}");
    }

    #[test]
    fn jitter_alone_sets_no_limit() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut e = Estimator::new();
        for i in 0..30 * 50u32 {
            // Up to 30 ms more on each frame, and frames may pass each other.
            let at = i as f64 * 20.0 + 20.0 + rng.random::<f64>() * 30.0;
            e.arrived(at, i * TICKS_PER_FRAME, 150);
            if i % 50 == 49 {
                assert_eq!(e.report(), None, "at {i}, queue {}", e.queue_ms());
            }
        }
    }

    #[test]
    fn a_call_moved_to_a_longer_path_sets_no_limit() {
        let mut e = Estimator::new();
        run(&mut e, 0.0, 0, 2, 150, 1e6);
        // The call moves to a path 80 ms longer: a step, not a queue filling. Until
        // the old minimum ages out it looks like a standing queue, then it is the base.
        for i in 0..15 * 50u32 {
            let sent = 2_000.0 + i as f64 * 20.0;
            e.arrived(sent + 80.0, (100 + i) * TICKS_PER_FRAME, 150);
            if i % 50 == 49 {
                assert_eq!(e.report(), None, "at {i}");
            }
        }
        assert!(e.queue_ms() < 5.0, "{}", e.queue_ms());
    }
}
