//! Blocks, transactions, receipts and logs as Ethereum JSON-RPC presents them.

use alloy_consensus::transaction::Transaction as _;
use alloy_consensus::{Header, ReceiptEnvelope, TxEnvelope, TxReceipt};
use alloy_primitives::{Address, B256, Log, U256};
use serde_json::{Value, json};

use crate::store::ChainBlock;
use crate::tx::RecoveredTx;

pub fn qty(n: impl std::fmt::LowerHex) -> Value {
    Value::String(format!("{n:#x}"))
}

pub fn bytes(b: &[u8]) -> Value {
    Value::String(format!("0x{}", hex::encode(b)))
}

/// Where a transaction sits in a block.
#[derive(Clone, Copy)]
pub struct TxPlace {
    pub block_hash: B256,
    pub number: u64,
    pub index: u64,
    pub base_fee: u64,
}

pub fn transaction(tx: &RecoveredTx, at: Option<TxPlace>) -> Value {
    let t: &TxEnvelope = &tx.tx;
    let sig = t.signature();
    let mut v = json!({
        "hash": tx.hash.to_string(),
        "nonce": qty(t.nonce()),
        "from": tx.sender.to_checksum(None),
        "to": t.to().map(|a| a.to_checksum(None)),
        "value": qty(t.value()),
        "gas": qty(t.gas_limit()),
        "input": bytes(t.input()),
        "r": qty(sig.r()),
        "s": qty(sig.s()),
        "type": qty(t.tx_type() as u8),
        "blockHash": at.map(|p| p.block_hash.to_string()),
        "blockNumber": at.map(|p| qty(p.number)),
        "transactionIndex": at.map(|p| qty(p.index)),
    });
    let o = v.as_object_mut().expect("object");
    if let Some(c) = t.chain_id() {
        o.insert("chainId".into(), qty(c));
    }
    match t {
        TxEnvelope::Legacy(_) => {
            let v_value = match t.chain_id() {
                Some(c) => c * 2 + 35 + sig.v() as u64,
                None => 27 + sig.v() as u64,
            };
            o.insert("v".into(), qty(v_value));
            o.insert("gasPrice".into(), qty(t.max_fee_per_gas()));
        }
        _ => {
            o.insert("v".into(), qty(sig.v() as u8));
            o.insert("yParity".into(), qty(sig.v() as u8));
            let price = match (at, t.max_priority_fee_per_gas()) {
                (Some(p), Some(tip)) => t.max_fee_per_gas().min(p.base_fee as u128 + tip),
                _ => t.max_fee_per_gas(),
            };
            o.insert("gasPrice".into(), qty(price));
            if let Some(tip) = t.max_priority_fee_per_gas() {
                o.insert("maxFeePerGas".into(), qty(t.max_fee_per_gas()));
                o.insert("maxPriorityFeePerGas".into(), qty(tip));
            }
            let list: Vec<Value> = t
                .access_list()
                .map(|l| {
                    l.iter()
                        .map(|i| json!({
                            "address": i.address.to_checksum(None),
                            "storageKeys": i.storage_keys.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
                        }))
                        .collect()
                })
                .unwrap_or_default();
            o.insert("accessList".into(), Value::Array(list));
        }
    }
    v
}

pub fn block(
    b: &ChainBlock,
    hash: B256,
    total_work: U256,
    full: bool,
    txs: &[RecoveredTx],
) -> Value {
    let h: &Header = &b.header;
    let transactions: Vec<Value> = if full {
        txs.iter()
            .enumerate()
            .map(|(i, t)| {
                transaction(
                    t,
                    Some(TxPlace {
                        block_hash: hash,
                        number: h.number,
                        index: i as u64,
                        base_fee: h.base_fee_per_gas.unwrap_or_default(),
                    }),
                )
            })
            .collect()
    } else {
        b.body
            .transactions
            .iter()
            .map(|t| Value::String(t.tx_hash().to_string()))
            .collect()
    };
    json!({
        "number": qty(h.number),
        "hash": hash.to_string(),
        "parentHash": h.parent_hash.to_string(),
        "nonce": bytes(h.nonce.as_slice()),
        "mixHash": h.mix_hash.to_string(),
        "sha3Uncles": h.ommers_hash.to_string(),
        "logsBloom": bytes(h.logs_bloom.as_slice()),
        "transactionsRoot": h.transactions_root.to_string(),
        "stateRoot": h.state_root.to_string(),
        "receiptsRoot": h.receipts_root.to_string(),
        "miner": h.beneficiary.to_checksum(None),
        "difficulty": qty(h.difficulty),
        "totalDifficulty": qty(total_work),
        "extraData": bytes(&h.extra_data),
        "size": qty(crate::store::encode_block(b).len() as u64),
        "gasLimit": qty(h.gas_limit),
        "gasUsed": qty(h.gas_used),
        "timestamp": qty(h.timestamp),
        "baseFeePerGas": qty(h.base_fee_per_gas.unwrap_or_default()),
        "transactions": transactions,
        "uncles": [],
    })
}

pub fn log(l: &Log, place: TxPlace, tx_hash: B256, log_index: u64) -> Value {
    json!({
        "address": l.address.to_checksum(None),
        "topics": l.topics().iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        "data": bytes(&l.data.data),
        "blockNumber": qty(place.number),
        "blockHash": place.block_hash.to_string(),
        "transactionHash": tx_hash.to_string(),
        "transactionIndex": qty(place.index),
        "logIndex": qty(log_index),
        "removed": false,
    })
}

/// A receipt; `first_log_index` counts the logs of earlier transactions in the block.
pub fn receipt(
    tx: &RecoveredTx,
    r: &ReceiptEnvelope,
    place: TxPlace,
    gas_used: u64,
    first_log_index: u64,
) -> Value {
    let t: &TxEnvelope = &tx.tx;
    let contract: Option<Address> = if t.to().is_none() {
        Some(tx.sender.create(t.nonce()))
    } else {
        None
    };
    let price = match t.max_priority_fee_per_gas() {
        Some(tip) => t.max_fee_per_gas().min(place.base_fee as u128 + tip),
        None => t.max_fee_per_gas(),
    };
    let logs: Vec<Value> = r
        .logs()
        .iter()
        .enumerate()
        .map(|(i, l)| log(l, place, tx.hash, first_log_index + i as u64))
        .collect();
    json!({
        "transactionHash": tx.hash.to_string(),
        "transactionIndex": qty(place.index),
        "blockHash": place.block_hash.to_string(),
        "blockNumber": qty(place.number),
        "from": tx.sender.to_checksum(None),
        "to": t.to().map(|a| a.to_checksum(None)),
        "cumulativeGasUsed": qty(r.cumulative_gas_used()),
        "gasUsed": qty(gas_used),
        "effectiveGasPrice": qty(price),
        "contractAddress": contract.map(|a| a.to_checksum(None)),
        "logs": logs,
        "logsBloom": bytes(r.bloom().as_slice()),
        "status": qty(u8::from(r.status())),
        "type": qty(t.tx_type() as u8),
    })
}
