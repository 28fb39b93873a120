//! `vault.redb`: the tables and their rows (postcard). Only ciphertext of records is
//! stored; every write the vault makes is one transaction, so an import is all or
//! nothing across `kill -9`.

use redb::{ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// `Type/id` -> [`RecordRow`].
pub const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
/// Provider peer id -> [`GrantRow`].
pub const GRANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("grants");
/// Entry number -> [`LogRow`].
pub const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// Entry number anchored -> [`AnchorRow`].
pub const ANCHORS: TableDefinition<u64, &[u8]> = TableDefinition::new("anchors");
/// Counters: `order` (records ever made), `grant` (grants ever made).
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Replicas this patient's node keeps its vault on: peer id -> [`ReplicaRow`].
pub const REPLICAS: TableDefinition<&str, &[u8]> = TableDefinition::new("replicas");
/// Patients this node holds a copy for: peer id -> [`HoldingRow`].
pub const HOLDING: TableDefinition<&str, &[u8]> = TableDefinition::new("holding");
/// Held copies: `patient \0 Type/id` -> [`RecordRow`] (digest zeroed).
pub const HELD_RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("held_records");
/// `patient \0 provider` -> [`GrantRow`].
pub const HELD_GRANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("held_grants");
/// `(patient, entry)` -> [`LogRow`].
pub const HELD_LOG: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("held_log");
/// `(patient, entry)` -> [`AnchorRow`].
pub const HELD_ANCHORS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("held_anchors");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("vault store: {0}")]
    Db(String),
    #[error("vault store: a {0} row does not decode; the file is damaged")]
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

/// A record: its current version, sealed under its data key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordRow {
    /// When it first came (export keeps this order).
    pub order: u64,
    pub version: u64,
    /// Generation of its data key; a revoke moves it on.
    pub epoch: u64,
    /// The data key, sealed under the master key.
    pub key: Vec<u8>,
    /// The resource's JSON, sealed under the data key.
    pub body: Vec<u8>,
    /// The data key wrapped under each grant that covers it: `(grant number, wrap)`.
    pub wraps: Vec<(u64, Vec<u8>)>,
    /// The provider who appended it, with their public key (protobuf) and signature
    /// over the body's bytes; none for what the patient imported.
    pub author: Option<Authorship>,
    /// SHA-256 of the plaintext, to see an unchanged import (kept on this node only:
    /// zeros in replicas' copies).
    pub digest: [u8; 32],
    /// The log entry of the write that last changed it: replicas are sent the records
    /// changed after the last entry they hold.
    pub changed: u64,
}

impl RecordRow {
    /// A record's first version, before it is sealed.
    pub fn first(order: u64, author: Option<Authorship>) -> RecordRow {
        RecordRow {
            order,
            version: 1,
            epoch: 0,
            key: vec![],
            body: vec![],
            wraps: vec![],
            author,
            digest: [0; 32],
            changed: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Authorship {
    pub peer: String,
    pub public_key: Vec<u8>,
    pub signature: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrantRow {
    pub no: u64,
    pub provider: String,
    /// The provider's X25519 key.
    pub public: [u8; 32],
    /// Resource types covered; empty: all.
    pub types: Vec<String>,
    pub until_ms: Option<u64>,
    pub created_ms: u64,
    /// The grant key, sealed under the master key.
    pub key: Vec<u8>,
    /// The grant key sealed to the provider (HPKE encapsulated key and ciphertext).
    pub enc: Vec<u8>,
    pub sealed: Vec<u8>,
}

impl GrantRow {
    pub fn covers(&self, rtype: &str) -> bool {
        self.types.is_empty() || self.types.iter().any(|t| t == rtype)
    }

    pub fn live(&self, now_ms: u64) -> bool {
        self.until_ms.is_none_or(|u| now_ms < u)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRow {
    pub prev: [u8; 32],
    pub hash: [u8; 32],
    /// The AuditEvent's JSON.
    pub event: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnchorRow {
    /// The log's head hash at the entry anchored.
    pub head: [u8; 32],
    /// The chain transaction that carries it.
    pub tx: [u8; 32],
    /// The block it was mined in, once seen there.
    pub block: Option<u64>,
    pub sent_ms: u64,
}

/// A replica, as the patient's node keeps track of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaRow {
    /// Log entries it has acknowledged holding (everything written before them).
    pub acked: u64,
    pub added_ms: u64,
}

/// A patient this node holds a copy for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldingRow {
    /// Log entries held.
    pub held: u64,
    /// Bytes held, against the budget.
    pub bytes: u64,
    pub since_ms: u64,
}

pub fn encode<T: Serialize>(row: &T) -> Vec<u8> {
    postcard::to_allocvec(row).expect("rows serialize")
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|_| StoreError::Row(what))
}

/// Opens (or makes) the file, with every table present.
pub fn open(path: &std::path::Path) -> Result<redb::Database, StoreError> {
    let db = redb::Builder::new()
        .set_cache_size(nodus_core::datadir::DB_CACHE_BYTES)
        .create(path)?;
    let _ = nodus_core::fsutil::restrict(path);
    let w = db.begin_write()?;
    {
        w.open_table(RECORDS)?;
        w.open_table(GRANTS)?;
        w.open_table(LOG)?;
        w.open_table(ANCHORS)?;
        w.open_table(META)?;
        w.open_table(REPLICAS)?;
        w.open_table(HOLDING)?;
        w.open_table(HELD_RECORDS)?;
        w.open_table(HELD_GRANTS)?;
        w.open_table(HELD_LOG)?;
        w.open_table(HELD_ANCHORS)?;
    }
    w.commit()?;
    // A read to fail early on a file that is not a vault store.
    db.begin_read()?.open_table(META)?;
    Ok(db)
}
