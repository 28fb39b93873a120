//! The world state (accounts, storage, code) as block execution sees it: the committed
//! state on disk ([`crate::statedb`]) under the changes not yet committed; the overlay a
//! block executes on; and the diff a block leaves, which is kept so a reorg can undo the
//! block exactly.
//!
//! Invariants: storage never holds zero values (zero means absent, as in the trie); an
//! account that is touched and empty after a transaction is deleted (EIP-161). Memory
//! holds only what changed since the last commit and the top [`TRIE_KEEP_DEPTH`] nibbles
//! of the account trie, whatever the size of the state.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use alloy_primitives::{Address, B256, Bytes, KECCAK256_EMPTY, U256, keccak256};

use crate::statedb::{AccountRow, Owner, StateReader, StateWrites};
use crate::trie::{Trie, TrieError};
use revm::bytecode::Bytecode;
use revm::database_interface::{DBErrorMarker, Database, DatabaseCommit};
use revm::primitives::hardfork::SpecId;
use revm::state::{Account, AccountInfo};
use serde::{Deserialize, Serialize};

/// Nibbles of the account trie kept in memory between blocks (16^3 branches at most);
/// deeper nodes are read from disk when a block touches them.
pub const TRIE_KEEP_DEPTH: usize = 3;

/// An account as the state trie holds it, without its storage.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRec {
    pub nonce: u64,
    pub balance: U256,
    pub code_hash: B256,
}

impl AccountRec {
    pub fn with_balance(balance: U256) -> Self {
        AccountRec {
            nonce: 0,
            balance,
            code_hash: KECCAK256_EMPTY,
        }
    }

    /// The account's trie leaf when it has no storage.
    pub fn trie_account(&self) -> alloy_trie::TrieAccount {
        alloy_trie::TrieAccount {
            nonce: self.nonce,
            balance: self.balance,
            storage_root: alloy_trie::EMPTY_ROOT_HASH,
            code_hash: self.code_hash,
        }
    }
}

/// A state read that failed: the store could not be read, or it is damaged.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("reading the state: {0}")]
    Store(String),
    #[error(transparent)]
    Trie(#[from] TrieError),
}

impl DBErrorMarker for StateError {}

/// Reads of a state: the head's with its uncommitted changes ([`WorldState`]), or a
/// committed snapshot at the head or a recent block ([`crate::statedb::StateAt`]).
pub trait StateRead {
    fn account(&self, a: &Address) -> Result<Option<AccountRec>, StateError>;
    /// A storage slot's value (zero when absent).
    fn slot(&self, a: &Address, key: &U256) -> Result<U256, StateError>;
    fn code(&self, hash: &B256) -> Result<Option<Bytes>, StateError>;
    /// Every non-zero slot of `a`.
    fn slots(&self, a: &Address) -> Result<Vec<(U256, U256)>, StateError>;
}

/// The state at the canonical tip: the committed state, and the changes applied since.
pub struct WorldState {
    reader: Arc<StateReader>,
    accounts: HashMap<Address, Option<AccountRec>>,
    /// Zero means deleted.
    storage: HashMap<(Address, U256), U256>,
    codes: HashMap<B256, Bytes>,
    /// Accounts whose leaf must be rewritten before the next root.
    dirty: HashSet<Address>,
    /// Slots to write into their storage tries before the next root.
    dirty_slots: HashSet<(Address, U256)>,
    /// The account trie, and the storage tries changed since the last commit; each keeps
    /// every loaded node's hash, so a root after a block hashes only the paths it changed.
    account_trie: Trie,
    storage_tries: HashMap<Address, Trie>,
    /// Accounts as the last root settled them (with their storage roots), to write.
    rows: HashMap<Address, Option<AccountRow>>,
}

/// What one block changed: every value before and after, so it can be applied or undone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateDiff {
    pub accounts: Vec<(Address, Option<AccountRec>, Option<AccountRec>)>,
    /// (address, slot, before, after); zero means absent.
    pub storage: Vec<(Address, U256, U256, U256)>,
    /// Code first stored by this block (kept on undo: code is content-addressed).
    pub codes: Vec<(B256, Bytes)>,
}

impl StateRead for WorldState {
    fn account(&self, a: &Address) -> Result<Option<AccountRec>, StateError> {
        match self.accounts.get(a) {
            Some(rec) => Ok(rec.clone()),
            None => Ok(self.reader.row(a)?.map(|r| r.rec)),
        }
    }

    fn slot(&self, a: &Address, key: &U256) -> Result<U256, StateError> {
        match self.storage.get(&(*a, *key)) {
            Some(v) => Ok(*v),
            None => self.reader.slot(a, key),
        }
    }

    fn code(&self, hash: &B256) -> Result<Option<Bytes>, StateError> {
        match self.codes.get(hash) {
            Some(c) => Ok(Some(c.clone())),
            None => self.reader.code(hash),
        }
    }

    fn slots(&self, a: &Address) -> Result<Vec<(U256, U256)>, StateError> {
        let mut all: BTreeMap<U256, U256> = self.reader.slots(a)?.into_iter().collect();
        for ((addr, k), v) in &self.storage {
            if addr == a {
                all.insert(*k, *v);
            }
        }
        Ok(all.into_iter().filter(|(_, v)| !v.is_zero()).collect())
    }
}

impl WorldState {
    /// The committed state in `reader`, whose root is `root`.
    pub fn new(reader: Arc<StateReader>, root: B256) -> Self {
        WorldState {
            reader,
            accounts: HashMap::new(),
            storage: HashMap::new(),
            codes: HashMap::new(),
            dirty: HashSet::new(),
            dirty_slots: HashSet::new(),
            account_trie: Trie::at(root),
            storage_tries: HashMap::new(),
            rows: HashMap::new(),
        }
    }

    /// Loads the root node: an error when the stored trie does not hold the root the
    /// state was opened with.
    pub fn check(&mut self) -> Result<(), StateError> {
        let reader = self.reader.clone();
        self.account_trie
            .load_root(&reader.nodes(Owner::Accounts))
            .map_err(Into::into)
    }

    /// The committed snapshot under the changes.
    pub fn reader(&self) -> &Arc<StateReader> {
        &self.reader
    }

    /// The account's nonce (0 for an account that does not exist, or when the store
    /// cannot be read: the error is logged, and the block that needs the account fails
    /// on the same read).
    pub fn nonce(&self, a: &Address) -> u64 {
        self.account_or_log(a).map(|r| r.nonce).unwrap_or_default()
    }

    /// The account, `None` when absent or unreadable (logged), for the mempool's checks.
    pub fn account_or_log(&self, a: &Address) -> Option<AccountRec> {
        self.account(a).unwrap_or_else(|e| {
            tracing::error!(target: "nodus::chain", "cannot read account {a}: {e}");
            None
        })
    }

    fn set_slot(&mut self, a: Address, key: U256, value: U256) {
        self.dirty.insert(a);
        self.dirty_slots.insert((a, key));
        self.storage.insert((a, key), value);
    }

    fn set_account(&mut self, a: Address, rec: Option<AccountRec>) {
        self.dirty.insert(a);
        self.accounts.insert(a, rec);
    }

    pub fn apply(&mut self, diff: &StateDiff) {
        for (hash, code) in &diff.codes {
            self.codes.insert(*hash, code.clone());
        }
        for (a, _, after) in &diff.accounts {
            self.set_account(*a, after.clone());
        }
        for (a, key, _, after) in &diff.storage {
            self.set_slot(*a, *key, *after);
        }
    }

    pub fn undo(&mut self, diff: &StateDiff) {
        for (a, key, before, _) in diff.storage.iter().rev() {
            self.set_slot(*a, *key, *before);
        }
        for (a, before, _) in diff.accounts.iter().rev() {
            self.set_account(*a, before.clone());
        }
    }

    /// The Merkle-Patricia root of the state, as Ethereum computes it. An error means the
    /// store cannot be read or is damaged; the state must not be used further.
    pub fn state_root(&mut self) -> Result<B256, StateError> {
        let reader = self.reader.clone();
        for (a, k) in std::mem::take(&mut self.dirty_slots) {
            let v = self.storage.get(&(a, k)).copied().unwrap_or_default();
            let trie = match self.storage_tries.entry(a) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(Trie::at(reader.storage_root(&a)?)),
            };
            let src = reader.nodes(Owner::Storage(keccak256(a)));
            let hk = keccak256(k.to_be_bytes::<32>());
            if v.is_zero() {
                trie.remove(&src, &hk)?;
            } else {
                trie.insert(&src, &hk, alloy_rlp::encode(v))?;
            }
        }
        let src = reader.nodes(Owner::Accounts);
        for a in std::mem::take(&mut self.dirty) {
            let ha = keccak256(a);
            match self.account(&a)? {
                Some(rec) => {
                    let storage_root = match self.storage_tries.get_mut(&a) {
                        Some(t) => t.root(),
                        None => reader.storage_root(&a)?,
                    };
                    let row = AccountRow { rec, storage_root };
                    self.account_trie.insert(&src, &ha, row.leaf())?;
                    self.rows.insert(a, Some(row));
                }
                None => {
                    self.account_trie.remove(&src, &ha)?;
                    self.rows.insert(a, None);
                }
            }
        }
        Ok(self.account_trie.root())
    }

    /// What the next commit must write: the changed accounts (with their storage roots),
    /// slots, codes and trie nodes. After the commit, call [`WorldState::committed`].
    pub fn writes(&mut self) -> Result<StateWrites, StateError> {
        self.state_root()?;
        let mut w = StateWrites {
            accounts: self.rows.iter().map(|(a, r)| (*a, r.clone())).collect(),
            storage: self
                .storage
                .iter()
                .map(|((a, k), v)| (*a, *k, *v))
                .collect(),
            codes: self.codes.iter().map(|(h, c)| (*h, c.clone())).collect(),
            trie: vec![(Owner::Accounts, self.account_trie.ops())],
        };
        for (a, t) in &mut self.storage_tries {
            w.trie.push((Owner::Storage(keccak256(a)), t.ops()));
        }
        Ok(w)
    }

    /// The writes are on disk: reads go to the new snapshot, and memory lets go of the
    /// changes and of the trie below [`TRIE_KEEP_DEPTH`]. Until this is called (a commit
    /// that failed), the next [`WorldState::writes`] gives the same writes and more.
    pub fn committed(&mut self, reader: Arc<StateReader>) {
        debug_assert!(self.dirty.is_empty() && self.dirty_slots.is_empty());
        self.reader = reader;
        self.account_trie.written();
        self.accounts.clear();
        self.storage.clear();
        self.codes.clear();
        self.rows.clear();
        self.storage_tries.clear();
        self.account_trie.collapse(TRIE_KEEP_DEPTH);
    }
}

/// Pending changes of a block in execution, layered over a state.
pub struct Overlay<'a> {
    base: &'a dyn StateRead,
    hashes: &'a dyn Fn(u64) -> B256,
    spec: SpecId,
    accounts: HashMap<Address, Option<AccountRec>>,
    storage: HashMap<(Address, U256), U256>,
    /// Accounts whose storage was wiped (self-destructed or re-created) in this block.
    wiped: HashSet<Address>,
    codes: HashMap<B256, Bytes>,
}

impl<'a> Overlay<'a> {
    pub fn new(base: &'a dyn StateRead, hashes: &'a dyn Fn(u64) -> B256, spec: SpecId) -> Self {
        Overlay {
            base,
            hashes,
            spec,
            accounts: HashMap::new(),
            storage: HashMap::new(),
            wiped: HashSet::new(),
            codes: HashMap::new(),
        }
    }

    pub fn account(&self, a: &Address) -> Result<Option<AccountRec>, StateError> {
        match self.accounts.get(a) {
            Some(rec) => Ok(rec.clone()),
            None => self.base.account(a),
        }
    }

    /// Adds `amount` to an account's balance (block rewards).
    pub fn credit(&mut self, a: Address, amount: U256) -> Result<(), StateError> {
        let mut rec = self
            .account(&a)?
            .unwrap_or_else(|| AccountRec::with_balance(U256::ZERO));
        rec.balance = rec.balance.saturating_add(amount);
        self.accounts.insert(a, Some(rec));
        Ok(())
    }

    fn slot(&self, a: &Address, key: &U256) -> Result<U256, StateError> {
        if let Some(v) = self.storage.get(&(*a, *key)) {
            return Ok(*v);
        }
        if self.wiped.contains(a) {
            return Ok(U256::ZERO);
        }
        self.base.slot(a, key)
    }

    fn wipe(&mut self, a: Address) {
        self.wiped.insert(a);
        self.storage.retain(|(addr, _), _| *addr != a);
    }

    fn code(&self, hash: &B256) -> Result<Option<Bytes>, StateError> {
        match self.codes.get(hash) {
            Some(c) => Ok(Some(c.clone())),
            None => self.base.code(hash),
        }
    }

    /// The diff from the base state to this overlay.
    pub fn into_diff(self) -> Result<StateDiff, StateError> {
        let base = self.base;
        let mut diff = StateDiff::default();
        let mut accounts: Vec<_> = self.accounts.into_iter().collect();
        accounts.sort_by_key(|(a, _)| *a);
        for (a, after) in accounts {
            let before = base.account(&a)?;
            if before != after {
                diff.accounts.push((a, before, after));
            }
        }
        let mut slots: BTreeMap<(Address, U256), (U256, U256)> = BTreeMap::new();
        for a in &self.wiped {
            for (k, v) in base.slots(a)? {
                slots.insert((*a, k), (v, U256::ZERO));
            }
        }
        for ((a, k), after) in self.storage {
            let before = base.slot(&a, &k)?;
            slots.insert((a, k), (before, after));
        }
        for ((a, k), (before, after)) in slots {
            if before != after {
                diff.storage.push((a, k, before, after));
            }
        }
        let mut codes = Vec::new();
        for (h, c) in self.codes {
            if base.code(&h)?.is_none() {
                codes.push((h, c));
            }
        }
        codes.sort_by_key(|(h, _)| *h);
        diff.codes = codes;
        Ok(diff)
    }
}

impl Database for Overlay<'_> {
    type Error = StateError;

    fn basic(&mut self, a: Address) -> Result<Option<AccountInfo>, StateError> {
        // The code goes along: AccountInfo's default would claim empty code.
        let Some(rec) = self.account(&a)? else {
            return Ok(None);
        };
        let code = if rec.code_hash == KECCAK256_EMPTY {
            Bytecode::default()
        } else {
            self.code(&rec.code_hash)?
                .map(Bytecode::new_raw)
                .unwrap_or_default()
        };
        Ok(Some(AccountInfo {
            balance: rec.balance,
            nonce: rec.nonce,
            code_hash: rec.code_hash,
            code: Some(code),
            ..Default::default()
        }))
    }

    fn code_by_hash(&mut self, hash: B256) -> Result<Bytecode, StateError> {
        Ok(self.code(&hash)?.map(Bytecode::new_raw).unwrap_or_default())
    }

    fn storage(&mut self, a: Address, key: U256) -> Result<U256, StateError> {
        self.slot(&a, &key)
    }

    fn block_hash(&mut self, number: u64) -> Result<B256, StateError> {
        Ok((self.hashes)(number))
    }
}

impl DatabaseCommit for Overlay<'_> {
    fn commit(&mut self, changes: revm::primitives::AddressMap<Account>) {
        for (a, account) in changes {
            self.commit_account(a, account);
        }
    }
}

impl Overlay<'_> {
    fn commit_account(&mut self, a: Address, account: Account) {
        if !account.is_touched() {
            return;
        }
        if account.is_selfdestructed() || (account.state_clear_aware_is_empty(self.spec)) {
            self.wipe(a);
            self.accounts.insert(a, None);
            return;
        }
        if account.is_created() {
            self.wipe(a);
        }
        if let Some(code) = &account.info.code
            && account.info.code_hash != KECCAK256_EMPTY
        {
            let raw = code.original_bytes();
            let hash = account.info.code_hash;
            debug_assert_eq!(hash, keccak256(&raw));
            self.codes.entry(hash).or_insert(raw);
        }
        self.accounts.insert(
            a,
            Some(AccountRec {
                nonce: account.info.nonce,
                balance: account.info.balance,
                code_hash: account.info.code_hash,
            }),
        );
        let created = account.is_created();
        for (key, slot) in account.storage {
            if slot.is_changed() || created {
                self.storage.insert((a, key), slot.present_value());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_trie::{EMPTY_ROOT_HASH, TrieAccount};
    use redb::{Database, ReadableDatabase};

    /// The state as plain maps, to compute the expected root from scratch.
    #[derive(Default, Clone)]
    struct Model {
        accounts: BTreeMap<Address, AccountRec>,
        storage: BTreeMap<Address, BTreeMap<U256, U256>>,
    }

    impl Model {
        fn apply(&mut self, d: &StateDiff) {
            for (a, _, after) in &d.accounts {
                match after {
                    Some(r) => self.accounts.insert(*a, r.clone()),
                    None => self.accounts.remove(a),
                };
            }
            for (a, k, _, v) in &d.storage {
                let s = self.storage.entry(*a).or_default();
                if v.is_zero() {
                    s.remove(k);
                } else {
                    s.insert(*k, *v);
                }
            }
        }

        /// The root as alloy-trie computes it from scratch.
        fn root(&self) -> B256 {
            use alloy_trie::root;
            root::state_root_unhashed(self.accounts.iter().map(|(a, rec)| {
                let storage_root = self
                    .storage
                    .get(a)
                    .map(|slots| {
                        root::storage_root_unhashed(
                            slots
                                .iter()
                                .map(|(k, v)| (B256::from(k.to_be_bytes::<32>()), *v)),
                        )
                    })
                    .unwrap_or(EMPTY_ROOT_HASH);
                (
                    *a,
                    TrieAccount {
                        nonce: rec.nonce,
                        balance: rec.balance,
                        storage_root,
                        code_hash: rec.code_hash,
                    },
                )
            }))
        }
    }

    struct Disk {
        db: Database,
        _dir: tempfile::TempDir,
    }

    impl Disk {
        fn new() -> Disk {
            let dir = tempfile::tempdir().unwrap();
            let db = Database::create(dir.path().join("state.redb")).unwrap();
            let w = db.begin_write().unwrap();
            crate::statedb::create_tables(&w).unwrap();
            w.commit().unwrap();
            Disk { db, _dir: dir }
        }

        fn reader(&self) -> Arc<StateReader> {
            Arc::new(StateReader::new(&self.db.begin_read().unwrap()).unwrap())
        }

        fn commit(&self, s: &mut WorldState) {
            let writes = s.writes().unwrap();
            let w = self.db.begin_write().unwrap();
            writes.write(&w).unwrap();
            w.commit().unwrap();
            s.committed(self.reader());
        }
    }

    #[test]
    fn incremental_root_matches_alloy_trie_through_commits_undos_and_reopens() {
        let disk = Disk::new();
        let mut s = WorldState::new(disk.reader(), EMPTY_ROOT_HASH);
        let mut model = Model::default();
        let mut seed = 1u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 16
        };
        for block in 0..80 {
            let mut diff = StateDiff::default();
            for _ in 0..20 {
                let a = Address::left_padding_from(&(next() % 50).to_be_bytes());
                let before = s.account(&a).unwrap();
                let after = if next() % 6 == 0 {
                    None
                } else {
                    Some(AccountRec {
                        nonce: next() % 9,
                        balance: U256::from(next()),
                        code_hash: KECCAK256_EMPTY,
                    })
                };
                if diff.accounts.iter().any(|(x, ..)| *x == a) {
                    // One change per account and block, as execution leaves it.
                    continue;
                }
                if before != after {
                    diff.accounts.push((a, before, after.clone()));
                }
                if after.is_none() {
                    // A deleted account's storage goes with it, slot by slot.
                    for (k, v) in s.slots(&a).unwrap() {
                        if !diff.storage.iter().any(|(x, y, ..)| *x == a && *y == k) {
                            diff.storage.push((a, k, v, U256::ZERO));
                        }
                    }
                } else {
                    let k = U256::from(next() % 8);
                    let v = if next() % 3 == 0 {
                        U256::ZERO
                    } else {
                        U256::from(next())
                    };
                    if !diff.storage.iter().any(|(x, y, ..)| *x == a && *y == k) {
                        diff.storage.push((a, k, s.slot(&a, &k).unwrap(), v));
                    }
                }
            }
            let before = model.clone();
            s.apply(&diff);
            model.apply(&diff);
            assert_eq!(s.state_root().unwrap(), model.root(), "after block {block}");
            if block % 5 == 4 {
                s.undo(&diff);
                assert_eq!(
                    s.state_root().unwrap(),
                    before.root(),
                    "after undoing block {block}"
                );
                s.apply(&diff);
            }
            if block % 3 == 2 {
                disk.commit(&mut s);
                assert_eq!(s.state_root().unwrap(), model.root());
            }
            if block % 9 == 8 {
                disk.commit(&mut s);
                s = WorldState::new(disk.reader(), model.root());
                for (a, rec) in &model.accounts {
                    assert_eq!(s.account(a).unwrap().as_ref(), Some(rec));
                }
            }
        }
    }

    #[test]
    fn empty_state_has_the_empty_root() {
        let disk = Disk::new();
        let mut s = WorldState::new(disk.reader(), EMPTY_ROOT_HASH);
        assert_eq!(s.state_root().unwrap(), EMPTY_ROOT_HASH);
    }

    #[test]
    fn undo_restores_exactly() {
        let disk = Disk::new();
        let mut s = WorldState::new(disk.reader(), EMPTY_ROOT_HASH);
        let a = Address::repeat_byte(1);
        s.apply(&StateDiff {
            accounts: vec![(a, None, Some(AccountRec::with_balance(U256::from(5))))],
            storage: vec![(a, U256::from(1), U256::ZERO, U256::from(9))],
            codes: vec![],
        });
        let root = s.state_root().unwrap();
        disk.commit(&mut s);
        let diff = StateDiff {
            accounts: vec![(
                a,
                Some(AccountRec::with_balance(U256::from(5))),
                Some(AccountRec::with_balance(U256::from(7))),
            )],
            storage: vec![(a, U256::from(1), U256::from(9), U256::ZERO)],
            codes: vec![],
        };
        s.apply(&diff);
        assert_ne!(s.state_root().unwrap(), root);
        s.undo(&diff);
        assert_eq!(s.state_root().unwrap(), root);
        assert_eq!(s.slot(&a, &U256::from(1)).unwrap(), U256::from(9));
    }

    #[test]
    fn reads_at_a_past_block_come_from_the_history() {
        let disk = Disk::new();
        let mut s = WorldState::new(disk.reader(), EMPTY_ROOT_HASH);
        let a = Address::repeat_byte(7);
        let k = U256::from(3);
        let mut diffs = Vec::new();
        for n in 1..=4u64 {
            let d = StateDiff {
                accounts: vec![(
                    a,
                    s.account(&a).unwrap(),
                    Some(AccountRec::with_balance(U256::from(n * 10))),
                )],
                storage: if n % 2 == 0 {
                    vec![(a, k, s.slot(&a, &k).unwrap(), U256::from(n))]
                } else {
                    vec![]
                },
                codes: vec![],
            };
            s.apply(&d);
            let writes = s.writes().unwrap();
            let w = disk.db.begin_write().unwrap();
            writes.write(&w).unwrap();
            crate::statedb::record_history(&w, n, &d).unwrap();
            w.commit().unwrap();
            s.committed(disk.reader());
            diffs.push(d);
        }
        let r = disk.reader();
        let balance = |at| r.at(at).account(&a).unwrap().map(|x| x.balance);
        assert_eq!(balance(Some(0)), None);
        assert_eq!(balance(Some(1)), Some(U256::from(10)));
        assert_eq!(balance(Some(3)), Some(U256::from(30)));
        assert_eq!(balance(None), Some(U256::from(40)));
        let slot = |at| r.at(at).slot(&a, &k).unwrap();
        assert_eq!(slot(Some(1)), U256::ZERO);
        assert_eq!(slot(Some(2)), U256::from(2));
        assert_eq!(slot(Some(3)), U256::from(2));
        assert_eq!(slot(Some(4)), U256::from(4));
        // Block 4 leaves the canonical chain: its entries go, and the head is block 3's.
        let w = disk.db.begin_write().unwrap();
        crate::statedb::forget_history(&w, 4, &diffs[3]).unwrap();
        w.commit().unwrap();
        let r = disk.reader();
        assert_eq!(
            r.at(Some(3)).account(&a).unwrap().map(|x| x.balance),
            Some(U256::from(40)),
            "without block 4's entries the current value answers"
        );
    }
}
