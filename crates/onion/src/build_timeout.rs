//! Circuit build timeouts learned from this node's own builds, as Tor learns its
//! CircuitBuildTimeout (more simply): the time each circuit took to build is kept for
//! the last [`KEPT`] circuits; once [`LEARNED_AFTER`] are known, a build is waited for
//! [`FACTOR`] times their 95th percentile, at least [`FLOOR`] and at most as long as
//! it can take on its own. Before that, that longest time holds.
//!
//! The learned time is only how long a request waits before it tries another path. The
//! build it gave up on goes on, and is judged when it ends (see [`crate::paths`]): a
//! relay that swallows cells then costs a request a fraction of a second on a fast
//! network, while an honest relay that is slow to reach its next hop is not blamed for
//! it, and its late success is learned from, so the timeout follows a slower network.

use std::collections::VecDeque;
use std::time::Duration;

pub const KEPT: usize = 100;
pub const LEARNED_AFTER: usize = 10;
pub const FACTOR: u32 = 4;
/// Never less than this, however fast the network: a loaded machine has pauses.
pub const FLOOR: Duration = Duration::from_millis(1500);

#[derive(Debug, Default)]
pub struct BuildTimes {
    recent: VecDeque<Duration>,
}

impl BuildTimes {
    pub fn record(&mut self, took: Duration) {
        if self.recent.len() == KEPT {
            self.recent.pop_front();
        }
        self.recent.push_back(took);
    }

    /// How long to wait for a build; `fixed` until enough is known.
    pub fn wait(&self, fixed: Duration) -> Duration {
        self.learned(fixed).unwrap_or(fixed)
    }

    /// The learned wait, once enough is known.
    pub fn learned(&self, fixed: Duration) -> Option<Duration> {
        if self.recent.len() < LEARNED_AFTER {
            return None;
        }
        let mut sorted: Vec<Duration> = self.recent.iter().copied().collect();
        sorted.sort();
        let p95 = sorted[(sorted.len() * 95 / 100).min(sorted.len() - 1)];
        Some((p95 * FACTOR).clamp(FLOOR, fixed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_is_fixed_until_learned_then_follows_the_network_within_bounds() {
        let fixed = Duration::from_secs(20);
        let mut t = BuildTimes::default();
        let record = |t: &mut BuildTimes, d: Duration, n: usize| (0..n).for_each(|_| t.record(d));
        record(&mut t, Duration::from_millis(2), 9);
        assert_eq!(t.wait(fixed), fixed, "nine are not enough");
        record(&mut t, Duration::from_millis(2), 1);
        assert_eq!(t.wait(fixed), FLOOR, "fast hops: the floor");
        record(&mut t, Duration::from_secs(1), KEPT);
        assert_eq!(
            t.wait(fixed),
            Duration::from_secs(4),
            "a slower network: four times"
        );
        record(&mut t, Duration::from_secs(30), KEPT);
        assert_eq!(t.wait(fixed), fixed, "never past the fixed wait");
    }
}
