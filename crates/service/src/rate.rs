//! A token bucket shared by all the connections of a service: at most `rate` bytes a
//! second, with a burst of a quarter second (torrent's upload and download limits, an
//! onion relay's bandwidth). Time is tokio's, so tests run it on a paused clock.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

pub struct RateLimiter {
    /// Bytes per second; 0 means unlimited.
    rate: u64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    pub fn new(rate: u64) -> RateLimiter {
        RateLimiter {
            rate,
            state: Mutex::new((rate as f64 / 4.0, Instant::now())),
        }
    }

    /// Takes `n` bytes' worth, waiting as long as the rate requires.
    pub async fn acquire(&self, n: usize) {
        if self.rate == 0 {
            return;
        }
        let wait = {
            let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let burst = self.rate as f64 / 4.0;
            g.0 = (g.0 + now.duration_since(g.1).as_secs_f64() * self.rate as f64).min(burst);
            g.1 = now;
            g.0 -= n as f64;
            if g.0 >= 0.0 {
                return;
            }
            Duration::from_secs_f64(-g.0 / self.rate as f64)
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On tokio's paused clock: the time the bucket makes callers wait is exact, and
    /// nothing depends on how busy the machine is.
    #[tokio::test(start_paused = true)]
    async fn holds_to_the_rate() {
        let r = RateLimiter::new(1_000_000);
        let t = Instant::now();
        for _ in 0..100 {
            r.acquire(10_000).await;
        }
        // 1 MB at 1 MB/s, less the initial quarter-second burst.
        let waited = t.elapsed();
        assert!(
            waited >= Duration::from_millis(750) && waited < Duration::from_millis(760),
            "{waited:?}"
        );
        let unlimited = RateLimiter::new(0);
        let t = Instant::now();
        unlimited.acquire(usize::MAX).await;
        assert_eq!(t.elapsed(), Duration::ZERO);
    }
}
