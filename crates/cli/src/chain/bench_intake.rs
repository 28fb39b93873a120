//! Transaction intake as many wallets load it: [`ACCOUNTS`] accounts, funded first, each
//! signing its own transfers, sent by [`CLIENTS`] clients at once through
//! eth_sendRawTransaction. Two measures: intake alone (nothing mined meanwhile: every
//! transaction checked and pooled), and end to end (from the first send to the last
//! receipt, mined meanwhile: by another nodus node, or by Hardhat's automine).

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use nodus_chain::primitives::{Address, U256};
use nodus_chain::spec::DEV_KEYS;
use nodus_chain::wallet::{Key, eip1559};
use serde_json::json;

use super::bench::{GWEI, Rpc, hex0x};

/// Accounts that sign the load, each with transactions below a pool's per-sender cap.
pub const ACCOUNTS: usize = 128;
/// Requests in flight at once.
pub const CLIENTS: usize = 64;
/// Transactions per account in the intake run (3,968 in all, within a 4,096 pool).
pub const INTAKE_PER_ACCOUNT: u64 = 31;
/// Transactions per account in the end-to-end run.
pub const E2E_PER_ACCOUNT: u64 = 16;

/// The load's accounts, the same on every run and chain.
pub fn accounts() -> Result<Vec<Key>> {
    (0..ACCOUNTS)
        .map(|i| {
            let mut secret = [0x42u8; 32];
            secret[24..].copy_from_slice(&(i as u64 + 1).to_be_bytes());
            Ok(Key::from_bytes(secret)?)
        })
        .collect()
}

fn transfer(key: &Key, nonce: u64, wei: U256) -> String {
    hex0x(&key.sign_raw(eip1559(
        31337,
        nonce,
        Some(Address::repeat_byte(0x55)),
        wei,
        Default::default(),
        21_000,
        100 * GWEI,
        GWEI,
    )))
}

/// Gives each account 1 ether from development accounts 1 to 9 (their nonces from
/// `first_nonce`), and waits until `read` shows every account funded.
pub async fn fund(submit: &Rpc, read: &Rpc, keys: &[Key], first_nonce: u64) -> Result<()> {
    let dev: Vec<Key> = DEV_KEYS[1..=9]
        .iter()
        .map(|k| Key::from_hex(k))
        .collect::<Result<_, _>>()?;
    let ether = U256::from(10u64).pow(U256::from(18u64));
    let mut last = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let from = &dev[i % dev.len()];
        let nonce = first_nonce + (i / dev.len()) as u64;
        let tx = from.sign_raw(eip1559(
            31337,
            nonce,
            Some(k.address),
            ether,
            Default::default(),
            21_000,
            100 * GWEI,
            GWEI,
        ));
        let hash = submit
            .call("eth_sendRawTransaction", json!([hex0x(&tx)]))
            .await
            .context("funding the load's accounts")?;
        if i + dev.len() >= keys.len() {
            last.push(hash.as_str().unwrap_or_default().to_string());
        }
    }
    for h in last {
        read.receipt(&h).await?;
    }
    Ok(())
}

/// Sends `per_account` transfers from each account (nonces from `first_nonce`),
/// [`CLIENTS`] requests in flight, each client owning some accounts so that one
/// account's transactions arrive in nonce order. Returns the seconds taken and the hash
/// of each account's last transaction.
pub async fn send_all(
    rpc: &Arc<Rpc>,
    keys: &[Key],
    first_nonce: u64,
    per_account: u64,
) -> Result<(f64, Vec<String>)> {
    let mut lanes: Vec<Vec<Vec<String>>> = vec![Vec::new(); CLIENTS];
    for (i, k) in keys.iter().enumerate() {
        let txs = (first_nonce..first_nonce + per_account)
            .map(|n| transfer(k, n, U256::from(1u64)))
            .collect();
        lanes[i % CLIENTS].push(txs);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for lane in lanes {
        let rpc = rpc.clone();
        tasks.push(tokio::spawn(async move {
            let mut last = Vec::new();
            // Round robin over the lane's accounts, each in nonce order.
            for step in 0..per_account as usize {
                for account in &lane {
                    let h = rpc
                        .call("eth_sendRawTransaction", json!([&account[step]]))
                        .await?;
                    if step + 1 == per_account as usize {
                        last.push(h.as_str().unwrap_or_default().to_string());
                    }
                }
            }
            Ok::<_, anyhow::Error>(last)
        }));
    }
    let mut last = Vec::new();
    for t in tasks {
        last.extend(t.await??);
    }
    Ok((started.elapsed().as_secs_f64(), last))
}

/// Transactions per second through eth_sendRawTransaction, nothing mined meanwhile;
/// and each account's last transaction, for [`mined`].
pub async fn intake(rpc: &Arc<Rpc>, keys: &[Key]) -> Result<(f64, Vec<String>)> {
    let (secs, last) = send_all(rpc, keys, 0, INTAKE_PER_ACCOUNT).await?;
    Ok(((keys.len() as u64 * INTAKE_PER_ACCOUNT) as f64 / secs, last))
}

/// Whether `read` has a receipt for each of `hashes` now.
pub async fn mined(read: &Rpc, hashes: &[String]) -> Result<bool> {
    for h in hashes {
        if read
            .call("eth_getTransactionReceipt", json!([h]))
            .await?
            .is_null()
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Transactions per second from the first send to the last receipt on `read`, mined
/// meanwhile. Each account's transactions continue after the intake run's.
pub async fn end_to_end(submit: &Arc<Rpc>, read: &Rpc, keys: &[Key]) -> Result<f64> {
    let started = Instant::now();
    let (_, last) = send_all(submit, keys, INTAKE_PER_ACCOUNT, E2E_PER_ACCOUNT).await?;
    for h in last {
        read.receipt(&h).await?;
    }
    Ok((keys.len() as u64 * E2E_PER_ACCOUNT) as f64 / started.elapsed().as_secs_f64())
}
