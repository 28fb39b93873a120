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
//! - A stream whose BEGIN got no answer, CONNECTED or END, within
//!   [`crate::client::CONNECT_TIMEOUT`] (an honest last hop always answers sooner)
//!   suspects the last hop, and the request is tried again on another circuit; a
//!   stream that was answered counts as worked for every relay of its circuit. A
//!   middle relay that passes the build and then drops data gets the last hops
//!   suspected instead, each once per circuit through it: spread over many exits, it
//!   is rarely enough to leave one out (seeing through it needs per-hop probes, not
//!   built).
//!
//! Leaving relays out never leaves a node without paths: if what remains cannot make
//! one, the relays whose time out ends soonest are let back in first, one at a time,
//! until a path can be made (an unreachable relay, out for less long, before one that
//! failed circuits).
//!
//! A build is judged when it ends, however long the request waited for it (see
//! [`crate::build_timeout`]): a relay is suspected for not answering only once the
//! fixed wait is over. Until then, a relay whose answer is overdue (a build was given
//! up on while waiting for it) is [`Health::mark_late`] and left out too; it is let back in
//! first when nothing else makes a path, and for good once the build it owes ends.

use std::collections::HashMap;
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
    /// Builds given up on while waiting for the relay's answer, not ended yet.
    late: HashMap<PeerId, u32>,
}

impl Health {
    /// A build was given up on while waiting for `peer`'s answer.
    pub fn mark_late(&mut self, peer: PeerId) {
        *self.late.entry(peer).or_default() += 1;
    }

    /// A build [`Health::mark_late`] for `peer` ended (and is judged as any other).
    pub fn ended_late(&mut self, peer: PeerId) {
        if let Some(n) = self.late.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                self.late.remove(&peer);
            }
        }
    }

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

    /// The relays to leave out of paths now, in the order they are let back in: late
    /// ones, then [`Health::left_out`].
    pub fn avoided(&self, now: Instant) -> Vec<PeerId> {
        let late = self.late();
        let out: Vec<PeerId> = self.left_out(now);
        let out = out.into_iter().filter(|p| !late.contains(p));
        late.iter().copied().chain(out).collect()
    }

    /// Relays whose answer to a build given up on is still owed.
    pub fn late(&self) -> Vec<PeerId> {
        let mut late: Vec<PeerId> = self.late.keys().copied().collect();
        late.sort();
        late
    }

    /// Relays left out for a time (unreachable, or failing circuits), the one whose
    /// time ends soonest first.
    pub fn left_out(&self, now: Instant) -> Vec<PeerId> {
        let mut out: Vec<(Instant, PeerId)> = self
            .relays
            .iter()
            .filter_map(|(p, r)| r.avoid_until.filter(|t| *t > now).map(|t| (t, *p)))
            .collect();
        out.sort();
        out.into_iter().map(|(_, p)| p).collect()
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

    #[test]
    fn the_relay_left_out_for_less_long_comes_first() {
        let mut h = Health::default();
        let now = Instant::now();
        let (dropper, gone) = (PeerId::random(), PeerId::random());
        h.suspect(&[dropper], now);
        h.suspect(&[dropper], now);
        h.unreachable(gone, now + Duration::from_secs(1));
        assert_eq!(h.avoided(now + Duration::from_secs(2)), vec![gone, dropper]);
    }

    #[test]
    fn a_late_relay_is_left_out_until_the_builds_it_owes_end() {
        let mut h = Health::default();
        let (now, slow, gone) = (Instant::now(), PeerId::random(), PeerId::random());
        h.unreachable(gone, now);
        h.mark_late(slow);
        h.mark_late(slow);
        assert_eq!(
            h.avoided(now),
            vec![slow, gone],
            "late ones are let back in first"
        );
        h.ended_late(slow);
        assert_eq!(h.avoided(now), vec![slow, gone]);
        h.ended_late(slow);
        assert_eq!(h.avoided(now), vec![gone]);
    }
}
