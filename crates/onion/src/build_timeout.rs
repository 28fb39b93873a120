//! Circuit build timeouts learned from this node's own builds, as Tor learns its
//! CircuitBuildTimeout (more simply): the time each hop took to answer (CREATED, or
//! EXTENDED through the hops before it) is kept for the last [`KEPT`] hops; once
//! [`LEARNED_AFTER`] are known, a hop gets [`FACTOR`] times their 95th percentile, at
//! least [`FLOOR`] and at most the fixed wait. Before that, and for a relay that is slow
//! for a moment, the fixed wait holds. A relay that swallows cells then costs a fraction
//! of a second on a fast network, not the fixed wait.

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
    pub fn record(&mut self, took: &[Duration]) {
        for t in took {
            if self.recent.len() == KEPT {
                self.recent.pop_front();
            }
            self.recent.push_back(*t);
        }
    }

    /// How long a hop gets to answer; `fixed` until enough is known.
    pub fn wait(&self, fixed: Duration) -> Duration {
        if self.recent.len() < LEARNED_AFTER {
            return fixed;
        }
        let mut sorted: Vec<Duration> = self.recent.iter().copied().collect();
        sorted.sort();
        let p95 = sorted[(sorted.len() * 95 / 100).min(sorted.len() - 1)];
        (p95 * FACTOR).clamp(FLOOR, fixed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_is_fixed_until_learned_then_follows_the_network_within_bounds() {
        let fixed = Duration::from_secs(20);
        let mut t = BuildTimes::default();
        t.record(&[Duration::from_millis(2); 9]);
        assert_eq!(t.wait(fixed), fixed, "nine are not enough");
        t.record(&[Duration::from_millis(2)]);
        assert_eq!(t.wait(fixed), FLOOR, "fast hops: the floor");
        t.record(&[Duration::from_secs(1); KEPT]);
        assert_eq!(
            t.wait(fixed),
            Duration::from_secs(4),
            "a slower network: four times"
        );
        t.record(&[Duration::from_secs(30); KEPT]);
        assert_eq!(t.wait(fixed), fixed, "never past the fixed wait");
    }
}
