//! The node that submitted a project coordinates it: it hands out replicas, judges
//! results ([`crate::unit`]), keeps the accepted outputs and the volunteers' credit.
//!
//! State is in memory for speed and written through to `compute.redb` before a reply
//! leaves: a Work reply after its assignments are on disk, a Submit acknowledged after
//! its outputs, verdicts and credit are. On start every project is loaded back; replicas
//! that were in progress keep their deadlines, so work lost with a volunteer is reissued
//! and work a volunteer kept is still taken when it reports.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::Mutex;

use rand::Rng;
use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use crate::error::ComputeError;
use crate::job::{Job, Output};
use crate::pay::{self, Address, Signed};
use crate::store::{
    self, HOSTS, JOBS, Loaded, OUTPUTS, PAYEES, PAYMENTS, PROJECTS, Payee, Payment, ProjectRow,
    ProjectState, Store, UNITS,
};
use crate::unit::{Host, Policy, ReplicaState, Return, Status, Unit, Verdict};
use crate::wire::{self, Announce, Assignment, ProjectId, Returned};

/// A project being coordinated.
struct Project {
    row: ProjectRow,
    units: Vec<Unit>,
    hosts: HashMap<Vec<u8>, Host>,
    /// Units that want replicas, in order.
    ready: BTreeSet<u32>,
    /// (deadline, unit) of replicas in progress.
    deadlines: BTreeSet<(u64, u32)>,
    /// When the project's state last changed, for watchers.
    version: u64,
    /// Wei per billion fuel of credit; 0: the project does not pay.
    rate: u128,
    payees: HashMap<Vec<u8>, Payee>,
}

impl Project {
    fn from_loaded(l: Loaded) -> Project {
        let mut p = Project {
            row: l.row,
            units: l.units,
            hosts: l.hosts.into_iter().collect(),
            ready: BTreeSet::new(),
            deadlines: BTreeSet::new(),
            version: 0,
            rate: l.rate,
            payees: l.payees.into_iter().collect(),
        };
        for i in 0..p.units.len() as u32 {
            p.index(i);
        }
        p
    }

    /// Files unit `i` under ready and its replicas' deadlines, as its state says.
    fn index(&mut self, i: u32) {
        let u = &self.units[i as usize];
        if u.wanted(&self.row.policy) > 0 {
            self.ready.insert(i);
        } else {
            self.ready.remove(&i);
        }
        for r in &u.replicas {
            if r.state == ReplicaState::InProgress {
                self.deadlines.insert((r.deadline_ms, i));
            }
        }
    }

    fn announce(&self, id: ProjectId) -> Announce {
        Announce {
            project: id,
            name: self.row.name.clone(),
            module: self.row.module,
            module_len: self.row.module_len,
            fuel: self.row.fuel,
            memory_mb: self.row.memory_mb,
            output_bytes: self.row.output_bytes,
            deadline_secs: (self.row.policy.delay_bound_ms / 1000) as u32,
            units: self.row.units,
            canonical_nans: self.row.canonical_nans,
            open: self
                .units
                .iter()
                .filter(|u| u.status == Status::Open)
                .count() as u32,
        }
    }

    /// Marks replicas past their deadline late and makes their units ready again: the
    /// units and the hosts that changed.
    fn expire(&mut self, now_ms: u64) -> (Vec<u32>, Vec<Vec<u8>>) {
        let mut changed = Vec::new();
        let mut hosts = Vec::new();
        while let Some(&(at, i)) = self.deadlines.first() {
            if at > now_ms {
                break;
            }
            self.deadlines.pop_first();
            let unit = &mut self.units[i as usize];
            let late: Vec<Vec<u8>> = unit
                .replicas
                .iter()
                .filter(|r| r.state == ReplicaState::InProgress && r.deadline_ms <= now_ms)
                .map(|r| r.host.clone())
                .collect();
            if unit.expire(now_ms) {
                for h in late {
                    self.hosts.entry(h.clone()).or_default().late += 1;
                    hosts.push(h);
                }
                changed.push(i);
                if unit.wanted(&self.row.policy) > 0 {
                    self.ready.insert(i);
                }
            }
        }
        (changed, hosts)
    }

    fn open(&self) -> bool {
        self.units.iter().any(|u| u.status == Status::Open)
    }
}

/// A project as `nodus compute status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectStatus {
    pub id: String,
    pub name: String,
    pub state: ProjectState,
    pub units: u32,
    pub done: u32,
    pub failed: u32,
    pub in_progress: u32,
    pub valid: u64,
    pub invalid: u64,
    pub errors: u64,
    pub late: u64,
    pub fuel: u64,
    pub policy: Policy,
    pub volunteers: Vec<VolunteerCredit>,
    pub created_ms: u64,
    /// What the project pays, for one that does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pay: Option<PayStatus>,
}

/// A paying project's payroll; amounts in wei, as decimal strings (they pass 2^53).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PayStatus {
    pub wei_per_gfuel: String,
    /// The account that pays, and why paying stopped short, if it did.
    pub account: Option<String>,
    pub note: Option<String>,
    /// Earned by valid results and not yet in a payment.
    pub owed: String,
    pub sending: String,
    pub paid: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VolunteerCredit {
    pub peer: String,
    pub valid: u64,
    pub invalid: u64,
    pub errors: u64,
    pub late: u64,
    pub credit: u64,
    pub trusted: bool,
    /// For a project that pays: where the volunteer is paid, and what was paid there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paid: Option<String>,
}

/// One accepted unit's output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnitResult {
    pub unit: u32,
    pub output: Output,
    pub fuel: u64,
}

/// What a project is made of.
pub struct NewProject {
    pub name: String,
    pub wasm: Vec<u8>,
    pub jobs: Vec<Job>,
    pub policy: Policy,
    pub fuel: u64,
    pub memory_mb: u32,
    pub output_bytes: u32,
    pub canonical_nans: bool,
    /// Wei per billion fuel of credit; 0: unpaid.
    pub rate: u128,
}

/// What a paying project owes one volunteer and may pay now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owed {
    pub project: ProjectId,
    pub host: Vec<u8>,
    pub to: Address,
    pub wei: u128,
}

/// Judgements of one Submit, for events and metrics.
#[derive(Debug, Default)]
pub struct SubmitOutcome {
    pub credit: u64,
    pub accepted: Vec<u32>,
    pub invalid: Vec<(u32, Vec<u8>)>,
    pub rejected: usize,
    pub finished: bool,
}

pub struct Coordinator {
    store: Arc<Store>,
    projects: Mutex<HashMap<ProjectId, Project>>,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The seed of a unit's `random_get`.
pub fn seed(id: &ProjectId, unit: u32) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"nodus compute unit seed");
    h.update(id);
    h.update(unit.to_be_bytes());
    h.finalize().into()
}

impl Coordinator {
    pub fn open(store: Arc<Store>) -> Result<Coordinator, ComputeError> {
        let projects = store
            .load()?
            .into_iter()
            .map(|l| (l.id, Project::from_loaded(l)))
            .collect();
        Ok(Coordinator {
            store,
            projects: Mutex::new(projects),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ProjectId, Project>> {
        self.projects.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates a project (the module already compiled by the caller); returns its id.
    pub fn create(&self, new: NewProject, now: u64) -> Result<ProjectId, ComputeError> {
        let mut id = [0u8; 16];
        rand::rng().fill(&mut id);
        let jobs: Vec<Job> = new
            .jobs
            .into_iter()
            .enumerate()
            .map(|(i, mut j)| {
                j.seed = seed(&id, i as u32);
                j
            })
            .collect();
        let row = ProjectRow {
            name: new.name,
            module: wire::module_hash(&new.wasm),
            module_len: new.wasm.len() as u32,
            policy: new.policy,
            fuel: new.fuel,
            memory_mb: new.memory_mb,
            output_bytes: new.output_bytes,
            canonical_nans: new.canonical_nans,
            units: jobs.len() as u32,
            created_ms: now,
            state: ProjectState::Active,
        };
        self.store.create(&id, &row, &new.wasm, &jobs, new.rate)?;
        let units = vec![Unit::new(row.policy.min_quorum); jobs.len()];
        let p = Project::from_loaded(Loaded {
            id,
            row,
            units,
            hosts: Vec::new(),
            rate: new.rate,
            payees: Vec::new(),
        });
        self.lock().insert(id, p);
        Ok(id)
    }

    pub fn ids(&self) -> Vec<ProjectId> {
        let mut v: Vec<(u64, ProjectId)> = self
            .lock()
            .iter()
            .map(|(id, p)| (p.row.created_ms, *id))
            .collect();
        v.sort();
        v.into_iter().map(|(_, id)| id).collect()
    }

    /// Announcements of the projects that still have work.
    pub fn announces(&self) -> Vec<Announce> {
        self.lock()
            .iter()
            .filter(|(_, p)| p.row.state == ProjectState::Active)
            .map(|(id, p)| p.announce(*id))
            .collect()
    }

    pub fn module(&self, id: &ProjectId) -> Result<Option<Vec<u8>>, ComputeError> {
        let hash = match self.lock().get(id) {
            Some(p) => p.row.module,
            None => return Ok(None),
        };
        Ok(self.store.module(&hash)?)
    }

    /// Resolves a project id given as hex, or a unique prefix of it.
    pub fn find(&self, hex_id: &str) -> Result<ProjectId, ComputeError> {
        let hex_id = hex_id.to_ascii_lowercase();
        let matches: Vec<ProjectId> = self
            .lock()
            .keys()
            .filter(|id| hex::encode(id).starts_with(&hex_id))
            .copied()
            .collect();
        match matches.as_slice() {
            [one] if !hex_id.is_empty() => Ok(*one),
            [] | [_] => Err(ComputeError::NoSuchProject(hex_id)),
            _ => Err(ComputeError::Ambiguous(hex_id)),
        }
    }

    /// Hands `host`, whose results agree with those of its `class` and who is paid at
    /// `payout`, up to `max` replicas. `None`: the project is unknown here.
    #[allow(clippy::too_many_arguments)]
    pub fn work(
        &self,
        id: &ProjectId,
        host: &[u8],
        class: &str,
        max: usize,
        payout: Option<Address>,
        now: u64,
    ) -> Result<Option<(Vec<Assignment>, u64, bool)>, ComputeError> {
        let mut projects = self.lock();
        let Some(p) = projects.get_mut(id) else {
            return Ok(None);
        };
        let new_payout = p.rate > 0
            && payout.is_some()
            && p.payees.get(host).is_none_or(|x| x.address != payout);
        if new_payout {
            let mut payee = p.payees.get(host).cloned().unwrap_or_default();
            payee.address = payout;
            self.write_payee(id, host, &payee)?;
            p.payees.insert(host.to_vec(), payee);
        }
        let credit = p.hosts.get(host).map_or(0, |h| h.credit);
        if p.row.state != ProjectState::Active {
            return Ok(Some((Vec::new(), credit, true)));
        }
        let (mut changed, late) = p.expire(now);
        let policy = p.row.policy;
        let trusted = p.hosts.get(host).is_some_and(|h| h.trusted(&policy));
        let mut picked = Vec::new();
        // Units this volunteer already has are skipped; look at a bounded number.
        let candidates: Vec<u32> = p.ready.iter().copied().take(4 * wire::MAX_BATCH).collect();
        for i in candidates {
            if picked.len() >= max {
                break;
            }
            let unit = &mut p.units[i as usize];
            if !unit.may_take(host, class) {
                continue;
            }
            let audit = rand::rng().random_range(0..1000) < policy.audit_per_mille;
            unit.set_quorum(trusted, audit, &policy);
            let replica = unit.send(host.to_vec(), class, now, &policy);
            p.deadlines
                .insert((now.saturating_add(policy.delay_bound_ms), i));
            if unit.wanted(&policy) == 0 {
                p.ready.remove(&i);
            }
            picked.push((i, replica));
            changed.push(i);
        }
        if changed.is_empty() {
            return Ok(Some((Vec::new(), credit, false)));
        }
        let tx = self
            .store
            .db
            .begin_write()
            .map_err(store::StoreError::from)?;
        let mut out = Vec::with_capacity(picked.len());
        {
            let mut units = tx.open_table(UNITS).map_err(store::StoreError::from)?;
            changed.sort_unstable();
            changed.dedup();
            for i in &changed {
                units
                    .insert((&id[..], *i), &store::encode(&p.units[*i as usize])[..])
                    .map_err(store::StoreError::from)?;
            }
            let jobs = tx.open_table(JOBS).map_err(store::StoreError::from)?;
            for (unit, replica) in picked {
                let job = jobs
                    .get((&id[..], unit))
                    .map_err(store::StoreError::from)?
                    .ok_or(store::StoreError::Row("job"))?;
                out.push(Assignment {
                    unit,
                    replica,
                    job: store::decode(job.value(), "job")?,
                });
            }
            self.write_hosts(&tx, id, p, &late)?;
        }
        tx.commit().map_err(store::StoreError::from)?;
        p.version += 1;
        Ok(Some((out, credit, false)))
    }

    fn write_hosts(
        &self,
        tx: &redb::WriteTransaction,
        id: &ProjectId,
        p: &Project,
        which: &[Vec<u8>],
    ) -> Result<(), ComputeError> {
        let mut hosts = tx.open_table(HOSTS).map_err(store::StoreError::from)?;
        for (h, host) in which.iter().filter_map(|h| p.hosts.get_key_value(h)) {
            hosts
                .insert((&id[..], &h[..]), &store::encode(host)[..])
                .map_err(store::StoreError::from)?;
        }
        Ok(())
    }

    /// Takes returned replicas from `host`.
    pub fn submit(
        &self,
        id: &ProjectId,
        host: &[u8],
        results: Vec<Returned>,
    ) -> Result<Option<SubmitOutcome>, ComputeError> {
        let mut projects = self.lock();
        let Some(p) = projects.get_mut(id) else {
            return Ok(None);
        };
        let policy = p.row.policy;
        let mut outcome = SubmitOutcome::default();
        let mut changed = Vec::new();
        let mut keep: Vec<(u32, u32, Output)> = Vec::new();
        let mut accepted: Vec<(u32, u32)> = Vec::new();
        let mut drop_outputs: Vec<(u32, u32)> = Vec::new();
        let mut touched = vec![host.to_vec()];
        for r in results {
            let Some(unit) = p.units.get_mut(r.unit as usize) else {
                outcome.rejected += 1;
                continue;
            };
            let ret = match &r.result {
                Ok(out) if output_size(out) <= p.row.output_bytes as usize => Return::Success {
                    hash: wire::output_hash(out),
                    fuel: r.fuel,
                },
                Ok(_) => Return::Error("output over the project's limit".into()),
                Err(f) => Return::Error(f.to_string()),
            };
            let errored = matches!(ret, Return::Error(_));
            let fx = match unit.take(r.replica, host, ret, &policy) {
                Ok(fx) => fx,
                Err(_) => {
                    outcome.rejected += 1;
                    continue;
                }
            };
            if errored {
                p.hosts.entry(host.to_vec()).or_default().errors += 1;
            } else if let Ok(out) = r.result {
                match &unit.status {
                    // Judged at once against an accepted output: nothing to keep.
                    Status::Done { .. } if fx.accepted.is_none() => {}
                    _ => keep.push((r.unit, r.replica, out)),
                }
            }
            for j in &fx.judged {
                p.hosts.entry(j.host.clone()).or_default().record(j);
                touched.push(j.host.clone());
                if !j.valid {
                    outcome.invalid.push((r.unit, j.host.clone()));
                    drop_outputs.push((r.unit, j.replica));
                }
            }
            if let Some(canon) = fx.accepted {
                accepted.push((r.unit, canon));
                outcome.accepted.push(r.unit);
            }
            if fx.failed {
                for rep in &unit.replicas {
                    drop_outputs.push((r.unit, rep.id));
                }
            }
            changed.push(r.unit);
            p.index(r.unit);
        }
        if !p.open() && p.row.state == ProjectState::Active {
            p.row.state = ProjectState::Finished;
            outcome.finished = true;
        }
        outcome.credit = p.hosts.get(host).map_or(0, |h| h.credit);
        if changed.is_empty() {
            return Ok(Some(outcome));
        }
        let tx = self
            .store
            .db
            .begin_write()
            .map_err(store::StoreError::from)?;
        {
            let mut units = tx.open_table(UNITS).map_err(store::StoreError::from)?;
            changed.sort_unstable();
            changed.dedup();
            for i in &changed {
                units
                    .insert((&id[..], *i), &store::encode(&p.units[*i as usize])[..])
                    .map_err(store::StoreError::from)?;
            }
            let mut outputs = tx.open_table(OUTPUTS).map_err(store::StoreError::from)?;
            for (unit, replica, out) in &keep {
                outputs
                    .insert((&id[..], *unit, *replica), &store::encode(out)[..])
                    .map_err(store::StoreError::from)?;
            }
            // An accepted unit keeps only its canonical output.
            for (unit, canon) in &accepted {
                for rep in &p.units[*unit as usize].replicas {
                    if rep.id != *canon {
                        drop_outputs.push((*unit, rep.id));
                    }
                }
            }
            for (unit, replica) in drop_outputs {
                if !matches!(p.units[unit as usize].status, Status::Done { replica: c, .. } if c == replica)
                {
                    outputs
                        .remove((&id[..], unit, replica))
                        .map_err(store::StoreError::from)?;
                }
            }
            if outcome.finished {
                tx.open_table(PROJECTS)
                    .map_err(store::StoreError::from)?
                    .insert(&id[..], &store::encode(&p.row)[..])
                    .map_err(store::StoreError::from)?;
            }
            self.write_hosts(&tx, id, p, &touched)?;
        }
        tx.commit().map_err(store::StoreError::from)?;
        p.version += 1;
        Ok(Some(outcome))
    }

    fn write_payee(&self, id: &ProjectId, host: &[u8], payee: &Payee) -> Result<(), ComputeError> {
        let tx = self
            .store
            .db
            .begin_write()
            .map_err(store::StoreError::from)?;
        tx.open_table(PAYEES)
            .map_err(store::StoreError::from)?
            .insert((&id[..], host), &store::encode(payee)[..])
            .map_err(store::StoreError::from)?;
        tx.commit().map_err(store::StoreError::from)?;
        Ok(())
    }

    /// Whether any project here pays (only then can anything be owed or on its way).
    pub fn pays(&self) -> bool {
        self.lock().values().any(|p| p.rate > 0)
    }

    /// What paying projects owe volunteers with a payout address and no payment on its
    /// way (so a volunteer gets one payment at a time, however often it earns).
    pub fn owed(&self) -> Vec<Owed> {
        let projects = self.lock();
        let mut out = Vec::new();
        for (id, p) in projects.iter().filter(|(_, p)| p.rate > 0) {
            for (host, payee) in &p.payees {
                let (Some(to), 0) = (payee.address, payee.sending) else {
                    continue;
                };
                let credit = p.hosts.get(host).map_or(0, |h| h.credit);
                let wei = pay::earned(credit, p.rate).saturating_sub(payee.paid);
                if wei > 0 {
                    out.push(Owed {
                        project: *id,
                        host: host.clone(),
                        to,
                        wei,
                    });
                }
            }
        }
        out.sort_by(|a, b| (a.project, &a.host).cmp(&(b.project, &b.host)));
        out
    }

    /// Writes signed payments of what was owed, before any of them is sent.
    pub fn record(&self, payments: &[(Owed, Signed)]) -> Result<(), ComputeError> {
        let mut projects = self.lock();
        let tx = self
            .store
            .db
            .begin_write()
            .map_err(store::StoreError::from)?;
        let mut payees: HashMap<(ProjectId, Vec<u8>), Payee> = HashMap::new();
        {
            let mut rows = tx.open_table(PAYMENTS).map_err(store::StoreError::from)?;
            for (o, s) in payments {
                let payment = Payment {
                    project: o.project,
                    host: o.host.clone(),
                    to: o.to,
                    wei: o.wei,
                    nonce: s.nonce,
                    cost: s.cost,
                    raw: s.raw.clone(),
                };
                rows.insert(&s.hash[..], &store::encode(&payment)[..])
                    .map_err(store::StoreError::from)?;
                let key = (o.project, o.host.clone());
                let payee = payees.entry(key).or_insert_with(|| {
                    projects
                        .get(&o.project)
                        .and_then(|p| p.payees.get(&o.host).cloned())
                        .unwrap_or_default()
                });
                payee.sending = payee.sending.saturating_add(o.wei);
            }
            let mut rows = tx.open_table(PAYEES).map_err(store::StoreError::from)?;
            for ((id, host), payee) in &payees {
                rows.insert((&id[..], &host[..]), &store::encode(payee)[..])
                    .map_err(store::StoreError::from)?;
            }
        }
        tx.commit().map_err(store::StoreError::from)?;
        for ((id, host), payee) in payees {
            if let Some(p) = projects.get_mut(&id) {
                p.payees.insert(host, payee);
                p.version += 1;
            }
        }
        Ok(())
    }

    /// Payments signed and not yet seen in a block, with their transaction hashes.
    pub fn payments(&self) -> Result<Vec<([u8; 32], Payment)>, ComputeError> {
        Ok(self.store.payments()?)
    }

    /// Forgets a payment: a block holds it (`mined`: its wei count as paid), or its
    /// nonce went to another transaction (its wei are owed again).
    pub fn settle(
        &self,
        hash: &[u8; 32],
        payment: &Payment,
        mined: bool,
    ) -> Result<(), ComputeError> {
        let mut projects = self.lock();
        let mut payee = projects
            .get(&payment.project)
            .and_then(|p| p.payees.get(&payment.host).cloned())
            .unwrap_or_default();
        payee.sending = payee.sending.saturating_sub(payment.wei);
        if mined {
            payee.paid = payee.paid.saturating_add(payment.wei);
        }
        let tx = self
            .store
            .db
            .begin_write()
            .map_err(store::StoreError::from)?;
        {
            tx.open_table(PAYMENTS)
                .map_err(store::StoreError::from)?
                .remove(&hash[..])
                .map_err(store::StoreError::from)?;
            tx.open_table(PAYEES)
                .map_err(store::StoreError::from)?
                .insert(
                    (&payment.project[..], &payment.host[..]),
                    &store::encode(&payee)[..],
                )
                .map_err(store::StoreError::from)?;
        }
        tx.commit().map_err(store::StoreError::from)?;
        if let Some(p) = projects.get_mut(&payment.project) {
            p.payees.insert(payment.host.clone(), payee);
            p.version += 1;
        }
        Ok(())
    }

    pub fn cancel(&self, id: &ProjectId) -> Result<bool, ComputeError> {
        let mut projects = self.lock();
        let p = projects
            .get_mut(id)
            .ok_or_else(|| ComputeError::NoSuchProject(hex::encode(id)))?;
        if p.row.state != ProjectState::Active {
            return Ok(false);
        }
        p.row.state = ProjectState::Cancelled;
        p.ready.clear();
        p.version += 1;
        self.store.set_state(id, &p.row)?;
        Ok(true)
    }

    pub fn status(&self, id: &ProjectId) -> Option<ProjectStatus> {
        let projects = self.lock();
        let p = projects.get(id)?;
        let mut s = ProjectStatus {
            id: hex::encode(id),
            name: p.row.name.clone(),
            state: p.row.state,
            units: p.row.units,
            done: 0,
            failed: 0,
            in_progress: 0,
            valid: 0,
            invalid: 0,
            errors: 0,
            late: 0,
            fuel: 0,
            policy: p.row.policy,
            volunteers: Vec::new(),
            created_ms: p.row.created_ms,
            pay: None,
        };
        for u in &p.units {
            match u.status {
                Status::Done { fuel, .. } => {
                    s.done += 1;
                    s.fuel += fuel;
                }
                Status::Failed(_) => s.failed += 1,
                Status::Open => {}
            }
            for r in &u.replicas {
                match &r.state {
                    ReplicaState::InProgress => s.in_progress += 1,
                    ReplicaState::Success {
                        verdict: Verdict::Valid,
                        ..
                    } => s.valid += 1,
                    ReplicaState::Success {
                        verdict: Verdict::Invalid,
                        ..
                    } => s.invalid += 1,
                    ReplicaState::Error(_) => s.errors += 1,
                    _ => {}
                }
            }
        }
        for (h, host) in &p.hosts {
            s.late += host.late;
            s.volunteers.push(VolunteerCredit {
                peer: libp2p::PeerId::from_bytes(h)
                    .map(|p| p.to_string())
                    .unwrap_or_else(|_| hex::encode(h)),
                valid: host.valid,
                invalid: host.invalid,
                errors: host.errors,
                late: host.late,
                credit: host.credit,
                trusted: host.trusted(&p.row.policy),
                payout: None,
                paid: None,
            });
            if p.rate > 0 {
                let payee = p.payees.get(h).cloned().unwrap_or_default();
                let v = s.volunteers.last_mut().expect("pushed above");
                v.payout = payee.address.as_ref().map(pay::show);
                v.paid = Some(payee.paid.to_string());
            }
        }
        if p.rate > 0 {
            let (mut owed, mut sending, mut paid) = (0u128, 0u128, 0u128);
            for (h, host) in &p.hosts {
                let payee = p.payees.get(h).cloned().unwrap_or_default();
                owed += pay::earned(host.credit, p.rate).saturating_sub(payee.paid + payee.sending);
                sending += payee.sending;
                paid += payee.paid;
            }
            s.pay = Some(PayStatus {
                wei_per_gfuel: p.rate.to_string(),
                account: None,
                note: None,
                owed: owed.to_string(),
                sending: sending.to_string(),
                paid: paid.to_string(),
            });
        }
        s.volunteers
            .sort_by(|a, b| b.credit.cmp(&a.credit).then(a.peer.cmp(&b.peer)));
        Some(s)
    }

    /// A change counter: it moves whenever anything in the project does.
    pub fn version(&self, id: &ProjectId) -> Option<u64> {
        self.lock().get(id).map(|p| p.version)
    }

    /// Accepted outputs of units `from..`, at most `limit`; and the unit to ask from next.
    pub fn results(
        &self,
        id: &ProjectId,
        from: u32,
        limit: usize,
    ) -> Result<(Vec<UnitResult>, Option<u32>), ComputeError> {
        let accepted: Vec<(u32, u32, u64)> = {
            let projects = self.lock();
            let p = projects
                .get(id)
                .ok_or_else(|| ComputeError::NoSuchProject(hex::encode(id)))?;
            p.units
                .iter()
                .enumerate()
                .skip(from as usize)
                .filter_map(|(i, u)| match u.status {
                    Status::Done { replica, fuel, .. } => Some((i as u32, replica, fuel)),
                    _ => None,
                })
                .take(limit + 1)
                .collect()
        };
        let next = accepted.get(limit).map(|a| a.0);
        let tx = self
            .store
            .db
            .begin_read()
            .map_err(store::StoreError::from)?;
        let outputs = tx.open_table(OUTPUTS).map_err(store::StoreError::from)?;
        let mut out = Vec::new();
        for (unit, replica, fuel) in accepted.into_iter().take(limit) {
            let Some(v) = outputs
                .get((&id[..], unit, replica))
                .map_err(store::StoreError::from)?
            else {
                return Err(store::StoreError::Row("output").into());
            };
            out.push(UnitResult {
                unit,
                output: store::decode(v.value(), "output")?,
                fuel,
            });
        }
        Ok((out, next))
    }

    /// Marks replicas past their deadline late in every project, so their units are
    /// handed out again; returns how many units changed.
    pub fn tick(&self, now: u64) -> Result<usize, ComputeError> {
        let mut projects = self.lock();
        let mut n = 0;
        for (id, p) in projects.iter_mut() {
            let (changed, late) = p.expire(now);
            if changed.is_empty() {
                continue;
            }
            n += changed.len();
            let tx = self
                .store
                .db
                .begin_write()
                .map_err(store::StoreError::from)?;
            {
                let mut units = tx.open_table(UNITS).map_err(store::StoreError::from)?;
                for i in &changed {
                    units
                        .insert((&id[..], *i), &store::encode(&p.units[*i as usize])[..])
                        .map_err(store::StoreError::from)?;
                }
                self.write_hosts(&tx, id, p, &late)?;
            }
            tx.commit().map_err(store::StoreError::from)?;
            p.version += 1;
        }
        Ok(n)
    }

    /// Whether any project is active (for announcing).
    pub fn any_active(&self) -> bool {
        self.lock()
            .values()
            .any(|p| p.row.state == ProjectState::Active)
    }

    /// One unit's state, replicas and all.
    pub fn unit(&self, id: &ProjectId, unit: u32) -> Option<Unit> {
        self.lock().get(id)?.units.get(unit as usize).cloned()
    }

    /// Counts of every unit's status, for tests: (open, done, failed).
    pub fn counts(&self, id: &ProjectId) -> Option<(u32, u32, u32)> {
        let projects = self.lock();
        let p = projects.get(id)?;
        let mut c = (0, 0, 0);
        for u in &p.units {
            match u.status {
                Status::Open => c.0 += 1,
                Status::Done { .. } => c.1 += 1,
                Status::Failed(_) => c.2 += 1,
            }
        }
        Some(c)
    }
}

fn output_size(o: &Output) -> usize {
    o.stdout.len()
        + o.files
            .iter()
            .map(|(n, d)| n.len() + d.len())
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &[u8] = b"volunteer";
    const RATE: u128 = 3 * pay::GFUEL;

    fn open(dir: &std::path::Path) -> Coordinator {
        Coordinator::open(Arc::new(Store::open(&dir.join("compute.redb")).unwrap())).unwrap()
    }

    fn signed(h: u8, nonce: u64) -> Signed {
        Signed {
            hash: [h; 32],
            nonce,
            cost: 1,
            raw: vec![h],
        }
    }

    /// A paying project of one unit, accepted alone from [`HOST`] at 5 fuel.
    fn paying(c: &Coordinator) -> ProjectId {
        let policy = Policy {
            min_quorum: 1,
            ..Policy::default()
        };
        let id = c
            .create(
                NewProject {
                    name: "p".into(),
                    wasm: vec![0],
                    jobs: vec![Job::default()],
                    policy,
                    fuel: 10,
                    memory_mb: 1,
                    output_bytes: 100,
                    canonical_nans: false,
                    rate: RATE,
                },
                0,
            )
            .unwrap();
        let (units, _, _) = c
            .work(&id, HOST, "x", 1, Some([9; 20]), 0)
            .unwrap()
            .unwrap();
        let returned = Returned {
            unit: 0,
            replica: units[0].replica,
            fuel: 5,
            result: Ok(Output::default()),
        };
        let out = c.submit(&id, HOST, vec![returned]).unwrap().unwrap();
        assert_eq!((out.accepted, out.credit), (vec![0], 5));
        id
    }

    #[test]
    fn what_is_owed_is_signed_once_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let c = open(dir.path());
        let id = paying(&c);
        let owed = c.owed();
        let want = Owed {
            project: id,
            host: HOST.to_vec(),
            to: [9; 20],
            wei: 15,
        };
        assert_eq!(owed, vec![want.clone()]);
        c.record(&[(want.clone(), signed(1, 0))]).unwrap();
        // On its way: not owed again, however often the payroll looks.
        assert!(c.owed().is_empty());
        drop(c);

        let c = open(dir.path());
        assert!(
            c.owed().is_empty(),
            "a signed payment is not signed again after a restart"
        );
        let pending = c.payments().unwrap();
        assert_eq!(pending.len(), 1);
        let (hash, payment) = &pending[0];
        assert_eq!(
            (*hash, payment.wei, payment.raw.clone()),
            ([1; 32], 15, vec![1])
        );
        let pay = c.status(&id).unwrap().pay.unwrap();
        assert_eq!((pay.owed.as_str(), pay.sending.as_str()), ("0", "15"));

        // Its nonce went to another transaction: owed again, and signed anew.
        c.settle(hash, payment, false).unwrap();
        assert_eq!(c.owed(), vec![want.clone()]);
        c.record(&[(want, signed(2, 1))]).unwrap();
        let (hash, payment) = c.payments().unwrap().remove(0);
        c.settle(&hash, &payment, true).unwrap();
        drop(c);

        let c = open(dir.path());
        assert!(c.owed().is_empty());
        assert!(c.payments().unwrap().is_empty());
        let s = c.status(&id).unwrap();
        let pay = s.pay.unwrap();
        assert_eq!(
            (pay.owed.as_str(), pay.sending.as_str(), pay.paid.as_str()),
            ("0", "0", "15")
        );
        assert_eq!(s.volunteers[0].paid.as_deref(), Some("15"));
        assert_eq!(
            s.volunteers[0].payout.as_deref(),
            Some("0x0909090909090909090909090909090909090909")
        );
    }

    #[test]
    fn a_project_that_does_not_pay_owes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let c = open(dir.path());
        let id = c
            .create(
                NewProject {
                    name: "p".into(),
                    wasm: vec![0],
                    jobs: vec![Job::default()],
                    policy: Policy::default(),
                    fuel: 10,
                    memory_mb: 1,
                    output_bytes: 100,
                    canonical_nans: false,
                    rate: 0,
                },
                0,
            )
            .unwrap();
        c.work(&id, HOST, "x", 1, Some([9; 20]), 0)
            .unwrap()
            .unwrap();
        assert!(c.owed().is_empty());
        assert!(c.status(&id).unwrap().pay.is_none());
    }
}
