//! Pending transactions: per sender in nonce order, chosen for blocks by the tip they
//! pay, replaceable by the same nonce at a higher fee, bounded in all and per sender.

use std::collections::{BTreeMap, BinaryHeap, HashMap};

use alloy_consensus::transaction::Transaction as _;
use alloy_primitives::{Address, B256, U256};

use crate::error::TxError;
use crate::tx::RecoveredTx;

/// A replacement must raise both fee fields by this many percent (as geth).
pub const PRICE_BUMP_PERCENT: u128 = 10;
/// How far beyond the sender's next pending nonce a transaction may wait for the ones
/// before it.
pub const MAX_NONCE_GAP: u64 = 16;

pub struct Mempool {
    by_hash: HashMap<B256, RecoveredTx>,
    by_sender: HashMap<Address, BTreeMap<u64, B256>>,
    max: usize,
    max_per_sender: usize,
}

/// The account facts a new transaction is checked against.
pub struct AccountView {
    pub nonce: u64,
    pub balance: U256,
}

impl Mempool {
    pub fn new(max: usize, max_per_sender: usize) -> Self {
        Mempool {
            by_hash: HashMap::new(),
            by_sender: HashMap::new(),
            max,
            max_per_sender,
        }
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    pub fn get(&self, hash: &B256) -> Option<&RecoveredTx> {
        self.by_hash.get(hash)
    }

    pub fn contains(&self, hash: &B256) -> bool {
        self.by_hash.contains_key(hash)
    }

    /// Adds a transaction already checked by [`RecoveredTx::check_static`]. Returns the
    /// hash of the transaction it replaced, if any.
    pub fn add(&mut self, tx: RecoveredTx, acct: &AccountView) -> Result<Option<B256>, TxError> {
        if self.by_hash.contains_key(&tx.hash) {
            return Err(TxError::AlreadyKnown);
        }
        let nonce = tx.nonce();
        if nonce < acct.nonce {
            return Err(TxError::NonceTooLow {
                next: acct.nonce,
                nonce,
            });
        }
        // The gap counts from the next nonce after the sender's pooled transactions, so a
        // wallet may queue many in a row.
        let next = self.pending_nonce(&tx.sender, acct.nonce);
        if nonce > next + MAX_NONCE_GAP {
            return Err(TxError::NonceGap {
                next,
                nonce,
                max_gap: MAX_NONCE_GAP,
            });
        }
        if tx.max_cost() > acct.balance {
            return Err(TxError::InsufficientFunds {
                balance: acct.balance.to_string(),
                cost: tx.max_cost().to_string(),
            });
        }
        let queue = self.by_sender.entry(tx.sender).or_default();
        let replaced = match queue.get(&nonce) {
            Some(old_hash) => {
                let old = &self.by_hash[old_hash];
                let bump = |v: u128| v + v * PRICE_BUMP_PERCENT / 100;
                let old_tip = old
                    .tx
                    .max_priority_fee_per_gas()
                    .unwrap_or(old.tx.max_fee_per_gas());
                let new_tip = tx
                    .tx
                    .max_priority_fee_per_gas()
                    .unwrap_or(tx.tx.max_fee_per_gas());
                if tx.tx.max_fee_per_gas() < bump(old.tx.max_fee_per_gas())
                    || new_tip < bump(old_tip)
                {
                    return Err(TxError::Underpriced);
                }
                Some(*old_hash)
            }
            None => None,
        };
        if replaced.is_none() {
            if queue.len() >= self.max_per_sender {
                return Err(TxError::PoolFull);
            }
            if self.by_hash.len() >= self.max && !self.evict_cheapest_below(&tx) {
                return Err(TxError::PoolFull);
            }
        }
        if let Some(old) = replaced {
            self.by_hash.remove(&old);
        }
        self.by_sender
            .entry(tx.sender)
            .or_default()
            .insert(nonce, tx.hash);
        self.by_hash.insert(tx.hash, tx);
        Ok(replaced)
    }

    /// Makes room by dropping the last queued transaction of the sender whose last
    /// transaction pays the least, if it pays less than `incoming`.
    fn evict_cheapest_below(&mut self, incoming: &RecoveredTx) -> bool {
        let fee = |t: &RecoveredTx| t.tx.max_fee_per_gas();
        let victim = self
            .by_sender
            .iter()
            .filter(|(s, _)| **s != incoming.sender)
            .filter_map(|(_, q)| q.values().next_back())
            .map(|h| &self.by_hash[h])
            .min_by_key(|t| fee(t))
            .map(|t| (t.hash, fee(t)));
        match victim {
            Some((h, f)) if f < fee(incoming) => {
                self.remove(&h);
                true
            }
            _ => false,
        }
    }

    pub fn remove(&mut self, hash: &B256) -> Option<RecoveredTx> {
        let tx = self.by_hash.remove(hash)?;
        if let Some(q) = self.by_sender.get_mut(&tx.sender) {
            q.remove(&tx.nonce());
            if q.is_empty() {
                self.by_sender.remove(&tx.sender);
            }
        }
        Some(tx)
    }

    /// Drops what can never be mined: nonces below the sender's account nonce.
    pub fn prune(&mut self, nonce_of: impl Fn(&Address) -> u64) -> Vec<B256> {
        let mut gone = Vec::new();
        for (sender, q) in &self.by_sender {
            let next = nonce_of(sender);
            gone.extend(q.range(..next).map(|(_, h)| *h));
        }
        for h in &gone {
            self.remove(h);
        }
        gone
    }

    /// The next nonce of `sender` counting its queued transactions without a gap.
    pub fn pending_nonce(&self, sender: &Address, state_nonce: u64) -> u64 {
        let mut next = state_nonce;
        if let Some(q) = self.by_sender.get(sender) {
            while q.contains_key(&next) {
                next += 1;
            }
        }
        next
    }

    /// Transactions for the next block: each sender's in nonce order from its account
    /// nonce, senders interleaved by the tip they pay at `base_fee` (highest first).
    pub fn select(
        &self,
        base_fee: u64,
        nonce_of: impl Fn(&Address) -> u64,
        max: usize,
    ) -> Vec<RecoveredTx> {
        let mut heap = BinaryHeap::new();
        let mut cursors: HashMap<Address, u64> = HashMap::new();
        for (sender, q) in &self.by_sender {
            let next = nonce_of(sender);
            if let Some(h) = q.get(&next)
                && let Some(tip) = self.by_hash[h].tip_at(base_fee)
            {
                heap.push((tip, *h));
                cursors.insert(*sender, next);
            }
        }
        let mut out = Vec::new();
        while let Some((_, h)) = heap.pop() {
            if out.len() >= max {
                break;
            }
            let tx = self.by_hash[&h].clone();
            let next = cursors[&tx.sender] + 1;
            if let Some(nh) = self.by_sender[&tx.sender].get(&next)
                && let Some(tip) = self.by_hash[nh].tip_at(base_fee)
            {
                heap.push((tip, *nh));
                cursors.insert(tx.sender, next);
            }
            out.push(tx);
        }
        out
    }

    pub fn hashes(&self) -> impl Iterator<Item = &B256> {
        self.by_hash.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::DEV_KEYS;
    use crate::wallet::{Key, eip1559};

    fn tx(key: &Key, nonce: u64, tip: u128) -> RecoveredTx {
        let t = eip1559(
            31337,
            nonce,
            Some(Address::ZERO),
            U256::from(1),
            Default::default(),
            21_000,
            10 * tip,
            tip,
        );
        RecoveredTx::recover(key.sign(t)).unwrap()
    }

    fn rich() -> AccountView {
        AccountView {
            nonce: 0,
            balance: U256::MAX,
        }
    }

    #[test]
    fn nonces_gaps_replacement_and_order() {
        let mut pool = Mempool::new(100, 40);
        let a = Key::from_hex(DEV_KEYS[0]).unwrap();
        let b = Key::from_hex(DEV_KEYS[1]).unwrap();
        // A wallet may queue many in a row; the gap counts from its pending nonce.
        for n in 0..30 {
            pool.add(tx(&a, n, 1_000_000_000), &rich()).unwrap();
        }
        assert_eq!(pool.pending_nonce(&a.address, 0), 30);
        assert!(matches!(
            pool.add(tx(&a, 30 + MAX_NONCE_GAP + 1, 1_000_000_000), &rich()),
            Err(TxError::NonceGap { .. })
        ));
        assert!(matches!(
            pool.add(tx(&a, 3, 1_050_000_000), &rich()),
            Err(TxError::Underpriced)
        ));
        assert!(
            pool.add(tx(&a, 3, 2_000_000_000), &rich())
                .unwrap()
                .is_some(),
            "a 10% higher fee replaces"
        );
        assert!(matches!(
            pool.add(
                tx(&b, 0, 1),
                &AccountView {
                    nonce: 0,
                    balance: U256::from(5)
                }
            ),
            Err(TxError::InsufficientFunds { .. })
        ));
        assert!(matches!(
            pool.add(
                tx(&b, 0, 1),
                &AccountView {
                    nonce: 2,
                    balance: U256::MAX
                }
            ),
            Err(TxError::NonceTooLow { .. })
        ));
        // Selection: per-sender nonce order, senders by tip.
        pool.add(tx(&b, 0, 5_000_000_000), &rich()).unwrap();
        let picked = pool.select(0, |_| 0, 5);
        assert_eq!(picked[0].sender, b.address, "the higher tip first");
        let a_nonces: Vec<u64> = picked
            .iter()
            .filter(|t| t.sender == a.address)
            .map(|t| t.nonce())
            .collect();
        assert_eq!(a_nonces, vec![0, 1, 2, 3]);
        assert_eq!(
            pool.prune(|s| if *s == a.address { 10 } else { 0 }).len(),
            10
        );
    }
}
