//! Following the canonical chain from a block a client last saw, for polling filters and
//! WebSocket subscriptions alike: which blocks left the chain since (a reorganisation),
//! which joined it, and the logs of both, those of the blocks that left marked
//! `removed: true` as Ethereum clients expect.

use alloy_primitives::{Address, B256, Log};
use serde_json::{Map, Value};

use super::RpcError;
use super::format::{self, TxPlace};
use crate::chain::Chain;

/// The addresses and topics a log filter asks for (empty: any).
#[derive(Clone, Debug, Default)]
pub struct LogFilter {
    addresses: Vec<Address>,
    /// Per position, the topics allowed there (empty: any).
    topics: Vec<Vec<B256>>,
}

impl LogFilter {
    /// From a filter object's `address` and `topics` (its block range is not read).
    pub fn parse(f: &Map<String, Value>) -> Result<Self, RpcError> {
        let addresses = match f.get("address") {
            None | Some(Value::Null) => vec![],
            Some(Value::String(s)) => {
                vec![s.parse().map_err(|_| RpcError::params("bad address"))?]
            }
            Some(Value::Array(a)) => a
                .iter()
                .map(|s| {
                    s.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
                        RpcError::params("address must be an address or an array of them")
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(RpcError::params(
                    "address must be an address or an array of them",
                ));
            }
        };
        let topic = |s: &str| {
            s.parse::<B256>()
                .map_err(|_| RpcError::params("a topic is a 0x-prefixed 32-byte hash"))
        };
        let topics = match f.get("topics") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(a)) if a.len() <= 4 => a
                .iter()
                .map(|t| match t {
                    Value::Null => Ok(vec![]),
                    Value::String(s) => Ok(vec![topic(s)?]),
                    Value::Array(alts) => alts
                        .iter()
                        .map(|s| {
                            s.as_str()
                                .ok_or_else(|| RpcError::params("a topic is a string"))
                                .and_then(topic)
                        })
                        .collect(),
                    _ => Err(RpcError::params(
                        "each topic is a hash, an array of hashes, or null",
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(RpcError::params(
                    "topics must be an array of at most 4 positions",
                ));
            }
        };
        Ok(LogFilter { addresses, topics })
    }

    pub fn matches(&self, l: &Log) -> bool {
        (self.addresses.is_empty() || self.addresses.contains(&l.address))
            && self.topics.iter().enumerate().all(|(k, alts)| {
                alts.is_empty() || l.topics().get(k).is_some_and(|t| alts.contains(t))
            })
    }
}

/// Appends to `out` the logs of block `hash` that `f` matches, in block order, marked
/// `removed` when the block has left the canonical chain. A block without receipts
/// (never executed here) has none.
pub fn block_logs(
    c: &Chain,
    hash: B256,
    f: &LogFilter,
    removed: bool,
    out: &mut Vec<Value>,
) -> Result<(), RpcError> {
    let Some(receipts) = c.receipts(&hash)? else {
        return Ok(());
    };
    if receipts.iter().all(|r| r.logs().is_empty()) {
        return Ok(());
    }
    let Some(b) = c.block(&hash)? else {
        return Ok(());
    };
    let mut log_index = 0u64;
    for (i, (r, t)) in receipts.iter().zip(&b.body.transactions).enumerate() {
        for l in r.logs() {
            if f.matches(l)
                && let Some(at) = place(c, hash, i as u64)
            {
                let mut v = format::log(l, at, *t.tx_hash(), log_index);
                if removed {
                    v["removed"] = Value::Bool(true);
                }
                out.push(v);
            }
            log_index += 1;
        }
    }
    Ok(())
}

/// The logs `f` matches in a move: those of the blocks that left, marked removed, then
/// those of the blocks that joined, as Ethereum clients expect them.
pub fn moved_logs(c: &Chain, m: &Moved, f: &LogFilter) -> Result<Vec<Value>, RpcError> {
    let mut out = Vec::new();
    for b in &m.removed {
        block_logs(c, *b, f, true, &mut out)?;
    }
    for b in &m.added {
        block_logs(c, *b, f, false, &mut out)?;
    }
    Ok(out)
}

/// Where transaction `index` of block `block` is.
pub fn place(c: &Chain, block: B256, index: u64) -> Option<TxPlace> {
    let h = c.header(&block)?;
    Some(TxPlace {
        block_hash: block,
        number: h.number,
        index,
        base_fee: h.base_fee_per_gas.unwrap_or_default(),
    })
}

/// How the canonical chain moved since a client last saw block (`number`, `hash`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Moved {
    /// Blocks the client saw that left the canonical chain, oldest first.
    pub removed: Vec<B256>,
    /// Canonical blocks after the common ancestor, oldest first, at most `max`.
    pub added: Vec<B256>,
    /// The last block the client has now seen (the last added, else the ancestor).
    pub number: u64,
    pub hash: B256,
}

/// The moves from (`number`, `hash`) to the head, at most `max` blocks added; blocks
/// past `to` are not added. Blocks that left the chain are walked back through their
/// parents (the store keeps them) to the common ancestor.
pub fn follow(c: &Chain, number: u64, hash: B256, max: u64, to: Option<u64>) -> Moved {
    let mut removed = Vec::new();
    let mut ancestor = number;
    let mut cur = hash;
    while !c.is_canonical(&cur) {
        match c.meta(&cur) {
            Some(m) if m.number > 0 => {
                removed.push(cur);
                ancestor = m.number - 1;
                cur = m.parent;
            }
            _ => {
                ancestor = 0;
                cur = c.genesis_hash();
                break;
            }
        }
    }
    removed.reverse();
    let end = c
        .head_number()
        .min(to.unwrap_or(u64::MAX))
        .min(ancestor.saturating_add(max));
    let added: Vec<B256> = (ancestor + 1..=end)
        .filter_map(|n| c.canonical_hash(n))
        .collect();
    let (number, hash) = match added.last() {
        Some(last) => (ancestor + added.len() as u64, *last),
        None => (ancestor, c.canonical_hash(ancestor).unwrap_or(cur)),
    };
    Moved {
        removed,
        added,
        number,
        hash,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{Bytes, LogData};
    use serde_json::json;

    fn parse(v: Value) -> Result<LogFilter, RpcError> {
        LogFilter::parse(v.as_object().unwrap())
    }

    #[test]
    fn log_filters_match_address_and_topics_by_position() {
        let a = Address::repeat_byte(1);
        let (t1, t2) = (B256::repeat_byte(0xa1), B256::repeat_byte(0xa2));
        let log = Log {
            address: a,
            data: LogData::new_unchecked(vec![t1, t2], Bytes::new()),
        };
        let ok = |v: Value| parse(v).unwrap().matches(&log);
        assert!(ok(json!({})));
        assert!(ok(json!({ "address": a.to_string() })));
        assert!(ok(
            json!({ "address": [Address::ZERO.to_string(), a.to_string()] })
        ));
        assert!(!ok(json!({ "address": Address::ZERO.to_string() })));
        assert!(ok(json!({ "topics": [t1.to_string()] })));
        assert!(ok(
            json!({ "topics": [null, [t1.to_string(), t2.to_string()]] })
        ));
        assert!(!ok(json!({ "topics": [t2.to_string()] })));
        assert!(!ok(json!({ "topics": [null, null, t1.to_string()] })));
    }

    #[test]
    fn bad_log_filters_are_refused_not_widened() {
        for bad in [
            json!({ "address": "0x12" }),
            json!({ "address": ["0x12"] }),
            json!({ "address": 5 }),
            json!({ "topics": ["0x12"] }),
            json!({ "topics": [[7]] }),
            json!({ "topics": "0x00" }),
            json!({ "topics": [null, null, null, null, null] }),
        ] {
            assert_eq!(parse(bad.clone()).unwrap_err().code, -32602, "{bad}");
        }
    }
}
