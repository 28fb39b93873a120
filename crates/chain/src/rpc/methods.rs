//! The JSON-RPC methods.

use alloy_primitives::{Address, B256, Bytes, U256};
use serde_json::{Value, json};

use std::time::Instant;

use super::RpcError;
use super::filters::Kind;
use super::follow::{LogFilter, block_logs, follow, moved_logs, place};
use super::format::{self, bytes, qty};
use crate::call::{Budget, CallOutcome, CallRequest};
use crate::chain::{Chain, StateRef, recover_all};
use crate::handle::ChainHandle;
use crate::state::{StateError, StateRead};
use crate::statedb::StateAt;

/// Tip suggested to wallets (1 gwei).
const SUGGESTED_TIP: u64 = 1_000_000_000;
/// Most blocks one eth_getLogs scans.
const MAX_LOG_RANGE: u64 = 10_000;

/// Answers one request of a JSON-RPC request (a batch holds several), within `budget`,
/// the whole request's.
pub async fn call(
    h: &ChainHandle,
    method: &str,
    p: Vec<Value>,
    budget: &Budget,
) -> Result<Value, RpcError> {
    match method {
        "web3_clientVersion" => Ok(json!(format!("nodus/{}", env!("CARGO_PKG_VERSION")))),
        "net_version" => Ok(json!(h.chain_id.to_string())),
        "net_listening" => Ok(json!(true)),
        "net_peerCount" => Ok(qty(h.peers.load(std::sync::atomic::Ordering::Relaxed))),
        "eth_chainId" => Ok(qty(h.chain_id)),
        "eth_syncing" => Ok(json!(false)),
        "eth_accounts" => Ok(json!([])),
        "eth_mining" => Ok(json!(h.mining().enabled)),
        "eth_hashrate" => Ok(qty(h.hash_rate.load(std::sync::atomic::Ordering::Relaxed))),
        "eth_coinbase" => Ok(json!(h.mining().coinbase.to_checksum(None))),
        "eth_blockNumber" => read(h, |c| Ok(qty(c.head_number()))).await,
        "eth_gasPrice" => read(h, |c| Ok(qty(c.child_base_fee(c.head()) + SUGGESTED_TIP))).await,
        "eth_maxPriorityFeePerGas" => Ok(qty(SUGGESTED_TIP)),
        "eth_feeHistory" => fee_history(h, p).await,
        "eth_getBalance" => {
            let a = address(&p, 0)?;
            let at = state_ref(&p, 1)?;
            on_state(h, at, move |s| {
                Ok(qty(s.account(&a)?.map(|r| r.balance).unwrap_or_default()))
            })
            .await
        }
        "eth_getTransactionCount" => {
            let a = address(&p, 0)?;
            if p.get(1).and_then(Value::as_str) == Some("pending") {
                return h
                    .read(move |c| qty(c.pending_nonce(&a)))
                    .await
                    .map_err(Into::into);
            }
            let at = state_ref(&p, 1)?;
            on_state(h, at, move |s| {
                Ok(qty(s.account(&a)?.map(|r| r.nonce).unwrap_or_default()))
            })
            .await
        }
        "eth_getCode" => {
            let a = address(&p, 0)?;
            let at = state_ref(&p, 1)?;
            on_state(h, at, move |s| {
                let code = match s.account(&a)? {
                    Some(acc) => s.code(&acc.code_hash)?.unwrap_or_default(),
                    None => Bytes::new(),
                };
                Ok(bytes(&code))
            })
            .await
        }
        "eth_getStorageAt" => {
            let a = address(&p, 0)?;
            let slot = quantity_u256(p.get(1))
                .ok_or_else(|| RpcError::params("slot must be a hex quantity"))?;
            let at = state_ref(&p, 2)?;
            on_state(h, at, move |s| {
                Ok(Value::String(B256::from(s.slot(&a, &slot)?).to_string()))
            })
            .await
        }
        "eth_call" => {
            let req = call_request(&p)?;
            let at = state_ref(&p, 1)?;
            let out = h
                .on_snapshot(budget, at, move |s, b| s.call(&req, b))
                .await?;
            if !out.success {
                return Err(failed(out));
            }
            Ok(bytes(&out.output))
        }
        "eth_estimateGas" => {
            let req = call_request(&p)?;
            let at = state_ref(&p, 1)?;
            let r = h
                .on_snapshot(budget, at, move |s, b| s.estimate_gas(&req, b))
                .await?;
            r.map(qty).map_err(failed)
        }
        "eth_sendRawTransaction" => {
            let raw = hex_bytes(p.first())
                .ok_or_else(|| RpcError::params("expected the signed transaction as 0x-hex"))?;
            let hash = h.submit_raw(raw.to_vec()).await?;
            Ok(json!(hash.to_string()))
        }
        "eth_getTransactionByHash" => {
            let hash = hash_param(&p, 0)?;
            h.read(move |c| -> Result<Value, RpcError> {
                let v = tx_by_hash(c.chain, &hash)?;
                if !v.is_null() {
                    return Ok(v);
                }
                Ok(c.pool
                    .get(&hash)
                    .map(|t| format::transaction(t, None))
                    .unwrap_or(Value::Null))
            })
            .await?
        }
        "eth_getTransactionReceipt" => {
            let hash = hash_param(&p, 0)?;
            read(h, move |c| receipt(c, &hash)).await
        }
        "eth_getBlockByNumber" => {
            let full = p.get(1).and_then(Value::as_bool).unwrap_or(false);
            let tag = block_tag(p.first())?;
            read(h, move |c| {
                let n = resolve(c, tag);
                match n.and_then(|n| c.canonical_hash(n)) {
                    Some(hash) => block_json(c, hash, full),
                    None => Ok(Value::Null),
                }
            })
            .await
        }
        "eth_getBlockByHash" => {
            let hash = hash_param(&p, 0)?;
            let full = p.get(1).and_then(Value::as_bool).unwrap_or(false);
            read(h, move |c| {
                if c.knows(&hash) {
                    block_json(c, hash, full)
                } else {
                    Ok(Value::Null)
                }
            })
            .await
        }
        "eth_getBlockTransactionCountByNumber" => {
            let tag = block_tag(p.first())?;
            read(h, move |c| {
                let Some(hash) = resolve(c, tag).and_then(|n| c.canonical_hash(n)) else {
                    return Ok(Value::Null);
                };
                let b = c
                    .block(&hash)?
                    .ok_or_else(|| RpcError::server("block body missing"))?;
                Ok(qty(b.body.transactions.len() as u64))
            })
            .await
        }
        "eth_getLogs" => {
            let filter = p.first().cloned().unwrap_or(Value::Null);
            read(h, move |c| logs(c, &filter)).await
        }
        "eth_newBlockFilter" => {
            let (number, hash) = h
                .read(|c| {
                    let n = c.chain.head_number();
                    (n, c.chain.canonical_hash(n).unwrap_or_default())
                })
                .await?;
            install(h, Kind::Blocks { number, hash })
        }
        "eth_newPendingTransactionFilter" => install(h, Kind::Pending { seq: 0 }),
        "eth_newFilter" => {
            let criteria = p.first().cloned().unwrap_or(Value::Null);
            let kind = read_typed(h, move |c| log_filter(c, criteria)).await?;
            install(h, kind)
        }
        "eth_getFilterChanges" => filter_changes(h, filter_id(&p)?).await,
        "eth_getFilterLogs" => {
            let id = filter_id(&p)?;
            let Kind::Logs {
                criteria, from, to, ..
            } = h
                .filters
                .get(id, Instant::now())
                .map_err(|e| RpcError::server(e.to_string()))?
            else {
                return Err(RpcError::server("filter not found"));
            };
            read(h, move |c| {
                let to = to.unwrap_or(c.head_number()).min(c.head_number());
                logs(c, &ranged(criteria, from, to))
            })
            .await
        }
        "eth_uninstallFilter" => Ok(json!(h.filters.uninstall(filter_id(&p)?))),
        other => Err(RpcError::new(
            -32601,
            format!("the method {other} does not exist/is not available"),
        )),
    }
}

async fn read_typed<T, F>(h: &ChainHandle, f: F) -> Result<T, RpcError>
where
    T: Send + 'static,
    F: FnOnce(&Chain) -> Result<T, RpcError> + Send + 'static,
{
    h.read(move |c| f(c.chain)).await?
}

fn install(h: &ChainHandle, kind: Kind) -> Result<Value, RpcError> {
    let id = h
        .filters
        .install(kind, Instant::now())
        .map_err(|e| RpcError::server(e.to_string()))?;
    Ok(json!(format!("{id:#x}")))
}

fn filter_id(p: &[Value]) -> Result<u128, RpcError> {
    p.first()
        .and_then(Value::as_str)
        .and_then(|s| s.strip_prefix("0x"))
        .and_then(|s| u128::from_str_radix(s, 16).ok())
        .ok_or_else(|| RpcError::params("expected a filter id (a 0x-prefixed quantity)"))
}

/// `criteria` over blocks `from..=to`.
fn ranged(mut criteria: serde_json::Map<String, Value>, from: u64, to: u64) -> Value {
    criteria.insert("fromBlock".into(), qty(from));
    criteria.insert("toBlock".into(), qty(to));
    Value::Object(criteria)
}

/// A log filter from `eth_newFilter`'s criteria: its addresses and topics checked now,
/// new logs from the next block on.
fn log_filter(c: &Chain, criteria: Value) -> Result<Kind, RpcError> {
    let Value::Object(mut criteria) = criteria else {
        return Err(RpcError::params("expected a filter object"));
    };
    if criteria.contains_key("blockHash") {
        return Err(RpcError::params(
            "a filter follows new blocks; for one block's logs use eth_getLogs with blockHash",
        ));
    }
    let head = c.head_number();
    let number = |key: &str| -> Result<Option<u64>, RpcError> {
        Ok(match block_tag(criteria.get(key))? {
            Tag::Number(n) => Some(n),
            Tag::Earliest => Some(0),
            Tag::Latest => None,
        })
    };
    let (from, to) = (number("fromBlock")?, number("toBlock")?);
    criteria.remove("fromBlock");
    criteria.remove("toBlock");
    let filter = LogFilter::parse(&criteria)?;
    Ok(Kind::Logs {
        criteria,
        filter,
        from: from.unwrap_or(head),
        to,
        number: head,
        hash: c.canonical_hash(head).unwrap_or_default(),
    })
}

/// What is new for filter `id` since its last poll.
async fn filter_changes(h: &ChainHandle, id: u128) -> Result<Value, RpcError> {
    let mut kind = h
        .filters
        .get(id, Instant::now())
        .map_err(|e| RpcError::server(e.to_string()))?;
    let found = match &mut kind {
        Kind::Blocks { number, hash } => {
            let (n, hh) = (*number, *hash);
            let (hashes, n, hh) = read_typed(h, move |c| Ok(new_blocks(c, n, hh))).await?;
            (*number, *hash) = (n, hh);
            json!(hashes)
        }
        Kind::Logs {
            filter,
            to,
            number,
            hash,
            ..
        } => {
            let (scan, to, n, hh) = (filter.clone(), *to, *number, *hash);
            let (found, n, hh) = read_typed(h, move |c| {
                let m = follow(c, n, hh, MAX_LOG_RANGE, to);
                Ok((Value::Array(moved_logs(c, &m, &scan)?), m.number, m.hash))
            })
            .await?;
            (*number, *hash) = (n, hh);
            found
        }
        Kind::Pending { seq } => {
            let (hashes, next) = h.filters.pending_since(*seq);
            *seq = next;
            let hashes: Vec<String> = hashes.iter().map(|x| x.to_string()).collect();
            json!(hashes)
        }
    };
    h.filters.advance(id, kind);
    Ok(found)
}

/// Hashes of the canonical blocks after the one a block filter last reported (from the
/// common ancestor, if that block left the canonical chain), at most [`MAX_LOG_RANGE`];
/// and the last one reported.
fn new_blocks(c: &Chain, number: u64, hash: B256) -> (Vec<String>, u64, B256) {
    let m = follow(c, number, hash, MAX_LOG_RANGE, None);
    let hashes = m.added.iter().map(|x| x.to_string()).collect();
    (hashes, m.number, m.hash)
}

async fn read<F>(h: &ChainHandle, f: F) -> Result<Value, RpcError>
where
    F: FnOnce(&Chain) -> Result<Value, RpcError> + Send + 'static,
{
    h.read(move |c| f(c.chain)).await?
}

#[derive(Clone, Copy)]
enum Tag {
    Latest,
    Earliest,
    Number(u64),
}

fn block_tag(v: Option<&Value>) -> Result<Tag, RpcError> {
    match v {
        None | Some(Value::Null) => Ok(Tag::Latest),
        Some(Value::String(s)) => match s.as_str() {
            "latest" | "pending" | "safe" | "finalized" => Ok(Tag::Latest),
            "earliest" => Ok(Tag::Earliest),
            hex => parse_u64(hex)
                .map(Tag::Number)
                .ok_or_else(|| RpcError::params(format!("bad block number `{hex}`"))),
        },
        Some(other) => Err(RpcError::params(format!("bad block tag {other}"))),
    }
}

fn resolve(c: &Chain, t: Tag) -> Option<u64> {
    match t {
        Tag::Latest => Some(c.head_number()),
        Tag::Earliest => Some(0),
        Tag::Number(n) if n <= c.head_number() => Some(n),
        Tag::Number(_) => None,
    }
}

/// The block a state read names (parameter `i`): a tag, a number, a block hash, or an
/// EIP-1898 object with `blockHash` or `blockNumber`.
fn state_ref(p: &[Value], i: usize) -> Result<StateRef, RpcError> {
    let v = p.get(i);
    if let Some(Value::String(s)) = v
        && s.len() == 66
        && let Ok(hash) = s.parse::<B256>()
    {
        return Ok(StateRef::Hash(hash));
    }
    if let Some(Value::Object(o)) = v {
        if let Some(h) = o.get("blockHash") {
            let hash = h
                .as_str()
                .and_then(|s| s.parse::<B256>().ok())
                .ok_or_else(|| RpcError::params("blockHash must be a 32-byte 0x-hex hash"))?;
            return Ok(StateRef::Hash(hash));
        }
        return state_ref(&[o.get("blockNumber").cloned().unwrap_or(Value::Null)], 0);
    }
    Ok(match block_tag(v)? {
        Tag::Latest => StateRef::Head,
        Tag::Earliest => StateRef::Number(0),
        Tag::Number(n) => StateRef::Number(n),
    })
}

/// Runs `f` on the chain's thread over the committed state at `at`.
async fn on_state<F>(h: &ChainHandle, at: StateRef, f: F) -> Result<Value, RpcError>
where
    F: FnOnce(&StateAt) -> Result<Value, StateError> + Send + 'static,
{
    read(h, move |c| {
        let state = c.state_number(at).and_then(|n| c.state_at(n))?;
        f(&state).map_err(|e| RpcError::server(e.to_string()))
    })
    .await
}

fn parse_u64(s: &str) -> Option<u64> {
    u64::from_str_radix(s.strip_prefix("0x")?, 16).ok()
}

fn quantity_u256(v: Option<&Value>) -> Option<U256> {
    let s = v?.as_str()?;
    U256::from_str_radix(s.strip_prefix("0x")?, 16).ok()
}

fn hex_bytes(v: Option<&Value>) -> Option<Bytes> {
    let s = v?.as_str()?;
    hex::decode(s.strip_prefix("0x")?).ok().map(Bytes::from)
}

fn address(p: &[Value], i: usize) -> Result<Address, RpcError> {
    p.get(i)
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<Address>().ok())
        .ok_or_else(|| {
            RpcError::params(format!(
                "parameter {i} must be a 0x-prefixed 20-byte address"
            ))
        })
}

fn hash_param(p: &[Value], i: usize) -> Result<B256, RpcError> {
    p.get(i)
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<B256>().ok())
        .ok_or_else(|| {
            RpcError::params(format!("parameter {i} must be a 0x-prefixed 32-byte hash"))
        })
}

fn call_request(p: &[Value]) -> Result<CallRequest, RpcError> {
    let o = p
        .first()
        .and_then(Value::as_object)
        .ok_or_else(|| RpcError::params("expected a call object"))?;
    let addr = |k: &str| -> Result<Option<Address>, RpcError> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_str()
                .and_then(|s| s.parse().ok())
                .map(Some)
                .ok_or_else(|| RpcError::params(format!("`{k}` must be an address"))),
        }
    };
    let num = |k: &str| -> Result<Option<U256>, RpcError> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(None),
            v => quantity_u256(v)
                .map(Some)
                .ok_or_else(|| RpcError::params(format!("`{k}` must be a hex quantity"))),
        }
    };
    let data = match o.get("input").or_else(|| o.get("data")) {
        None | Some(Value::Null) => Bytes::new(),
        v => hex_bytes(v).ok_or_else(|| RpcError::params("`data` must be 0x-hex"))?,
    };
    let price = num("gasPrice")?.or(num("maxFeePerGas")?);
    Ok(CallRequest {
        from: addr("from")?,
        to: addr("to")?,
        gas: num("gas")?.map(|g| g.saturating_to::<u64>()),
        gas_price: price.map(|g| g.saturating_to::<u128>()),
        value: num("value")?,
        data,
    })
}

/// A revert as wallets expect it: code 3, the reason decoded when it is Error(string).
/// A call that did not succeed, as geth reports it: code -32000 with what stopped it,
/// or code 3 "execution reverted" with the revert data.
fn failed(out: CallOutcome) -> RpcError {
    match out.aborted.or(out.error).or(out.halted) {
        Some(why) => RpcError::server(why),
        None => revert(&out.output),
    }
}

fn revert(output: &Bytes) -> RpcError {
    let reason = alloy_primitives::hex::decode("08c379a0")
        .ok()
        .filter(|sel| output.len() >= 68 && output[..4] == sel[..])
        .and_then(|_| {
            let len = U256::from_be_slice(&output[36..68]).saturating_to::<usize>();
            output
                .get(68..68 + len)
                .map(|b| String::from_utf8_lossy(b).into_owned())
        });
    let message = match reason {
        Some(r) => format!("execution reverted: {r}"),
        None => "execution reverted".to_string(),
    };
    RpcError {
        code: 3,
        message,
        data: Some(bytes(output)),
    }
}

fn tx_by_hash(c: &Chain, hash: &B256) -> Result<Value, RpcError> {
    let Some((block, index)) = c.tx_location(hash)? else {
        return Ok(Value::Null);
    };
    let b = c
        .block(&block)?
        .ok_or_else(|| RpcError::server("block body missing"))?;
    let Some(t) = b.body.transactions.get(index as usize) else {
        return Ok(Value::Null);
    };
    let tx =
        crate::tx::RecoveredTx::recover(t.clone()).map_err(|e| RpcError::server(e.to_string()))?;
    Ok(format::transaction(&tx, place(c, block, index as u64)))
}

fn receipt(c: &Chain, hash: &B256) -> Result<Value, RpcError> {
    let Some((block, index)) = c.tx_location(hash)? else {
        return Ok(Value::Null);
    };
    let b = c
        .block(&block)?
        .ok_or_else(|| RpcError::server("block body missing"))?;
    let receipts = c
        .receipts(&block)?
        .ok_or_else(|| RpcError::server("receipts missing"))?;
    let i = index as usize;
    let (Some(t), Some(r)) = (b.body.transactions.get(i), receipts.get(i)) else {
        return Ok(Value::Null);
    };
    let tx =
        crate::tx::RecoveredTx::recover(t.clone()).map_err(|e| RpcError::server(e.to_string()))?;

    let before = if i == 0 {
        0
    } else {
        receipts[i - 1].cumulative_gas_used()
    };
    let first_log: u64 = receipts[..i].iter().map(|r| r.logs().len() as u64).sum();
    let Some(pl) = place(c, block, index as u64) else {
        return Ok(Value::Null);
    };
    Ok(format::receipt(
        &tx,
        r,
        pl,
        r.cumulative_gas_used() - before,
        first_log,
    ))
}

fn block_json(c: &Chain, hash: B256, full: bool) -> Result<Value, RpcError> {
    let b = c
        .block(&hash)?
        .ok_or_else(|| RpcError::server("block body missing"))?;
    let txs = if full {
        recover_all(&b).map_err(|e| RpcError::server(e.to_string()))?
    } else {
        vec![]
    };
    let work = c.meta(&hash).map(|m| m.total_work).unwrap_or_default();
    Ok(format::block(&b, hash, work, full, &txs))
}

async fn fee_history(h: &ChainHandle, p: Vec<Value>) -> Result<Value, RpcError> {
    let count = match p.first() {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(1),
        Some(Value::String(s)) => parse_u64(s)
            .or_else(|| s.parse().ok())
            .ok_or_else(|| RpcError::params("blockCount must be a quantity"))?,
        _ => return Err(RpcError::params("blockCount is required")),
    }
    .clamp(1, 1024);
    let newest = block_tag(p.get(1))?;
    let percentiles = reward_percentiles(p.get(2))?;
    read(h, move |c| {
        let newest = resolve(c, newest).unwrap_or(c.head_number());
        let oldest = newest.saturating_sub(count - 1);
        let mut base = Vec::new();
        let mut ratio = Vec::new();
        let mut reward = Vec::new();
        for n in oldest..=newest {
            let Some(hash) = c.canonical_hash(n) else {
                break;
            };
            let Some(hd) = c.header(&hash) else { break };
            base.push(qty(hd.base_fee_per_gas.unwrap_or_default()));
            ratio.push(json!(hd.gas_used as f64 / hd.gas_limit.max(1) as f64));
            reward.push(Value::Array(
                percentiles.iter().map(|_| qty(SUGGESTED_TIP)).collect(),
            ));
            if n == newest {
                base.push(qty(c.child_base_fee(hd)));
            }
        }
        let mut out =
            json!({ "oldestBlock": qty(oldest), "baseFeePerGas": base, "gasUsedRatio": ratio });
        if !percentiles.is_empty() {
            out["reward"] = Value::Array(reward);
        }
        Ok(out)
    })
    .await
}

/// Reward percentiles asked for at most, as geth allows.
pub const MAX_PERCENTILES: usize = 100;

/// `eth_feeHistory`'s percentiles: at most [`MAX_PERCENTILES`], each in 0..=100, rising.
fn reward_percentiles(v: Option<&Value>) -> Result<Vec<f64>, RpcError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let list = v
        .as_array()
        .ok_or_else(|| RpcError::params("rewardPercentiles must be an array of numbers"))?;
    if list.len() > MAX_PERCENTILES {
        return Err(RpcError::params(format!(
            "{} reward percentiles asked for; at most {MAX_PERCENTILES}",
            list.len()
        )));
    }
    let mut out = Vec::with_capacity(list.len());
    for x in list {
        let x = x
            .as_f64()
            .filter(|x| (0.0..=100.0).contains(x))
            .ok_or_else(|| RpcError::params("each reward percentile is a number from 0 to 100"))?;
        if out.last().is_some_and(|&prev| x < prev) {
            return Err(RpcError::params("reward percentiles must not decrease"));
        }
        out.push(x);
    }
    Ok(out)
}

fn logs(c: &Chain, filter: &Value) -> Result<Value, RpcError> {
    let f = filter
        .as_object()
        .ok_or_else(|| RpcError::params("expected a filter object"))?;
    let (from, to) = if let Some(bh) = f.get("blockHash").and_then(Value::as_str) {
        let hash: B256 = bh
            .parse()
            .map_err(|_| RpcError::params("blockHash must be a 32-byte hash"))?;
        let n = c
            .meta(&hash)
            .filter(|_| c.is_canonical(&hash))
            .map(|m| m.number)
            .ok_or_else(|| RpcError::server("unknown block"))?;
        (n, n)
    } else {
        let from = resolve(c, block_tag(f.get("fromBlock"))?).unwrap_or(c.head_number() + 1);
        let to = resolve(c, block_tag(f.get("toBlock"))?).unwrap_or(c.head_number());
        (from, to)
    };
    if to >= from && to - from > MAX_LOG_RANGE {
        return Err(RpcError::server(format!(
            "query spans more than {MAX_LOG_RANGE} blocks; narrow fromBlock/toBlock"
        )));
    }
    let filter = LogFilter::parse(f)?;
    let mut out = Vec::new();
    for n in from..=to {
        let Some(hash) = c.canonical_hash(n) else {
            break;
        };
        block_logs(c, hash, &filter, false, &mut out)?;
    }
    Ok(Value::Array(out))
}
