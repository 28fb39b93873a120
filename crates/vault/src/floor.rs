//! The benchmark's floor: the same work as the vault without protecting anything. A
//! bundle is parsed and validated the same way, then each resource stored as plain JSON
//! in one redb transaction; a grant is one access-list row; the log has no hashes.
//! `nodus bench vault` prints the vault beside it, so the cost of encryption, keys and
//! the audit chain is a ratio. Nothing else uses it.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use crate::error::VaultError;
use crate::fhir::bundle;
use crate::store::{self, LogRow};

const PLAIN: TableDefinition<&str, &[u8]> = TableDefinition::new("plain");
const ACL: TableDefinition<&str, &[u8]> = TableDefinition::new("acl");
const PLAIN_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("plain_log");

pub struct PlainStore {
    db: redb::Database,
}

impl PlainStore {
    pub fn open(path: &std::path::Path) -> Result<PlainStore, VaultError> {
        let db = redb::Builder::new()
            .set_cache_size(nodus_core::datadir::DB_CACHE_BYTES)
            .create(path)?;
        let w = db.begin_write()?;
        {
            w.open_table(PLAIN)?;
            w.open_table(ACL)?;
            w.open_table(PLAIN_LOG)?;
        }
        w.commit()?;
        Ok(PlainStore { db })
    }

    /// Parses, validates and stores a bundle's resources as they are; how many.
    pub fn import(&self, bytes: &[u8]) -> Result<usize, VaultError> {
        let entries = {
            let r = self.db.begin_read()?;
            let t = r.open_table(PLAIN)?;
            bundle::parse(bytes, |ty, id| {
                t.get(format!("{ty}/{id}").as_str())
                    .ok()
                    .flatten()
                    .is_some()
            })?
        };
        let w = self.db.begin_write()?;
        {
            let mut t = w.open_table(PLAIN)?;
            for e in &entries {
                let json = serde_json::to_vec(&e.resource).expect("JSON");
                t.insert(format!("{}/{}", e.rtype, e.id).as_str(), json.as_slice())?;
            }
        }
        w.commit()?;
        Ok(entries.len())
    }

    pub fn grant(&self, provider: &str, types: &[String]) -> Result<(), VaultError> {
        let w = self.db.begin_write()?;
        w.open_table(ACL)?
            .insert(provider, types.join(",").as_bytes())?;
        w.commit()?;
        Ok(())
    }

    pub fn revoke(&self, provider: &str) -> Result<(), VaultError> {
        let w = self.db.begin_write()?;
        w.open_table(ACL)?.remove(provider)?;
        w.commit()?;
        Ok(())
    }

    /// Every stored resource's JSON.
    pub fn all(&self) -> Result<Vec<Vec<u8>>, VaultError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(PLAIN)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            out.push(row?.1.value().to_vec());
        }
        Ok(out)
    }

    /// Copies the vault's log rows, as a log without hashes would hold them.
    pub fn copy_log(&self, from: &crate::vault::Vault) -> Result<u64, VaultError> {
        let r = from.db().begin_read()?;
        let src = r.open_table(store::LOG)?;
        let w = self.db.begin_write()?;
        let mut n = 0;
        {
            let mut t = w.open_table(PLAIN_LOG)?;
            for row in src.iter()? {
                let (k, v) = row?;
                t.insert(k.value(), v.value())?;
                n += 1;
            }
        }
        w.commit()?;
        Ok(n)
    }

    /// Reads every log entry: all a log without hashes can check.
    pub fn read_log(&self) -> Result<u64, VaultError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(PLAIN_LOG)?;
        let mut n = 0;
        for row in t.iter()? {
            let (_, v) = row?;
            let row: LogRow = store::decode(v.value(), "log")?;
            n += u64::from(!row.event.is_empty());
        }
        Ok(n)
    }
}
