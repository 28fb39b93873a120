//! The DHT record store: kad's `MemoryStore` for lookups, with every value record also
//! written through to `net.redb`, so what this node accepted survives `kill -9` and
//! restart. Provider records are soft state that providers re-announce; they stay in
//! memory only.
//!
//! Row format (the file is ours; a row that does not decode is skipped and removed):
//! `expires_unix_ms: u64 BE (0 = never) | publisher_len: u8 | publisher | value`.

use std::borrow::Cow;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libp2p::PeerId;
use libp2p::kad::store::{MemoryStore, MemoryStoreConfig, RecordStore, Result as StoreResult};
use libp2p::kad::{ProviderRecord, Record, RecordKey};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::{NetError, Validators};

const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("dht_records");

pub(crate) struct PersistentStore {
    mem: MemoryStore,
    db: Option<Database>,
}

fn db_err(e: impl Into<redb::Error>) -> NetError {
    NetError::RecordStore(Box::new(e.into()))
}

fn to_unix_ms(expires: Option<Instant>) -> u64 {
    let Some(at) = expires else { return 0 };
    let left = at.saturating_duration_since(Instant::now());
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        + left;
    (unix.as_millis() as u64).max(1)
}

/// `None` when the deadline has passed.
fn from_unix_ms(ms: u64) -> Option<Option<Instant>> {
    if ms == 0 {
        return Some(None);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let at = Duration::from_millis(ms);
    (at > now).then(|| Some(Instant::now() + (at - now)))
}

fn encode(r: &Record) -> Vec<u8> {
    let publisher = r.publisher.map(|p| p.to_bytes()).unwrap_or_default();
    let mut row = Vec::with_capacity(9 + publisher.len() + r.value.len());
    row.extend_from_slice(&to_unix_ms(r.expires).to_be_bytes());
    row.push(publisher.len() as u8);
    row.extend_from_slice(&publisher);
    row.extend_from_slice(&r.value);
    row
}

/// Decodes a row; `Ok(None)` for an expired record, `Err` for a malformed row.
fn decode(key: &[u8], row: &[u8]) -> Result<Option<Record>, ()> {
    let expires = u64::from_be_bytes(row.get(..8).ok_or(())?.try_into().map_err(|_| ())?);
    let plen = *row.get(8).ok_or(())? as usize;
    let publisher = row.get(9..9 + plen).ok_or(())?;
    let value = row.get(9 + plen..).ok_or(())?;
    let publisher = if plen == 0 {
        None
    } else {
        Some(PeerId::from_bytes(publisher).map_err(|_| ())?)
    };
    let Some(expires) = from_unix_ms(expires) else {
        return Ok(None);
    };
    Ok(Some(Record {
        key: RecordKey::new(&key),
        value: value.to_vec(),
        publisher,
        expires,
    }))
}

impl PersistentStore {
    /// Opens (or creates) the store at `path`, loading every unexpired record that still
    /// passes `validators`. Without a path the store lives in memory only.
    pub fn open(
        local: PeerId,
        config: MemoryStoreConfig,
        path: Option<&Path>,
        validators: &Validators,
    ) -> Result<Self, NetError> {
        let mut mem = MemoryStore::with_config(local, config);
        let Some(path) = path else {
            return Ok(PersistentStore { mem, db: None });
        };
        let db = redb::Builder::new()
            .set_cache_size(nodus_core::datadir::DB_CACHE_BYTES)
            .create(path)
            .map_err(db_err)?;
        let mut dead = Vec::new();
        {
            let txn = db.begin_write().map_err(db_err)?;
            txn.open_table(RECORDS).map_err(db_err)?;
            txn.commit().map_err(db_err)?;
            let txn = db.begin_read().map_err(db_err)?;
            let table = txn.open_table(RECORDS).map_err(db_err)?;
            for row in table.iter().map_err(db_err)? {
                let (k, v) = row.map_err(db_err)?;
                let key = k.value().to_vec();
                match decode(&key, v.value()) {
                    Ok(Some(record)) if validators.validate(&record).is_ok() => {
                        if mem.put(record).is_err() {
                            dead.push(key);
                        }
                    }
                    _ => dead.push(key),
                }
            }
        }
        let store = PersistentStore { mem, db: Some(db) };
        if !dead.is_empty() {
            tracing::info!(target: "nodus::net", count = dead.len(), "dropping expired or unreadable DHT records");
            for key in dead {
                store.delete_row(&key);
            }
        }
        Ok(store)
    }

    fn write_row(&self, r: &Record) {
        let Some(db) = &self.db else { return };
        let result = (|| -> Result<(), redb::Error> {
            let txn = db.begin_write()?;
            txn.open_table(RECORDS)?
                .insert(r.key.as_ref(), encode(r).as_slice())?;
            txn.commit()?;
            Ok(())
        })();
        if let Err(e) = result {
            tracing::warn!(target: "nodus::net", "could not persist a DHT record: {e}");
        }
    }

    fn delete_row(&self, key: &[u8]) {
        let Some(db) = &self.db else { return };
        let result = (|| -> Result<(), redb::Error> {
            let txn = db.begin_write()?;
            txn.open_table(RECORDS)?.remove(key)?;
            txn.commit()?;
            Ok(())
        })();
        if let Err(e) = result {
            tracing::warn!(target: "nodus::net", "could not delete a DHT record: {e}");
        }
    }
}

impl RecordStore for PersistentStore {
    type RecordsIter<'a> = <MemoryStore as RecordStore>::RecordsIter<'a>;
    type ProvidedIter<'a> = <MemoryStore as RecordStore>::ProvidedIter<'a>;

    fn get(&self, k: &RecordKey) -> Option<Cow<'_, Record>> {
        self.mem.get(k)
    }

    fn put(&mut self, r: Record) -> StoreResult<()> {
        let row = r.clone();
        self.mem.put(r)?;
        self.write_row(&row);
        Ok(())
    }

    fn remove(&mut self, k: &RecordKey) {
        self.mem.remove(k);
        self.delete_row(k.as_ref());
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        self.mem.records()
    }

    fn add_provider(&mut self, record: ProviderRecord) -> StoreResult<()> {
        self.mem.add_provider(record)
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        self.mem.providers(key)
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        self.mem.provided()
    }

    fn remove_provider(&mut self, k: &RecordKey, p: &PeerId) {
        self.mem.remove_provider(k, p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &Path) -> PersistentStore {
        PersistentStore::open(
            PeerId::random(),
            MemoryStoreConfig::default(),
            Some(path),
            &Validators::default(),
        )
        .unwrap()
    }

    #[test]
    fn records_survive_reopen_and_expired_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net.redb");
        let publisher = PeerId::random();
        {
            let mut s = open(&path);
            let mut r = Record::new(RecordKey::new(&"/kv/a"), b"one".to_vec());
            r.publisher = Some(publisher);
            r.expires = Some(Instant::now() + Duration::from_secs(3600));
            s.put(r).unwrap();
            let mut gone = Record::new(RecordKey::new(&"/kv/b"), b"two".to_vec());
            gone.expires = Some(Instant::now() + Duration::from_millis(1));
            s.put(gone).unwrap();
            s.put(Record::new(RecordKey::new(&"/kv/c"), b"three".to_vec()))
                .unwrap();
            s.remove(&RecordKey::new(&"/kv/c"));
        }
        std::thread::sleep(Duration::from_millis(5));
        let s = open(&path);
        let a = s.get(&RecordKey::new(&"/kv/a")).expect("kept");
        assert_eq!(a.value, b"one");
        assert_eq!(a.publisher, Some(publisher));
        assert!(a.expires.is_some());
        assert!(s.get(&RecordKey::new(&"/kv/b")).is_none(), "expired");
        assert!(s.get(&RecordKey::new(&"/kv/c")).is_none(), "removed");
    }

    #[test]
    fn malformed_rows_are_refused() {
        // Too short for the expiry; no publisher length; a publisher longer than the
        // row; a publisher that is not a peer id.
        for row in [
            &[][..],
            &[0; 7],
            &[0; 8],
            &[0, 0, 0, 0, 0, 0, 0, 0, 200, 1, 2],
            &[0, 0, 0, 0, 0, 0, 0, 1, 2, 0xff, 0xff],
        ] {
            assert!(decode(b"/kv/x", row).is_err(), "{row:?}");
        }
        // An expiry of 0 means none, and an empty publisher is allowed.
        let none = decode(b"/kv/x", &[0; 9]).unwrap().unwrap();
        assert!(none.value.is_empty() && none.publisher.is_none() && none.expires.is_none());
        let r = Record::new(RecordKey::new(&"/kv/x"), b"v".to_vec());
        let back = decode(b"/kv/x", &encode(&r)).unwrap().unwrap();
        assert_eq!(back.value, b"v");
    }
}
