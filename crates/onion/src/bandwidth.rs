//! Relays' bandwidth as this node measured it, never as a relay claims it, and the
//! weights paths are chosen by.
//!
//! A node probes one relay at a time: a one-hop circuit to it, and BANDWIDTH_TEST
//! asking for [`PROBE_CELLS`] cells, which the relay sends back as fast as its own
//! limit lets it ([`crate::relay`]). The rate between the first and the last cell is
//! the measure, smoothed with the ones before. Relays never measured are probed first;
//! then each again once its measure is [`REPROBE_AFTER`] old.
//!
//! Paths pick each relay with a probability proportional to its measure, so a relay
//! that claims much and carries little gets little, and a crowd of slow Sybils gets
//! what they carry. A relay not yet measured weighs as the slowest quarter of those
//! measured: enough to be used (and measured in use) without a free ride on a claim.
//! With nothing measured at all, every relay weighs the same.
//!
//! What a relay does with the probe is what it does with traffic, so it cannot answer
//! probes faster than it carries circuits without carrying circuits as fast; a relay
//! could still serve probes and starve others' traffic, which only measurement of
//! real circuits (not built yet) would see.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// Cells a probe asks for (1 MiB of payload room).
pub const PROBE_CELLS: u32 = 256;
/// A measure this old is taken again.
pub const REPROBE_AFTER: Duration = Duration::from_secs(6 * 3600);
/// How much a new measure counts against the ones before.
const SMOOTHING: f64 = 0.5;

#[derive(Debug, Clone, Copy)]
struct Estimate {
    bytes_per_sec: f64,
    at: Instant,
}

#[derive(Debug, Default)]
pub struct Measured {
    relays: HashMap<PeerId, Estimate>,
}

impl Measured {
    /// A probe of `peer` measured `bytes_per_sec`.
    pub fn record(&mut self, peer: PeerId, bytes_per_sec: f64, now: Instant) {
        if !bytes_per_sec.is_finite() || bytes_per_sec <= 0.0 {
            return;
        }
        let e = self.relays.entry(peer).or_insert(Estimate {
            bytes_per_sec,
            at: now,
        });
        e.bytes_per_sec = SMOOTHING * bytes_per_sec + (1.0 - SMOOTHING) * e.bytes_per_sec;
        e.at = now;
    }

    /// `peer`'s measure in bytes a second, if it has one.
    pub fn get(&self, peer: &PeerId) -> Option<u64> {
        self.relays.get(peer).map(|e| e.bytes_per_sec as u64)
    }

    /// Every measure, fastest first.
    pub fn all(&self) -> Vec<(PeerId, u64)> {
        let mut v: Vec<(PeerId, u64)> = self
            .relays
            .iter()
            .map(|(p, e)| (*p, e.bytes_per_sec as u64))
            .collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.1));
        v
    }

    /// What `peer` weighs in path choice.
    pub fn weight(&self, peer: &PeerId) -> f64 {
        if let Some(e) = self.relays.get(peer) {
            return e.bytes_per_sec;
        }
        let mut known: Vec<f64> = self.relays.values().map(|e| e.bytes_per_sec).collect();
        if known.is_empty() {
            return 1.0;
        }
        known.sort_by(f64::total_cmp);
        known[known.len() / 4]
    }

    /// The relay of `listed` to probe next: one never measured (at random, so that
    /// nodes hearing of relays together do not all probe the same one at once, each
    /// measuring a share), else the one measured longest ago if that is
    /// [`REPROBE_AFTER`] old.
    pub fn next_to_probe(
        &self,
        listed: &[PeerId],
        now: Instant,
        rng: &mut impl rand::Rng,
    ) -> Option<PeerId> {
        use rand::seq::IndexedRandom;
        let new: Vec<&PeerId> = listed
            .iter()
            .filter(|p| !self.relays.contains_key(p))
            .collect();
        if let Some(p) = new.choose(rng) {
            return Some(**p);
        }
        listed
            .iter()
            .filter_map(|p| self.relays.get(p).map(|e| (p, e.at)))
            .filter(|(_, at)| now.duration_since(*at) >= REPROBE_AFTER)
            .min_by_key(|(_, at)| *at)
            .map(|(p, _)| *p)
    }

    /// Forgets relays no longer listed.
    pub fn keep_only(&mut self, listed: &[PeerId]) {
        self.relays.retain(|p, _| listed.contains(p));
    }
}

/// The rate of `cells` whole cells of payload that took `took` from the first to the
/// last (the first one's own time is not in it).
pub fn rate(cells: u32, took: Duration) -> f64 {
    let bytes = cells.saturating_sub(1) as f64 * crate::cell::RELAY_DATA as f64;
    bytes / took.as_secs_f64().max(1e-6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmeasured_relays_weigh_as_the_slow_quarter_and_are_probed_first() {
        let mut m = Measured::default();
        let now = Instant::now();
        let peers: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
        assert_eq!(m.weight(&peers[0]), 1.0, "nothing measured: all alike");
        for (i, p) in peers[..4].iter().enumerate() {
            m.record(*p, (i as f64 + 1.0) * 1000.0, now);
        }
        assert_eq!(m.weight(&peers[3]), 4000.0);
        assert_eq!(m.weight(&peers[4]), 2000.0, "the quartile of 1000..4000");
        assert_eq!(
            m.next_to_probe(&peers, now, &mut rand::rng()),
            Some(peers[4])
        );
        m.record(peers[4], 10.0, now);
        assert_eq!(
            m.next_to_probe(&peers, now, &mut rand::rng()),
            None,
            "all fresh"
        );
        let later = now + REPROBE_AFTER;
        assert!(m.next_to_probe(&peers, later, &mut rand::rng()).is_some());
        m.record(peers[0], 3000.0, now);
        assert_eq!(m.get(&peers[0]), Some(2000), "smoothed with the one before");
        m.record(peers[0], f64::NAN, now);
        m.record(peers[0], 0.0, now);
        assert_eq!(m.get(&peers[0]), Some(2000), "no measure is no change");
        m.keep_only(&peers[..2]);
        assert_eq!(m.all().len(), 2);
    }

    #[test]
    fn the_rate_counts_from_the_first_cell_to_the_last() {
        let r = rate(257, Duration::from_secs(1));
        assert_eq!(r, 256.0 * crate::cell::RELAY_DATA as f64);
        assert!(rate(1, Duration::ZERO).abs() < 1e-9);
    }
}
