//! Replicas: copies of a patient's vault on nodes the patient chose, and that agreed to
//! hold it (`nodus vault hold <patient>` there). What travels is what is stored:
//! records sealed under their data keys, grants, the log and its anchors. A replica
//! cannot read a record; it checks what it is sent (rows decode, the log's hashes chain
//! on from what it holds), so nobody rewrites history through it. A copy is sent again
//! from the last entry the replica acknowledged after a commit, so `kill -9` of either
//! side loses nothing: the patient sends again what was not acknowledged.
//!
//! Restore: a patient's node whose vault is gone (but whose keys are kept: the
//! identity key and `vault/vault.key`) takes everything back from a replica, checking
//! that every record opens with its master key and the log chains from its start.

use redb::{ReadableDatabase, ReadableTable};

use crate::crypto;
use crate::error::VaultError;
use crate::log;
use crate::store::{
    self, ANCHORS, AnchorRow, GRANTS, GrantRow, HELD_ANCHORS, HELD_GRANTS, HELD_LOG, HELD_RECORDS,
    HOLDING, HoldingRow, LOG, LogRow, META, RECORDS, REPLICAS, RecordRow, ReplicaRow,
};
use crate::vault::{Vault, grant_aad};
use crate::wire::{BATCH_BYTES, Chunk, Refusal, Snapshot};

fn held_key(patient: &str, name: &str) -> String {
    format!("{patient}\0{name}")
}

/// Splits rows into chunks of about [`BATCH_BYTES`].
fn chunked(records: Vec<(String, Vec<u8>)>, log: Vec<(u64, Vec<u8>)>) -> Vec<Chunk> {
    let mut out = Vec::new();
    let mut c = Chunk::default();
    let mut bytes = 0;
    for r in records {
        bytes += r.0.len() + r.1.len() + 8;
        c.records.push(r);
        if bytes >= BATCH_BYTES {
            out.push(std::mem::take(&mut c));
            bytes = 0;
        }
    }
    for e in log {
        bytes += e.1.len() + 12;
        c.log.push(e);
        if bytes >= BATCH_BYTES {
            out.push(std::mem::take(&mut c));
            bytes = 0;
        }
    }
    if !c.records.is_empty() || !c.log.is_empty() {
        out.push(c);
    }
    out
}

/// A replica's view of one patient, for status.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReplicaInfo {
    pub peer: String,
    /// Log entries it acknowledged; `behind` is how many more there are.
    pub acked: u64,
    pub behind: u64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HoldingInfo {
    pub patient: String,
    pub entries: u64,
    pub records: u64,
    pub bytes: u64,
}

/// What a restore took back.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Restored {
    pub records: usize,
    pub grants: usize,
    pub entries: u64,
}

impl Vault {
    // ---- the patient's side ----

    pub fn add_replica(&self, peer: &str) -> Result<bool, VaultError> {
        let w = self.db.begin_write()?;
        let new = {
            let mut t = w.open_table(REPLICAS)?;
            let new = t.get(peer)?.is_none();
            if new {
                let row = ReplicaRow {
                    acked: 0,
                    added_ms: self.now(),
                };
                t.insert(peer, store::encode(&row).as_slice())?;
            }
            new
        };
        w.commit()?;
        Ok(new)
    }

    pub fn remove_replica(&self, peer: &str) -> Result<bool, VaultError> {
        let w = self.db.begin_write()?;
        let had = w.open_table(REPLICAS)?.remove(peer)?.is_some();
        w.commit()?;
        Ok(had)
    }

    pub fn replicas(&self) -> Result<Vec<ReplicaInfo>, VaultError> {
        let (entries, _) = self.head()?;
        let r = self.db.begin_read()?;
        let t = r.open_table(REPLICAS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            let row: ReplicaRow = store::decode(v.value(), "replica")?;
            out.push(ReplicaInfo {
                peer: k.value().to_string(),
                acked: row.acked,
                behind: entries.saturating_sub(row.acked),
            });
        }
        Ok(out)
    }

    /// Notes that `peer` holds everything before entry `upto` (never moves back).
    pub fn set_acked(&self, peer: &str, upto: u64) -> Result<(), VaultError> {
        let w = self.db.begin_write()?;
        {
            let mut t = w.open_table(REPLICAS)?;
            let row = match t.get(peer)? {
                Some(v) => store::decode::<ReplicaRow>(v.value(), "replica")?,
                None => return Ok(()),
            };
            let row = ReplicaRow {
                acked: row.acked.max(upto),
                ..row
            };
            t.insert(peer, store::encode(&row).as_slice())?;
        }
        w.commit()?;
        Ok(())
    }

    /// What a replica that holds entries before `acked` lacks: records changed at or
    /// after it, the log from it, and every grant and anchor; read in one transaction.
    pub fn changes_since(&self, acked: u64) -> Result<(Snapshot, Vec<Chunk>), VaultError> {
        let r = self.db.begin_read()?;
        let log_t = r.open_table(LOG)?;
        let upto = log_t.last()?.map_or(0, |(k, _)| k.value() + 1);
        let mut log = Vec::new();
        for row in log_t.range(acked..)? {
            let (k, v) = row?;
            log.push((k.value(), v.value().to_vec()));
        }
        let mut records = Vec::new();
        for row in r.open_table(RECORDS)?.iter()? {
            let (k, v) = row?;
            let mut row: RecordRow = store::decode(v.value(), "record")?;
            if row.changed >= acked {
                row.digest = [0; 32];
                records.push((k.value().to_string(), store::encode(&row)));
            }
        }
        let grants = r
            .open_table(GRANTS)?
            .iter()?
            .map(|row| row.map(|(_, v)| v.value().to_vec()))
            .collect::<Result<Vec<_>, _>>()?;
        let anchors = r
            .open_table(ANCHORS)?
            .iter()?
            .map(|row| row.map(|(k, v)| (k.value(), v.value().to_vec())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((
            Snapshot {
                upto,
                grants,
                anchors,
            },
            chunked(records, log),
        ))
    }

    /// Takes back a vault from a replica's copy, into this empty vault: every record
    /// must open with this node's keys, every grant key too, and the log must chain
    /// from its start to `upto` entries.
    pub fn restore(&self, snap: Snapshot, chunks: Vec<Chunk>) -> Result<Restored, VaultError> {
        if self.count()? > 0 || self.head()?.0 > 0 {
            return Err(VaultError::NotEmpty);
        }
        let broken = |why: String| VaultError::Restore(why);
        let mut records = Vec::new();
        let mut log = Vec::new();
        for c in chunks {
            records.extend(c.records);
            log.extend(c.log);
        }
        log.sort_by_key(|(k, _)| *k);
        let mut prev = log::GENESIS;
        for (i, (seq, bytes)) in log.iter().enumerate() {
            let row: LogRow = store::decode(bytes, "log")?;
            if *seq != i as u64
                || row.prev != prev
                || log::entry_hash(&prev, *seq, &row.event) != row.hash
            {
                return Err(broken(format!("the log breaks at entry {seq}")));
            }
            prev = row.hash;
        }
        if log.len() as u64 != snap.upto {
            return Err(broken(format!(
                "{} log entries of {}",
                log.len(),
                snap.upto
            )));
        }
        let mut rows = Vec::with_capacity(records.len());
        let mut max_order = 0;
        for (rid, bytes) in records {
            let mut row: RecordRow = store::decode(&bytes, "record")?;
            let plain = self
                .open_body(&rid, &row)
                .map_err(|_| broken(format!("{rid} does not open with this vault's keys")))?;
            row.digest = <sha2::Sha256 as sha2::Digest>::digest(&plain).into();
            max_order = max_order.max(row.order + 1);
            rows.push((rid, row));
        }
        let mut grants = Vec::new();
        let mut max_grant = 0;
        for bytes in snap.grants {
            let g: GrantRow = store::decode(&bytes, "grant")?;
            crypto::open_key(self.keys().master(), &grant_aad(g.no), &g.key)
                .map_err(|_| broken(format!("the grant to {} does not open", g.provider)))?;
            max_grant = max_grant.max(g.no + 1);
            grants.push(g);
        }
        let w = self.db.begin_write()?;
        {
            let mut t = w.open_table(RECORDS)?;
            for (rid, row) in &rows {
                t.insert(rid.as_str(), store::encode(row).as_slice())?;
            }
            let mut t = w.open_table(GRANTS)?;
            for g in &grants {
                t.insert(g.provider.as_str(), store::encode(g).as_slice())?;
            }
            let mut t = w.open_table(LOG)?;
            for (seq, bytes) in &log {
                t.insert(*seq, bytes.as_slice())?;
            }
            let mut t = w.open_table(ANCHORS)?;
            for (seq, bytes) in &snap.anchors {
                store::decode::<AnchorRow>(bytes, "anchor")?;
                t.insert(*seq, bytes.as_slice())?;
            }
            let mut meta = w.open_table(META)?;
            meta.insert("order", max_order)?;
            meta.insert("grant", max_grant)?;
        }
        w.commit()?;
        Ok(Restored {
            records: rows.len(),
            grants: grants.len(),
            entries: snap.upto,
        })
    }

    // ---- the replica's side ----

    pub fn hold_for(&self, patient: &str) -> Result<bool, VaultError> {
        let w = self.db.begin_write()?;
        let new = {
            let mut t = w.open_table(HOLDING)?;
            let new = t.get(patient)?.is_none();
            if new {
                let row = HoldingRow {
                    held: 0,
                    bytes: 0,
                    since_ms: self.now(),
                };
                t.insert(patient, store::encode(&row).as_slice())?;
            }
            new
        };
        w.commit()?;
        Ok(new)
    }

    pub fn is_holding(&self, patient: &str) -> Result<bool, VaultError> {
        let r = self.db.begin_read()?;
        Ok(r.open_table(HOLDING)?.get(patient)?.is_some())
    }

    pub fn holdings(&self) -> Result<Vec<HoldingInfo>, VaultError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(HOLDING)?;
        let records = r.open_table(HELD_RECORDS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            let h: HoldingRow = store::decode(v.value(), "holding")?;
            let patient = k.value().to_string();
            let prefix = held_key(&patient, "");
            let mut n = 0;
            for row in records.range(prefix.as_str()..)? {
                let (k, _) = row?;
                if !k.value().starts_with(&prefix) {
                    break;
                }
                n += 1;
            }
            out.push(HoldingInfo {
                patient,
                entries: h.held,
                records: n,
                bytes: h.bytes,
            });
        }
        Ok(out)
    }

    /// Takes what `patient` sent to hold, all of it or none; how far the copy goes.
    pub fn hold(
        &self,
        patient: &str,
        snap: Snapshot,
        chunks: Vec<Chunk>,
        budget: u64,
    ) -> Result<u64, Refusal> {
        self.hold_inner(patient, snap, chunks, budget)
            .map_err(|e| match e {
                VaultError::Refused(r) => r,
                other => {
                    tracing::warn!(target: "nodus::vault", "holding for {patient}: {other}");
                    Refusal::Unavailable
                }
            })
    }

    fn hold_inner(
        &self,
        patient: &str,
        snap: Snapshot,
        chunks: Vec<Chunk>,
        budget: u64,
    ) -> Result<u64, VaultError> {
        let inconsistent = |why: String| VaultError::Refused(Refusal::Inconsistent(why));
        let w = self.db.begin_write()?;
        {
            let mut holding = w.open_table(HOLDING)?;
            let mut h: HoldingRow = match holding.get(patient)? {
                Some(v) => store::decode(v.value(), "holding")?,
                None => return Err(Refusal::NotHolding.into()),
            };
            let mut log_t = w.open_table(HELD_LOG)?;
            let mut prev = match h.held.checked_sub(1) {
                Some(last) => match log_t.get((patient, last))? {
                    Some(v) => store::decode::<LogRow>(v.value(), "log")?.hash,
                    None => return Err(inconsistent("the held log has a gap".into())),
                },
                None => log::GENESIS,
            };
            let mut records_t = w.open_table(HELD_RECORDS)?;
            let mut bytes = h.bytes as i64;
            let mut next = h.held;
            for c in chunks {
                for (seq, row_bytes) in c.log {
                    let row: LogRow = store::decode(&row_bytes, "log")
                        .map_err(|_| inconsistent(format!("log entry {seq} does not decode")))?;
                    if seq < next {
                        continue; // already held: sent again after a lost acknowledgement
                    }
                    if seq != next
                        || row.prev != prev
                        || log::entry_hash(&prev, seq, &row.event) != row.hash
                    {
                        return Err(inconsistent(format!(
                            "log entry {seq} does not chain on from entry {}",
                            next.wrapping_sub(1)
                        )));
                    }
                    bytes += row_bytes.len() as i64;
                    log_t.insert((patient, seq), row_bytes.as_slice())?;
                    prev = row.hash;
                    next += 1;
                }
                for (rid, row_bytes) in c.records {
                    store::decode::<RecordRow>(&row_bytes, "record")
                        .map_err(|_| inconsistent(format!("{rid} does not decode")))?;
                    let k = held_key(patient, &rid);
                    if let Some(old) = records_t.insert(k.as_str(), row_bytes.as_slice())? {
                        bytes -= old.value().len() as i64;
                    }
                    bytes += row_bytes.len() as i64;
                }
            }
            if next != snap.upto {
                return Err(inconsistent(format!(
                    "the log goes to {next}, the snapshot says {}",
                    snap.upto
                )));
            }
            let mut grants_t = w.open_table(HELD_GRANTS)?;
            let prefix = held_key(patient, "");
            let old: Vec<String> = grants_t
                .range(prefix.as_str()..)?
                .map(|r| r.map(|(k, _)| k.value().to_string()))
                .take_while(|k| k.as_ref().map_or(true, |k| k.starts_with(&prefix)))
                .collect::<Result<_, _>>()?;
            for k in old {
                if let Some(v) = grants_t.remove(k.as_str())? {
                    bytes -= v.value().len() as i64;
                }
            }
            for g in &snap.grants {
                let row: GrantRow = store::decode(g, "grant")
                    .map_err(|_| inconsistent("a grant does not decode".into()))?;
                grants_t.insert(held_key(patient, &row.provider).as_str(), g.as_slice())?;
                bytes += g.len() as i64;
            }
            let mut anchors_t = w.open_table(HELD_ANCHORS)?;
            for (seq, a) in &snap.anchors {
                store::decode::<AnchorRow>(a, "anchor")
                    .map_err(|_| inconsistent("an anchor does not decode".into()))?;
                if anchors_t.insert((patient, *seq), a.as_slice())?.is_none() {
                    bytes += a.len() as i64;
                }
            }
            let bytes = bytes.max(0) as u64;
            if bytes > budget {
                return Err(Refusal::Full {
                    budget_mb: budget >> 20,
                }
                .into());
            }
            h.held = next;
            h.bytes = bytes;
            holding.insert(patient, store::encode(&h).as_slice())?;
        }
        w.commit()?;
        Ok(snap.upto)
    }

    /// Everything held for `patient`, for its restore.
    pub fn held(&self, patient: &str) -> Result<(Snapshot, Vec<Chunk>), VaultError> {
        let r = self.db.begin_read()?;
        let h: HoldingRow = match r.open_table(HOLDING)?.get(patient)? {
            Some(v) => store::decode(v.value(), "holding")?,
            None => return Err(Refusal::NotHolding.into()),
        };
        let prefix = held_key(patient, "");
        let mut records = Vec::new();
        for row in r.open_table(HELD_RECORDS)?.range(prefix.as_str()..)? {
            let (k, v) = row?;
            let Some(rid) = k.value().strip_prefix(&prefix) else {
                break;
            };
            records.push((rid.to_string(), v.value().to_vec()));
        }
        let mut grants = Vec::new();
        for row in r.open_table(HELD_GRANTS)?.range(prefix.as_str()..)? {
            let (k, v) = row?;
            if !k.value().starts_with(&prefix) {
                break;
            }
            grants.push(v.value().to_vec());
        }
        let mut log = Vec::new();
        for row in r
            .open_table(HELD_LOG)?
            .range((patient, 0)..(patient, u64::MAX))?
        {
            let (k, v) = row?;
            log.push((k.value().1, v.value().to_vec()));
        }
        let mut anchors = Vec::new();
        for row in r
            .open_table(HELD_ANCHORS)?
            .range((patient, 0)..(patient, u64::MAX))?
        {
            let (k, v) = row?;
            anchors.push((k.value().1, v.value().to_vec()));
        }
        Ok((
            Snapshot {
                upto: h.held,
                grants,
                anchors,
            },
            chunked(records, log),
        ))
    }
}
