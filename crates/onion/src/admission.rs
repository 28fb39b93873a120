//! The admission cost of a relay: a memory-hard proof of work per day.
//!
//! Without authorities anyone may announce relays, and a few machines could announce
//! thousands to be on most paths. So a relay's descriptor carries a ticket: a nonce for
//! which scrypt (N = 2^10, r = 8, p = 1: 1 MiB and about 3 ms an attempt) over
//!
//! ```text
//! "nodus-onion-admission-1" | peer id bytes | onion key | epoch (u32 BE) | nonce (u64 BE)
//! ```
//!
//! starts with `[onion] admission_bits` zero bits (2^bits attempts on average: 14 bits,
//! the default, is about a core-minute). The epoch is the UTC day; a ticket is good for
//! its day and the next, so a relay solves the next day's at leisure, and running a
//! relay costs that much every day, each relay of a crowd as much as the first.
//!
//! Checking is one attempt, and a peer can make up identities for free, so checks are
//! bounded: a ticket checked once is remembered for its peer, onion key and day, and
//! at most [`CHECKS_PER_SEC`] new ones are checked a second; past that a descriptor
//! waits for its next publish (it is not the publisher's fault).

use std::collections::HashMap;

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

/// A day, in milliseconds.
pub const EPOCH_MS: u64 = 86_400_000;
/// New tickets checked a second at most.
pub const CHECKS_PER_SEC: u32 = 200;
const DOMAIN: &[u8] = b"nodus-onion-admission-1";
const LOG_N: u8 = 10;
const R: u32 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub epoch: u32,
    pub nonce: u64,
}

/// The epoch (UTC day) of a time in ms since 1970.
pub fn epoch_of(ms: u64) -> u32 {
    (ms / EPOCH_MS).min(u32::MAX as u64) as u32
}

fn work(peer: &PeerId, onion_key: &[u8; 32], epoch: u32, nonce: u64) -> [u8; 32] {
    let mut input = Vec::with_capacity(DOMAIN.len() + 38 + 32 + 12);
    input.extend_from_slice(DOMAIN);
    input.extend_from_slice(&peer.to_bytes());
    input.extend_from_slice(onion_key);
    input.extend_from_slice(&epoch.to_be_bytes());
    input.extend_from_slice(&nonce.to_be_bytes());
    let params = scrypt::Params::new(LOG_N, R, 1).expect("fixed, valid scrypt parameters");
    let mut out = [0u8; 32];
    scrypt::scrypt(&input, DOMAIN, &params, &mut out).expect("32 bytes is a valid length");
    out
}

fn leading_zero_bits(h: &[u8; 32]) -> u32 {
    let mut n = 0;
    for b in h {
        if *b == 0 {
            n += 8;
        } else {
            return n + b.leading_zeros();
        }
    }
    n
}

/// Whether `ticket` pays `bits` for this relay (one scrypt run).
pub fn check(peer: &PeerId, onion_key: &[u8; 32], ticket: Ticket, bits: u8) -> bool {
    leading_zero_bits(&work(peer, onion_key, ticket.epoch, ticket.nonce)) >= u32::from(bits)
}

/// Finds a ticket for `epoch` (2^bits scrypt runs on average; run it off the async
/// threads). `from` is the first nonce tried.
pub fn solve(peer: &PeerId, onion_key: &[u8; 32], epoch: u32, bits: u8, from: u64) -> Ticket {
    let never = std::sync::atomic::AtomicBool::new(false);
    solve_until(peer, onion_key, epoch, bits, from, &never).expect("never stopped")
}

/// [`solve`], giving up (`None`) once `stop` is set: a relay turned off, or a node
/// stopping, does not wait for its solve to end.
pub fn solve_until(
    peer: &PeerId,
    onion_key: &[u8; 32],
    epoch: u32,
    bits: u8,
    from: u64,
    stop: &std::sync::atomic::AtomicBool,
) -> Option<Ticket> {
    let mut nonce = from;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let ticket = Ticket { epoch, nonce };
        if check(peer, onion_key, ticket, bits) {
            return Some(ticket);
        }
        nonce = nonce.wrapping_add(1);
    }
    None
}

/// What became of a descriptor's ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Admitted,
    /// Not checked now: too many new tickets this second. The descriptor comes again.
    Later,
    /// For another day than this one or the one before.
    Stale,
    /// Does not pay the cost.
    Short,
}

/// The tickets this node checked, and its budget of checks.
#[derive(Debug)]
pub struct Admission {
    bits: u8,
    /// New tickets checked a second at most ([`CHECKS_PER_SEC`]).
    limit: u32,
    checked: HashMap<(PeerId, u32), [u8; 32]>,
    second: u64,
    checks: u32,
}

impl Default for Admission {
    /// No cost (any nonce pays), tickets still bound to their day.
    fn default() -> Admission {
        Admission::new(0)
    }
}

impl Admission {
    pub fn new(bits: u8) -> Admission {
        Admission {
            bits,
            limit: CHECKS_PER_SEC,
            checked: HashMap::new(),
            second: 0,
            checks: 0,
        }
    }

    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// Judges `ticket` of relay `peer` with `onion_key` at `now_ms`.
    pub fn admit(
        &mut self,
        peer: &PeerId,
        onion_key: &[u8; 32],
        ticket: Ticket,
        now_ms: u64,
    ) -> Verdict {
        let today = epoch_of(now_ms);
        if ticket.epoch != today && ticket.epoch.checked_add(1) != Some(today) {
            return Verdict::Stale;
        }
        if self.checked.get(&(*peer, ticket.epoch)) == Some(onion_key) {
            return Verdict::Admitted;
        }
        let second = now_ms / 1000;
        if second != self.second {
            (self.second, self.checks) = (second, 0);
        }
        if self.checks >= self.limit {
            return Verdict::Later;
        }
        self.checks += 1;
        if !check(peer, onion_key, ticket, self.bits) {
            return Verdict::Short;
        }
        self.checked
            .retain(|(_, e), _| *e == today || e.checked_add(1) == Some(today));
        self.checked.insert((*peer, ticket.epoch), *onion_key);
        Verdict::Admitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = EPOCH_MS;

    fn peer(n: u8) -> PeerId {
        libp2p::identity::Keypair::ed25519_from_bytes([n; 32])
            .unwrap()
            .public()
            .to_peer_id()
    }

    #[test]
    fn a_solved_ticket_pays_for_its_relay_its_key_and_two_days_only() {
        let peer = peer(1);
        let key = [5u8; 32];
        let now = 20_000 * DAY + 1234;
        let t = solve(&peer, &key, epoch_of(now), 6, 0);
        assert!(check(&peer, &key, t, 6));
        let mut a = Admission::new(6);
        assert_eq!(a.admit(&peer, &key, t, now), Verdict::Admitted);
        assert_eq!(a.admit(&peer, &key, t, now + DAY), Verdict::Admitted);
        assert_eq!(a.admit(&peer, &key, t, now + 2 * DAY), Verdict::Stale);
        assert_eq!(a.admit(&peer, &key, t, now - DAY), Verdict::Stale);
        // Another relay, or another onion key, cannot use it (with 6 bits, a chance
        // of 1 in 64 that one happens to pay: the inputs are fixed, so is the count).
        let other = self::peer(2);
        let mut b = Admission::new(6);
        let mut wrong = 0;
        for k in 0..8u8 {
            let key2 = [k + 100; 32];
            wrong += usize::from(b.admit(&peer, &key2, t, now) == Verdict::Short);
            wrong += usize::from(b.admit(&other, &[k; 32], t, now) == Verdict::Short);
        }
        assert!(
            wrong >= 14,
            "tickets are bound to their relay: {wrong} of 16 refused"
        );
    }

    #[test]
    fn unsolved_tickets_fall_short_and_checks_are_bounded_per_second() {
        let key = [1u8; 32];
        let now = 20_000 * DAY;
        let mut a = Admission::new(24);
        a.limit = 20;
        let peers: Vec<PeerId> = (0..25).map(peer).collect();
        let t = Ticket {
            epoch: epoch_of(now),
            nonce: 0,
        };
        let verdicts: Vec<Verdict> = peers.iter().map(|p| a.admit(p, &key, t, now)).collect();
        let short = verdicts.iter().filter(|v| **v == Verdict::Short).count();
        let later = verdicts.iter().filter(|v| **v == Verdict::Later).count();
        // 24 bits by chance: once in sixteen million.
        assert_eq!((short, later), (20, 5));
        // The next second, checks resume.
        assert_eq!(a.admit(&peers[0], &key, t, now + 1000), Verdict::Short);
    }

    #[test]
    fn a_solve_that_is_stopped_gives_up() {
        let stop = std::sync::atomic::AtomicBool::new(true);
        assert_eq!(solve_until(&peer(4), &[2; 32], 1, 60, 0, &stop), None);
    }

    #[test]
    fn a_checked_ticket_is_not_checked_again() {
        let peer = peer(3);
        let key = [9u8; 32];
        let now = 20_000 * DAY;
        let t = solve(&peer, &key, epoch_of(now), 4, 0);
        let mut a = Admission::new(4);
        assert_eq!(a.admit(&peer, &key, t, now), Verdict::Admitted);
        a.checks = a.limit;
        a.second = now / 1000;
        assert_eq!(
            a.admit(&peer, &key, t, now),
            Verdict::Admitted,
            "remembered"
        );
    }
}
