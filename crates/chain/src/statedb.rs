//! The world state on disk, in `chain.redb`: flat tables keyed by hashed address (and
//! hashed slot), the trie's branch and extension nodes by path, and the history of
//! every change by block number, for reads at recent blocks.
//!
//! Tables:
//! - `state_accounts`: keccak(address) -> [`AccountRow`] (the account and its storage root)
//! - `state_storage`: keccak(address) ‖ keccak(slot) -> slot ‖ value (never zero)
//! - `codes`: code hash -> code
//! - `state_trie`: owner ‖ path nibbles -> node encoding; owner is `0` for the account
//!   trie, `1 ‖ keccak(address)` for a storage trie
//! - `account_history`: keccak(address) ‖ block number -> the account before that block
//! - `storage_history`: keccak(address) ‖ keccak(slot) ‖ block number -> the value before
//!
//! A read at block `n` takes the first history entry after `n` (the value before the next
//! change, which is the value at `n`), else the current value.
//!
//! Invariant: the tables always hold the state of the head committed with them (one write
//! transaction, [`crate::store::Store::commit`]); a [`StateReader`] is a snapshot of one
//! such commit.

use std::sync::Arc;

use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles, TrieAccount};
use redb::{ReadOnlyTable, ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::state::{AccountRec, StateDiff, StateError, StateRead};
use crate::trie::{NodeOps, NodeSource, TrieError};

pub(crate) const ACCOUNTS: TableDefinition<&[u8; 32], &[u8]> =
    TableDefinition::new("state_accounts");
pub(crate) const STORAGE: TableDefinition<&[u8; 64], &[u8; 64]> =
    TableDefinition::new("state_storage");
pub(crate) const CODES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("codes");
pub(crate) const TRIE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("state_trie");
pub(crate) const ACCOUNT_HISTORY: TableDefinition<&[u8; 40], &[u8]> =
    TableDefinition::new("account_history");
pub(crate) const STORAGE_HISTORY: TableDefinition<&[u8; 72], &[u8; 32]> =
    TableDefinition::new("storage_history");

/// An account as stored: the record and the root of its storage trie.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRow {
    pub rec: AccountRec,
    pub storage_root: B256,
}

impl AccountRow {
    /// The account's leaf value in the state trie.
    pub fn leaf(&self) -> Vec<u8> {
        alloy_rlp::encode(TrieAccount {
            nonce: self.rec.nonce,
            balance: self.rec.balance,
            storage_root: self.storage_root,
            code_hash: self.rec.code_hash,
        })
    }
}

/// Which trie a node belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    Accounts,
    /// The storage trie of the account with this hashed address.
    Storage(B256),
}

impl Owner {
    fn prefix(&self) -> Vec<u8> {
        match self {
            Owner::Accounts => vec![0],
            Owner::Storage(h) => {
                let mut v = Vec::with_capacity(33 + 64);
                v.push(1);
                v.extend_from_slice(h.as_slice());
                v
            }
        }
    }

    pub fn node_key(&self, path: &Nibbles) -> Vec<u8> {
        let mut k = self.prefix();
        k.extend(path.iter());
        k
    }
}

fn storage_key(ha: &B256, hs: &B256) -> [u8; 64] {
    let mut k = [0u8; 64];
    k[..32].copy_from_slice(ha.as_slice());
    k[32..].copy_from_slice(hs.as_slice());
    k
}

fn account_history_key(ha: &B256, number: u64) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..32].copy_from_slice(ha.as_slice());
    k[32..].copy_from_slice(&number.to_be_bytes());
    k
}

fn storage_history_key(ha: &B256, hs: &B256, number: u64) -> [u8; 72] {
    let mut k = [0u8; 72];
    k[..64].copy_from_slice(&storage_key(ha, hs));
    k[64..].copy_from_slice(&number.to_be_bytes());
    k
}

fn store_err(e: impl std::fmt::Display) -> StateError {
    StateError::Store(e.to_string())
}

fn decode_row(raw: &[u8]) -> Result<AccountRow, StateError> {
    postcard::from_bytes(raw).map_err(store_err)
}

/// A snapshot of the committed state (one redb read transaction).
pub struct StateReader {
    accounts: ReadOnlyTable<&'static [u8; 32], &'static [u8]>,
    storage: ReadOnlyTable<&'static [u8; 64], &'static [u8; 64]>,
    codes: ReadOnlyTable<&'static [u8; 32], &'static [u8]>,
    trie: ReadOnlyTable<&'static [u8], &'static [u8]>,
    account_history: ReadOnlyTable<&'static [u8; 40], &'static [u8]>,
    storage_history: ReadOnlyTable<&'static [u8; 72], &'static [u8; 32]>,
}

impl StateReader {
    pub fn new(r: &ReadTransaction) -> Result<StateReader, redb::TableError> {
        Ok(StateReader {
            accounts: r.open_table(ACCOUNTS)?,
            storage: r.open_table(STORAGE)?,
            codes: r.open_table(CODES)?,
            trie: r.open_table(TRIE)?,
            account_history: r.open_table(ACCOUNT_HISTORY)?,
            storage_history: r.open_table(STORAGE_HISTORY)?,
        })
    }

    pub fn row(&self, a: &Address) -> Result<Option<AccountRow>, StateError> {
        self.row_hashed(&keccak256(a))
    }

    fn row_hashed(&self, ha: &B256) -> Result<Option<AccountRow>, StateError> {
        match self.accounts.get(&ha.0).map_err(store_err)? {
            Some(v) => decode_row(v.value()).map(Some),
            None => Ok(None),
        }
    }

    /// The root of `a`'s storage trie at the head.
    pub fn storage_root(&self, a: &Address) -> Result<B256, StateError> {
        Ok(self
            .row(a)?
            .map(|r| r.storage_root)
            .unwrap_or(EMPTY_ROOT_HASH))
    }

    /// A slot's value at the head (zero when absent).
    pub fn slot(&self, a: &Address, key: &U256) -> Result<U256, StateError> {
        self.slot_hashed(&keccak256(a), key)
    }

    fn slot_hashed(&self, ha: &B256, key: &U256) -> Result<U256, StateError> {
        let k = storage_key(ha, &keccak256(key.to_be_bytes::<32>()));
        Ok(self
            .storage
            .get(&k)
            .map_err(store_err)?
            .map(|v| U256::from_be_slice(&v.value()[32..]))
            .unwrap_or_default())
    }

    /// The account at block `number`, or `None` when no change after it is recorded (the
    /// head's value holds).
    fn account_before_next(
        &self,
        ha: &B256,
        number: u64,
    ) -> Result<Option<Option<AccountRec>>, StateError> {
        let from = account_history_key(ha, number + 1);
        let to = account_history_key(ha, u64::MAX);
        let mut range = self
            .account_history
            .range::<&[u8; 40]>(&from..=&to)
            .map_err(store_err)?;
        match range.next() {
            Some(row) => {
                let (_, v) = row.map_err(store_err)?;
                Ok(Some(postcard::from_bytes(v.value()).map_err(store_err)?))
            }
            None => Ok(None),
        }
    }

    fn slot_before_next(
        &self,
        ha: &B256,
        key: &U256,
        number: u64,
    ) -> Result<Option<U256>, StateError> {
        let hs = keccak256(key.to_be_bytes::<32>());
        let from = storage_history_key(ha, &hs, number + 1);
        let to = storage_history_key(ha, &hs, u64::MAX);
        let mut range = self
            .storage_history
            .range::<&[u8; 72]>(&from..=&to)
            .map_err(store_err)?;
        match range.next() {
            Some(row) => {
                let (_, v) = row.map_err(store_err)?;
                Ok(Some(U256::from_be_bytes(*v.value())))
            }
            None => Ok(None),
        }
    }

    /// A view of this snapshot at block `at` (`None`: the head).
    pub fn at(self: &Arc<Self>, at: Option<u64>) -> StateAt {
        StateAt {
            reader: self.clone(),
            at,
        }
    }

    /// Trie nodes of one trie, for [`crate::trie::Trie`].
    pub fn nodes(&self, owner: Owner) -> Nodes<'_> {
        Nodes {
            reader: self,
            owner,
        }
    }
}

/// The committed state at the head or at a recent block.
#[derive(Clone)]
pub struct StateAt {
    reader: Arc<StateReader>,
    at: Option<u64>,
}

impl StateRead for StateAt {
    fn account(&self, a: &Address) -> Result<Option<AccountRec>, StateError> {
        let ha = keccak256(a);
        if let Some(n) = self.at
            && let Some(before) = self.reader.account_before_next(&ha, n)?
        {
            return Ok(before);
        }
        Ok(self.reader.row_hashed(&ha)?.map(|r| r.rec))
    }

    fn slot(&self, a: &Address, key: &U256) -> Result<U256, StateError> {
        let ha = keccak256(a);
        if let Some(n) = self.at
            && let Some(before) = self.reader.slot_before_next(&ha, key, n)?
        {
            return Ok(before);
        }
        self.reader.slot_hashed(&ha, key)
    }

    fn code(&self, hash: &B256) -> Result<Option<Bytes>, StateError> {
        self.reader.code(hash)
    }

    fn slots(&self, a: &Address) -> Result<Vec<(U256, U256)>, StateError> {
        // Only block execution asks for every slot, and it runs on the head.
        debug_assert!(self.at.is_none());
        self.reader.slots(a)
    }
}

impl StateReader {
    pub fn code(&self, hash: &B256) -> Result<Option<Bytes>, StateError> {
        Ok(self
            .codes
            .get(&hash.0)
            .map_err(store_err)?
            .map(|v| Bytes::copy_from_slice(v.value())))
    }

    /// Every non-zero slot of `a` at the head.
    pub fn slots(&self, a: &Address) -> Result<Vec<(U256, U256)>, StateError> {
        let ha = keccak256(a);
        let from = storage_key(&ha, &B256::ZERO);
        let to = storage_key(&ha, &B256::repeat_byte(0xff));
        let mut out = Vec::new();
        for row in self
            .storage
            .range::<&[u8; 64]>(&from..=&to)
            .map_err(store_err)?
        {
            let (_, v) = row.map_err(store_err)?;
            let v = v.value();
            out.push((U256::from_be_slice(&v[..32]), U256::from_be_slice(&v[32..])));
        }
        Ok(out)
    }
}

/// One trie's nodes in a snapshot.
pub struct Nodes<'a> {
    reader: &'a StateReader,
    owner: Owner,
}

fn trie_err(e: impl std::fmt::Display) -> TrieError {
    TrieError::Store(e.to_string())
}

impl NodeSource for Nodes<'_> {
    fn stored(&self, path: &Nibbles) -> Result<Option<Vec<u8>>, TrieError> {
        let k = self.owner.node_key(path);
        Ok(self
            .reader
            .trie
            .get(k.as_slice())
            .map_err(trie_err)?
            .map(|v| v.value().to_vec()))
    }

    fn leaf(&self, path: &Nibbles) -> Result<Option<(B256, Vec<u8>)>, TrieError> {
        let mut low = [0u8; 32];
        path.pack_to(&mut low);
        let low = B256::from(low);
        let under = |k: &B256| Nibbles::unpack(k).starts_with(path);
        match self.owner {
            Owner::Accounts => {
                let mut range = self
                    .reader
                    .accounts
                    .range::<&[u8; 32]>(&low.0..)
                    .map_err(trie_err)?;
                let Some(row) = range.next() else {
                    return Ok(None);
                };
                let (k, v) = row.map_err(trie_err)?;
                let key = B256::from(*k.value());
                if !under(&key) {
                    return Ok(None);
                }
                let row = decode_row(v.value()).map_err(trie_err)?;
                Ok(Some((key, row.leaf())))
            }
            Owner::Storage(ha) => {
                let from = storage_key(&ha, &low);
                let to = storage_key(&ha, &B256::repeat_byte(0xff));
                let mut range = self
                    .reader
                    .storage
                    .range::<&[u8; 64]>(&from..=&to)
                    .map_err(trie_err)?;
                let Some(row) = range.next() else {
                    return Ok(None);
                };
                let (k, v) = row.map_err(trie_err)?;
                let key = B256::from_slice(&k.value()[32..]);
                if !under(&key) {
                    return Ok(None);
                }
                let value = U256::from_be_slice(&v.value()[32..]);
                Ok(Some((key, alloy_rlp::encode(value))))
            }
        }
    }
}

/// Everything a commit writes of the state.
#[derive(Default)]
pub struct StateWrites {
    pub accounts: Vec<(Address, Option<AccountRow>)>,
    /// (address, slot, value); zero deletes.
    pub storage: Vec<(Address, U256, U256)>,
    pub codes: Vec<(B256, Bytes)>,
    pub trie: Vec<(Owner, NodeOps)>,
}

impl StateWrites {
    pub fn write(&self, w: &WriteTransaction) -> Result<(), redb::Error> {
        let mut accounts = w.open_table(ACCOUNTS)?;
        for (a, row) in &self.accounts {
            let ha = keccak256(a);
            match row {
                Some(row) => {
                    let v = postcard::to_allocvec(row)
                        .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
                    accounts.insert(&ha.0, v.as_slice())?;
                }
                None => {
                    accounts.remove(&ha.0)?;
                }
            }
        }
        let mut storage = w.open_table(STORAGE)?;
        for (a, k, v) in &self.storage {
            let key = storage_key(&keccak256(a), &keccak256(k.to_be_bytes::<32>()));
            if v.is_zero() {
                storage.remove(&key)?;
            } else {
                let mut val = [0u8; 64];
                val[..32].copy_from_slice(&k.to_be_bytes::<32>());
                val[32..].copy_from_slice(&v.to_be_bytes::<32>());
                storage.insert(&key, &val)?;
            }
        }
        let mut codes = w.open_table(CODES)?;
        for (h, code) in &self.codes {
            codes.insert(&h.0, code.as_ref())?;
        }
        let mut trie = w.open_table(TRIE)?;
        for (owner, ops) in &self.trie {
            for (path, op) in ops {
                let k = owner.node_key(path);
                match op {
                    Some(raw) => {
                        trie.insert(k.as_slice(), raw.as_slice())?;
                    }
                    None => {
                        trie.remove(k.as_slice())?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Records block `number`'s changes (the values before it) in the history.
pub fn record_history(
    w: &WriteTransaction,
    number: u64,
    diff: &StateDiff,
) -> Result<(), redb::Error> {
    let mut accounts = w.open_table(ACCOUNT_HISTORY)?;
    for (a, before, _) in &diff.accounts {
        let v = postcard::to_allocvec(before).map_err(|e| redb::Error::Corrupted(e.to_string()))?;
        accounts.insert(&account_history_key(&keccak256(a), number), v.as_slice())?;
    }
    let mut storage = w.open_table(STORAGE_HISTORY)?;
    for (a, k, before, _) in &diff.storage {
        let key = storage_history_key(&keccak256(a), &keccak256(k.to_be_bytes::<32>()), number);
        storage.insert(&key, &before.to_be_bytes::<32>())?;
    }
    Ok(())
}

/// Removes block `number`'s entries from the history (the block left the canonical chain,
/// or fell out of the window kept).
pub fn forget_history(
    w: &WriteTransaction,
    number: u64,
    diff: &StateDiff,
) -> Result<(), redb::Error> {
    let mut accounts = w.open_table(ACCOUNT_HISTORY)?;
    for (a, ..) in &diff.accounts {
        accounts.remove(&account_history_key(&keccak256(a), number))?;
    }
    let mut storage = w.open_table(STORAGE_HISTORY)?;
    for (a, k, ..) in &diff.storage {
        storage.remove(&storage_history_key(
            &keccak256(a),
            &keccak256(k.to_be_bytes::<32>()),
            number,
        ))?;
    }
    Ok(())
}

/// Opens (creates) every state table.
pub fn create_tables(w: &WriteTransaction) -> Result<(), redb::TableError> {
    w.open_table(ACCOUNTS)?;
    w.open_table(STORAGE)?;
    w.open_table(CODES)?;
    w.open_table(TRIE)?;
    w.open_table(ACCOUNT_HISTORY)?;
    w.open_table(STORAGE_HISTORY)?;
    Ok(())
}

/// Empties the state tables (a genesis interrupted before its head was written).
pub fn clear(w: &WriteTransaction) -> Result<(), redb::Error> {
    w.delete_table(ACCOUNTS)?;
    w.delete_table(STORAGE)?;
    w.delete_table(TRIE)?;
    w.delete_table(ACCOUNT_HISTORY)?;
    w.delete_table(STORAGE_HISTORY)?;
    create_tables(w)?;
    Ok(())
}

/// An empty committed state, for tests.
#[cfg(test)]
pub(crate) fn empty_for_tests() -> Arc<StateReader> {
    use redb::ReadableDatabase;
    static DB: std::sync::OnceLock<(tempfile::TempDir, redb::Database)> =
        std::sync::OnceLock::new();
    let (_, db) = DB.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = redb::Database::create(dir.path().join("empty.redb")).expect("redb");
        let w = db.begin_write().expect("write");
        create_tables(&w).expect("tables");
        w.commit().expect("commit");
        (dir, db)
    });
    Arc::new(StateReader::new(&db.begin_read().expect("read")).expect("tables"))
}

/// Whether the account table holds anything.
pub fn is_empty(r: &ReadTransaction) -> Result<bool, redb::Error> {
    Ok(r.open_table(ACCOUNTS)?.first()?.is_none())
}
