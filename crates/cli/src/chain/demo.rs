//! The demo's chain part: three miners; a transfer sent to node A, mined by node B, its
//! receipt read on node C; an OpenZeppelin ERC-20 deployed and tokens moved; its Transfer
//! event pushed over a JSON-RPC WebSocket subscription and the balance read at the block
//! before; a miner cut off from the others mines a private fork that is orphaned when it
//! rejoins.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use nodus_chain::primitives::{Address, B256, U256, keccak256};
use nodus_chain::spec::DEV_KEYS;
use nodus_chain::wallet::{Key, eip1559};
use nodus_chain::{ChainEvent, ChainHandle};
use nodus_testnet::{Testnet, node_config, node_ip, wait_until};
use serde_json::{Value, json};

use super::token::{TOKEN_BYTECODE, call_data, word};
use crate::ui::progress::{STEP_TIMEOUT, Steps, step};

const GWEI: u128 = 1_000_000_000;
const ETHER: u128 = 1_000_000_000_000_000_000;

fn chain(net: &Testnet, k: usize) -> Result<ChainHandle> {
    net.try_node(k)
        .and_then(|n| n.service::<nodus_chain::ChainHandle>().cloned())
        .ok_or_else(|| anyhow!("node {k} has no chain service"))
}

async fn rpc(h: &ChainHandle, method: &str, params: Value) -> Result<Value> {
    nodus_chain::rpc::call_method(h, method, params.as_array().cloned().unwrap_or_default())
        .await
        .map_err(|e| anyhow!("{method}: {}", e.message))
}

/// Signs and submits on `via`; returns the transaction hash.
async fn submit(
    via: &ChainHandle,
    key: &Key,
    to: Option<Address>,
    value: u128,
    data: Vec<u8>,
    gas: u64,
) -> Result<B256> {
    let nonce = via.pending_nonce(key.address).await?;
    let tx = eip1559(
        31337,
        nonce,
        to,
        U256::from(value),
        data.into(),
        gas,
        50 * GWEI,
        GWEI,
    );
    Ok(via.submit_raw(key.sign_raw(tx)).await?)
}

/// Sends `account` (the other services' accounts: vault anchors, compute pay) one ether
/// from a development account, on `chain`.
pub async fn fund(chain: &ChainHandle, account: &str) -> Result<()> {
    let to: Address = account.parse()?;
    let key = Key::from_hex(DEV_KEYS[5])?;
    submit(chain, &key, Some(to), ETHER, vec![], 21_000).await?;
    Ok(())
}

async fn receipt(on: &ChainHandle, hash: B256) -> Result<Value> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let r = rpc(on, "eth_getTransactionReceipt", json!([hash.to_string()])).await?;
        if !r.is_null() {
            if r["status"] != "0x1" {
                return Err(anyhow!("transaction {hash} failed: {r}"));
            }
            return Ok(r);
        }
        if Instant::now() > deadline {
            return Err(anyhow!(
                "transaction {hash} not mined within {STEP_TIMEOUT:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn num(v: &Value) -> u64 {
    v.as_str()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .unwrap_or_default()
}

pub async fn steps(net: &mut Testnet, steps: &mut Steps) {
    let miner_b = Address::repeat_byte(0xb0);
    // A, B and C: the first three nodes still running (the demo killed some before).
    let running = net.running();
    let Some(&[na, nb, nc]) = running
        .get(..3)
        .and_then(|s| <&[usize; 3]>::try_from(s).ok())
    else {
        return;
    };
    step(
        steps,
        "a transfer sent to node A is mined by node B, its receipt read on node C",
        async {
            let (a, b, c) = (chain(net, na)?, chain(net, nb)?, chain(net, nc)?);
            b.set_mining(true, None, Some(miner_b));
            let key = Key::from_hex(DEV_KEYS[1])?;
            let t = Instant::now();
            let hash = submit(
                &a,
                &key,
                Some(Address::repeat_byte(0x42)),
                ETHER,
                vec![],
                21_000,
            )
            .await?;
            let r = receipt(&c, hash).await?;
            let block = rpc(&c, "eth_getBlockByHash", json!([r["blockHash"], false])).await?;
            let miner: Address = block["miner"].as_str().unwrap_or_default().parse()?;
            if miner != miner_b {
                return Err(anyhow!("block mined by {miner}, not node B"));
            }
            Ok(format!(
                "1 ETH in block {}, mined by node {nb}, receipt on node {nc} after {}",
                num(&r["blockNumber"]),
                secs(t.elapsed())
            ))
        },
    )
    .await;

    let mut erc20 = None;
    step(steps, "an ERC-20 (OpenZeppelin, solc) deployed and tokens moved", async {
        let (a, c) = (chain(net, na)?, chain(net, nc)?);
        for k in [na, nc] {
            chain(net, k)?.set_mining(true, None, Some(Address::repeat_byte(0xa0 + k as u8)));
        }
        let owner = Key::from_hex(DEV_KEYS[0])?;
        let holder = Address::repeat_byte(0x99);
        let mut code = hex::decode(TOKEN_BYTECODE.trim())?;
        code.extend_from_slice(&(U256::from(1_000_000u64) * U256::from(ETHER)).to_be_bytes::<32>());
        let deploy = receipt(&c, submit(&a, &owner, None, 0, code, 2_000_000).await?).await?;
        let token: Address = deploy["contractAddress"].as_str().unwrap_or_default().parse()?;
        let amount = U256::from(250u64) * U256::from(ETHER);
        let data = call_data("transfer(address,uint256)", &[word(holder.as_slice()), amount.to_be_bytes::<32>()]);
        let moved = receipt(&c, submit(&a, &owner, Some(token), 0, data, 100_000).await?).await?;
        let q = call_data("balanceOf(address)", &[word(holder.as_slice())]);
        let bal = rpc(&c, "eth_call", json!([{ "to": token.to_string(), "data": format!("0x{}", hex::encode(q)) }, "latest"])).await?;
        let bal = U256::from_str_radix(bal.as_str().unwrap_or_default().trim_start_matches("0x"), 16)?;
        if bal != amount {
            return Err(anyhow!("holder has {bal}, expected {amount}"));
        }
        let topic = keccak256("Transfer(address,address,uint256)");
        let logs = rpc(&c, "eth_getLogs", json!([{ "fromBlock": deploy["blockNumber"], "address": token.to_string(), "topics": [topic.to_string()] }])).await?;
        let n = logs.as_array().map(Vec::len).unwrap_or(0);
        if n != 2 {
            return Err(anyhow!("{n} Transfer logs, expected 2 (mint and transfer)"));
        }
        erc20 = Some((token, holder, amount));
        Ok(format!(
            "{token}: 250 NOD moved; balance and {n} Transfer logs read on node {nc} (deploy {} gas, transfer {} gas)",
            num(&deploy["gasUsed"]),
            num(&moved["gasUsed"])
        ))
    })
    .await;

    if let Some((token, holder, before)) = erc20 {
        step(
            steps,
            "a Transfer event pushed over a JSON-RPC WebSocket subscription; the balance read at the block before",
            async {
                let (a, c) = (chain(net, na)?, chain(net, nc)?);
                subscribed_transfer(&a, (&c, nc), token, holder, before).await
            },
        )
        .await;
    }

    step(steps, "a miner cut off from the others mines a fork, orphaned when it rejoins", async {
        let a = chain(net, na)?;
        // D syncs the chain, then restarts alone on a new port: nobody can reach it.
        let k = net.len();
        let d_k = net.add_node(node_config(node_ip(k), &[])).await?;
        let a_addr = net.node(na).p2p_addr("tcp").ok_or_else(|| anyhow!("node {na} has no TCP address"))?;
        net.node(d_k).net.dial(a_addr.clone()).await?;
        let a_height = a.read(|c| c.chain.head_number()).await?;
        chain(net, d_k)?.wait_for_height(a_height, STEP_TIMEOUT).await?;
        net.kill(d_k).await?;
        net.restart_isolated(d_k).await?;
        let d = chain(net, d_k)?;
        let fork_at = d.read(|c| c.chain.head_number()).await?;
        let mut events = d.events();
        // On the fork: a transfer only D has seen.
        let key = Key::from_hex(DEV_KEYS[3])?;
        let hash = submit(&d, &key, Some(Address::repeat_byte(0x77)), ETHER / 10, vec![], 21_000).await?;
        d.set_mining(true, None, Some(Address::repeat_byte(0xd0)));
        receipt(&d, hash).await?;
        d.wait_for_height(fork_at + 3, STEP_TIMEOUT).await?;
        d.stop_mining().await?;
        let d_work: U256 = d.status().await?.total_work.parse()?;
        wait_until(STEP_TIMEOUT, "the three miners to out-work the fork", || async {
            a.status().await.ok().and_then(|s| s.total_work.parse::<U256>().ok()).is_some_and(|w| w > d_work)
        })
        .await?;
        let t = Instant::now();
        net.node(d_k).net.dial(a_addr).await?;
        let (depth, returned) = tokio::time::timeout(STEP_TIMEOUT, async {
            loop {
                match events.recv().await {
                    Ok(ChainEvent::Reorg { depth, returned_txs, .. }) => return Ok((depth, returned_txs)),
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => return Err(anyhow!("events: {e}")),
                }
            }
        })
        .await
        .map_err(|_| anyhow!("D never reorganised onto the main chain"))??;
        let reorg_took = t.elapsed();
        let again = receipt(&a, hash).await?;
        for k in [na, nb, nc] {
            chain(net, k)?.stop_mining().await?;
        }
        Ok(format!(
            "D's fork of {depth} blocks orphaned {} after it rejoined; {returned} transaction returned to the pool and mined again in block {}",
            secs(reorg_took),
            num(&again["blockNumber"])
        ))
    })
    .await;
}

/// Subscribes to `token`'s Transfer logs over WebSocket on `c`, moves 1 more token to
/// `holder` through `a`, waits for the log to be pushed, then reads `holder`'s balance at
/// the log's block and the block before (state kept for the last 128 blocks).
async fn subscribed_transfer(
    a: &ChainHandle,
    (c, nc): (&ChainHandle, usize),
    token: Address,
    holder: Address,
    before: U256,
) -> Result<String> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let url = c
        .json_rpc_url()
        .ok_or_else(|| anyhow!("node C serves no JSON-RPC"))?
        .replacen("http://", "ws://", 1);
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
    let topic = keccak256("Transfer(address,address,uint256)");
    let sub = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe",
        "params": ["logs", {"address": token.to_string(), "topics": [topic.to_string()]}]});
    ws.send(Message::text(sub.to_string())).await?;
    let owner = Key::from_hex(DEV_KEYS[0])?;
    let one = U256::from(ETHER);
    let data = call_data(
        "transfer(address,uint256)",
        &[word(holder.as_slice()), one.to_be_bytes::<32>()],
    );
    let sent = submit(a, &owner, Some(token), 0, data, 100_000).await?;
    let t = Instant::now();
    let log = tokio::time::timeout(STEP_TIMEOUT, async {
        while let Some(m) = ws.next().await {
            let Message::Text(text) = m? else { continue };
            let v: Value = serde_json::from_str(text.as_str())?;
            if v["method"] == "eth_subscription"
                && v["params"]["result"]["transactionHash"] == sent.to_string()
            {
                return Ok(v["params"]["result"].clone());
            }
        }
        Err(anyhow!("the WebSocket closed"))
    })
    .await
    .map_err(|_| anyhow!("no Transfer pushed within {STEP_TIMEOUT:?}"))??;
    let pushed = t.elapsed();
    let block = num(&log["blockNumber"]);
    let q = format!(
        "0x{}",
        hex::encode(call_data("balanceOf(address)", &[word(holder.as_slice())]))
    );
    let balance = |at: u64| {
        let q = q.clone();
        async move {
            let v = rpc(c, "eth_call", json!([{ "to": token.to_string(), "data": q }, format!("0x{at:x}")])).await?;
            Ok::<U256, anyhow::Error>(U256::from_str_radix(
                v.as_str().unwrap_or_default().trim_start_matches("0x"),
                16,
            )?)
        }
    };
    let (then, now) = (balance(block - 1).await?, balance(block).await?);
    if then != before || now != before + one {
        return Err(anyhow!(
            "balance {then} at block {} and {now} at block {block}, expected {before} and {}",
            block - 1,
            before + one
        ));
    }
    Ok(format!(
        "the log of block {block} pushed to node {nc}'s subscriber {} after sending; balance 250 NOD at block {}, 251 at block {block}",
        secs(pushed),
        block - 1
    ))
}
