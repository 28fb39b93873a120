//! Which relays let this node's circuits down, so its paths leave them out for a while.
//!
//! - A relay that could not be reached (the first hop's stream would not open, or the
//!   hop before it answered EXTENDED empty) is left out for [`UNREACHABLE_FOR`].
//! - A relay that did not answer in time while a circuit was built (the first hop, or
//!   the hop asked to extend, which answers even when it cannot reach the next) is
//!   suspected; when the circuit failed some other way (destroyed while extending, a
//!   handshake that did not check), who is at fault cannot be told, and every relay of
//!   the path is. A relay suspected [`SUSPICIONS`] times, and more than once per four
//!   circuits that worked through it, is left out for [`SUSPECT_FOR`]. A relay that
//!   drops traffic keeps failing whichever path it is in; its honest neighbours do not.
//!
//! Leaving relays out never leaves a node without paths: if what remains cannot make
//! one, paths are picked from every relay again.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::PeerId;

pub const UNREACHABLE_FOR: Duration = Duration::from_secs(10 * 60);
pub const SUSPECT_FOR: Duration = Duration::from_secs(30 * 60);
pub const SUSPICIONS: u32 = 2;

#[derive(Debug, Default)]
struct Record {
    worked: u32,
    suspected: u32,
    avoid_until: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct Health {
    relays: HashMap<PeerId, Record>,
}

impl Health {
    pub fn unreachable(&mut self, peer: PeerId, now: Instant) {
        self.relays.entry(peer).or_default().avoid_until = Some(now + UNREACHABLE_FOR);
    }

    pub fn suspect(&mut self, peers: &[PeerId], now: Instant) {
        for p in peers {
            let r = self.relays.entry(*p).or_default();
            r.suspected += 1;
            if r.suspected >= SUSPICIONS && r.suspected * 4 > r.worked {
                r.avoid_until = Some(now + SUSPECT_FOR);
                r.suspected = 0;
            }
        }
    }

    pub fn worked(&mut self, peers: &[PeerId]) {
        for p in peers {
            let r = self.relays.entry(*p).or_default();
            r.worked = r.worked.saturating_add(1);
        }
    }

    /// The relays to leave out of paths now.
    pub fn avoided(&self, now: Instant) -> HashSet<PeerId> {
        self.relays
            .iter()
            .filter(|(_, r)| r.avoid_until.is_some_and(|t| t > now))
            .map(|(p, _)| *p)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_relay_is_left_out_until_its_time_is_up() {
        let mut h = Health::default();
        let (a, now) = (PeerId::random(), Instant::now());
        h.unreachable(a, now);
        assert!(h.avoided(now).contains(&a));
        assert!(
            !h.avoided(now + UNREACHABLE_FOR + Duration::from_secs(1))
                .contains(&a)
        );
    }

    #[test]
    fn a_relay_that_keeps_failing_is_left_out_and_its_honest_neighbours_are_not() {
        let mut h = Health::default();
        let now = Instant::now();
        let dropper = PeerId::random();
        let honest: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        // Honest relays carry circuits that work; the dropper answers no EXTEND, and
        // once a whole path was suspected (a failure nobody could be named for).
        h.worked(&honest);
        h.worked(&honest);
        h.suspect(&[honest[0], honest[1], dropper], now);
        assert!(h.avoided(now).is_empty(), "one suspicion is not enough");
        h.suspect(&[dropper], now);
        let out = h.avoided(now);
        assert!(out.contains(&dropper));
        assert!(honest.iter().all(|p| !out.contains(p)), "{out:?}");
        assert!(
            !h.avoided(now + SUSPECT_FOR + Duration::from_secs(1))
                .contains(&dropper)
        );
    }
}
