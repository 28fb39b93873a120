//! `chain.redb`: blocks (canonical or not), their metadata, receipts and state diffs;
//! the canonical index; the state at the canonical head; pending transactions.
//!
//! One write transaction per change of head carries all of it, so a crash leaves either
//! the old head with its state or the new head with its state.

use std::path::{Path, PathBuf};

use alloy_consensus::{Block, Header, ReceiptEnvelope, TxEnvelope};
use alloy_eips::eip2718::{Decodable2718, Encodable2718};
use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_rlp::{Decodable, Encodable};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::error::{ChainError, StoreFault};
use crate::state::{AccountRec, StateDiff, WorldState};

pub type ChainBlock = Block<TxEnvelope>;

const BLOCKS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("blocks");
const META: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("meta");
const RECEIPTS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("receipts");
const DIFFS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("diffs");
const CANON: TableDefinition<u64, &[u8; 32]> = TableDefinition::new("canon");
const TX_INDEX: TableDefinition<&[u8; 32], (&[u8; 32], u32)> = TableDefinition::new("tx_index");
const ACCOUNTS: TableDefinition<&[u8; 20], &[u8]> = TableDefinition::new("accounts");
const STORAGE: TableDefinition<&[u8; 52], &[u8; 32]> = TableDefinition::new("storage");
const CODES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("codes");
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
    /// State changes to apply in order (undo diffs are given already inverted).
    pub state: Vec<StateDiff>,
    pub head: Option<B256>,
    pub mempool_add: Vec<(B256, Vec<u8>)>,
    pub mempool_remove: Vec<B256>,
}

pub struct Store {
    db: Database,
    path: PathBuf,
}

/// Everything loaded at start.
pub struct Loaded {
    pub headers: Vec<(B256, Header, BlockMeta)>,
    pub canon: Vec<B256>,
    pub head: Option<B256>,
    pub state: WorldState,
    pub mempool: Vec<Vec<u8>>,
}

fn slot_key(a: &Address, k: &U256) -> [u8; 52] {
    let mut key = [0u8; 52];
    key[..20].copy_from_slice(a.as_slice());
    key[20..].copy_from_slice(&k.to_be_bytes::<32>());
    key
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
            w.open_table(ACCOUNTS).map_err(|e| store.err(e))?;
            w.open_table(STORAGE).map_err(|e| store.err(e))?;
            w.open_table(CODES).map_err(|e| store.err(e))?;
            w.open_table(HEAD).map_err(|e| store.err(e))?;
            w.open_table(MEMPOOL).map_err(|e| store.err(e))?;
        }
        w.commit().map_err(|e| store.err(e))?;
        Ok(store)
    }

    fn err(&self, e: impl Into<StoreFault>) -> ChainError {
        ChainError::store(&self.path, e)
    }

    pub fn load(&self) -> Result<Loaded, ChainError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let mut headers = Vec::new();
        let blocks = r.open_table(BLOCKS).map_err(|e| self.err(e))?;
        let metas = r.open_table(META).map_err(|e| self.err(e))?;
        for row in metas.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let hash = B256::from(*k.value());
            let meta: BlockMeta = postcard::from_bytes(v.value()).map_err(|e| self.err(e))?;
            let raw = blocks
                .get(k.value())
                .map_err(|e| self.err(e))?
                .ok_or_else(|| self.err(StoreFault::MissingBody(hash)))?;
            let block = decode_block(raw.value()).map_err(|e| self.err(e))?;
            headers.push((hash, block.header, meta));
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
        let head = r
            .open_table(HEAD)
            .map_err(|e| self.err(e))?
            .get("head")
            .map_err(|e| self.err(e))?
            .map(|v| B256::from(*v.value()));
        let mut state = WorldState::default();
        let mut diff = StateDiff::default();
        for row in r
            .open_table(ACCOUNTS)
            .map_err(|e| self.err(e))?
            .iter()
            .map_err(|e| self.err(e))?
        {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let rec: AccountRec = postcard::from_bytes(v.value()).map_err(|e| self.err(e))?;
            diff.accounts
                .push((Address::from(*k.value()), None, Some(rec)));
        }
        for row in r
            .open_table(STORAGE)
            .map_err(|e| self.err(e))?
            .iter()
            .map_err(|e| self.err(e))?
        {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let key = k.value();
            let a = Address::from_slice(&key[..20]);
            let slot = U256::from_be_slice(&key[20..]);
            diff.storage
                .push((a, slot, U256::ZERO, U256::from_be_bytes(*v.value())));
        }
        for row in r
            .open_table(CODES)
            .map_err(|e| self.err(e))?
            .iter()
            .map_err(|e| self.err(e))?
        {
            let (k, v) = row.map_err(|e| self.err(e))?;
            diff.codes
                .push((B256::from(*k.value()), Bytes::copy_from_slice(v.value())));
        }
        state.apply(&diff);
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
            state,
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
            let mut metas = w.open_table(META).map_err(|e| self.err(e))?;
            for (hash, block, meta) in &batch.blocks {
                let mut raw = Vec::new();
                block.encode(&mut raw);
                blocks
                    .insert(&hash.0, raw.as_slice())
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
            let mut accounts = w.open_table(ACCOUNTS).map_err(|e| self.err(e))?;
            let mut storage = w.open_table(STORAGE).map_err(|e| self.err(e))?;
            let mut codes = w.open_table(CODES).map_err(|e| self.err(e))?;
            for diff in &batch.state {
                for (h, code) in &diff.codes {
                    codes.insert(&h.0, code.as_ref()).map_err(|e| self.err(e))?;
                }
                for (a, _, after) in &diff.accounts {
                    match after {
                        Some(rec) => {
                            let v = postcard::to_allocvec(rec).map_err(|e| self.err(e))?;
                            accounts
                                .insert(&a.0.0, v.as_slice())
                                .map_err(|e| self.err(e))?;
                        }
                        None => {
                            accounts.remove(&a.0.0).map_err(|e| self.err(e))?;
                        }
                    }
                }
                for (a, k, _, after) in &diff.storage {
                    let key = slot_key(a, k);
                    if after.is_zero() {
                        storage.remove(&key).map_err(|e| self.err(e))?;
                    } else {
                        storage
                            .insert(&key, &after.to_be_bytes::<32>())
                            .map_err(|e| self.err(e))?;
                    }
                }
            }
            if let Some(head) = &batch.head {
                let mut t = w.open_table(HEAD).map_err(|e| self.err(e))?;
                t.insert("head", &head.0).map_err(|e| self.err(e))?;
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
