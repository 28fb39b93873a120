//! `compute.redb`: a coordinator's projects and a volunteer's finished work.
//!
//! A coordinator writes a unit's row in the same transaction as what changed it (the
//! output a result brought, the credit it earned), so `kill -9` loses no accepted result
//! and never credits twice. A volunteer writes each finished replica before it reports
//! it and deletes it only when the coordinator acknowledged it.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::job::{Job, Output};
use crate::pay::Address;
use crate::unit::{Host, Policy, Unit};
use crate::wire::{Announce, ProjectId, Returned};

/// Project id -> [`ProjectRow`].
pub const PROJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("projects");
/// Module sha256 -> its wasm (coordinators' own and volunteers' fetched ones).
pub const MODULES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("modules");
/// (project, unit) -> [`Job`].
pub const JOBS: TableDefinition<(&[u8], u32), &[u8]> = TableDefinition::new("jobs");
/// (project, unit) -> [`Unit`].
pub const UNITS: TableDefinition<(&[u8], u32), &[u8]> = TableDefinition::new("units");
/// (project, unit, replica) -> [`Output`]: returned successes not yet judged, and the
/// canonical output of each accepted unit.
pub const OUTPUTS: TableDefinition<(&[u8], u32, u32), &[u8]> = TableDefinition::new("outputs");
/// (project, volunteer peer id) -> [`Host`].
pub const HOSTS: TableDefinition<(&[u8], &[u8]), &[u8]> = TableDefinition::new("hosts");
/// Volunteer: (project, unit, replica) -> [`Finished`], until acknowledged.
pub const FINISHED: TableDefinition<(&[u8], u32, u32), &[u8]> = TableDefinition::new("finished");
/// Volunteer: project -> [`Joined`].
pub const JOINED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("joined");
/// Project id -> what it pays, wei per billion fuel of credit; absent: it does not pay.
pub const RATES: TableDefinition<&[u8], u128> = TableDefinition::new("rates");
/// (project, volunteer peer id) -> [`Payee`], for projects that pay.
pub const PAYEES: TableDefinition<(&[u8], &[u8]), &[u8]> = TableDefinition::new("payees");
/// Transaction hash -> [`Payment`]: signed, and not yet seen in a block.
pub const PAYMENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("payments");
/// Settings: `volunteer` -> [`Donation`].
pub const SETTINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("settings");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("compute store: {0}")]
    Db(String),
    #[error("compute store: a {0} row does not decode; the file is damaged")]
    Row(&'static str),
}

macro_rules! db_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.to_string())
            }
        }
    )*};
}
db_errors!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProjectState {
    Active,
    Finished,
    Cancelled,
}

/// A project as its coordinator keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectRow {
    pub name: String,
    pub module: [u8; 32],
    pub module_len: u32,
    pub policy: Policy,
    pub fuel: u64,
    pub memory_mb: u32,
    pub output_bytes: u32,
    /// Units run with NaNs canonicalised, so any architecture may join a quorum.
    pub canonical_nans: bool,
    pub units: u32,
    pub created_ms: u64,
    pub state: ProjectState,
}

/// A volunteer of a project that pays: where to, and what went there. What is owed is
/// its credit's worth ([`crate::pay::earned`]) less `sending` and `paid`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payee {
    /// The payout address the volunteer last gave.
    pub address: Option<Address>,
    /// In payments signed and not yet mined.
    pub sending: u128,
    /// In payments mined.
    pub paid: u128,
}

/// A payment signed by the coordinator, kept until a block holds it: sent again, the
/// same bytes, until then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub project: ProjectId,
    pub host: Vec<u8>,
    pub to: Address,
    pub wei: u128,
    pub nonce: u64,
    pub cost: u128,
    pub raw: Vec<u8>,
}

/// A finished replica on its volunteer, until the coordinator has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finished {
    pub coordinator: Vec<u8>,
    pub returned: Returned,
}

/// A project a volunteer worked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    pub coordinator: Vec<u8>,
    pub announce: Announce,
    /// Credit the coordinator last reported (fuel of valid results).
    pub credit: u64,
    /// Replicas this volunteer ran and reported.
    pub reported: u64,
    pub finished: bool,
}

/// What a volunteer donates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Donation {
    pub on: bool,
    pub cores: u32,
    pub max_memory_mb: u32,
    pub idle_only: bool,
}

pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).expect("postcard encodes owned values")
}

pub fn decode<T: DeserializeOwned>(raw: &[u8], what: &'static str) -> Result<T, StoreError> {
    postcard::from_bytes(raw).map_err(|_| StoreError::Row(what))
}

/// The file, with every table made.
pub struct Store {
    pub db: Database,
}

/// Everything a coordinator loads of one project at start.
pub struct Loaded {
    pub id: ProjectId,
    pub row: ProjectRow,
    pub units: Vec<Unit>,
    pub hosts: Vec<(Vec<u8>, Host)>,
    /// Wei per billion fuel; 0: unpaid.
    pub rate: u128,
    pub payees: Vec<(Vec<u8>, Payee)>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = redb::Builder::new()
            .set_cache_size(nodus_core::datadir::DB_CACHE_BYTES)
            .create(path)?;
        let tx = db.begin_write()?;
        tx.open_table(PROJECTS)?;
        tx.open_table(MODULES)?;
        tx.open_table(JOBS)?;
        tx.open_table(UNITS)?;
        tx.open_table(OUTPUTS)?;
        tx.open_table(HOSTS)?;
        tx.open_table(FINISHED)?;
        tx.open_table(JOINED)?;
        tx.open_table(SETTINGS)?;
        tx.open_table(RATES)?;
        tx.open_table(PAYEES)?;
        tx.open_table(PAYMENTS)?;
        tx.commit()?;
        Ok(Store { db })
    }

    /// Writes a new project whole: its row, module, jobs and units.
    pub fn create(
        &self,
        id: &ProjectId,
        row: &ProjectRow,
        wasm: &[u8],
        jobs: &[Job],
        rate: u128,
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            tx.open_table(PROJECTS)?.insert(&id[..], &encode(row)[..])?;
            if rate > 0 {
                tx.open_table(RATES)?.insert(&id[..], rate)?;
            }
            tx.open_table(MODULES)?.insert(&row.module[..], wasm)?;
            let mut j = tx.open_table(JOBS)?;
            let mut u = tx.open_table(UNITS)?;
            let unit = encode(&Unit::new(row.policy.min_quorum));
            for (i, job) in jobs.iter().enumerate() {
                j.insert((&id[..], i as u32), &encode(job)[..])?;
                u.insert((&id[..], i as u32), &unit[..])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every project with its units and hosts.
    pub fn load(&self) -> Result<Vec<Loaded>, StoreError> {
        let tx = self.db.begin_read()?;
        let projects = tx.open_table(PROJECTS)?;
        let units = tx.open_table(UNITS)?;
        let hosts = tx.open_table(HOSTS)?;
        let rates = tx.open_table(RATES)?;
        let payees = tx.open_table(PAYEES)?;
        let mut out = Vec::new();
        for entry in projects.iter()? {
            let (k, v) = entry?;
            let Ok(id) = ProjectId::try_from(k.value()) else {
                return Err(StoreError::Row("project"));
            };
            let row: ProjectRow = decode(v.value(), "project")?;
            let mut us = Vec::with_capacity(row.units as usize);
            for e in units.range((&id[..], 0)..=(&id[..], u32::MAX))? {
                us.push(decode(e?.1.value(), "unit")?);
            }
            if us.len() != row.units as usize {
                return Err(StoreError::Row("unit"));
            }
            let mut hs = Vec::new();
            for e in hosts.range((&id[..], &[][..])..)? {
                let (k, v) = e?;
                let (p, h) = k.value();
                if p != id {
                    break;
                }
                hs.push((h.to_vec(), decode(v.value(), "host")?));
            }
            let mut ps = Vec::new();
            for e in payees.range((&id[..], &[][..])..)? {
                let (k, v) = e?;
                let (p, h) = k.value();
                if p != id {
                    break;
                }
                ps.push((h.to_vec(), decode(v.value(), "payee")?));
            }
            out.push(Loaded {
                id,
                row,
                units: us,
                hosts: hs,
                rate: rates.get(&id[..])?.map_or(0, |r| r.value()),
                payees: ps,
            });
        }
        Ok(out)
    }

    pub fn job(&self, id: &ProjectId, unit: u32) -> Result<Option<Job>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(JOBS)?;
        t.get((&id[..], unit))?
            .map(|v| decode(v.value(), "job"))
            .transpose()
    }

    pub fn module(&self, hash: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(MODULES)?;
        Ok(t.get(&hash[..])?.map(|v| v.value().to_vec()))
    }

    pub fn put_module(&self, hash: &[u8; 32], wasm: &[u8]) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        tx.open_table(MODULES)?.insert(&hash[..], wasm)?;
        tx.commit()?;
        Ok(())
    }

    /// The canonical output of an accepted unit.
    pub fn output(
        &self,
        id: &ProjectId,
        unit: u32,
        replica: u32,
    ) -> Result<Option<Output>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(OUTPUTS)?;
        t.get((&id[..], unit, replica))?
            .map(|v| decode(v.value(), "output"))
            .transpose()
    }

    pub fn set_state(&self, id: &ProjectId, row: &ProjectRow) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        tx.open_table(PROJECTS)?.insert(&id[..], &encode(row)[..])?;
        tx.commit()?;
        Ok(())
    }

    /// Payments signed and not yet seen in a block, by transaction hash.
    pub fn payments(&self) -> Result<Vec<([u8; 32], Payment)>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(PAYMENTS)?;
        let mut out = Vec::new();
        for e in t.iter()? {
            let (k, v) = e?;
            let hash = <[u8; 32]>::try_from(k.value()).map_err(|_| StoreError::Row("payment"))?;
            out.push((hash, decode(v.value(), "payment")?));
        }
        Ok(out)
    }

    pub fn donation(&self) -> Result<Option<Donation>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(SETTINGS)?;
        t.get("volunteer")?
            .map(|v| decode(v.value(), "settings"))
            .transpose()
    }

    pub fn set_donation(&self, d: &Donation) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        tx.open_table(SETTINGS)?
            .insert("volunteer", &encode(d)[..])?;
        tx.commit()?;
        Ok(())
    }
}
