//! The world state (accounts, storage, code), the overlay a block executes on, and the
//! diff a block leaves, which is kept so a reorg can undo the block exactly.
//!
//! Invariants: storage maps never hold zero values (zero means absent, as in the trie);
//! an account that is touched and empty after a transaction is deleted (EIP-161).

use std::collections::{BTreeMap, HashMap, HashSet};

use alloy_primitives::{Address, B256, Bytes, KECCAK256_EMPTY, U256, keccak256};
use alloy_trie::{EMPTY_ROOT_HASH, TrieAccount};

use crate::trie::Trie;
use revm::bytecode::Bytecode;
use revm::database_interface::{DBErrorMarker, Database, DatabaseCommit};
use revm::primitives::hardfork::SpecId;
use revm::state::{Account, AccountInfo};
use serde::{Deserialize, Serialize};

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
}

/// The committed state at the canonical tip.
#[derive(Default, Clone)]
pub struct WorldState {
    pub accounts: HashMap<Address, AccountRec>,
    pub storage: HashMap<Address, BTreeMap<U256, U256>>,
    pub codes: HashMap<B256, Bytes>,
    /// The account trie, and one storage trie per account that has storage: kept with
    /// every node's hash, so a root after a block hashes only the paths it changed.
    account_trie: Trie,
    storage_tries: HashMap<Address, Trie>,
    /// Accounts whose leaf must be rewritten before the next root.
    dirty: HashSet<Address>,
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

impl WorldState {
    pub fn account(&self, a: &Address) -> Option<&AccountRec> {
        self.accounts.get(a)
    }

    /// The account's nonce (0 for an account that does not exist).
    pub fn nonce(&self, a: &Address) -> u64 {
        self.accounts.get(a).map(|r| r.nonce).unwrap_or_default()
    }

    pub fn slot(&self, a: &Address, key: &U256) -> U256 {
        self.storage
            .get(a)
            .and_then(|s| s.get(key))
            .copied()
            .unwrap_or_default()
    }

    pub fn code(&self, a: &Address) -> Bytes {
        self.accounts
            .get(a)
            .and_then(|acc| self.codes.get(&acc.code_hash))
            .cloned()
            .unwrap_or_default()
    }

    fn set_slot(&mut self, a: Address, key: U256, value: U256) {
        self.dirty.insert(a);
        let hashed = keccak256(key.to_be_bytes::<32>());
        let slots = self.storage.entry(a).or_default();
        let trie = self.storage_tries.entry(a).or_default();
        if value.is_zero() {
            slots.remove(&key);
            trie.remove(&hashed);
            if slots.is_empty() {
                self.storage.remove(&a);
                self.storage_tries.remove(&a);
            }
        } else {
            slots.insert(key, value);
            trie.insert(&hashed, alloy_rlp::encode(value));
        }
    }

    fn set_account(&mut self, a: Address, rec: Option<AccountRec>) {
        self.dirty.insert(a);
        match rec {
            Some(r) => {
                self.accounts.insert(a, r);
            }
            None => {
                self.accounts.remove(&a);
            }
        }
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

    /// The Merkle-Patricia root of the state, as Ethereum computes it.
    pub fn state_root(&mut self) -> B256 {
        for a in std::mem::take(&mut self.dirty) {
            let hashed = keccak256(a);
            match self.accounts.get(&a) {
                Some(rec) => {
                    let storage_root = self
                        .storage_tries
                        .get_mut(&a)
                        .map(Trie::root)
                        .unwrap_or(EMPTY_ROOT_HASH);
                    let leaf = TrieAccount {
                        nonce: rec.nonce,
                        balance: rec.balance,
                        storage_root,
                        code_hash: rec.code_hash,
                    };
                    self.account_trie.insert(&hashed, alloy_rlp::encode(leaf));
                }
                None => self.account_trie.remove(&hashed),
            }
        }
        self.account_trie.root()
    }
}

/// The error type of the execution database; it never fails (all state is in memory).
#[derive(Debug, thiserror::Error)]
#[error("state unavailable")]
pub struct NoError;
impl DBErrorMarker for NoError {}

/// Pending changes of a block in execution, layered over the committed state.
pub struct Overlay<'a> {
    base: &'a WorldState,
    hashes: &'a dyn Fn(u64) -> B256,
    spec: SpecId,
    accounts: HashMap<Address, Option<AccountRec>>,
    storage: HashMap<(Address, U256), U256>,
    /// Accounts whose storage was wiped (self-destructed or re-created) in this block.
    wiped: HashSet<Address>,
    codes: HashMap<B256, Bytes>,
}

impl<'a> Overlay<'a> {
    pub fn new(base: &'a WorldState, hashes: &'a dyn Fn(u64) -> B256, spec: SpecId) -> Self {
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

    pub fn account(&self, a: &Address) -> Option<AccountRec> {
        match self.accounts.get(a) {
            Some(rec) => rec.clone(),
            None => self.base.account(a).cloned(),
        }
    }

    /// Adds `amount` to an account's balance (block rewards).
    pub fn credit(&mut self, a: Address, amount: U256) {
        let mut rec = self
            .account(&a)
            .unwrap_or_else(|| AccountRec::with_balance(U256::ZERO));
        rec.balance = rec.balance.saturating_add(amount);
        self.accounts.insert(a, Some(rec));
    }

    fn slot(&self, a: &Address, key: &U256) -> U256 {
        if let Some(v) = self.storage.get(&(*a, *key)) {
            return *v;
        }
        if self.wiped.contains(a) {
            return U256::ZERO;
        }
        self.base.slot(a, key)
    }

    fn wipe(&mut self, a: Address) {
        self.wiped.insert(a);
        self.storage.retain(|(addr, _), _| *addr != a);
    }

    /// The diff from the committed state to this overlay.
    pub fn into_diff(self) -> StateDiff {
        let base = self.base;
        let mut diff = StateDiff::default();
        let mut accounts: Vec<_> = self.accounts.into_iter().collect();
        accounts.sort_by_key(|(a, _)| *a);
        for (a, after) in accounts {
            let before = base.account(&a).cloned();
            if before != after {
                diff.accounts.push((a, before, after));
            }
        }
        let mut slots: BTreeMap<(Address, U256), (U256, U256)> = BTreeMap::new();
        for a in &self.wiped {
            if let Some(old) = base.storage.get(a) {
                for (k, v) in old {
                    slots.insert((*a, *k), (*v, U256::ZERO));
                }
            }
        }
        for ((a, k), after) in self.storage {
            let before = base.slot(&a, &k);
            slots.insert((a, k), (before, after));
        }
        for ((a, k), (before, after)) in slots {
            if before != after {
                diff.storage.push((a, k, before, after));
            }
        }
        let mut codes: Vec<_> = self
            .codes
            .into_iter()
            .filter(|(h, _)| !base.codes.contains_key(h))
            .collect();
        codes.sort_by_key(|(h, _)| *h);
        diff.codes = codes;
        diff
    }
}

impl Database for Overlay<'_> {
    type Error = NoError;

    fn basic(&mut self, a: Address) -> Result<Option<AccountInfo>, NoError> {
        // The code goes along: AccountInfo's default would claim empty code.
        Ok(self.account(&a).map(|rec| {
            let code = if rec.code_hash == KECCAK256_EMPTY {
                Bytecode::default()
            } else {
                let raw = self
                    .codes
                    .get(&rec.code_hash)
                    .or_else(|| self.base.codes.get(&rec.code_hash));
                raw.map(|b| Bytecode::new_raw(b.clone()))
                    .unwrap_or_default()
            };
            AccountInfo {
                balance: rec.balance,
                nonce: rec.nonce,
                code_hash: rec.code_hash,
                code: Some(code),
                ..Default::default()
            }
        }))
    }

    fn code_by_hash(&mut self, hash: B256) -> Result<Bytecode, NoError> {
        let raw = self.codes.get(&hash).or_else(|| self.base.codes.get(&hash));
        Ok(raw
            .map(|b| Bytecode::new_raw(b.clone()))
            .unwrap_or_default())
    }

    fn storage(&mut self, a: Address, key: U256) -> Result<U256, NoError> {
        Ok(self.slot(&a, &key))
    }

    fn block_hash(&mut self, number: u64) -> Result<B256, NoError> {
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

    /// The root as alloy-trie computes it from scratch.
    fn reference_root(s: &WorldState) -> B256 {
        use alloy_trie::root;
        root::state_root_unhashed(s.accounts.iter().map(|(a, rec)| {
            let storage_root = s
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

    #[test]
    fn incremental_root_matches_alloy_trie_from_scratch() {
        let mut s = WorldState::default();
        let mut seed = 1u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 16
        };
        for block in 0..60 {
            let mut diff = StateDiff::default();
            for _ in 0..20 {
                let a = Address::left_padding_from(&(next() % 50).to_be_bytes());
                let before = s.account(&a).cloned();
                let after = if next() % 6 == 0 {
                    None
                } else {
                    Some(AccountRec {
                        nonce: next() % 9,
                        balance: U256::from(next()),
                        code_hash: KECCAK256_EMPTY,
                    })
                };
                if before != after && !diff.accounts.iter().any(|(x, ..)| *x == a) {
                    diff.accounts.push((a, before, after.clone()));
                }
                if after.is_some() {
                    let k = U256::from(next() % 8);
                    let v = if next() % 3 == 0 {
                        U256::ZERO
                    } else {
                        U256::from(next())
                    };
                    if !diff.storage.iter().any(|(x, y, ..)| *x == a && *y == k) {
                        diff.storage.push((a, k, s.slot(&a, &k), v));
                    }
                }
            }
            s.apply(&diff);
            assert_eq!(s.state_root(), reference_root(&s), "after block {block}");
            if block % 5 == 4 {
                s.undo(&diff);
                assert_eq!(
                    s.state_root(),
                    reference_root(&s),
                    "after undoing block {block}"
                );
                s.apply(&diff);
            }
        }
    }

    #[test]
    fn empty_state_has_the_empty_root() {
        assert_eq!(WorldState::default().state_root(), EMPTY_ROOT_HASH);
    }

    #[test]
    fn undo_restores_exactly() {
        let mut s = WorldState::default();
        let a = Address::repeat_byte(1);
        s.apply(&StateDiff {
            accounts: vec![(a, None, Some(AccountRec::with_balance(U256::from(5))))],
            storage: vec![(a, U256::from(1), U256::ZERO, U256::from(9))],
            codes: vec![],
        });
        let root = s.state_root();
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
        assert_ne!(s.state_root(), root);
        s.undo(&diff);
        assert_eq!(s.state_root(), root);
        assert_eq!(s.slot(&a, &U256::from(1)), U256::from(9));
    }
}
