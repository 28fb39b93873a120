//! A token bucket shared by all connections: at most `rate` bytes a second, with a
//! burst of a quarter second.

use std::sync::Mutex;
use std::time::{Duration, Instant};

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

    #[tokio::test]
    async fn holds_to_the_rate() {
        let r = RateLimiter::new(1_000_000);
        let t = Instant::now();
        for _ in 0..100 {
            r.acquire(10_000).await;
        }
        // 1 MB at 1 MB/s, less the initial quarter-second burst.
        assert!(
            t.elapsed() >= Duration::from_millis(700),
            "{:?}",
            t.elapsed()
        );
    }
}
