//! One work unit's life on its coordinator, after BOINC's transitioner and validator.
//!
//! A unit wants replicas until a quorum of independent volunteers returned the same
//! output: `wanted = quorum - (largest agreeing group) - (replicas in progress)`. So
//! two results that disagree ask for a third, a replica that errs or is late asks for
//! another, and a result that joins a group that reaches the quorum makes that group's
//! output canonical; every other success is then invalid. A unit fails when more than
//! `max_error_results` replicas erred, or when `max_total_results` replicas were made
//! and none can still bring a quorum.
//!
//! Nothing here touches a clock or a disk: times come in as arguments, so the rules
//! are tested directly.

use serde::{Deserialize, Serialize};

/// A project's replication rules (BOINC's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub min_quorum: u32,
    pub max_error_results: u32,
    pub max_total_results: u32,
    /// A replica not back this long after it was sent is late and replaced.
    pub delay_bound_ms: u64,
    /// Adaptive replication: a volunteer with this many valid results in a row (and no
    /// invalid one since) may get a unit alone. 0: never.
    pub trust_after: u32,
    /// Of the units a trusted volunteer would get alone, this share (per mille) still
    /// gets a full quorum: the audit.
    pub audit_per_mille: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            min_quorum: 2,
            max_error_results: 3,
            max_total_results: 8,
            delay_bound_ms: 600_000,
            trust_after: 10,
            audit_per_mille: 100,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Open,
    /// Accepted: the canonical output's hash, the replica it came from, its fuel.
    Done {
        hash: [u8; 32],
        replica: u32,
        fuel: u64,
    },
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    Pending,
    Valid,
    Invalid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaState {
    InProgress,
    /// Past its deadline; a result may still come and is still judged.
    Late,
    Success {
        hash: [u8; 32],
        fuel: u64,
        verdict: Verdict,
    },
    Error(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    pub id: u32,
    /// The volunteer's peer id, as bytes.
    pub host: Vec<u8>,
    pub sent_ms: u64,
    pub deadline_ms: u64,
    pub state: ReplicaState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    pub status: Status,
    /// How many agreeing results this unit needs: the policy's, or 1 when it went alone
    /// to a trusted volunteer.
    pub quorum: u32,
    pub replicas: Vec<Replica>,
    /// The class of volunteers its replicas go to (homogeneous redundancy), fixed by
    /// the first replica sent while none is in progress or returned.
    pub class: Option<String>,
}

/// What judging a result decided, for credit and trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    pub host: Vec<u8>,
    pub replica: u32,
    pub valid: bool,
    /// The canonical result's fuel: what a valid result earns.
    pub fuel: u64,
}

/// Why a returned result was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("no such replica")]
    Unknown,
    #[error("the replica was sent to another volunteer")]
    NotYours,
    #[error("the replica already returned")]
    Duplicate,
}

/// What a returned replica brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Return {
    Success { hash: [u8; 32], fuel: u64 },
    Error(String),
}

/// The effects of one returned replica.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    pub judged: Vec<Judged>,
    /// The unit was accepted now: keep the output of this replica, drop the others.
    pub accepted: Option<u32>,
    /// The unit failed now.
    pub failed: bool,
}

impl Unit {
    pub fn new(quorum: u32) -> Unit {
        Unit {
            status: Status::Open,
            quorum: quorum.max(1),
            replicas: Vec::new(),
            class: None,
        }
    }

    fn in_progress(&self) -> u32 {
        self.replicas
            .iter()
            .filter(|r| r.state == ReplicaState::InProgress)
            .count() as u32
    }

    /// The largest group of volunteers that returned one output, and its hash. A
    /// volunteer counts once in a group, however many of its replicas are in it.
    fn largest_group(&self) -> Option<([u8; 32], u32)> {
        let mut best: Option<([u8; 32], u32)> = None;
        for r in &self.replicas {
            if let ReplicaState::Success { hash, .. } = r.state {
                let mut hosts: Vec<&[u8]> = self
                    .replicas
                    .iter()
                    .filter(
                        |o| matches!(o.state, ReplicaState::Success { hash: h, .. } if h == hash),
                    )
                    .map(|o| o.host.as_slice())
                    .collect();
                hosts.sort_unstable();
                hosts.dedup();
                let n = hosts.len() as u32;
                if best.is_none_or(|(_, b)| n > b) {
                    best = Some((hash, n));
                }
            }
        }
        best
    }

    /// Replicas this unit wants sent now.
    pub fn wanted(&self, policy: &Policy) -> u32 {
        if self.status != Status::Open {
            return 0;
        }
        let agreeing = self.largest_group().map_or(0, |(_, n)| n);
        let need = self
            .quorum
            .saturating_sub(agreeing)
            .saturating_sub(self.in_progress());
        let room = policy
            .max_total_results
            .saturating_sub(self.replicas.len() as u32);
        need.min(room)
    }

    /// Whether `host` may get a replica: not while it has one in progress or has
    /// returned one. A volunteer whose replica went late (it restarted, or lost it) may
    /// get the unit again: its results still count once in a quorum.
    pub fn may_take(&self, host: &[u8], class: &str) -> bool {
        !self
            .replicas
            .iter()
            .any(|r| r.host == host && r.state != ReplicaState::Late)
            && (self.class.as_deref().is_none_or(|c| c == class) || !self.anchored())
    }

    /// Whether a replica in progress or returned holds the unit to its class.
    fn anchored(&self) -> bool {
        self.replicas.iter().any(|r| {
            matches!(
                r.state,
                ReplicaState::InProgress | ReplicaState::Success { .. }
            )
        })
    }

    /// Sets the quorum for a replica about to go to a volunteer, `trusted` or not: a
    /// unit with none sent yet may go alone to a trusted one (one result decides it)
    /// unless `audit` says otherwise; any later replica that goes to a volunteer not
    /// trusted (the trusted one's went late) brings the policy's quorum back, or that
    /// volunteer's result alone would decide the unit.
    pub fn set_quorum(&mut self, trusted: bool, audit: bool, policy: &Policy) {
        if self.replicas.is_empty() && trusted && !audit {
            self.quorum = 1;
        } else if !trusted {
            self.quorum = self.quorum.max(policy.min_quorum);
        }
    }

    /// Sends a new replica to `host`, of `class`.
    pub fn send(&mut self, host: Vec<u8>, class: &str, now_ms: u64, policy: &Policy) -> u32 {
        if !self.anchored() {
            self.class = Some(class.to_string());
        }
        let id = self.replicas.len() as u32;
        self.replicas.push(Replica {
            id,
            host,
            sent_ms: now_ms,
            deadline_ms: now_ms.saturating_add(policy.delay_bound_ms),
            state: ReplicaState::InProgress,
        });
        id
    }

    /// Marks replicas past their deadline late; true when one was.
    pub fn expire(&mut self, now_ms: u64) -> bool {
        let mut any = false;
        for r in &mut self.replicas {
            if r.state == ReplicaState::InProgress && r.deadline_ms <= now_ms {
                r.state = ReplicaState::Late;
                any = true;
            }
        }
        any
    }

    /// Takes a returned replica and judges what can be judged.
    pub fn take(
        &mut self,
        replica: u32,
        host: &[u8],
        ret: Return,
        policy: &Policy,
    ) -> Result<Effects, Rejected> {
        let r = self
            .replicas
            .get_mut(replica as usize)
            .ok_or(Rejected::Unknown)?;
        if r.host != host {
            return Err(Rejected::NotYours);
        }
        if !matches!(r.state, ReplicaState::InProgress | ReplicaState::Late) {
            return Err(Rejected::Duplicate);
        }
        let mut fx = Effects::default();
        match ret {
            Return::Error(e) => {
                r.state = ReplicaState::Error(e);
                let errors = self
                    .replicas
                    .iter()
                    .filter(|r| matches!(r.state, ReplicaState::Error(_)))
                    .count() as u32;
                if self.status == Status::Open && errors > policy.max_error_results {
                    self.status = Status::Failed(format!("{errors} replicas failed"));
                    fx.failed = true;
                }
            }
            Return::Success { hash, fuel } => {
                r.state = ReplicaState::Success {
                    hash,
                    fuel,
                    verdict: Verdict::Pending,
                };
                match self.status.clone() {
                    Status::Done {
                        hash: canon, fuel, ..
                    } => {
                        let valid = hash == canon;
                        self.judge(replica, valid, fuel, &mut fx);
                    }
                    Status::Failed(_) => {}
                    Status::Open => {
                        if let Some((canon, n)) = self.largest_group()
                            && n >= self.quorum
                        {
                            self.accept(canon, &mut fx);
                        }
                    }
                }
            }
        }
        if self.status == Status::Open
            && self.wanted(policy) == 0
            && self.in_progress() == 0
            && self.replicas.len() as u32 >= policy.max_total_results
        {
            self.status = Status::Failed(format!(
                "no {} results agreed in {} replicas",
                self.quorum,
                self.replicas.len()
            ));
            fx.failed = true;
        }
        Ok(fx)
    }

    fn accept(&mut self, canon: [u8; 32], fx: &mut Effects) {
        let (first, fuel) = self
            .replicas
            .iter()
            .find_map(|r| match r.state {
                ReplicaState::Success { hash, fuel, .. } if hash == canon => Some((r.id, fuel)),
                _ => None,
            })
            .expect("the group has a member");
        self.status = Status::Done {
            hash: canon,
            replica: first,
            fuel,
        };
        fx.accepted = Some(first);
        let judged: Vec<(u32, bool)> = self
            .replicas
            .iter()
            .filter_map(|r| match r.state {
                ReplicaState::Success {
                    hash,
                    verdict: Verdict::Pending,
                    ..
                } => Some((r.id, hash == canon)),
                _ => None,
            })
            .collect();
        for (id, valid) in judged {
            self.judge(id, valid, fuel, fx);
        }
    }

    fn judge(&mut self, replica: u32, valid: bool, fuel: u64, fx: &mut Effects) {
        let r = &mut self.replicas[replica as usize];
        if let ReplicaState::Success { verdict, .. } = &mut r.state {
            *verdict = if valid {
                Verdict::Valid
            } else {
                Verdict::Invalid
            };
        }
        fx.judged.push(Judged {
            host: r.host.clone(),
            replica,
            valid,
            fuel,
        });
    }
}

/// A volunteer's record in one project: what adaptive replication and credit use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub valid: u64,
    pub invalid: u64,
    pub errors: u64,
    pub late: u64,
    /// Valid results since the last invalid one.
    pub streak: u32,
    /// Fuel of its valid results.
    pub credit: u64,
}

impl Host {
    pub fn trusted(&self, policy: &Policy) -> bool {
        policy.trust_after > 0 && self.streak >= policy.trust_after
    }

    pub fn record(&mut self, j: &Judged) {
        if j.valid {
            self.valid += 1;
            self.streak = self.streak.saturating_add(1);
            self.credit = self.credit.saturating_add(j.fuel);
        } else {
            self.invalid += 1;
            self.streak = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &[u8] = b"a";
    const B: &[u8] = b"b";
    const C: &[u8] = b"c";
    const D: &[u8] = b"d";

    fn ok(h: u8) -> Return {
        Return::Success {
            hash: [h; 32],
            fuel: 100 + h as u64,
        }
    }

    #[test]
    fn two_agreeing_results_accept_the_unit() {
        let p = Policy::default();
        let mut u = Unit::new(2);
        assert_eq!(u.wanted(&p), 2);
        let a = u.send(A.to_vec(), "x", 0, &p);
        let b = u.send(B.to_vec(), "x", 0, &p);
        assert_eq!(u.wanted(&p), 0);
        assert!(!u.may_take(A, "x"));
        let fx = u.take(a, A, ok(1), &p).unwrap();
        assert_eq!(fx, Effects::default());
        let fx = u.take(b, B, ok(1), &p).unwrap();
        assert_eq!(fx.accepted, Some(a));
        assert_eq!(fx.judged.len(), 2);
        assert!(fx.judged.iter().all(|j| j.valid && j.fuel == 101));
        assert_eq!(u.wanted(&p), 0);
    }

    #[test]
    fn a_wrong_result_asks_for_a_third_and_is_judged_invalid() {
        let p = Policy::default();
        let mut u = Unit::new(2);
        let a = u.send(A.to_vec(), "x", 0, &p);
        let b = u.send(B.to_vec(), "x", 0, &p);
        u.take(a, A, ok(1), &p).unwrap();
        let fx = u.take(b, B, ok(9), &p).unwrap();
        assert!(fx.accepted.is_none());
        assert_eq!(u.wanted(&p), 1);
        let c = u.send(C.to_vec(), "x", 0, &p);
        let fx = u.take(c, C, ok(1), &p).unwrap();
        assert_eq!(fx.accepted, Some(a));
        let bad: Vec<_> = fx.judged.iter().filter(|j| !j.valid).collect();
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].host, B);
        // The cheat earns nothing.
        let mut host = Host {
            streak: 5,
            ..Host::default()
        };
        host.record(bad[0]);
        assert_eq!((host.streak, host.credit, host.invalid), (0, 0, 1));
    }

    #[test]
    fn a_late_replica_is_replaced_and_still_judged_when_it_comes() {
        let p = Policy {
            delay_bound_ms: 1000,
            ..Policy::default()
        };
        let mut u = Unit::new(2);
        let a = u.send(A.to_vec(), "x", 0, &p);
        let b = u.send(B.to_vec(), "x", 0, &p);
        u.take(a, A, ok(1), &p).unwrap();
        assert!(!u.expire(999));
        assert!(u.expire(1000));
        assert_eq!(u.wanted(&p), 1);
        let c = u.send(C.to_vec(), "x", 1000, &p);
        assert_eq!(u.take(c, C, ok(1), &p).unwrap().accepted, Some(a));
        let fx = u.take(b, B, ok(1), &p).unwrap();
        assert_eq!(fx.judged.len(), 1);
        assert!(fx.judged[0].valid);
    }

    #[test]
    fn errors_past_the_limit_fail_the_unit() {
        let p = Policy {
            max_error_results: 1,
            ..Policy::default()
        };
        let mut u = Unit::new(2);
        let a = u.send(A.to_vec(), "x", 0, &p);
        let b = u.send(B.to_vec(), "x", 0, &p);
        assert!(
            !u.take(a, A, Return::Error("trap".into()), &p)
                .unwrap()
                .failed
        );
        assert_eq!(u.wanted(&p), 1);
        assert!(
            u.take(b, B, Return::Error("trap".into()), &p)
                .unwrap()
                .failed
        );
        assert!(matches!(u.status, Status::Failed(_)));
        assert_eq!(u.wanted(&p), 0);
    }

    #[test]
    fn no_consensus_within_the_total_fails_the_unit() {
        let p = Policy {
            max_total_results: 3,
            ..Policy::default()
        };
        let mut u = Unit::new(2);
        for (i, h) in [A, B, C].iter().enumerate() {
            let r = u.send(h.to_vec(), "x", 0, &p);
            let fx = u.take(r, h, ok(i as u8), &p).unwrap();
            assert_eq!(fx.failed, i == 2);
        }
        assert_eq!(u.wanted(&p), 0);
        assert!(u.may_take(D, "x"));
    }

    #[test]
    fn one_volunteer_counts_once_in_a_quorum() {
        let p = Policy {
            delay_bound_ms: 10,
            ..Policy::default()
        };
        let mut u = Unit::new(2);
        let a = u.send(A.to_vec(), "x", 0, &p);
        assert!(!u.may_take(A, "x"));
        u.expire(10);
        // Lost: it may have the unit again.
        assert!(u.may_take(A, "x"));
        let a2 = u.send(A.to_vec(), "x", 10, &p);
        u.take(a2, A, ok(1), &p).unwrap();
        // Its late first replica comes in too, agreeing with itself: no quorum.
        let fx = u.take(a, A, ok(1), &p).unwrap();
        assert!(fx.accepted.is_none());
        assert_eq!(u.wanted(&p), 1);
        assert!(!u.may_take(A, "x"));
        let b = u.send(B.to_vec(), "x", 10, &p);
        assert!(u.take(b, B, ok(1), &p).unwrap().accepted.is_some());
    }

    #[test]
    fn replicas_of_a_unit_go_to_one_class() {
        let p = Policy {
            delay_bound_ms: 10,
            ..Policy::default()
        };
        let mut u = Unit::new(2);
        u.send(A.to_vec(), "x86_64", 0, &p);
        assert!(!u.may_take(B, "aarch64"));
        assert!(u.may_take(B, "x86_64"));
        // Once nothing holds it there, another class may have it.
        u.expire(10);
        assert!(u.may_take(B, "aarch64"));
        u.send(B.to_vec(), "aarch64", 10, &p);
        assert_eq!(u.class.as_deref(), Some("aarch64"));
    }

    #[test]
    fn returns_are_checked_against_the_replica() {
        let p = Policy::default();
        let mut u = Unit::new(2);
        let a = u.send(A.to_vec(), "x", 0, &p);
        assert_eq!(u.take(7, A, ok(1), &p), Err(Rejected::Unknown));
        assert_eq!(u.take(a, B, ok(1), &p), Err(Rejected::NotYours));
        u.take(a, A, ok(1), &p).unwrap();
        assert_eq!(u.take(a, A, ok(1), &p), Err(Rejected::Duplicate));
    }

    #[test]
    fn a_unit_alone_with_a_trusted_host_needs_one_result() {
        let p = Policy::default();
        let mut u = Unit::new(1);
        let a = u.send(A.to_vec(), "x", 0, &p);
        assert_eq!(u.take(a, A, ok(3), &p).unwrap().accepted, Some(a));
        let mut host = Host::default();
        assert!(!host.trusted(&p));
        for _ in 0..p.trust_after {
            host.record(&Judged {
                host: A.to_vec(),
                replica: 0,
                valid: true,
                fuel: 1,
            });
        }
        assert!(host.trusted(&p));
        assert_eq!(host.credit, p.trust_after as u64);
    }

    #[test]
    fn a_unit_alone_whose_trusted_host_went_late_needs_a_quorum_again() {
        let p = Policy::default();
        let mut u = Unit::new(p.min_quorum);
        u.set_quorum(true, false, &p);
        assert_eq!(u.quorum, 1, "alone with a trusted volunteer");
        u.send(A.to_vec(), "x", 0, &p);
        assert!(u.expire(p.delay_bound_ms));
        // Reissued to a volunteer not trusted: its result alone decides nothing.
        u.set_quorum(false, false, &p);
        let b = u.send(B.to_vec(), "x", p.delay_bound_ms, &p);
        let fx = u.take(b, B, ok(7), &p).unwrap();
        assert_eq!(fx.accepted, None);
        assert_eq!(u.quorum, p.min_quorum);
        assert_eq!(u.wanted(&p), 1);
        // An audit sends the first replica with the full quorum too.
        let mut audited = Unit::new(p.min_quorum);
        audited.set_quorum(true, true, &p);
        assert_eq!(audited.quorum, p.min_quorum);
    }
}
