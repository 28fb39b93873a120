//! The block tree and the canonical chain: header and body checks, fork choice by most
//! cumulative work, execution of new canonical blocks, reorgs by undoing state diffs,
//! block templates for the miner, and the reads the JSON-RPC server needs.

use std::collections::HashMap;
use std::path::Path;

use alloy_consensus::proofs::{calculate_receipt_root, calculate_transaction_root};
use alloy_consensus::{BlockBody, EMPTY_OMMER_ROOT_HASH, Header, ReceiptEnvelope};
use alloy_eips::eip1559::BaseFeeParams;
use alloy_primitives::{Address, B64, B256, U256};

use crate::asert::{self, AsertAnchor};
use crate::error::{BlockFault, ChainError, StoreFault};
use crate::exec::{self, BlockInfo, ExecError, Executed, Mode};
use crate::spec::{ChainSpec, MAX_FUTURE_SECS, MEDIAN_SPAN};
use crate::state::{AccountRec, StateDiff, StateError, WorldState};
use crate::statedb::StateAt;
use crate::store::{Batch, BlockMeta, ChainBlock, Store};
use crate::tx::RecoveredTx;

/// What importing a block did.
#[derive(Debug, PartialEq, Eq)]
pub enum Imported {
    /// Already known.
    Known,
    /// Stored on a branch with less work than the canonical one.
    Side,
    /// The block is the new canonical head.
    Head(HeadChange),
}

/// A change of canonical head.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HeadChange {
    /// Blocks that left the canonical chain, newest first (empty unless a reorg).
    pub removed: Vec<B256>,
    /// Blocks that joined it, oldest first.
    pub added: Vec<B256>,
    /// Transactions of removed blocks that are not in the added ones: back to the pool.
    pub returned: Vec<Vec<u8>>,
    /// Transactions now in canonical blocks: out of the pool.
    pub included: Vec<B256>,
}

/// An unsealed block for the miner.
pub struct Template {
    pub header: Header,
    pub body: BlockBody<alloy_consensus::TxEnvelope>,
    pub target: U256,
    pub dropped: Vec<(B256, String)>,
    /// What executing the body produced, so the sealed block need not run again here.
    pub receipts: Vec<ReceiptEnvelope>,
    pub diff: StateDiff,
}

/// A block this node sealed from a [`Template`], with the template's execution results.
pub struct Sealed {
    pub block: ChainBlock,
    pub receipts: Vec<ReceiptEnvelope>,
    pub diff: StateDiff,
}

/// Blocks whose state stays readable behind the head (geth keeps 128 too), unless the
/// node is an archive.
pub const HISTORY_BLOCKS: u64 = 128;
/// Blocks whose history one commit forgets at most (a node that stops being an archive
/// catches up gradually).
const PRUNE_PER_COMMIT: u64 = 64;
/// Genesis accounts written per commit while a large genesis is built.
const GENESIS_CHUNK: usize = 100_000;

/// Which block's state a read wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateRef {
    Head,
    Number(u64),
    /// A canonical block by hash.
    Hash(B256),
}

/// How a node keeps its state.
#[derive(Clone, Copy, Debug, Default)]
pub struct StateOptions {
    /// Keep the state of every block readable, not only the last [`HISTORY_BLOCKS`].
    pub archive: bool,
}

pub struct Chain {
    pub spec: ChainSpec,
    store: Store,
    options: StateOptions,
    /// Pending transactions found on disk at open, until the service takes them.
    stored_mempool: Vec<Vec<u8>>,
    /// The head's state: on disk, with the changes of a block in progress. Calls run on
    /// snapshots of the committed state ([`Chain::call_snapshot_at`]), so they never hold up
    /// block import.
    state: WorldState,
    /// History entries below this block number may be gone.
    history_floor: u64,
    headers: HashMap<B256, Header>,
    metas: HashMap<B256, BlockMeta>,
    canon: Vec<B256>,
}

fn invalid(hash: B256, reason: impl Into<BlockFault>) -> ChainError {
    ChainError::Block {
        hash,
        reason: Box::new(reason.into()),
    }
}

impl Chain {
    /// Opens `chain.redb`, writing the genesis block on first use.
    pub fn open(spec: ChainSpec, path: &Path) -> Result<Chain, ChainError> {
        Self::open_with(spec, path, StateOptions::default(), &mut std::iter::empty())
    }

    /// Opens `chain.redb` with `options`; a new chain's genesis holds `spec.alloc` and
    /// then `extra` (a generated genesis, written in chunks however large).
    pub fn open_with(
        spec: ChainSpec,
        path: &Path,
        options: StateOptions,
        extra: &mut dyn Iterator<Item = (Address, U256)>,
    ) -> Result<Chain, ChainError> {
        let store = Store::open(path)?;
        let loaded = store.load()?;
        let reader = store.reader()?;
        let mut chain = Chain {
            spec,
            store,
            options,
            stored_mempool: loaded.mempool,
            state: WorldState::new(reader, alloy_trie::EMPTY_ROOT_HASH),
            history_floor: loaded.history_floor,
            headers: HashMap::new(),
            metas: HashMap::new(),
            canon: loaded.canon,
        };
        for (hash, header, meta) in loaded.headers {
            chain.headers.insert(hash, header);
            chain.metas.insert(hash, meta);
        }
        match chain.canon.first().copied() {
            Some(g) => {
                // The alloc's root from scratch (a repeated address: the last one holds).
                let alloc = chain.spec.alloc.clone();
                let accounts: std::collections::BTreeMap<Address, U256> =
                    alloc.into_iter().chain(extra).collect();
                let root = alloy_trie::root::state_root_unhashed(
                    accounts
                        .into_iter()
                        .map(|(a, v)| (a, AccountRec::with_balance(v).trie_account())),
                );
                let genesis_hash = chain.spec.genesis_header(root).hash_slow();
                if g != genesis_hash {
                    return Err(ChainError::Config(format!(
                        "{} holds a chain with genesis {g}, but [chain.genesis] in config.toml \
                         gives genesis {genesis_hash}; restore the config that made it, or move \
                         chain.redb away to start a new chain",
                        path.display()
                    )));
                }
                chain.open_state()?;
            }
            None => chain.write_genesis(extra)?,
        }
        Ok(chain)
    }

    fn fault(&self, e: impl Into<StoreFault>) -> ChainError {
        ChainError::store(self.store.path(), e)
    }

    /// The head's state from disk, checked against the head's state root (moved from
    /// the layout before 0.24 first, if the file has it).
    fn open_state(&mut self) -> Result<(), ChainError> {
        let head = self.head_hash();
        let root = self.headers[&head].state_root;
        if let Some(old) = self.store.old_state()? {
            self.state.apply(&old);
            if self.state.state_root().map_err(|e| self.fault(e))? != root {
                return Err(self.fault(StoreFault::StateMismatch(head)));
            }
            // No history was kept before: only the head's state is readable.
            let floor = self.head_number() + 1;
            self.commit(Batch {
                drop_old_state: true,
                history_floor: Some(floor),
                ..Default::default()
            })?;
            self.history_floor = floor;
        }
        self.state = WorldState::new(self.store.reader()?, root);
        // The root node must be on disk and hash to the head's root.
        self.state.check().map_err(|e| match e {
            StateError::Trie(_) => self.fault(StoreFault::StateMismatch(head)),
            e => self.fault(e),
        })
    }

    /// Builds the genesis state on disk, [`GENESIS_CHUNK`] accounts per commit, then
    /// commits the genesis block as the head. A genesis cut short is started again.
    fn write_genesis(
        &mut self,
        extra: &mut dyn Iterator<Item = (Address, U256)>,
    ) -> Result<(), ChainError> {
        if !self.store.state_is_empty()? {
            self.store.clear_state()?;
            self.state = WorldState::new(self.store.reader()?, alloy_trie::EMPTY_ROOT_HASH);
        }
        let alloc = self.spec.alloc.clone();
        let mut diff = StateDiff::default();
        for (a, v) in alloc.into_iter().chain(extra) {
            diff.accounts
                .push((a, None, Some(AccountRec::with_balance(v))));
            if diff.accounts.len() == GENESIS_CHUNK {
                self.state.apply(&std::mem::take(&mut diff));
                self.commit(Batch::default())?;
            }
        }
        self.state.apply(&diff);
        let root = self.state.state_root().map_err(|e| self.fault(e))?;
        let header = self.spec.genesis_header(root);
        let hash = header.hash_slow();
        let meta = BlockMeta {
            number: 0,
            parent: B256::ZERO,
            total_work: header.difficulty,
            anchor_time: 0,
            invalid: false,
        };
        let block = ChainBlock {
            header: header.clone(),
            body: Default::default(),
        };
        self.headers.insert(hash, header);
        self.metas.insert(hash, meta.clone());
        self.canon = vec![hash];
        self.commit(Batch {
            blocks: vec![(hash, block, meta)],
            canon: vec![(0, hash, vec![])],
            head: Some(hash),
            ..Default::default()
        })
    }

    /// Commits `batch` with the state's writes and the history window's pruning; the
    /// state then reads the new snapshot.
    fn commit(&mut self, mut batch: Batch) -> Result<(), ChainError> {
        let floor = self.prune_history(&mut batch)?;
        batch.state = Some(self.state.writes().map_err(|e| self.fault(e))?);
        self.store.commit(batch)?;
        if let Some(f) = floor {
            self.history_floor = f;
        }
        self.state.committed(self.store.reader()?);
        Ok(())
    }

    /// Forgets history that left the window of [`HISTORY_BLOCKS`] (none on an archive).
    fn prune_history(&self, batch: &mut Batch) -> Result<Option<u64>, ChainError> {
        if batch.history_floor.is_some() {
            return Ok(batch.history_floor);
        }
        if self.canon.is_empty() {
            // A genesis being written: no head yet.
            return Ok(None);
        }
        let target = (self.head_number() + 1).saturating_sub(HISTORY_BLOCKS);
        if self.options.archive || target <= self.history_floor {
            return Ok(None);
        }
        let floor = target.min(self.history_floor + PRUNE_PER_COMMIT);
        batch.history_add.retain(|(n, _)| *n >= floor);
        for n in self.history_floor.max(1)..floor {
            let h = self.canon[n as usize];
            let diff = self.store.diff(&h)?.ok_or(ChainError::MissingDiff(h))?;
            batch.history_remove.push((n, diff));
        }
        batch.history_floor = Some(floor);
        Ok(Some(floor))
    }

    /// The block number `r` names, if it is on the canonical chain.
    pub fn state_number(&self, r: StateRef) -> Result<u64, ChainError> {
        match r {
            StateRef::Head => Ok(self.head_number()),
            StateRef::Number(n) if n <= self.head_number() => Ok(n),
            StateRef::Number(n) => Err(ChainError::UnknownBlock(format!("number {n}"))),
            StateRef::Hash(h) if self.is_canonical(&h) => Ok(self.metas[&h].number),
            StateRef::Hash(h) => Err(ChainError::UnknownBlock(format!(
                "{h} (not a canonical block)"
            ))),
        }
    }

    /// The committed state at block `number` (the head's, or one of the last
    /// [`HISTORY_BLOCKS`]; any on an archive node).
    pub fn state_at(&self, number: u64) -> Result<StateAt, ChainError> {
        let head = self.head_number();
        if number > head {
            return Err(ChainError::UnknownBlock(format!("number {number}")));
        }
        if number == head {
            return Ok(self.state.reader().at(None));
        }
        let oldest = self.history_floor.saturating_sub(1);
        if number < oldest {
            return Err(ChainError::StatePruned { number, oldest });
        }
        Ok(self.state.reader().at(Some(number)))
    }

    pub fn state(&self) -> &WorldState {
        &self.state
    }

    pub fn head_hash(&self) -> B256 {
        *self.canon.last().expect("genesis is always canonical")
    }

    pub fn head(&self) -> &Header {
        &self.headers[&self.head_hash()]
    }

    pub fn head_number(&self) -> u64 {
        self.canon.len() as u64 - 1
    }

    pub fn total_work(&self) -> U256 {
        self.metas[&self.head_hash()].total_work
    }

    pub fn genesis_hash(&self) -> B256 {
        self.canon[0]
    }

    pub fn canonical_hash(&self, number: u64) -> Option<B256> {
        self.canon.get(number as usize).copied()
    }

    pub fn header(&self, hash: &B256) -> Option<&Header> {
        self.headers.get(hash)
    }

    pub fn meta(&self, hash: &B256) -> Option<&BlockMeta> {
        self.metas.get(hash)
    }

    pub fn is_canonical(&self, hash: &B256) -> bool {
        self.metas
            .get(hash)
            .is_some_and(|m| self.canon.get(m.number as usize) == Some(hash))
    }

    pub fn block(&self, hash: &B256) -> Result<Option<ChainBlock>, ChainError> {
        self.store.block(hash)
    }

    pub fn receipts(&self, hash: &B256) -> Result<Option<Vec<ReceiptEnvelope>>, ChainError> {
        self.store.receipts(hash)
    }

    /// Where a canonical transaction is: block hash and index.
    pub fn tx_location(&self, tx: &B256) -> Result<Option<(B256, u32)>, ChainError> {
        self.store.tx_location(tx)
    }

    /// The target a child of `parent` must meet (ASERT anchored at block 1).
    pub fn child_target(&self, parent: &B256) -> U256 {
        let meta = &self.metas[parent];
        if meta.number == 0 {
            return asert::from_compact(self.spec.initial_bits);
        }
        let anchor = AsertAnchor {
            height: 1,
            parent_time: meta.anchor_time as i64 - self.spec.asert.spacing_secs,
            bits: self.spec.initial_bits,
        };
        let t = self.headers[parent].timestamp as i64;
        asert::next_target(&self.spec.asert, &anchor, t, meta.number)
    }

    /// Median timestamp of `parent` and up to ten of its ancestors.
    pub fn median_time(&self, parent: &B256) -> u64 {
        let mut times = Vec::with_capacity(MEDIAN_SPAN);
        let mut at = *parent;
        while times.len() < MEDIAN_SPAN {
            let Some(h) = self.headers.get(&at) else {
                break;
            };
            times.push(h.timestamp);
            if h.number == 0 {
                break;
            }
            at = h.parent_hash;
        }
        times.sort_unstable();
        times[times.len() / 2]
    }

    pub fn child_base_fee(&self, parent: &Header) -> u64 {
        BaseFeeParams::ethereum().next_block_base_fee(
            parent.gas_used,
            parent.gas_limit,
            parent
                .base_fee_per_gas
                .unwrap_or(crate::spec::INITIAL_BASE_FEE),
        )
    }

    /// Hash of the ancestor of `from` (inclusive) at `number`, for BLOCKHASH.
    fn ancestor_hash(&self, from: B256, number: u64) -> B256 {
        let mut at = from;
        for _ in 0..257 {
            let Some(m) = self.metas.get(&at) else {
                return B256::ZERO;
            };
            if m.number == number {
                return at;
            }
            if m.number < number || m.number == 0 {
                return B256::ZERO;
            }
            at = m.parent;
        }
        B256::ZERO
    }

    fn check_header(&self, hash: B256, h: &Header, now: u64) -> Result<(), ChainError> {
        let parent = &self.headers[&h.parent_hash];
        if h.number != parent.number + 1 {
            return Err(invalid(hash, BlockFault::Number));
        }
        if h.timestamp <= self.median_time(&h.parent_hash) {
            return Err(invalid(hash, BlockFault::TimestampNotAfterMedian));
        }
        if h.timestamp > now + MAX_FUTURE_SECS {
            return Err(invalid(
                hash,
                BlockFault::TimestampInFuture(MAX_FUTURE_SECS),
            ));
        }
        if h.gas_limit != self.spec.gas_limit || h.gas_used > h.gas_limit {
            return Err(invalid(hash, BlockFault::GasBounds));
        }
        if h.base_fee_per_gas != Some(self.child_base_fee(parent)) {
            return Err(invalid(hash, BlockFault::BaseFee));
        }
        let target = self.child_target(&h.parent_hash);
        if h.difficulty != asert::work(target) {
            return Err(invalid(hash, BlockFault::Difficulty));
        }
        if !crate::pow::verify(h, target) {
            return Err(invalid(hash, BlockFault::ProofOfWork));
        }
        if h.extra_data.len() > 32
            || h.ommers_hash != EMPTY_OMMER_ROOT_HASH
            || h.withdrawals_root.is_some()
            || h.blob_gas_used.is_some()
            || h.excess_blob_gas.is_some()
            || h.parent_beacon_block_root.is_some()
            || h.requests_hash.is_some()
        {
            return Err(invalid(hash, BlockFault::UnusedHeaderFields));
        }
        Ok(())
    }

    /// Checks a block's header and body against its parent, without executing it.
    /// The parent must be known ([`ChainError::UnknownBlock`] otherwise).
    pub fn check_block(&self, block: &ChainBlock, now: u64) -> Result<B256, ChainError> {
        let hash = block.header.hash_slow();
        match self.metas.get(&block.header.parent_hash) {
            None => {
                return Err(ChainError::UnknownBlock(
                    block.header.parent_hash.to_string(),
                ));
            }
            Some(m) if m.invalid => return Err(invalid(hash, BlockFault::InvalidParent)),
            Some(_) => {}
        }
        self.check_header(hash, &block.header, now)?;
        if !block.body.ommers.is_empty() || block.body.withdrawals.is_some() {
            return Err(invalid(hash, BlockFault::OmmersOrWithdrawals));
        }
        if calculate_transaction_root(&block.body.transactions) != block.header.transactions_root {
            return Err(invalid(hash, BlockFault::TransactionsRoot));
        }
        Ok(hash)
    }

    pub fn knows(&self, hash: &B256) -> bool {
        self.metas.contains_key(hash)
    }

    /// Imports a block: checks it, stores it, and makes it the head if its branch has
    /// the most work (executing it, and reorganising if it is on another branch).
    pub fn import(&mut self, block: ChainBlock, now: u64) -> Result<Imported, ChainError> {
        let hash = block.header.hash_slow();
        if self.metas.contains_key(&hash) {
            return Ok(Imported::Known);
        }
        self.check_block(&block, now)?;
        let meta = self.child_meta(&block.header);
        let heavier = meta.total_work > self.total_work();
        self.headers.insert(hash, block.header.clone());
        self.metas.insert(hash, meta.clone());
        let mut batch = Batch {
            blocks: vec![(hash, block.clone(), meta)],
            ..Default::default()
        };
        if !heavier {
            self.commit(batch)?;
            return Ok(Imported::Side);
        }
        let mut pending = HashMap::new();
        pending.insert(hash, block);
        match self.switch_to(hash, &mut batch, &pending) {
            Ok(change) => {
                self.commit(batch)?;
                Ok(Imported::Head(change))
            }
            Err((_, e)) if !matches!(e, ChainError::Block { .. }) => {
                // Not the block's fault (the store failed): forget it, so it can come again.
                self.headers.remove(&hash);
                self.metas.remove(&hash);
                Err(e)
            }
            Err((bad, e)) => {
                // Keep the blocks, marked invalid, so they are never tried again.
                let mut marks = Vec::new();
                let mut at = hash;
                loop {
                    if let Some(m) = self.metas.get_mut(&at) {
                        m.invalid = true;
                        marks.push((at, m.clone()));
                    }
                    if at == bad {
                        break;
                    }
                    at = self.metas[&at].parent;
                }
                let blocks = batch.blocks;
                let blocks = blocks
                    .into_iter()
                    .map(|(h, b, _)| {
                        let m = self.metas[&h].clone();
                        (h, b, m)
                    })
                    .collect();
                self.commit(Batch {
                    blocks,
                    metas: marks,
                    ..Default::default()
                })?;
                Err(e)
            }
        }
    }

    /// Metadata of a block whose parent is known.
    fn child_meta(&self, h: &Header) -> BlockMeta {
        let parent = &self.metas[&h.parent_hash];
        BlockMeta {
            number: h.number,
            parent: h.parent_hash,
            total_work: parent.total_work.saturating_add(h.difficulty),
            anchor_time: if h.number == 1 {
                h.timestamp
            } else {
                parent.anchor_time
            },
            invalid: false,
        }
    }

    fn load_block(
        &self,
        hash: &B256,
        pending: &HashMap<B256, ChainBlock>,
    ) -> Result<ChainBlock, ChainError> {
        if let Some(b) = pending.get(hash) {
            return Ok(b.clone());
        }
        self.store
            .block(hash)?
            .ok_or_else(|| ChainError::UnknownBlock(hash.to_string()))
    }

    /// Makes `tip` canonical. On an invalid block, restores the previous head in memory
    /// and returns the first invalid block's hash.
    fn switch_to(
        &mut self,
        tip: B256,
        batch: &mut Batch,
        pending: &HashMap<B256, ChainBlock>,
    ) -> Result<HeadChange, (B256, ChainError)> {
        // The new branch back to the canonical chain.
        let mut branch = Vec::new();
        let mut at = tip;
        while !self.is_canonical(&at) {
            branch.push(at);
            at = self.metas[&at].parent;
        }
        branch.reverse();
        let fork = self.metas[&at].number;
        let mut change = HeadChange::default();
        // Undo the old branch, newest first.
        let mut undone: Vec<(u64, StateDiff)> = Vec::new();
        for n in (fork + 1..=self.head_number()).rev() {
            let h = self.canon[n as usize];
            let loaded = self
                .store
                .diff(&h)
                .and_then(|d| d.ok_or(ChainError::MissingDiff(h)))
                .and_then(|d| Ok((d, self.load_block(&h, pending)?)));
            let (diff, block) = match loaded {
                Ok(x) => x,
                Err(e) => {
                    // The state goes back to the head's before anything is reported.
                    for (_, d) in undone.iter().rev() {
                        self.state.apply(d);
                    }
                    return Err((h, e));
                }
            };
            self.state.undo(&diff);
            for t in &block.body.transactions {
                batch.uncanon_txs.push(*t.tx_hash());
                change
                    .returned
                    .push(alloy_eips::eip2718::Encodable2718::encoded_2718(t));
            }
            change.removed.push(h);
            undone.push((n, diff));
        }
        // Apply the new branch, oldest first.
        let mut applied: Vec<(u64, StateDiff)> = Vec::new();
        let mut result = Ok(());
        for h in &branch {
            match self.execute_canonical(h, pending) {
                Ok((block, executed)) => {
                    let tx_hashes = tx_hashes(&block);
                    change.included.extend(tx_hashes.iter().copied());
                    batch.canon.push((block.header.number, *h, tx_hashes));
                    batch
                        .executed
                        .push((*h, executed.receipts, executed.diff.clone()));
                    applied.push((block.header.number, executed.diff));
                    change.added.push(*h);
                }
                Err(e) => {
                    result = Err((*h, e));
                    break;
                }
            }
        }
        if let Err(e) = result {
            for (_, diff) in applied.iter().rev() {
                self.state.undo(diff);
            }
            for (_, diff) in undone.iter().rev() {
                self.state.apply(diff);
            }
            return Err(e);
        }
        batch.history_remove.extend(undone);
        batch.history_add.extend(applied);
        self.canon.truncate(fork as usize + 1);
        self.canon.extend(branch.iter().copied());
        batch.canon_len = Some(self.canon.len() as u64);
        batch.head = Some(tip);
        let included: std::collections::HashSet<B256> = change.included.iter().copied().collect();
        change
            .returned
            .retain(|raw| !included.contains(&alloy_primitives::keccak256(raw)));
        Ok(change)
    }

    /// Runs `txs` as a child of `parent` (whose state must be the current one).
    fn execute(
        &self,
        parent: B256,
        info: &BlockInfo,
        txs: Vec<RecoveredTx>,
        mode: Mode,
    ) -> Result<Executed, ExecError> {
        let hashes = |n: u64| self.ancestor_hash(parent, n);
        exec::execute_block(
            self.spec.chain_id,
            &self.state,
            &hashes,
            info,
            txs,
            self.spec.block_reward,
            mode,
        )
    }

    /// Executes a block on the current state (its parent must be the state's block),
    /// checks every commitment in its header, and applies its diff.
    fn execute_canonical(
        &mut self,
        hash: &B256,
        pending: &HashMap<B256, ChainBlock>,
    ) -> Result<(ChainBlock, Executed), ChainError> {
        let block = self.load_block(hash, pending)?;
        let txs = recover_all(&block).map_err(|e| invalid(*hash, e))?;
        for (index, t) in txs.iter().enumerate() {
            t.check_static(self.spec.chain_id, self.spec.gas_limit)
                .map_err(|source| invalid(*hash, BlockFault::Tx { index, source }))?;
        }
        let h = &block.header;
        let info = BlockInfo {
            number: h.number,
            beneficiary: h.beneficiary,
            timestamp: h.timestamp,
            gas_limit: h.gas_limit,
            base_fee: h.base_fee_per_gas.unwrap_or_default(),
            prevrandao: self.headers[&h.parent_hash].mix_hash,
        };
        let executed = self
            .execute(h.parent_hash, &info, txs, Mode::Import)
            .map_err(|e| match e {
                ExecError::State(e) => self.fault(e),
                e => invalid(*hash, e),
            })?;
        if executed.gas_used != h.gas_used {
            return Err(invalid(*hash, BlockFault::GasUsed));
        }
        if calculate_receipt_root(&executed.receipts) != h.receipts_root
            || executed.bloom() != h.logs_bloom
        {
            return Err(invalid(*hash, BlockFault::Receipts));
        }
        self.state.apply(&executed.diff);
        let root = self.state.state_root().map_err(|e| self.fault(e));
        if root.as_ref().ok() != Some(&h.state_root) {
            self.state.undo(&executed.diff);
            return Err(root.err().unwrap_or(invalid(*hash, BlockFault::StateRoot)));
        }
        Ok((block, executed))
    }

    /// A block on the head for the miner: the pool's transactions that fit, executed.
    pub fn template(
        &mut self,
        coinbase: Address,
        txs: Vec<RecoveredTx>,
        now: u64,
    ) -> Result<Template, ChainError> {
        let parent_hash = self.head_hash();
        let parent = self.headers[&parent_hash].clone();
        let number = parent.number + 1;
        let timestamp = now.max(self.median_time(&parent_hash) + 1);
        if timestamp > now + MAX_FUTURE_SECS {
            // Blocks faster than one a second push timestamps ahead of the clock; a
            // block past the drift bound would be refused, so wait for the clock.
            return Err(ChainError::AheadOfClock(timestamp - now));
        }
        let base_fee = self.child_base_fee(&parent);
        let info = BlockInfo {
            number,
            beneficiary: coinbase,
            timestamp,
            gas_limit: self.spec.gas_limit,
            base_fee,
            prevrandao: parent.mix_hash,
        };
        let executed = self
            .execute(parent_hash, &info, txs, Mode::Build)
            .map_err(ChainError::Template)?;
        self.state.apply(&executed.diff);
        let state_root = self.state.state_root();
        self.state.undo(&executed.diff);
        let state_root = state_root.map_err(|e| self.fault(e))?;
        let transactions: Vec<_> = executed.txs.iter().map(|t| (*t.tx).clone()).collect();
        let target = self.child_target(&parent_hash);
        let header = Header {
            parent_hash,
            ommers_hash: EMPTY_OMMER_ROOT_HASH,
            beneficiary: coinbase,
            state_root,
            transactions_root: calculate_transaction_root(&transactions),
            receipts_root: calculate_receipt_root(&executed.receipts),
            logs_bloom: executed.bloom(),
            difficulty: asert::work(target),
            number,
            gas_limit: self.spec.gas_limit,
            gas_used: executed.gas_used,
            timestamp,
            extra_data: alloy_primitives::Bytes::from_static(b"nodus"),
            mix_hash: B256::ZERO,
            nonce: B64::ZERO,
            base_fee_per_gas: Some(base_fee),
            ..Default::default()
        };
        Ok(Template {
            header,
            body: BlockBody {
                transactions,
                ommers: vec![],
                withdrawals: None,
            },
            target,
            dropped: executed.dropped,
            receipts: executed.receipts,
            diff: executed.diff,
        })
    }

    /// Commits a block sealed here from a template on the current head without running
    /// it again (its receipts and diff are the template's, its roots computed from
    /// them). If the head moved meanwhile it is imported like any other block.
    pub fn commit_own(&mut self, sealed: Sealed, now: u64) -> Result<Imported, ChainError> {
        let Sealed {
            block,
            receipts,
            diff,
        } = sealed;
        if block.header.parent_hash != self.head_hash() {
            return self.import(block, now);
        }
        let hash = self.check_block(&block, now)?;
        if self.metas.contains_key(&hash) {
            return Ok(Imported::Known);
        }
        let meta = self.child_meta(&block.header);
        let number = block.header.number;
        let tx_hashes = tx_hashes(&block);
        self.state.apply(&diff);
        let root = self.state.state_root().map_err(|e| self.fault(e));
        if root.as_ref().ok() != Some(&block.header.state_root) {
            // The template was built on another state than the head's.
            self.state.undo(&diff);
            return Err(root.err().unwrap_or(invalid(hash, BlockFault::StateRoot)));
        }
        self.headers.insert(hash, block.header.clone());
        self.metas.insert(hash, meta.clone());
        self.canon.push(hash);
        let batch = Batch {
            blocks: vec![(hash, block, meta)],
            executed: vec![(hash, receipts, diff.clone())],
            canon: vec![(number, hash, tx_hashes.clone())],
            canon_len: Some(self.canon.len() as u64),
            history_add: vec![(number, diff)],
            head: Some(hash),
            ..Default::default()
        };
        self.commit(batch)?;
        Ok(Imported::Head(HeadChange {
            added: vec![hash],
            included: tx_hashes,
            ..Default::default()
        }))
    }

    /// Block info for a call on top of the head.
    pub fn pending_info(&self, now: u64) -> BlockInfo {
        self.info_on(self.head(), now)
    }

    fn info_on(&self, parent: &Header, now: u64) -> BlockInfo {
        BlockInfo {
            number: parent.number + 1,
            beneficiary: Address::ZERO,
            timestamp: now.max(parent.timestamp + 1),
            gas_limit: self.spec.gas_limit,
            base_fee: self.child_base_fee(parent),
            prevrandao: parent.mix_hash,
        }
    }

    /// What a call on top of the block `at` names (the head, or one whose state is kept)
    /// needs, to run off the chain's thread: a snapshot of the committed state (one redb
    /// read transaction), the 256 block hashes before it for BLOCKHASH.
    pub fn call_snapshot_at(
        &self,
        at: StateRef,
        now: u64,
    ) -> Result<crate::call::CallSnapshot, ChainError> {
        let number = self.state_number(at)?;
        let state = self.state_at(number)?;
        Ok(self.snapshot_on(number, state, now))
    }

    fn snapshot_on(&self, number: u64, state: StateAt, now: u64) -> crate::call::CallSnapshot {
        let end = number as usize + 1;
        let from = end.saturating_sub(256);
        let parent = &self.headers[&self.canon[number as usize]];
        crate::call::CallSnapshot {
            chain_id: self.spec.chain_id,
            state,
            first: from as u64,
            hashes: self.canon[from..end].to_vec(),
            block: self.info_on(parent, now),
        }
    }

    /// Hashes of the canonical chain after the newest of `locator` that is canonical
    /// (newest first in `locator`), at most `max`.
    pub fn hashes_after(&self, locator: &[B256], max: usize) -> Vec<B256> {
        let start = locator
            .iter()
            .find(|h| self.is_canonical(h))
            .map(|h| self.metas[h].number + 1)
            .unwrap_or(1);
        self.canon
            .iter()
            .skip(start as usize)
            .take(max)
            .copied()
            .collect()
    }

    /// Block locator of the head: the last 10 hashes, then exponentially sparser.
    pub fn locator(&self) -> Vec<B256> {
        let mut out = Vec::new();
        let mut n = self.head_number() as i64;
        let mut step = 1;
        while n > 0 {
            out.push(self.canon[n as usize]);
            if out.len() >= 10 {
                step *= 2;
            }
            n -= step;
        }
        out.push(self.genesis_hash());
        out
    }

    pub fn store_mempool(
        &mut self,
        add: Vec<(B256, Vec<u8>)>,
        remove: Vec<B256>,
    ) -> Result<(), ChainError> {
        self.commit(Batch {
            mempool_add: add,
            mempool_remove: remove,
            ..Default::default()
        })
    }

    /// The pending transactions that were on disk at open (once; read with the rest of
    /// the store, not again).
    pub fn take_stored_mempool(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.stored_mempool)
    }
}

fn tx_hashes(block: &ChainBlock) -> Vec<B256> {
    block
        .body
        .transactions
        .iter()
        .map(|t| *t.tx_hash())
        .collect()
}

/// Recovers every sender of a block, in parallel when the block is large.
pub fn recover_all(block: &ChainBlock) -> Result<Vec<RecoveredTx>, BlockFault> {
    let txs = &block.body.transactions;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let recover = |(i, t): (usize, &alloy_consensus::TxEnvelope)| {
        RecoveredTx::recover(t.clone()).map_err(|source| BlockFault::Tx { index: i, source })
    };
    if txs.len() < 32 || threads < 2 {
        return txs.iter().enumerate().map(recover).collect();
    }
    let chunk = txs.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = txs
            .chunks(chunk)
            .enumerate()
            .map(|(c, part)| {
                s.spawn(move || {
                    part.iter()
                        .enumerate()
                        .map(|(i, t)| recover((c * chunk + i, t)))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(txs.len());
        for h in handles {
            out.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?);
        }
        Ok(out)
    })
}
