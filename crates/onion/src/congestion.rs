//! Congestion control of a circuit's DATA, at each of its two ends (the client, and the
//! last hop or the onion service): how many DATA cells may be in flight toward the other
//! end, grown and shrunk by TCP Vegas's rule as Tor applies it to circuits (proposal 324).
//!
//! The receiving end sends a circuit SENDME (stream 0) for every [`SENDME_EVERY`] DATA
//! cells it receives, on whatever stream; the sender times the round trip from the cell
//! that completed each such group to its SENDME. From those times it estimates the queue
//! the circuit keeps along its path, `cwnd × (1 − min_rtt / rtt)`: the window doubles
//! each round trip while that queue is short (slow start), then grows by a group a round
//! trip while the queue is under [`ALPHA`] cells and shrinks while it is over [`BETA`].
//! So a circuit fills whatever room its path has, however long the round trip (a fixed
//! window caps it at window / RTT: Tor's 1,000 cells of 498 bytes, or this crate's 256
//! of 4,080 per stream before, 1 MiB / RTT), and one on a slow path keeps a few cells
//! queued instead of a whole window.
//!
//! Invariants: `MIN_WINDOW <= cwnd <= MAX_WINDOW`; the sender never has more than cwnd
//! DATA cells in flight; a SENDME for cells the sender has not sent is refused (the
//! circuit ends); the window grows only when it was full, so an idle or interactive
//! circuit's window says nothing it has not tested.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::lock;

/// DATA cells received per circuit SENDME (128 KiB of payload).
pub const SENDME_EVERY: u32 = 32;
/// The smallest window: two SENDMEs' worth, so one is always on its way back.
pub const MIN_WINDOW: u32 = 2 * SENDME_EVERY;
/// A new circuit's window (512 KiB).
pub const INITIAL_WINDOW: u32 = 4 * SENDME_EVERY;
/// The largest window (8 MiB): 80 MB/s at a 100 ms round trip. What a receiver may
/// have to hold for a circuit is bounded by it ([`crate::stream`]).
pub const MAX_WINDOW: u32 = 64 * SENDME_EVERY;
/// Queued cells under which the window grows.
pub const ALPHA: u32 = 2 * SENDME_EVERY;
/// Queued cells over which the window shrinks.
pub const BETA: u32 = 4 * SENDME_EVERY;
/// Queued cells at which slow start ends.
pub const GAMMA: u32 = 4 * SENDME_EVERY;
/// Queued cells over which the window drops at once to the path's capacity.
pub const DELTA: u32 = 8 * SENDME_EVERY;

/// The sender's state: the window, what is in flight, and the round trips seen.
#[derive(Debug, Clone)]
pub struct Vegas {
    cwnd: u32,
    in_flight: u32,
    sent: u64,
    /// When each group's last cell went, oldest first: one per SENDME still to come.
    stamps: VecDeque<Instant>,
    /// The round trip, smoothed over about a window's SENDMEs.
    rtt: Option<Duration>,
    /// The least smoothed round trip: the path with nothing queued.
    min_rtt: Option<Duration>,
    slow_start: bool,
    /// Cells acknowledged since the window last moved outside slow start.
    acked: u32,
    /// The window was full since it last moved: it may grow.
    full: bool,
    /// The window never moves (benchmarks compare with Tor's fixed windows).
    fixed: bool,
}

impl Default for Vegas {
    fn default() -> Self {
        Vegas {
            cwnd: INITIAL_WINDOW,
            in_flight: 0,
            sent: 0,
            stamps: VecDeque::new(),
            rtt: None,
            min_rtt: None,
            slow_start: true,
            acked: 0,
            full: false,
            fixed: false,
        }
    }
}

/// A SENDME arrived with nothing in flight to acknowledge.
#[derive(Debug, PartialEq, Eq)]
pub struct Unearned;

impl Vegas {
    /// A window of `cells` that never moves, as before congestion control: what
    /// `nodus bench onion` compares with.
    pub fn fixed(cells: u32) -> Vegas {
        Vegas {
            cwnd: cells.max(SENDME_EVERY),
            fixed: true,
            ..Vegas::default()
        }
    }

    pub fn window(&self) -> u32 {
        self.cwnd
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// The smoothed round trip and the least one, once a SENDME has come.
    pub fn rtts(&self) -> Option<(Duration, Duration)> {
        Some((self.rtt?, self.min_rtt?))
    }

    pub fn in_slow_start(&self) -> bool {
        self.slow_start
    }

    /// Whether one more cell fits in the window.
    pub fn has_room(&self) -> bool {
        self.in_flight < self.cwnd
    }

    /// One DATA cell sent at `now` (the caller checked [`Vegas::has_room`]).
    pub fn sent(&mut self, now: Instant) {
        self.in_flight += 1;
        self.sent += 1;
        if self.sent.is_multiple_of(u64::from(SENDME_EVERY)) {
            self.stamps.push_back(now);
        }
        if self.in_flight >= self.cwnd {
            self.full = true;
        }
    }

    /// A circuit SENDME at `now`: [`SENDME_EVERY`] cells arrived.
    pub fn sendme(&mut self, now: Instant) -> Result<(), Unearned> {
        let stamp = self.stamps.pop_front().ok_or(Unearned)?;
        self.in_flight -= SENDME_EVERY;
        let sample = now.saturating_duration_since(stamp);
        // Smoothed over about one window's SENDMEs (Tor's N = cwnd / sendme_inc).
        let n = (self.cwnd / SENDME_EVERY).max(2);
        let rtt = match self.rtt {
            None => sample,
            Some(old) => (old * (n - 1) + sample * 2) / (n + 1),
        };
        self.rtt = Some(rtt);
        let min = self.min_rtt.map_or(rtt, |m| m.min(rtt));
        self.min_rtt = Some(min);
        self.acked += SENDME_EVERY;

        if self.fixed {
            return Ok(());
        }
        let cwnd = u64::from(self.cwnd);
        // What the path holds with nothing queued, and what is queued beyond it.
        let bdp = if rtt.is_zero() {
            cwnd
        } else {
            (u128::from(cwnd) * min.as_nanos() / rtt.as_nanos()) as u64
        };
        let queued = cwnd.saturating_sub(bdp);
        let next = if self.slow_start {
            if queued > u64::from(GAMMA) {
                self.slow_start = false;
                self.acked = 0;
                bdp + u64::from(GAMMA)
            } else if self.full {
                cwnd + u64::from(SENDME_EVERY)
            } else {
                cwnd
            }
        } else if self.acked >= self.cwnd {
            // Once a round trip.
            self.acked = 0;
            let grow = std::mem::take(&mut self.full);
            if queued > u64::from(DELTA) {
                bdp + u64::from(DELTA - SENDME_EVERY)
            } else if queued > u64::from(BETA) {
                cwnd.saturating_sub(u64::from(SENDME_EVERY))
            } else if queued < u64::from(ALPHA) && grow {
                cwnd + u64::from(SENDME_EVERY)
            } else {
                cwnd
            }
        } else {
            cwnd
        };
        self.cwnd = next.clamp(u64::from(MIN_WINDOW), u64::from(MAX_WINDOW)) as u32;
        Ok(())
    }
}

/// What a circuit's window shows: for `nodus onion circuits`, tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WindowStats {
    /// Cells the circuit may have in flight now.
    pub window: u32,
    pub in_flight: u32,
    /// The largest the window has been.
    pub largest: u32,
    /// Smoothed round trip, microseconds (0 before the first SENDME).
    pub rtt_us: u64,
    pub min_rtt_us: u64,
}

/// One end's window, shared by the circuit's streams (which wait in [`Window::take`])
/// and its reader (which hands it SENDMEs).
pub struct Window {
    state: Mutex<(Vegas, u32)>,
    room: Notify,
    closed: AtomicBool,
    /// Where the largest window is also kept, across circuits (a relay's).
    largest: Option<std::sync::Arc<AtomicU32>>,
}

impl Default for Window {
    fn default() -> Self {
        Window::new(None)
    }
}

impl Window {
    /// A window that also raises `largest` to the most it reaches.
    pub fn new(largest: Option<std::sync::Arc<AtomicU32>>) -> Window {
        Window::with(Vegas::default(), largest)
    }

    /// A window run by `vegas` (a fixed one: [`Vegas::fixed`]).
    pub fn with(vegas: Vegas, largest: Option<std::sync::Arc<AtomicU32>>) -> Window {
        let window = vegas.window();
        Window {
            state: Mutex::new((vegas, window)),
            room: Notify::new(),
            closed: AtomicBool::new(false),
            largest,
        }
    }

    /// Waits for room for one DATA cell and counts it as sent. `false` once the circuit
    /// closed.
    pub async fn take(&self) -> bool {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if self.closed.load(Ordering::Relaxed) {
                return false;
            }
            {
                let mut s = lock(&self.state);
                if s.0.has_room() {
                    s.0.sent(Instant::now());
                    return true;
                }
            }
            room.await;
        }
    }

    /// A circuit SENDME: `false` if nothing it acknowledges was sent (the peer must go).
    pub fn sendme(&self) -> bool {
        let window = {
            let mut s = lock(&self.state);
            if s.0.sendme(Instant::now()).is_err() {
                return false;
            }
            s.1 = s.1.max(s.0.window());
            s.0.window()
        };
        if let Some(largest) = &self.largest {
            largest.fetch_max(window, Ordering::Relaxed);
        }
        self.room.notify_waiters();
        true
    }

    /// Wakes every stream waiting for room, for good.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.room.notify_waiters();
    }

    pub fn stats(&self) -> WindowStats {
        let s = lock(&self.state);
        let (rtt, min) = s.0.rtts().unwrap_or_default();
        WindowStats {
            window: s.0.window(),
            in_flight: s.0.in_flight(),
            largest: s.1,
            rtt_us: rtt.as_micros() as u64,
            min_rtt_us: min.as_micros() as u64,
        }
    }
}

/// The receiving end's count of DATA cells: every [`SENDME_EVERY`]th calls for a
/// circuit SENDME.
#[derive(Debug, Default)]
pub struct Received(u32);

impl Received {
    /// One DATA cell arrived; `true` when a SENDME is due.
    pub fn data(&mut self) -> bool {
        self.0 += 1;
        if self.0 == SENDME_EVERY {
            self.0 = 0;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A path of `base` round trip and one bottleneck of `rate` cells a second with an
    /// unbounded queue, fed by a sender that always has data: each group's SENDME
    /// comes back after the base round trip plus the time the bottleneck's queue took.
    /// Returns the window after each SENDME and the queue (cells) seen.
    fn run(base: Duration, rate: f64, sendmes: usize) -> (Vec<u32>, Vec<f64>) {
        let start = Instant::now();
        let mut v = Vegas::default();
        let mut now = start;
        // When the bottleneck is next free, and the SENDMEs on their way (arrival times).
        let mut free = start;
        let mut acks: VecDeque<Instant> = VecDeque::new();
        let per_cell = Duration::from_secs_f64(1.0 / rate);
        let (mut windows, mut queues) = (Vec::new(), Vec::new());
        let mut in_group = 0;
        while windows.len() < sendmes {
            while v.has_room() {
                v.sent(now);
                // Leaves the bottleneck after those queued before it.
                let out = free.max(now + base / 2) + per_cell;
                queues.push((out - (now + base / 2)).as_secs_f64() * rate);
                free = out;
                in_group += 1;
                if in_group == SENDME_EVERY {
                    in_group = 0;
                    acks.push_back(out + base / 2);
                }
            }
            now = acks.pop_front().expect("a window holds a SENDME's worth");
            v.sendme(now).unwrap();
            windows.push(v.window());
        }
        (windows, queues)
    }

    /// The largest of the last quarter.
    fn late<T: Copy + PartialOrd>(xs: &[T]) -> T {
        let late = &xs[xs.len() * 3 / 4..];
        late.iter()
            .copied()
            .fold(late[0], |a, b| if b > a { b } else { a })
    }

    #[test]
    fn a_long_fast_path_is_filled_past_any_fixed_window() {
        // 120 ms and 50,000 cells a second (204 MB/s): 6,000 cells of room, more than
        // the largest window.
        let (windows, queues) = run(Duration::from_millis(120), 50_000.0, 2_000);
        assert!(
            windows[20] > 256,
            "past the old fixed window within 20 SENDMEs"
        );
        assert_eq!(*windows.last().unwrap(), MAX_WINDOW);
        // With room to spare, only the cells a SENDME lets go at once queue.
        let queued = late(&queues);
        assert!(queued <= f64::from(SENDME_EVERY), "{queued} cells queued");
    }

    #[test]
    fn the_window_settles_at_the_paths_capacity_plus_a_short_queue() {
        // 40 ms and 20,000 cells a second: 800 cells of room.
        let (windows, queues) = run(Duration::from_millis(40), 20_000.0, 3_000);
        for w in &windows[windows.len() * 3 / 4..] {
            assert!(
                (800 + ALPHA / 2..=800 + DELTA).contains(w),
                "window {w}, room 800"
            );
        }
        let queued = late(&queues);
        assert!(queued <= f64::from(DELTA), "{queued} cells queued");
    }

    /// Vegas keeps its estimate of the queue under BETA; the estimate misses the
    /// group's own cells, which every SENDME's round trip includes on a path this slow
    /// (they leave the bottleneck one after another before the SENDME is sent).
    #[test]
    fn a_slow_path_keeps_a_short_queue_where_a_fixed_window_would_fill_it() {
        for (base, rate) in [(1, 250.0), (1, 20_000.0)] {
            // 1 MB/s and 82 MB/s with a millisecond's room: a fixed window of 256 cells
            // keeps about 256 queued.
            let (windows, queues) = run(Duration::from_millis(base), rate, 3_000);
            let queued = late(&queues);
            assert!(
                queued <= f64::from(SENDME_EVERY + BETA),
                "{queued} cells queued at {rate} cells/s"
            );
            let room = base as f64 / 1e3 * rate;
            assert!(f64::from(late(&windows)) <= room + f64::from(SENDME_EVERY + BETA));
        }
    }

    #[test]
    fn an_unearned_sendme_is_refused() {
        let mut v = Vegas::default();
        let now = Instant::now();
        assert_eq!(v.sendme(now), Err(Unearned));
        for _ in 0..SENDME_EVERY - 1 {
            v.sent(now);
        }
        assert_eq!(v.sendme(now), Err(Unearned), "a group not yet complete");
        v.sent(now);
        assert_eq!(v.sendme(now), Ok(()));
        assert_eq!(v.in_flight(), 0);
        assert_eq!(v.sendme(now), Err(Unearned));
    }

    #[test]
    fn a_window_that_was_never_full_does_not_grow() {
        let mut v = Vegas::default();
        let mut now = Instant::now();
        for _ in 0..100 {
            for _ in 0..SENDME_EVERY {
                v.sent(now);
            }
            now += Duration::from_millis(10);
            v.sendme(now).unwrap();
        }
        assert_eq!(v.window(), INITIAL_WINDOW);
    }

    #[test]
    fn received_calls_for_a_sendme_every_group() {
        let mut r = Received::default();
        let due: Vec<bool> = (0..3 * SENDME_EVERY).map(|_| r.data()).collect();
        assert_eq!(due.iter().filter(|d| **d).count(), 3);
        assert!(due[SENDME_EVERY as usize - 1]);
    }

    proptest::proptest! {
        #[test]
        fn the_window_stays_in_bounds_whatever_the_round_trips(
            rtts in proptest::collection::vec(0u64..2_000_000, 1..400),
        ) {
            let mut v = Vegas::default();
            let mut now = Instant::now();
            for us in rtts {
                while v.has_room() {
                    v.sent(now);
                }
                now += Duration::from_micros(us);
                if v.sendme(now).is_ok() {
                    proptest::prop_assert!((MIN_WINDOW..=MAX_WINDOW).contains(&v.window()));
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn streams_waiting_for_room_go_on_when_a_sendme_comes() {
        let w = std::sync::Arc::new(Window::default());
        for _ in 0..INITIAL_WINDOW {
            assert!(w.take().await);
        }
        let waiting = tokio::spawn({
            let w = w.clone();
            async move { w.take().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the window is full");
        assert!(w.sendme());
        assert!(waiting.await.unwrap());
        let closed = tokio::spawn({
            let w = w.clone();
            async move { while w.take().await {} }
        });
        w.close();
        closed.await.unwrap();
    }
}
