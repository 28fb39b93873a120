//! `nodus bench chain`: nodus beside Hardhat's node (the local chain most DApp developers
//! run), both on loopback in this run, loaded by the same client:
//!
//! - JSON-RPC reads: eth_getBalance, and eth_call of an OpenZeppelin ERC-20's balanceOf
//!   (EVM execution), 16 requests in flight: requests per second, p50 and p99;
//! - transaction intake: 128 funded accounts' transfers through eth_sendRawTransaction,
//!   64 clients at once (Hardhat with automine off, so both only check and pool), and
//!   end to end, from the first send to the last receipt while another node mines
//!   (Hardhat: automine), see `bench_intake`;
//! - a block of ERC-20 transfers: built (executed, state root) by nodus, mined by
//!   Hardhat's `evm_mine`; and, nodus only, imported and verified by a second node
//!   (senders recovered, executed, roots checked, committed to disk).
//!
//! Hardhat comes from interop/eth (npm ci there, which scripts/test does).

use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use nodus_chain::chain::Chain;
use nodus_chain::primitives::{Address, U256};
use nodus_chain::spec::DEV_KEYS;
use nodus_chain::tx::RecoveredTx;
use nodus_chain::wallet::{Key, eip1559};
use nodus_chain::{ChainSpec, miner};
use nodus_testnet::Testnet;
use serde_json::{Value, json};

use super::bench_intake;
use super::token::{TOKEN_BYTECODE, call_data, word};
use crate::ui::progress::spinner;
use crate::ui::stats::percentile;
use crate::ui::{self, table};

/// `nodus bench chain` (flattened into `nodus bench`).
#[derive(clap::Subcommand, Debug)]
pub enum Area {
    /// JSON-RPC reads, transaction intake and block execution, beside Hardhat's node
    Chain {
        /// Requests per read test
        #[arg(long, default_value_t = 5000)]
        calls: usize,
        /// Transactions in the block tests (10 to 500)
        #[arg(long, default_value_t = 500)]
        txs: usize,
        /// Value transfers per import-throughput run (ERC-20 runs take half as many)
        #[arg(long, default_value_t = 10000)]
        import: usize,
        /// State sizes (accounts) of the import-throughput runs
        #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
        accounts: Vec<usize>,
        /// Nodes of the block-propagation run
        #[arg(long, default_value_t = 20)]
        nodes: usize,
    },
}

impl Area {
    pub async fn run(self, json: bool) -> Result<ExitCode> {
        let Area::Chain {
            calls,
            txs,
            import,
            accounts,
            nodes,
        } = self;
        let o = Options {
            calls,
            txs,
            import,
            accounts,
            nodes,
        };
        run(o, json).await
    }
}

const CONCURRENCY: usize = 16;
pub(super) const GWEI: u128 = 1_000_000_000;
const ETHER: u128 = 1_000_000_000_000_000_000;

fn eth_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/eth")
}

pub(super) struct Rpc {
    url: String,
    client: reqwest::Client,
}

impl Rpc {
    pub(super) async fn call(&self, method: &str, params: Value) -> Result<Value> {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let v: Value = self
            .client
            .post(&self.url)
            .json(&body)
            .send()
            .await?
            .json()
            .await?;
        if let Some(e) = v.get("error") {
            return Err(anyhow!("{method}: {e}"));
        }
        Ok(v["result"].clone())
    }

    pub(super) async fn receipt(&self, hash: &str) -> Result<Value> {
        let t = Instant::now();
        loop {
            let r = self
                .call("eth_getTransactionReceipt", json!([hash]))
                .await?;
            if !r.is_null() {
                return Ok(r);
            }
            if t.elapsed() > Duration::from_secs(60) {
                return Err(anyhow!("{hash} not mined in 60 s"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// (requests per second, p50 µs, p99 µs) of `n` requests, 16 in flight.
async fn load(
    rpc: &Arc<Rpc>,
    n: usize,
    method: &'static str,
    params: Value,
) -> Result<(f64, f64, f64)> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..CONCURRENCY {
        let (rpc, params) = (rpc.clone(), params.clone());
        let count = n / CONCURRENCY + usize::from(w < n % CONCURRENCY);
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::with_capacity(count);
            for _ in 0..count {
                let t = Instant::now();
                rpc.call(method, params.clone()).await?;
                times.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(times)
        }));
    }
    let mut times = Vec::with_capacity(n);
    for t in tasks {
        times.extend(t.await??);
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    times.sort();
    Ok((rate, percentile(&times, 0.5), percentile(&times, 0.99)))
}

fn raw(key: &Key, nonce: u64, to: Option<Address>, data: Vec<u8>, gas: u64) -> Vec<u8> {
    key.sign_raw(eip1559(
        31337,
        nonce,
        to,
        U256::from(if data.is_empty() { 1u64 } else { 0 }),
        data.into(),
        gas,
        100 * GWEI,
        GWEI,
    ))
}

pub(super) fn hex0x(b: &[u8]) -> String {
    format!("0x{}", hex::encode(b))
}

fn deploy_raw() -> Result<Vec<u8>> {
    let owner = Key::from_hex(DEV_KEYS[0])?;
    let mut code = hex::decode(TOKEN_BYTECODE.trim())?;
    code.extend_from_slice(&(U256::from(1_000_000_000u64) * U256::from(ETHER)).to_be_bytes::<32>());
    Ok(raw(&owner, 0, None, code, 2_000_000))
}

/// `n` ERC-20 transfers by the token's owner, nonces from `first_nonce`.
fn token_transfers(token: Address, n: usize, first_nonce: u64) -> Result<Vec<Vec<u8>>> {
    let owner = Key::from_hex(DEV_KEYS[0])?;
    Ok((0..n)
        .map(|i| {
            let to = Address::left_padding_from(&(i as u64 + 1000).to_be_bytes());
            let data = call_data(
                "transfer(address,uint256)",
                &[word(to.as_slice()), U256::from(7u64).to_be_bytes::<32>()],
            );
            raw(&owner, first_nonce + i as u64, Some(token), data, 80_000)
        })
        .collect())
}

struct Side {
    balance: (f64, f64, f64),
    call: (f64, f64, f64),
    intake: f64,
    /// Each load account's last transaction of the intake run.
    intake_last: Vec<String>,
    block: f64,
    end_to_end: f64,
}

async fn measure(rpc: &Arc<Rpc>, calls: usize, token: Address, keys: &[Key]) -> Result<Side> {
    let holder = Key::from_hex(DEV_KEYS[0])?.address;
    let balance = load(
        rpc,
        calls,
        "eth_getBalance",
        json!([holder.to_string(), "latest"]),
    )
    .await?;
    let q = call_data("balanceOf(address)", &[word(holder.as_slice())]);
    let call = load(
        rpc,
        calls,
        "eth_call",
        json!([{ "to": token.to_string(), "data": hex0x(&q) }, "latest"]),
    )
    .await?;
    let (intake, intake_last) = bench_intake::intake(rpc, keys).await?;
    Ok(Side {
        balance,
        call,
        intake,
        intake_last,
        block: 0.0,
        end_to_end: 0.0,
    })
}

async fn start_hardhat() -> Result<(tokio::process::Child, Arc<Rpc>)> {
    let dir = eth_dir();
    let bin = dir.join("node_modules/.bin/hardhat");
    if !bin.exists() {
        return Err(anyhow!(
            "Hardhat is not installed: run scripts/test (it runs `npm ci` in {})",
            dir.display()
        ));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = tokio::process::Command::new(bin)
        .args([
            "node",
            "--hostname",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .current_dir(&dir)
        .env("HARDHAT_DISABLE_TELEMETRY_PROMPT", "true")
        .env("CI", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting hardhat node")?;
    let rpc = Arc::new(Rpc {
        url: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::new(),
    });
    let t = Instant::now();
    while rpc.call("eth_chainId", json!([])).await.is_err() {
        if t.elapsed() > Duration::from_secs(60) {
            return Err(anyhow!("hardhat node did not answer within 60 s"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok((child, rpc))
}

/// nodus builds a block of the token transfers, and a second chain imports it:
/// (build tx/s, import tx/s).
fn nodus_block(token_txs: &[Vec<u8>], dir: &std::path::Path) -> Result<(f64, f64)> {
    let genesis = nodus_chain::GenesisConfig {
        initial_difficulty: 1,
        ..Default::default()
    };
    let spec = ChainSpec::from_config(&genesis)?;
    let (mut a, mut b) = (
        Chain::open(spec.clone(), &dir.join("a.redb"))?,
        Chain::open(spec, &dir.join("b.redb"))?,
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let stop = AtomicBool::new(false);
    let seal = |c: &mut Chain, txs: Vec<RecoveredTx>| -> Result<_> {
        let t = c.template(Address::repeat_byte(0xb0), txs, now)?;
        miner::seal(t, 1, 0, &stop, &AtomicU64::new(0)).ok_or_else(|| anyhow!("no seal"))
    };
    let deploy = RecoveredTx::decode(&deploy_raw()?)?;
    let first = seal(&mut a, vec![deploy])?;
    a.import(first.clone(), now)?;
    b.import(first, now)?;
    let txs: Vec<RecoveredTx> = token_txs
        .iter()
        .map(|r| RecoveredTx::decode(r))
        .collect::<Result<_, _>>()?;
    let n = txs.len() as f64;
    let t = Instant::now();
    let template = a.template(Address::repeat_byte(0xb0), txs, now)?;
    let built = t.elapsed();
    if template.body.transactions.len() as f64 != n {
        return Err(anyhow!(
            "only {} of {n} transfers fit the block",
            template.body.transactions.len()
        ));
    }
    let block =
        miner::seal(template, 1, 0, &stop, &AtomicU64::new(0)).ok_or_else(|| anyhow!("no seal"))?;
    let t = Instant::now();
    b.import(block, now)?;
    let imported = t.elapsed();
    Ok((n / built.as_secs_f64(), n / imported.as_secs_f64()))
}

pub struct Options {
    pub calls: usize,
    pub txs: usize,
    pub import: usize,
    pub accounts: Vec<usize>,
    pub nodes: usize,
}

/// Aims of the issue: end-to-end import and propagation.
const AIM_IMPORT: f64 = 10_000.0;
/// Transactions per second taken through eth_sendRawTransaction (issue 24).
const AIM_INTAKE: f64 = 10_000.0;
const AIM_PROPAGATION_P99_MS: f64 = 250.0;

pub async fn run(o: Options, json_out: bool) -> Result<ExitCode> {
    if let Ok(filter) = std::env::var("NODUS_LOG") {
        crate::ui::process::init_logging(&filter);
    }
    let (calls, txs) = (o.calls, o.txs.clamp(10, 500));
    let imports = import_section(&o, json_out).await?;
    let propagation = {
        let pb =
            (!json_out).then(|| spinner(&format!("block propagation across {} nodes", o.nodes)));
        let dir = tempfile::tempdir()?;
        let r = super::bench_propagation::run(o.nodes.max(2), 30, dir.path()).await?;
        if let Some(pb) = pb {
            pb.finish_and_clear();
        }
        r
    };
    if !json_out {
        println!(
            "block propagation: {} blocks across {} local nodes (one process, loopback): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (aim: p99 under {AIM_PROPAGATION_P99_MS} ms: {})\n",
            propagation.blocks,
            propagation.nodes,
            propagation.p50_ms,
            propagation.p99_ms,
            propagation.max_ms,
            if propagation.p99_ms < AIM_PROPAGATION_P99_MS {
                "met"
            } else {
                "NOT met"
            }
        );
    }
    let tmp = tempfile::tempdir()?;
    let pb = spinner("starting two nodus nodes and a Hardhat node");
    let net = Testnet::start(2, &tmp.path().join("nodus")).await?;
    net.wait_connected(1, Duration::from_secs(60)).await?;
    let handle = |k: usize| {
        net.node(k)
            .service::<nodus_chain::ChainHandle>()
            .cloned()
            .ok_or_else(|| anyhow!("chain disabled"))
    };
    let (chain, miner) = (handle(0)?, handle(1)?);
    let nodus = Arc::new(Rpc {
        url: chain.json_rpc_url().ok_or_else(|| anyhow!("no JSON-RPC"))?,
        client: reqwest::Client::new(),
    });
    let hardhat = start_hardhat().await;
    pb.finish_and_clear();
    let keys = bench_intake::accounts()?;

    // The same signed deployment on both: the token lands at the same address. The
    // load's accounts are funded meanwhile; node B mines, node A is loaded.
    let deploy = hex0x(&deploy_raw()?);
    miner.set_mining(true, None, None);
    let h = nodus
        .call("eth_sendRawTransaction", json!([deploy]))
        .await?;
    let r = nodus.receipt(h.as_str().unwrap_or_default()).await?;
    bench_intake::fund(&nodus, &nodus, &keys, 0).await?;
    miner.stop_mining().await?;
    let token: Address = r["contractAddress"].as_str().unwrap_or_default().parse()?;

    let pb = spinner("loading nodus");
    let mut ours = measure(&nodus, calls, token, &keys)
        .await
        .context("nodus")?;
    let n = txs;
    let token_txs = token_transfers(token, txs, 1)?;
    let dir = tmp.path().join("blocks");
    std::fs::create_dir_all(&dir)?;
    let (build, import) =
        tokio::task::spawn_blocking(move || nodus_block(&token_txs, &dir)).await??;
    ours.block = build;
    pb.set_message("nodus end to end: node B mines what node A takes");
    miner.set_mining(true, None, None);
    let t = Instant::now();
    while !bench_intake::mined(&nodus, &ours.intake_last).await? {
        if t.elapsed() > Duration::from_secs(180) {
            let (a, b) = (chain.status().await?, miner.status().await?);
            return Err(anyhow!(
                "the intake run was not mined within 180 s: node A at height {} with {} pending, node B (mining: {}) at {} with {} pending, {} peers",
                a.height,
                a.mempool,
                b.mining.enabled,
                b.height,
                b.mempool,
                b.peers
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ours.end_to_end = bench_intake::end_to_end(&nodus, &nodus, &keys).await?;
    miner.stop_mining().await?;
    pb.finish_and_clear();

    let theirs = match hardhat {
        Ok((mut child, hh)) => {
            let pb = spinner("loading Hardhat");
            let r = async {
                let h = hh.call("eth_sendRawTransaction", json!([deploy])).await?;
                hh.receipt(h.as_str().unwrap_or_default()).await?;
                bench_intake::fund(&hh, &hh, &keys, 0).await?;
                hh.call("evm_setAutomine", json!([false])).await?;
                let mut side = measure(&hh, calls, token, &keys)
                    .await
                    .context("hardhat")?;
                while !bench_intake::mined(&hh, &side.intake_last).await? {
                    hh.call("evm_mine", json!([])).await?;
                }
                for r in token_transfers(token, txs, 1)? {
                    hh.call("eth_sendRawTransaction", json!([hex0x(&r)]))
                        .await?;
                }
                let t = Instant::now();
                hh.call("evm_mine", json!([])).await?;
                side.block = txs as f64 / t.elapsed().as_secs_f64();
                let mined = hh
                    .call("eth_getBlockByNumber", json!(["latest", false]))
                    .await?;
                let in_block = mined["transactions"].as_array().map(Vec::len).unwrap_or(0);
                if in_block != txs {
                    return Err(anyhow!(
                        "Hardhat mined {in_block} of {txs} transfers in its block"
                    ));
                }
                pb.set_message("Hardhat end to end (automine)");
                hh.call("evm_setAutomine", json!([true])).await?;
                side.end_to_end = bench_intake::end_to_end(&hh, &hh, &keys).await?;
                Ok::<_, anyhow::Error>(side)
            }
            .await;
            let _ = child.kill().await;
            pb.finish_and_clear();
            Some(r?)
        }
        Err(e) => {
            eprintln!("reference not measured: {e:#}");
            None
        }
    };
    net.shutdown().await;

    let ratio = |a: f64, b: Option<f64>| {
        b.filter(|b| *b > 0.0)
            .map(|b| format!("{:.2}", a / b))
            .unwrap_or("-".into())
    };
    let f = |x: f64| format!("{x:.0}");
    let t = theirs.as_ref();
    let lat = |s: (f64, f64, f64)| format!("{:.0} / {:.0} µs", s.1, s.2);
    let intake_txs = bench_intake::ACCOUNTS as u64 * bench_intake::INTAKE_PER_ACCOUNT;
    let e2e_txs = bench_intake::ACCOUNTS as u64 * bench_intake::E2E_PER_ACCOUNT;
    // What the default genesis lets blocks carry of 21,000-gas transfers, per second.
    let genesis = nodus_chain::GenesisConfig::default();
    let capacity =
        genesis.gas_limit as f64 / 21_000.0 / genesis.block_time_secs.max(1) as f64;
    let mut rows = vec![
        vec![
            "eth_getBalance, requests/s".into(),
            f(ours.balance.0),
            t.map(|t| f(t.balance.0)).unwrap_or("-".into()),
            ratio(ours.balance.0, t.map(|t| t.balance.0)),
        ],
        vec![
            "eth_getBalance p50 / p99".into(),
            lat(ours.balance),
            t.map(|t| lat(t.balance)).unwrap_or("-".into()),
            "".into(),
        ],
        vec![
            "eth_call ERC-20 balanceOf, requests/s".into(),
            f(ours.call.0),
            t.map(|t| f(t.call.0)).unwrap_or("-".into()),
            ratio(ours.call.0, t.map(|t| t.call.0)),
        ],
        vec![
            "eth_call p50 / p99".into(),
            lat(ours.call),
            t.map(|t| lat(t.call)).unwrap_or("-".into()),
            "".into(),
        ],
        vec![
            format!(
                "eth_sendRawTransaction, {} transfers from {} accounts, {} clients, tx/s",
                intake_txs,
                bench_intake::ACCOUNTS,
                bench_intake::CLIENTS
            ),
            f(ours.intake),
            t.map(|t| f(t.intake)).unwrap_or("-".into()),
            ratio(ours.intake, t.map(|t| t.intake)),
            format!("≥ {AIM_INTAKE:.0}: {:.2}x", ours.intake / AIM_INTAKE),
        ],
        vec![
            format!(
                "end to end, {e2e_txs} transfers: first send to last receipt, mined by another node (Hardhat: automine), tx/s"
            ),
            f(ours.end_to_end),
            t.map(|t| f(t.end_to_end)).unwrap_or("-".into()),
            ratio(ours.end_to_end, t.map(|t| t.end_to_end)),
            format!(
                "- (blocks: {:.0}M gas each, {}s apart once difficulty settles: {capacity:.0}/s)",
                genesis.gas_limit as f64 / 1e6,
                genesis.block_time_secs
            ),
        ],
        vec![
            format!("block of {n} ERC-20 transfers built, tx/s"),
            f(ours.block),
            t.map(|t| f(t.block)).unwrap_or("-".into()),
            ratio(ours.block, t.map(|t| t.block)),
        ],
        vec![
            format!("same block imported by another node, tx/s"),
            f(import),
            "-".into(),
            "-".into(),
        ],
    ];
    if json_out {
        ui::json(&json!({
            "import": imports,
            "propagation": { "nodes": propagation.nodes, "blocks": propagation.blocks, "p50_ms": propagation.p50_ms, "p99_ms": propagation.p99_ms, "max_ms": propagation.max_ms },
            "calls": calls, "txs": n,
            "nodus": { "balance": ours.balance, "call": ours.call, "intake": ours.intake, "end_to_end": ours.end_to_end, "block_build": ours.block, "block_import": import },
            "hardhat": t.map(|t| json!({ "balance": t.balance, "call": t.call, "intake": t.intake, "end_to_end": t.end_to_end, "block_mine": t.block })),
            "aims": { "intake": AIM_INTAKE, "end_to_end_capacity": capacity },
        }));
    } else {
        println!(
            "nodus bench chain: {calls} requests per read test ({CONCURRENCY} in flight), blocks of {n} transactions; Hardhat 2 node as reference, same client, same machine\n"
        );
        for r in rows.iter_mut().filter(|r| r.len() == 4) {
            r.push("-".into());
        }
        table(&["measure", "nodus", "hardhat", "nodus / hardhat", "aim"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the import-throughput matrix and prints it; returns it as JSON.
async fn import_section(o: &Options, json_out: bool) -> Result<Value> {
    use super::bench_import::{Kind, import_row, references};
    let pb = (!json_out).then(|| spinner("references: revm alone, libsecp256k1"));
    let n = o.import.max(SENDERS_MIN);
    let (evm, recover) = tokio::task::spawn_blocking(move || references(n)).await??;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    let mut rows = Vec::new();
    let mut out = Vec::new();
    for kind in [Kind::Value, Kind::Erc20] {
        for &accounts in &o.accounts {
            let count = if kind == Kind::Value { n } else { n / 2 };
            let pb = (!json_out).then(|| {
                spinner(&format!(
                    "importing {count} {} on a state of {accounts} accounts",
                    kind.name()
                ))
            });
            let dir = tempfile::tempdir()?;
            let path = dir.path().to_path_buf();
            let r = tokio::task::spawn_blocking(move || import_row(kind, accounts, count, &path))
                .await??;
            if let Some(pb) = pb {
                pb.finish_and_clear();
                // Large states take minutes each: each row is shown as it completes.
                println!(
                    "{count} {} on {accounts} accounts: miner {:.0} tx/s, verifier {:.0} tx/s, peak RSS {} MB",
                    kind.name(),
                    r.end_to_end,
                    r.verify,
                    mb(r.peak_rss)
                );
            }
            rows.push(vec![
                format!("{count} {}", kind.name()),
                accounts.to_string(),
                r.blocks.to_string(),
                format!("{:.0}", r.end_to_end),
                format!("{:.1}", r.gas_per_sec / 1e6),
                format!("{:.0}", r.verify),
                mb(r.peak_rss),
                if kind == Kind::Value {
                    format!("{:.2}", r.end_to_end / AIM_IMPORT)
                } else {
                    "".into()
                },
            ]);
            out.push(json!({
                "kind": kind.name(), "accounts": accounts, "txs": count, "blocks": r.blocks,
                "end_to_end_tps": r.end_to_end, "gas_per_sec": r.gas_per_sec, "verify_tps": r.verify,
                "peak_rss_bytes": r.peak_rss, "rss_before_bytes": r.rss_before,
            }));
        }
    }
    if !json_out {
        println!(
            "import throughput: signed transactions through mempool (decode, sender recovery, checks), block building (execution, state root), seal and commit to disk on the miner; the same blocks then imported with full verification by a second node. Both nodes keep their state on disk (redb, 32 MiB cache each); peak RSS is the whole process's while both import\n"
        );
        table(
            &[
                "transactions",
                "state (accounts)",
                "blocks",
                "miner tx/s",
                "Mgas/s",
                "verifier tx/s",
                "peak RSS MB",
                "miner / aim 10,000",
            ],
            &rows,
        );
        println!(
            "\nreferences measured in this run, one core: revm alone (in-memory, no roots, no disk) {evm:.0} value transfers/s; libsecp256k1 sender recovery {recover:.0}/s\n"
        );
    }
    Ok(json!({ "rows": out, "revm_alone_tps": evm, "recover_per_sec": recover }))
}

fn mb(bytes: Option<u64>) -> String {
    bytes
        .map(|b| format!("{:.0}", b as f64 / 1e6))
        .unwrap_or_else(|| "-".into())
}

/// Smallest import run (one transaction per sender).
const SENDERS_MIN: usize = 200;
