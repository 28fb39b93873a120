//! Figures the benchmarks print.

use std::time::Duration;

/// The `p` quantile (0 to 1) of sorted durations, in microseconds.
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}
