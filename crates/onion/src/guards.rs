//! Guards: the few relays this node's circuits enter the network by, kept for weeks, as
//! Tor's entry guards. A first hop sees this node's address; choosing it afresh for
//! every circuit would, over many circuits, hand that view to every relay in turn,
//! including an attacker's. With guards, an attacker who does not run one of them never
//! sees it; one who does sees it from the start, which is why they are chosen with care.
//!
//! - **Minimum age.** Only relays this node has known for `min_age` (`[onion]
//!   guard_min_age_secs`, a day by default) may become guards, so that relays made in a
//!   burst (a Sybil attack) are not chosen the moment they appear. Ages are this node's
//!   own observation, kept across restarts: a relay's claim about itself would be worth
//!   nothing. A node younger than that has no guards yet, and enters by any relay.
//! - **Kept for weeks.** A guard is kept for a random 30 to 60 days from when it was
//!   chosen. One gone from the relay list is kept (unused) for [`UNLISTED_FOR_MS`] in
//!   case it comes back; once gone for [`REPLACED_AFTER_MS`] (not the minutes after a
//!   start, while the list fills), another is added so that [`NUM`] are listed. Until
//!   the list names a guard that fits a path, the path enters by any relay, and a
//!   circuit built ahead that way is built again once it does.
//! - **In order.** A path enters by the first guard, in the order they were chosen, that
//!   fits it (not left out for failing, not the path's end, not in the end's network).
//!
//! Kept in `onion/guards.json` (mode 0600), with when each relay was first and last seen.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use libp2p::PeerId;
use rand::Rng;
use rand::seq::IndexedRandom;
use serde::{Deserialize, Serialize};

use crate::OnionError;

/// Guards listed (in the relay list) that paths may enter by.
pub const NUM: usize = 3;
/// Guards kept at most, listed or not.
pub const MAX_KEPT: usize = 2 * NUM;
const DAY_MS: u64 = 24 * 3600 * 1000;
/// A guard's life: from 30 to 60 days.
pub const LIFETIME_MS: (u64, u64) = (30 * DAY_MS, 60 * DAY_MS);
/// A guard, or a relay's age, is forgotten after this long out of the relay list.
pub const UNLISTED_FOR_MS: u64 = 20 * DAY_MS;
/// "Last seen" is written down at most this often (it only decides forgetting).
const LAST_SEEN_STEP_MS: u64 = 3600 * 1000;
/// A guard out of the relay list this long (its descriptor would have expired
/// everywhere, and "last seen" is written down hourly) gets a replacement.
pub const REPLACED_AFTER_MS: u64 = crate::directory::LIFETIME_MS + LAST_SEEN_STEP_MS;
/// Relays whose age is remembered.
const MAX_SEEN: usize = 2 * crate::directory::MAX_RELAYS;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
struct Seen {
    first_ms: u64,
    last_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Guard {
    pub peer: String,
    pub added_ms: u64,
    pub expires_ms: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    guards: Vec<Guard>,
    seen: HashMap<String, Seen>,
}

#[derive(Debug)]
pub struct Guards {
    file: File,
    path: Option<PathBuf>,
    min_age_ms: u64,
    listed: Vec<PeerId>,
}

impl Guards {
    /// The guards kept in `path` (none if there is no file yet).
    pub fn load(path: &Path, min_age_ms: u64) -> Result<Guards, OnionError> {
        let file = crate::state::read(path, "delete it to choose guards afresh")?;
        Ok(Guards {
            file: file.unwrap_or_default(),
            path: Some(path.to_path_buf()),
            min_age_ms,
            listed: Vec::new(),
        })
    }

    /// Guards kept nowhere (tests).
    pub fn in_memory(min_age_ms: u64) -> Guards {
        Guards {
            file: File::default(),
            path: None,
            min_age_ms,
            listed: Vec::new(),
        }
    }

    /// Takes in the relays listed now (those paths may use): notes new ones, forgets
    /// guards and ages past their time, and chooses guards until [`NUM`] are listed.
    /// Writes the file if anything changed.
    pub fn refresh(
        &mut self,
        listed: &[PeerId],
        now_ms: u64,
        rng: &mut impl Rng,
    ) -> Result<(), OnionError> {
        let mut changed = false;
        let ids: HashSet<String> = listed.iter().map(|p| p.to_string()).collect();
        for id in &ids {
            let seen = self.file.seen.entry(id.clone()).or_insert_with(|| {
                changed = true;
                Seen {
                    first_ms: now_ms,
                    last_ms: now_ms,
                }
            });
            if now_ms.saturating_sub(seen.last_ms) >= LAST_SEEN_STEP_MS {
                seen.last_ms = now_ms;
                changed = true;
            }
        }
        let before = self.file.seen.len();
        self.file
            .seen
            .retain(|_, s| now_ms.saturating_sub(s.last_ms) < UNLISTED_FOR_MS);
        if self.file.seen.len() > MAX_SEEN {
            let mut by_last: Vec<(u64, String)> = self
                .file
                .seen
                .iter()
                .map(|(p, s)| (s.last_ms, p.clone()))
                .collect();
            by_last.sort();
            for (_, p) in by_last.iter().take(self.file.seen.len() - MAX_SEEN) {
                self.file.seen.remove(p);
            }
        }
        changed |= self.file.seen.len() != before;

        let guards_before = self.file.guards.clone();
        let seen = &self.file.seen;
        self.file
            .guards
            .retain(|g| now_ms < g.expires_ms && seen.contains_key(&g.peer));
        let is_listed = |g: &Guard| ids.contains(&g.peer);
        while self.file.guards.len() > MAX_KEPT {
            let Some(at) = self.file.guards.iter().position(|g| !is_listed(g)) else {
                break;
            };
            self.file.guards.remove(at);
        }
        // A guard not heard of lately (just after a start, the relay list is still
        // filling) still counts: only one gone for longer than a descriptor lives is
        // replaced.
        let counts = |g: &Guard| {
            is_listed(g)
                || self
                    .file
                    .seen
                    .get(&g.peer)
                    .is_some_and(|s| now_ms.saturating_sub(s.last_ms) < REPLACED_AFTER_MS)
        };
        let mut listed_guards = self.file.guards.iter().filter(|g| counts(g)).count();
        let mut candidates: Vec<&String> = ids
            .iter()
            .filter(|id| {
                !self.file.guards.iter().any(|g| g.peer == **id)
                    && self
                        .file
                        .seen
                        .get(*id)
                        .is_some_and(|s| now_ms.saturating_sub(s.first_ms) >= self.min_age_ms)
            })
            .collect();
        candidates.sort();
        while listed_guards < NUM && self.file.guards.len() < MAX_KEPT {
            let Some(&pick) = candidates.choose(rng) else {
                break;
            };
            candidates.retain(|p| *p != pick);
            self.file.guards.push(Guard {
                peer: pick.clone(),
                added_ms: now_ms,
                expires_ms: now_ms + rng.random_range(LIFETIME_MS.0..LIFETIME_MS.1),
            });
            listed_guards += 1;
        }
        changed |= self.file.guards != guards_before;

        self.listed = self
            .file
            .guards
            .iter()
            .filter(|g| is_listed(g))
            .filter_map(|g| g.peer.parse().ok())
            .collect();
        match (&self.path, changed) {
            (Some(path), true) => crate::state::write(path, &self.file),
            _ => Ok(()),
        }
    }

    /// The guards listed at the last refresh, first chosen first.
    pub fn listed(&self) -> &[PeerId] {
        &self.listed
    }

    /// Every guard kept, listed or not.
    pub fn kept(&self) -> &[Guard] {
        &self.file.guards
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3600 * 1000;

    #[test]
    fn only_relays_known_long_enough_become_guards_and_they_are_kept_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guards.json");
        let mut rng = rand::rng();
        let old: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
        let mut g = Guards::load(&path, DAY_MS).unwrap();
        g.refresh(&old, 0, &mut rng).unwrap();
        assert!(g.listed().is_empty(), "nobody is a day old yet");
        let young: Vec<PeerId> = (0..20).map(|_| PeerId::random()).collect();
        let all: Vec<PeerId> = old.iter().chain(&young).copied().collect();
        g.refresh(&all, DAY_MS, &mut rng).unwrap();
        assert_eq!(g.listed().len(), NUM);
        assert!(
            g.listed().iter().all(|p| old.contains(p)),
            "only old relays"
        );
        let chosen = g.listed().to_vec();

        let mut again = Guards::load(&path, DAY_MS).unwrap();
        again.refresh(&all, DAY_MS + HOUR, &mut rng).unwrap();
        assert_eq!(again.listed(), &chosen[..], "the same guards, in order");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_guard_gone_from_the_list_is_kept_a_while_and_another_serves_meanwhile() {
        let mut rng = rand::rng();
        let relays: Vec<PeerId> = (0..8).map(|_| PeerId::random()).collect();
        let mut g = Guards::in_memory(0);
        g.refresh(&relays, 0, &mut rng).unwrap();
        let first = g.listed().to_vec();
        let gone = first[0];
        let rest: Vec<PeerId> = relays.iter().copied().filter(|p| *p != gone).collect();
        // Not heard of for a while (as just after a start): not replaced.
        g.refresh(&rest, HOUR, &mut rng).unwrap();
        assert_eq!(g.listed().len(), NUM - 1);
        assert_eq!(g.kept().len(), NUM);
        // Gone for longer than a descriptor lives: another serves meanwhile.
        g.refresh(&rest, REPLACED_AFTER_MS + HOUR, &mut rng)
            .unwrap();
        assert_eq!(g.listed().len(), NUM);
        assert!(!g.listed().contains(&gone));
        assert_eq!(g.kept().len(), NUM + 1, "the missing one is kept");
        // Back within the time: first again, since it was chosen first.
        let back = REPLACED_AFTER_MS + 2 * HOUR;
        g.refresh(&relays, back, &mut rng).unwrap();
        assert_eq!(g.listed()[0], gone);
        // Gone for longer than that: forgotten.
        g.refresh(&rest, back + UNLISTED_FOR_MS, &mut rng).unwrap();
        assert!(g.kept().iter().all(|k| k.peer != gone.to_string()));
        assert!(g.kept().len() <= MAX_KEPT);
    }

    #[test]
    fn guards_expire_after_30_to_60_days_and_are_replaced() {
        let mut rng = rand::rng();
        let relays: Vec<PeerId> = (0..30).map(|_| PeerId::random()).collect();
        let mut g = Guards::in_memory(0);
        g.refresh(&relays, 0, &mut rng).unwrap();
        assert!(
            g.kept()
                .iter()
                .all(|k| { (LIFETIME_MS.0..LIFETIME_MS.1).contains(&(k.expires_ms - k.added_ms)) })
        );
        let first = g.listed().to_vec();
        g.refresh(&relays, LIFETIME_MS.0 - HOUR, &mut rng).unwrap();
        assert_eq!(g.listed(), &first[..], "kept for 30 days at least");
        g.refresh(&relays, LIFETIME_MS.1, &mut rng).unwrap();
        assert_eq!(g.listed().len(), NUM);
        assert!(g.kept().iter().all(|k| k.added_ms == LIFETIME_MS.1));
    }
}
