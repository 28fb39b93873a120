//! The relays a node knows, from their signed descriptors, and the paths it picks
//! through them.
//!
//! Every node holds the whole list (so choosing a path asks nobody anything), keeps a
//! descriptor for [`LIFETIME_MS`] after it was published, takes a newer one from the
//! same relay in place of the older, and holds at most [`MAX_RELAYS`].
//!
//! A path's relays are distinct and no two share a /16 (IPv4) or a /32 (IPv6) among the
//! addresses their descriptors give, so relays run from one network appear at most once
//! in any path. Of relays giving the same IP address only two (the two lowest peer ids)
//! are ever used. A relay with no IP address is not used.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use libp2p::PeerId;
use libp2p::multiaddr::Protocol;
use rand::Rng;
use rand::seq::IndexedRandom;

use crate::OnionError;
use crate::admission::{Admission, Verdict};
use crate::bandwidth::Measured;
use crate::client::Hop;
use crate::descriptor::{self, Verified};

/// How long a descriptor counts after it was published; relays publish again well before.
pub const LIFETIME_MS: u64 = 3 * 3600 * 1000;
/// A descriptor published further ahead than this is refused (clock skew allowed).
pub const FUTURE_MS: u64 = 10 * 60 * 1000;
pub const MAX_RELAYS: usize = 20_000;
/// Relays per IP address that paths may use.
pub const PER_IP: usize = 2;

/// A relay as the directory holds it.
#[derive(Debug, Clone)]
pub struct Relay {
    pub hop: Hop,
    pub exit: bool,
    pub ips: Vec<IpAddr>,
    /// Where the relay said it listens: dialled when the overlay does not know it yet.
    pub addrs: Vec<libp2p::Multiaddr>,
    pub published_ms: u64,
    /// The signed descriptor, to hand on unchanged.
    pub signed: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct Directory {
    relays: HashMap<PeerId, Relay>,
    /// Each relay's daily ticket is checked before it is listed.
    admission: Admission,
}

/// The network a path may use once: the first `v4_bits` of IPv4 (16 by default), the
/// first 32 bits of IPv6.
fn family(ip: &IpAddr, v4_bits: u8) -> [u8; 5] {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(*v4)
                & (!0u32)
                    .checked_shl(32 - u32::from(v4_bits.min(32)))
                    .unwrap_or(0);
            let o = bits.to_be_bytes();
            [4, o[0], o[1], o[2], o[3]]
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            [6, o[0], o[1], o[2], o[3]]
        }
    }
}

fn ips_of(v: &Verified) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = v
        .addrs
        .iter()
        .filter_map(|a| {
            a.iter().find_map(|p| match p {
                Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
                Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
                _ => None,
            })
        })
        .collect();
    ips.retain(|ip| !ip.is_unspecified());
    ips.sort();
    ips.dedup();
    ips
}

impl Directory {
    /// An empty directory that lists only relays whose tickets pay `bits`
    /// ([`crate::admission`]).
    pub fn with_cost(bits: u8) -> Directory {
        Directory {
            relays: HashMap::new(),
            admission: Admission::new(bits),
        }
    }

    /// The admission cost relays must pay, in bits.
    pub fn cost(&self) -> u8 {
        self.admission.bits()
    }

    /// Takes a signed descriptor from anyone. `Ok(true)` if it is new or newer than what
    /// was held (worth passing on), `Ok(false)` if not; an error for a bad one.
    pub fn insert(&mut self, signed: &[u8], now_ms: u64) -> Result<bool, OnionError> {
        let v = descriptor::verify(signed)?;
        let published = v.descriptor.published_ms;
        if published > now_ms + FUTURE_MS {
            return Err(OnionError::Malformed(
                "descriptor: published in the future".into(),
            ));
        }
        if published + LIFETIME_MS < now_ms {
            return Ok(false);
        }
        if let Some(held) = self.relays.get(&v.peer)
            && held.published_ms >= published
        {
            return Ok(false);
        }
        if !self.relays.contains_key(&v.peer) && self.relays.len() >= MAX_RELAYS {
            return Ok(false);
        }
        let d = &v.descriptor;
        match self
            .admission
            .admit(&v.peer, &d.onion_key, d.ticket, now_ms)
        {
            Verdict::Admitted => {}
            Verdict::Later => return Ok(false),
            Verdict::Stale => {
                return Err(OnionError::Malformed(
                    "descriptor: admission ticket of another day".into(),
                ));
            }
            Verdict::Short => {
                return Err(OnionError::Malformed(
                    "descriptor: admission ticket does not pay the cost".into(),
                ));
            }
        }
        let relay = Relay {
            hop: Hop {
                peer: v.peer,
                onion_key: v.descriptor.onion_key,
            },
            exit: v.descriptor.exit,
            ips: ips_of(&v),
            addrs: v.addrs.clone(),
            published_ms: published,
            signed: v.signed,
        };
        self.relays.insert(v.peer, relay);
        Ok(true)
    }

    /// Forgets descriptors past their lifetime.
    pub fn expire(&mut self, now_ms: u64) {
        self.relays
            .retain(|_, r| r.published_ms + LIFETIME_MS >= now_ms);
    }

    /// Where `peer` said it listens, if it is a listed relay.
    pub fn addrs_of(&self, peer: &PeerId) -> Vec<libp2p::Multiaddr> {
        self.relays
            .get(peer)
            .map(|r| r.addrs.clone())
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.relays.len()
    }

    pub fn is_empty(&self) -> bool {
        self.relays.is_empty()
    }

    pub fn relays(&self) -> impl Iterator<Item = &Relay> {
        self.relays.values()
    }

    /// The relays paths may use: with an IP address, not `me`, at most [`PER_IP`] per
    /// address.
    fn usable(&self, me: &PeerId, avoid: &HashSet<PeerId>) -> Vec<&Relay> {
        let mut by_ip: HashMap<IpAddr, Vec<&Relay>> = HashMap::new();
        for r in self.relays.values().filter(|r| r.hop.peer != *me) {
            for ip in &r.ips {
                by_ip.entry(*ip).or_default().push(r);
            }
        }
        let mut barred: HashSet<PeerId> = HashSet::new();
        for rs in by_ip.values_mut() {
            rs.sort_by_key(|r| r.hop.peer.to_bytes());
            barred.extend(rs.iter().skip(PER_IP).map(|r| r.hop.peer));
        }
        let mut out: Vec<&Relay> = self
            .relays
            .values()
            .filter(|r| {
                r.hop.peer != *me
                    && !r.ips.is_empty()
                    && !barred.contains(&r.hop.peer)
                    && !avoid.contains(&r.hop.peer)
            })
            .collect();
        out.sort_by_key(|r| r.hop.peer.to_bytes());
        out
    }

    /// A path of `len` relays (guard first), ending as `end` asks, no two of them in one
    /// network of `v4_bits` (16 on the Internet; a loopback test network, all in
    /// 127.0/16, needs 24); without the relays in `avoid`, or with some if there is no
    /// path otherwise: then those first in `avoid` are let back in first, one at a time.
    /// The path enters by the first of `guards` that fits it, if one does (see
    /// [`crate::guards`]).
    pub fn pick_path(
        &self,
        me: &PeerId,
        rules: &PathRules<'_>,
        end: End<'_>,
        avoid: &[PeerId],
        rng: &mut impl Rng,
    ) -> Result<Vec<Hop>, OnionError> {
        let mut picked = Err(OnionError::NoPath("no relay known yet"));
        for let_in in 0..=avoid.len() {
            let left_out: HashSet<PeerId> = avoid[let_in..].iter().copied().collect();
            picked = self.pick(me, rules, end, &left_out, rng);
            if picked.is_ok() {
                break;
            }
        }
        picked
    }

    fn pick(
        &self,
        me: &PeerId,
        rules: &PathRules<'_>,
        end: End<'_>,
        avoid: &HashSet<PeerId>,
        rng: &mut impl Rng,
    ) -> Result<Vec<Hop>, OnionError> {
        let (len, v4_bits) = (rules.len, rules.v4_bits);
        let mut usable = self.usable(me, avoid);
        if let End::Beside(peer) = end {
            usable.retain(|r| r.hop.peer != *peer);
        }
        let mut path: Vec<&Relay> = Vec::with_capacity(len);
        let mut used: HashSet<[u8; 5]> = HashSet::new();
        let last: Hop = match end {
            End::Exit | End::Any | End::Beside(_) => {
                let ends: Vec<&Relay> = usable
                    .iter()
                    .copied()
                    .filter(|r| r.exit || !matches!(end, End::Exit))
                    .collect();
                let r = *weighted(&ends, rules.bandwidth, rng).ok_or(match end {
                    End::Exit => OnionError::NoPath("no exit relay known"),
                    _ => OnionError::NoPath("no relay known yet"),
                })?;
                r.hop.clone()
            }
            End::At(hop) => hop.clone(),
        };
        if let Some(r) = self.relays.get(&last.peer) {
            used.extend(r.ips.iter().map(|ip| family(ip, v4_bits)));
        }
        for _ in 1..len {
            let fits: Vec<&Relay> = usable
                .iter()
                .copied()
                .filter(|r| {
                    r.hop.peer != last.peer
                        && !path.iter().any(|p| p.hop.peer == r.hop.peer)
                        && !r.ips.iter().any(|ip| used.contains(&family(ip, v4_bits)))
                })
                .collect();
            let guard = match path.is_empty() {
                true => rules
                    .guards
                    .iter()
                    .find_map(|g| fits.iter().find(|r| r.hop.peer == *g)),
                false => None,
            };
            let r = *guard
                .or_else(|| weighted(&fits, rules.bandwidth, rng))
                .ok_or(OnionError::NoPath("too few relays in distinct networks"))?;
            used.extend(r.ips.iter().map(|ip| family(ip, v4_bits)));
            path.push(r);
        }
        let mut hops: Vec<Hop> = path.into_iter().map(|r| r.hop.clone()).collect();
        hops.push(last);
        Ok(hops)
    }
}

/// One of `relays`, in proportion to its measured bandwidth if there are measures
/// ([`crate::bandwidth`]), else uniformly.
fn weighted<'s, 'r>(
    relays: &'s [&'r Relay],
    bandwidth: Option<&Measured>,
    rng: &mut impl Rng,
) -> Option<&'s &'r Relay> {
    match bandwidth {
        Some(m) => relays
            .choose_weighted(rng, |r| m.weight(&r.hop.peer))
            .ok()
            .or_else(|| relays.choose(rng)),
        None => relays.choose(rng),
    }
}

/// What every path of a node follows.
#[derive(Debug, Clone, Copy)]
pub struct PathRules<'a> {
    /// Relays per path.
    pub len: usize,
    /// No two relays of a path in one IPv4 network of this many leading bits.
    pub v4_bits: u8,
    /// The relays to enter by, first choice first.
    pub guards: &'a [PeerId],
    /// Bandwidth as this node measured it, which weighs relays (uniform without).
    pub bandwidth: Option<&'a Measured>,
}

impl PathRules<'_> {
    /// `len` relays, no two in one /`v4_bits`, no guards, chosen uniformly.
    pub fn new(len: usize, v4_bits: u8) -> PathRules<'static> {
        PathRules {
            len,
            v4_bits,
            guards: &[],
            bandwidth: None,
        }
    }
}

/// Where a path ends.
#[derive(Debug, Clone, Copy)]
pub enum End<'a> {
    /// At an exit, for streams out of the network.
    Exit,
    /// At any relay (a rendezvous or introduction point of one's own choosing).
    Any,
    /// At this relay (someone else's introduction or rendezvous point).
    At(&'a Hop),
    /// At any relay but this peer, which is nowhere in the path: the last hop reaches
    /// it on the overlay, and no relay of the path is the peer itself.
    Beside(&'a PeerId),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::{self, Ticket};
    use crate::descriptor::Descriptor;
    use libp2p::identity::Keypair;

    fn relay(dir: &mut Directory, ip: &str, exit: bool) -> PeerId {
        let keys = Keypair::generate_ed25519();
        let peer = keys.public().to_peer_id();
        let addr = format!("/ip4/{ip}/tcp/4001").parse().unwrap();
        let d = Descriptor::new(peer, [1; 32], exit, &[addr], 1_000, free(1_000));
        assert!(dir.insert(&d.sign(&keys).unwrap(), 2_000).unwrap());
        peer
    }

    /// A ticket for a directory that asks no cost.
    fn free(published_ms: u64) -> Ticket {
        Ticket {
            epoch: admission::epoch_of(published_ms),
            nonce: 0,
        }
    }

    #[test]
    fn only_relays_whose_ticket_pays_today_are_listed() {
        let mut dir = Directory::with_cost(5);
        let keys = Keypair::generate_ed25519();
        let peer = keys.public().to_peer_id();
        let addr: libp2p::Multiaddr = "/ip4/10.1.0.1/tcp/1".parse().unwrap();
        let now = 30_000 * admission::EPOCH_MS;
        let signed = |ticket: Ticket| {
            Descriptor::new(
                peer,
                [3; 32],
                false,
                std::slice::from_ref(&addr),
                now,
                ticket,
            )
            .sign(&keys)
            .unwrap()
        };
        let paid = admission::solve(&peer, &[3; 32], admission::epoch_of(now), 5, 0);
        let mut short = paid;
        while admission::check(&peer, &[3; 32], short, 5) {
            short.nonce += 1;
        }
        let e = dir.insert(&signed(short), now).unwrap_err().to_string();
        assert!(e.contains("does not pay"), "{e}");
        let stale = Ticket {
            epoch: paid.epoch - 2,
            ..paid
        };
        let e = dir.insert(&signed(stale), now).unwrap_err().to_string();
        assert!(e.contains("another day"), "{e}");
        assert!(dir.is_empty());
        assert!(dir.insert(&signed(paid), now).unwrap());
        assert_eq!(dir.len(), 1);
    }

    #[test]
    fn fifty_sybils_from_one_slash16_appear_at_most_once_in_any_path() {
        let mut dir = Directory::default();
        let sybils: HashSet<PeerId> = (0..50)
            .map(|i| {
                relay(
                    &mut dir,
                    &format!("10.9.{}.{}", i / 10, i % 10 + 1),
                    i % 2 == 0,
                )
            })
            .collect();
        for i in 0..10 {
            relay(&mut dir, &format!("10.{}.0.1", 20 + i), i < 3);
        }
        let me = PeerId::random();
        let mut rng = rand::rng();
        let mut with_a_sybil = 0;
        for _ in 0..2000 {
            let path = dir
                .pick_path(&me, &PathRules::new(3, 16), End::Exit, &[], &mut rng)
                .unwrap();
            let n = path.iter().filter(|h| sybils.contains(&h.peer)).count();
            assert!(n <= 1, "{n} Sybils in one path");
            let distinct: HashSet<PeerId> = path.iter().map(|h| h.peer).collect();
            assert_eq!(distinct.len(), 3);
            with_a_sybil += n;
        }
        // They are used, just never twice in a path.
        assert!(with_a_sybil > 0);
    }

    #[test]
    fn a_path_beside_a_peer_has_it_nowhere_and_needs_no_exit() {
        let mut dir = Directory::default();
        let relays: Vec<PeerId> = (0..4)
            .map(|i| relay(&mut dir, &format!("10.{}.0.1", 30 + i), false))
            .collect();
        let mut rng = rand::rng();
        let (me, mailbox) = (PeerId::random(), relays[2]);
        let mut ends = HashSet::new();
        for _ in 0..200 {
            let path = dir
                .pick_path(
                    &me,
                    &PathRules::new(3, 16),
                    End::Beside(&mailbox),
                    &[],
                    &mut rng,
                )
                .unwrap();
            assert_eq!(path.len(), 3);
            assert!(path.iter().all(|h| h.peer != mailbox), "{path:?}");
            ends.insert(path[2].peer);
        }
        assert_eq!(ends.len(), 3, "any other relay ends such a path");
        let e = dir.pick_path(&me, &PathRules::new(3, 16), End::Exit, &[], &mut rng);
        assert!(e.is_err(), "these relays are no exits");
    }

    #[test]
    fn relays_are_picked_in_proportion_to_their_measured_bandwidth() {
        let mut dir = Directory::default();
        let relays: Vec<PeerId> = (0..4)
            .map(|i| relay(&mut dir, &format!("10.{}.0.1", 40 + i), true))
            .collect();
        let mut measured = Measured::default();
        let now = std::time::Instant::now();
        measured.record(relays[0], 9_000_000.0, now);
        for r in &relays[1..3] {
            measured.record(*r, 1_000_000.0, now);
        }
        // relays[3] unmeasured: it weighs as the slowest quarter measured (1 MB/s).
        let rules = PathRules {
            bandwidth: Some(&measured),
            ..PathRules::new(1, 16)
        };
        let (me, mut rng) = (PeerId::random(), rand::rng());
        let mut picked: HashMap<PeerId, u32> = HashMap::new();
        for _ in 0..6000 {
            let path = dir
                .pick_path(&me, &rules, End::Exit, &[], &mut rng)
                .unwrap();
            *picked.entry(path[0].peer).or_default() += 1;
        }
        // Expected 9/12 of the picks for the fast one, 1/12 for each other.
        let fast = picked[&relays[0]];
        assert!((4200..4800).contains(&fast), "{picked:?}");
        for r in &relays[1..] {
            assert!((300..700).contains(&picked[r]), "{picked:?}");
        }
    }

    #[test]
    fn two_relays_per_address_at_most_and_not_oneself() {
        let mut dir = Directory::default();
        let crowd: HashSet<PeerId> = (0..5).map(|_| relay(&mut dir, "10.5.5.5", true)).collect();
        let me = relay(&mut dir, "10.6.0.1", true);
        relay(&mut dir, "10.7.0.1", false);
        relay(&mut dir, "10.8.0.1", false);
        let mut rng = rand::rng();
        let mut seen = HashSet::new();
        for _ in 0..500 {
            for h in dir
                .pick_path(&me, &PathRules::new(3, 16), End::Exit, &[], &mut rng)
                .unwrap()
            {
                assert_ne!(h.peer, me);
                seen.insert(h.peer);
            }
        }
        assert_eq!(seen.intersection(&crowd).count(), PER_IP);
    }

    #[test]
    fn newer_descriptors_replace_older_and_old_ones_expire() {
        let mut dir = Directory::default();
        let keys = Keypair::generate_ed25519();
        let peer = keys.public().to_peer_id();
        let addr: libp2p::Multiaddr = "/ip4/10.1.0.1/tcp/1".parse().unwrap();
        let at = |t: u64, exit: bool| {
            Descriptor::new(peer, [2; 32], exit, std::slice::from_ref(&addr), t, free(t))
                .sign(&keys)
                .unwrap()
        };
        assert!(dir.insert(&at(1_000, false), 1_000).unwrap());
        assert!(
            !dir.insert(&at(1_000, true), 1_000).unwrap(),
            "same version"
        );
        assert!(dir.insert(&at(2_000, true), 2_000).unwrap());
        assert!(!dir.insert(&at(1_500, false), 2_000).unwrap(), "older");
        assert!(dir.relays().next().unwrap().exit);
        assert!(
            dir.insert(&at(10 * LIFETIME_MS, true), 1_000).is_err(),
            "from the future"
        );
        dir.expire(2_000 + LIFETIME_MS + 1);
        assert!(dir.is_empty());
        let me = PeerId::random();
        assert!(
            dir.pick_path(
                &me,
                &PathRules::new(3, 16),
                End::Exit,
                &[],
                &mut rand::rng()
            )
            .is_err()
        );
    }

    #[test]
    fn avoided_relays_are_left_out_unless_nothing_else_makes_a_path() {
        let mut dir = Directory::default();
        let relays: Vec<PeerId> = (0..4)
            .map(|i| relay(&mut dir, &format!("10.{}.0.1", 30 + i), i == 0))
            .collect();
        let me = PeerId::random();
        let avoid = [relays[1]];
        let mut rng = rand::rng();
        for _ in 0..200 {
            let path = dir
                .pick_path(&me, &PathRules::new(3, 16), End::Exit, &avoid, &mut rng)
                .unwrap();
            assert!(path.iter().all(|h| h.peer != relays[1]));
        }
        // Without both there is no path of three: then the first of them is let back
        // in, and the second stays out while a path can be made without it.
        let avoid = [relays[1], relays[2]];
        for _ in 0..200 {
            let path = dir
                .pick_path(&me, &PathRules::new(3, 16), End::Exit, &avoid, &mut rng)
                .unwrap();
            assert_eq!(path.len(), 3);
            assert!(path.iter().all(|h| h.peer != relays[2]));
        }
    }

    #[test]
    fn paths_end_at_the_relay_asked_for() {
        let mut dir = Directory::default();
        let relays: Vec<PeerId> = (0..4)
            .map(|i| relay(&mut dir, &format!("10.{}.0.1", 40 + i), false))
            .collect();
        let me = PeerId::random();
        let mut rng = rand::rng();
        assert!(
            dir.pick_path(&me, &PathRules::new(3, 16), End::Exit, &[], &mut rng)
                .is_err(),
            "no exit"
        );
        let at = dir
            .relays()
            .find(|r| r.hop.peer == relays[2])
            .unwrap()
            .hop
            .clone();
        for _ in 0..100 {
            let path = dir
                .pick_path(&me, &PathRules::new(3, 16), End::At(&at), &[], &mut rng)
                .unwrap();
            assert_eq!(path[2].peer, relays[2]);
            assert!(path[..2].iter().all(|h| h.peer != relays[2]));
            assert_eq!(
                dir.pick_path(&me, &PathRules::new(3, 16), End::Any, &[], &mut rng)
                    .unwrap()
                    .len(),
                3
            );
        }
    }

    #[test]
    fn a_path_enters_by_the_first_guard_that_fits_it() {
        let mut dir = Directory::default();
        let relays: Vec<PeerId> = (0..6)
            .map(|i| relay(&mut dir, &format!("10.{}.0.1", 50 + i), i == 0))
            .collect();
        let me = PeerId::random();
        let mut rng = rand::rng();
        let guards = [relays[1], relays[2]];
        let rules = PathRules {
            guards: &guards,
            ..PathRules::new(3, 16)
        };
        for _ in 0..100 {
            let path = dir
                .pick_path(&me, &rules, End::Exit, &[], &mut rng)
                .unwrap();
            assert_eq!(path[0].peer, relays[1]);
        }
        // The first guard left out: the second; a guard that is the path's end: the next.
        for _ in 0..100 {
            let path = dir
                .pick_path(&me, &rules, End::Exit, &[relays[1]], &mut rng)
                .unwrap();
            assert_eq!(path[0].peer, relays[2]);
        }
        let at = dir
            .relays()
            .find(|r| r.hop.peer == relays[1])
            .unwrap()
            .hop
            .clone();
        let path = dir
            .pick_path(&me, &rules, End::At(&at), &[], &mut rng)
            .unwrap();
        assert_eq!(path[0].peer, relays[2]);
    }
}
