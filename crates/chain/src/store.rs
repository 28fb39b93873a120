//! `chain.redb`: blocks (canonical or not), their headers and metadata (read at start
//! without the bodies), receipts and state diffs; the canonical index; the state at the
//! canonical head and its recent history ([`crate::statedb`]); pending transactions.
//!
//! One write transaction per change of head carries all of it, so a crash leaves either
//! the old head with its state or the new head with its state.

use std::path::{Path, PathBuf};

use alloy_consensus::{Block, Header, ReceiptEnvelope, TxEnvelope};
use alloy_eips::eip2718::{Decodable2718, Encodable2718};
use alloy_primitives::{Address, B256, U256};
use alloy_rlp::{Decodable, Encodable};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::error::{ChainError, StoreFault};
use crate::state::{AccountRec, StateDiff};
use crate::statedb::{self, StateReader, StateWrites};

pub type ChainBlock = Block<TxEnvelope>;

const BLOCKS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("blocks");
const META: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("meta");
const RECEIPTS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("receipts");
const DIFFS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("diffs");
const CANON: TableDefinition<u64, &[u8; 32]> = TableDefinition::new("canon");
const TX_INDEX: TableDefinition<&[u8; 32], (&[u8; 32], u32)> = TableDefinition::new("tx_index");
const HEADERS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("headers");
/// The state as files before 0.24 kept it (by plain address, in memory at run time):
/// moved into the [`statedb`] tables at open.
const OLD_ACCOUNTS: TableDefinition<&[u8; 20], &[u8]> = TableDefinition::new("accounts");
const OLD_STORAGE: TableDefinition<&[u8; 52], &[u8; 32]> = TableDefinition::new("storage");
/// `head`: the head's hash; `history_floor`: the lowest block number whose history
/// entries are kept (big-endian in the last 8 bytes).
const HEAD: TableDefinition<&str, &[u8; 32]> = TableDefinition::new("head");
const MEMPOOL: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("mempool");

/// What the chain knows of a block besides its contents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMeta {
    pub number: u64,
    pub parent: B256,
    pub total_work: U256,
    /// Timestamp of block 1 on this block's branch (the ASERT anchor); 0 before it.
    pub anchor_time: u64,
    /// Executed and found invalid: never canonical, nor any descendant.
    pub invalid: bool,
}

/// All writes of one change of head.
#[derive(Default)]
pub struct Batch {
    pub blocks: Vec<(B256, ChainBlock, BlockMeta)>,
    pub metas: Vec<(B256, BlockMeta)>,
    pub executed: Vec<(B256, Vec<ReceiptEnvelope>, StateDiff)>,
    /// Canonical entries to set; numbers above `canon_len` are removed.
    pub canon: Vec<(u64, B256, Vec<B256>)>,
    pub canon_len: Option<u64>,
    /// Tx hashes no longer canonical.
    pub uncanon_txs: Vec<B256>,
    /// The state's writes ([`crate::state::WorldState::writes`]).
    pub state: Option<StateWrites>,
    /// History entries of blocks that left the canonical chain or the window kept
    /// (removed first), then of blocks that joined it.
    pub history_remove: Vec<(u64, StateDiff)>,
    pub history_add: Vec<(u64, StateDiff)>,
    pub history_floor: Option<u64>,
    /// Drop the tables of the old state layout (moved into the new one).
    pub drop_old_state: bool,
    pub head: Option<B256>,
    pub mempool_add: Vec<(B256, Vec<u8>)>,
    pub mempool_remove: Vec<B256>,
}

pub struct Store {
    db: Database,
    path: PathBuf,
}

/// Everything loaded at start (no block bodies, no state: the state is read from disk).
pub struct Loaded {
    pub headers: Vec<(B256, Header, BlockMeta)>,
    pub canon: Vec<B256>,
    pub head: Option<B256>,
    pub history_floor: u64,
    pub mempool: Vec<Vec<u8>>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, ChainError> {
        let db = redb::Builder::new()
            .set_cache_size(nodus_core::datadir::DB_CACHE_BYTES)
            .create(path)
            .map_err(|e| ChainError::store(path, e))?;
        nodus_core::fsutil::restrict(path).map_err(|e| ChainError::store(path, e))?;
        let store = Store {
            db,
            path: path.to_path_buf(),
        };
        let w = store.db.begin_write().map_err(|e| store.err(e))?;
        {
            w.open_table(BLOCKS).map_err(|e| store.err(e))?;
            w.open_table(META).map_err(|e| store.err(e))?;
            w.open_table(RECEIPTS).map_err(|e| store.err(e))?;
            w.open_table(DIFFS).map_err(|e| store.err(e))?;
            w.open_table(CANON).map_err(|e| store.err(e))?;
            w.open_table(TX_INDEX).map_err(|e| store.err(e))?;
            w.open_table(HEAD).map_err(|e| store.err(e))?;
            w.open_table(MEMPOOL).map_err(|e| store.err(e))?;
            statedb::create_tables(&w).map_err(|e| store.err(e))?;
            // Files from before the header table: headers copied out of the bodies once.
            let mut headers = w.open_table(HEADERS).map_err(|e| store.err(e))?;
            if headers.first().map_err(|e| store.err(e))?.is_none() {
                let blocks = w.open_table(BLOCKS).map_err(|e| store.err(e))?;
                for row in blocks.iter().map_err(|e| store.err(e))? {
                    let (k, v) = row.map_err(|e| store.err(e))?;
                    let block = decode_block(v.value()).map_err(|e| store.err(e))?;
                    let raw = alloy_rlp::encode(&block.header);
                    headers
                        .insert(k.value(), raw.as_slice())
                        .map_err(|e| store.err(e))?;
                }
            }
        }
        w.commit().map_err(|e| store.err(e))?;
        Ok(store)
    }

    /// A snapshot of the committed state.
    pub fn reader(&self) -> Result<std::sync::Arc<StateReader>, ChainError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        Ok(std::sync::Arc::new(
            StateReader::new(&r).map_err(|e| self.err(e))?,
        ))
    }

    /// The state in the layout before 0.24, if the file has it: every account and slot as
    /// additions.
    pub fn old_state(&self) -> Result<Option<StateDiff>, ChainError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let accounts = match r.open_table(OLD_ACCOUNTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        let mut diff = StateDiff::default();
        for row in accounts.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let rec: AccountRec = postcard::from_bytes(v.value()).map_err(|e| self.err(e))?;
            diff.accounts
                .push((Address::from(*k.value()), None, Some(rec)));
        }
        if let Ok(storage) = r.open_table(OLD_STORAGE) {
            for row in storage.iter().map_err(|e| self.err(e))? {
                let (k, v) = row.map_err(|e| self.err(e))?;
                let key = k.value();
                diff.storage.push((
                    Address::from_slice(&key[..20]),
                    U256::from_be_slice(&key[20..]),
                    U256::ZERO,
                    U256::from_be_bytes(*v.value()),
                ));
            }
        }
        Ok(Some(diff))
    }

    /// Whether the state tables hold nothing (a new file, or a genesis cut short).
    pub fn state_is_empty(&self) -> Result<bool, ChainError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        statedb::is_empty(&r).map_err(|e| self.err(e))
    }

    /// Empties the state tables: a genesis that was cut short starts again.
    pub fn clear_state(&self) -> Result<(), ChainError> {
        let w = self.db.begin_write().map_err(|e| self.err(e))?;
        statedb::clear(&w).map_err(|e| self.err(e))?;
        w.commit().map_err(|e| self.err(e))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: impl Into<StoreFault>) -> ChainError {
        ChainError::store(&self.path, e)
    }

    pub fn load(&self) -> Result<Loaded, ChainError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let mut headers = Vec::new();
        let raw_headers = r.open_table(HEADERS).map_err(|e| self.err(e))?;
        let metas = r.open_table(META).map_err(|e| self.err(e))?;
        for row in metas.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let hash = B256::from(*k.value());
            let meta: BlockMeta = postcard::from_bytes(v.value()).map_err(|e| self.err(e))?;
            let raw = raw_headers
                .get(k.value())
                .map_err(|e| self.err(e))?
                .ok_or_else(|| self.err(StoreFault::MissingBody(hash)))?;
            let header = Header::decode(&mut raw.value()).map_err(|e| self.err(e))?;
            headers.push((hash, header, meta));
        }
        let mut canon = Vec::new();
        for row in r
            .open_table(CANON)
            .map_err(|e| self.err(e))?
            .iter()
            .map_err(|e| self.err(e))?
        {
            let (_, v) = row.map_err(|e| self.err(e))?;
            canon.push(B256::from(*v.value()));
        }
        let head_table = r.open_table(HEAD).map_err(|e| self.err(e))?;
        let head = head_table
            .get("head")
            .map_err(|e| self.err(e))?
            .map(|v| B256::from(*v.value()));
        let history_floor = head_table
            .get("history_floor")
            .map_err(|e| self.err(e))?
            .map(|v| U256::from_be_bytes(*v.value()).to::<u64>())
            .unwrap_or_default();
        let mut mempool = Vec::new();
        for row in r
            .open_table(MEMPOOL)
            .map_err(|e| self.err(e))?
            .iter()
            .map_err(|e| self.err(e))?
        {
            let (_, v) = row.map_err(|e| self.err(e))?;
            mempool.push(v.value().to_vec());
        }
        Ok(Loaded {
            headers,
            canon,
            head,
            history_floor,
            mempool,
        })
    }

    pub fn block(&self, hash: &B256) -> Result<Option<ChainBlock>, ChainError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(BLOCKS).map_err(|e| self.err(e))?;
        match t.get(&hash.0).map_err(|e| self.err(e))? {
            Some(v) => Ok(Some(decode_block(v.value()).map_err(|e| self.err(e))?)),
            None => Ok(None),
        }
    }

    pub fn receipts(&self, hash: &B256) -> Result<Option<Vec<ReceiptEnvelope>>, ChainError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(RECEIPTS).map_err(|e| self.err(e))?;
        let Some(v) = t.get(&hash.0).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        let raw: Vec<Vec<u8>> = postcard::from_bytes(v.value()).map_err(|e| self.err(e))?;
        raw.iter()
            .map(|b| ReceiptEnvelope::decode_2718_exact(b).map_err(|e| self.err(e)))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    pub fn diff(&self, hash: &B256) -> Result<Option<StateDiff>, ChainError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(DIFFS).map_err(|e| self.err(e))?;
        let Some(v) = t.get(&hash.0).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        Ok(Some(
            postcard::from_bytes(v.value()).map_err(|e| self.err(e))?,
        ))
    }

    pub fn tx_location(&self, tx: &B256) -> Result<Option<(B256, u32)>, ChainError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(TX_INDEX).map_err(|e| self.err(e))?;
        Ok(t.get(&tx.0).map_err(|e| self.err(e))?.map(|v| {
            let (h, i) = v.value();
            (B256::from(*h), i)
        }))
    }

    pub fn commit(&self, batch: Batch) -> Result<(), ChainError> {
        let w = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut blocks = w.open_table(BLOCKS).map_err(|e| self.err(e))?;
            let mut headers = w.open_table(HEADERS).map_err(|e| self.err(e))?;
            let mut metas = w.open_table(META).map_err(|e| self.err(e))?;
            for (hash, block, meta) in &batch.blocks {
                let mut raw = Vec::new();
                block.encode(&mut raw);
                blocks
                    .insert(&hash.0, raw.as_slice())
                    .map_err(|e| self.err(e))?;
                let h = alloy_rlp::encode(&block.header);
                headers
                    .insert(&hash.0, h.as_slice())
                    .map_err(|e| self.err(e))?;
                let m = postcard::to_allocvec(meta).map_err(|e| self.err(e))?;
                metas
                    .insert(&hash.0, m.as_slice())
                    .map_err(|e| self.err(e))?;
            }
            for (hash, meta) in &batch.metas {
                let m = postcard::to_allocvec(meta).map_err(|e| self.err(e))?;
                metas
                    .insert(&hash.0, m.as_slice())
                    .map_err(|e| self.err(e))?;
            }
            let mut receipts = w.open_table(RECEIPTS).map_err(|e| self.err(e))?;
            let mut diffs = w.open_table(DIFFS).map_err(|e| self.err(e))?;
            for (hash, rs, diff) in &batch.executed {
                let raw: Vec<Vec<u8>> = rs.iter().map(|r| r.encoded_2718()).collect();
                let v = postcard::to_allocvec(&raw).map_err(|e| self.err(e))?;
                receipts
                    .insert(&hash.0, v.as_slice())
                    .map_err(|e| self.err(e))?;
                let d = postcard::to_allocvec(diff).map_err(|e| self.err(e))?;
                diffs
                    .insert(&hash.0, d.as_slice())
                    .map_err(|e| self.err(e))?;
            }
            let mut canon = w.open_table(CANON).map_err(|e| self.err(e))?;
            let mut txs = w.open_table(TX_INDEX).map_err(|e| self.err(e))?;
            for tx in &batch.uncanon_txs {
                txs.remove(&tx.0).map_err(|e| self.err(e))?;
            }
            if let Some(len) = batch.canon_len {
                loop {
                    let last = canon
                        .last()
                        .map_err(|e| self.err(e))?
                        .map(|(k, _)| k.value());
                    match last {
                        Some(n) if n >= len => {
                            canon.remove(n).map_err(|e| self.err(e))?;
                        }
                        _ => break,
                    }
                }
            }
            for (number, hash, tx_hashes) in &batch.canon {
                canon.insert(*number, &hash.0).map_err(|e| self.err(e))?;
                for (i, t) in tx_hashes.iter().enumerate() {
                    txs.insert(&t.0, (&hash.0, i as u32))
                        .map_err(|e| self.err(e))?;
                }
            }
            if let Some(state) = &batch.state {
                state.write(&w).map_err(|e| self.err(e))?;
            }
            for (number, diff) in &batch.history_remove {
                statedb::forget_history(&w, *number, diff).map_err(|e| self.err(e))?;
            }
            for (number, diff) in &batch.history_add {
                statedb::record_history(&w, *number, diff).map_err(|e| self.err(e))?;
            }
            if batch.drop_old_state {
                w.delete_table(OLD_ACCOUNTS).map_err(|e| self.err(e))?;
                w.delete_table(OLD_STORAGE).map_err(|e| self.err(e))?;
            }
            if let Some(head) = &batch.head {
                let mut t = w.open_table(HEAD).map_err(|e| self.err(e))?;
                t.insert("head", &head.0).map_err(|e| self.err(e))?;
            }
            if let Some(floor) = batch.history_floor {
                let mut t = w.open_table(HEAD).map_err(|e| self.err(e))?;
                let v = U256::from(floor).to_be_bytes::<32>();
                t.insert("history_floor", &v).map_err(|e| self.err(e))?;
            }
            let mut pool = w.open_table(MEMPOOL).map_err(|e| self.err(e))?;
            for (h, raw) in &batch.mempool_add {
                pool.insert(&h.0, raw.as_slice()).map_err(|e| self.err(e))?;
            }
            for h in &batch.mempool_remove {
                pool.remove(&h.0).map_err(|e| self.err(e))?;
            }
        }
        w.commit().map_err(|e| self.err(e))
    }
}

pub fn decode_block(mut raw: &[u8]) -> Result<ChainBlock, alloy_rlp::Error> {
    let b = ChainBlock::decode(&mut raw)?;
    if !raw.is_empty() {
        return Err(alloy_rlp::Error::UnexpectedLength);
    }
    Ok(b)
}

pub fn encode_block(b: &ChainBlock) -> Vec<u8> {
    let mut out = Vec::new();
    b.encode(&mut out);
    out
}
