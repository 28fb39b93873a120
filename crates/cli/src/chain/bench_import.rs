//! `nodus bench chain`, import throughput: signed transactions through the whole path a
//! miner takes them (decode, sender recovery and checks into the mempool; selection;
//! execution; state root; seal; commit to disk), and the path every other node takes
//! (the same blocks imported with full verification: senders recovered in parallel,
//! executed, roots checked, committed). Value transfers and ERC-20 transfers, on states
//! of 10 thousand, 100 thousand and 1 million accounts. Beside them, measured in the same
//! run: revm alone executing the same transfers in memory, and libsecp256k1 recovering
//! their senders on one core.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Instant;

use anyhow::{Result, anyhow};
use nodus_chain::chain::{Chain, Imported, StateOptions};
use nodus_chain::mempool::{AccountView, Mempool};
use nodus_chain::primitives::{Address, U256, keccak256};
use nodus_chain::spec::DEV_KEYS;
use nodus_chain::store::ChainBlock;
use nodus_chain::tx::RecoveredTx;
use nodus_chain::wallet::{Key, eip1559};
use nodus_chain::{ChainSpec, miner};

use super::token::{TOKEN_BYTECODE, call_data, word};

const GWEI: u128 = 1_000_000_000;
/// Senders: the pool keeps at most 64 transactions per sender.
const SENDERS: usize = 200;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Value,
    Erc20,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Value => "value transfers",
            Kind::Erc20 => "ERC-20 transfers",
        }
    }
}

pub struct ImportRow {
    /// Mempool, block, execution, root, seal and commit on the miner.
    pub end_to_end: f64,
    pub gas_per_sec: f64,
    /// The same blocks imported with full verification by another node.
    pub verify: f64,
    pub blocks: usize,
    /// The process's peak resident memory while the two nodes imported (both chains
    /// open, their states on disk), and its resident memory before.
    pub peak_rss: Option<u64>,
    pub rss_before: Option<u64>,
}

fn sender(i: usize) -> Key {
    let seed = keccak256(format!("nodus bench sender {i}"));
    Key::from_bytes(seed.0).unwrap_or_else(|_| Key::random())
}

fn spec(senders: &[Key]) -> Result<ChainSpec> {
    let genesis = nodus_chain::GenesisConfig {
        initial_difficulty: 1,
        ..Default::default()
    };
    let mut spec = ChainSpec::from_config(&genesis)?;
    let rich = U256::from(10u64).pow(U256::from(24));
    for k in senders {
        spec.alloc.push((k.address, rich));
    }
    Ok(spec)
}

/// The rest of a state of `accounts` accounts: accounts that hold a little ether,
/// generated while the genesis is written (never all in memory).
fn filler(accounts: usize, spec: &ChainSpec) -> impl Iterator<Item = (Address, U256)> {
    (0..accounts.saturating_sub(spec.alloc.len())).map(|i| {
        let a = Address::from_slice(&keccak256((i as u64).to_be_bytes())[12..]);
        (a, U256::from(1_000_000_000u64))
    })
}

fn open(spec: &ChainSpec, accounts: usize, path: &std::path::Path) -> Result<Chain> {
    Ok(Chain::open_with(
        spec.clone(),
        path,
        StateOptions::default(),
        &mut filler(accounts, spec),
    )?)
}

/// This process's resident memory and peak resident memory since the last
/// [`reset_peak_rss`], in bytes (Linux).
fn rss() -> (Option<u64>, Option<u64>) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn reset_peak_rss() {
    // Memory the allocator kept from earlier work (the genesis build, earlier rows) goes
    // back to the system first, so the figures are what the two nodes hold.
    crate::alloc::release_free_memory();
    // Writing 5 resets VmHWM to the current RSS (Linux 4.0+); without it the peak
    // includes whatever came before.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

struct Clock(u64);
impl Clock {
    fn tick(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
}

fn seal_and_commit(
    chain: &mut Chain,
    txs: Vec<RecoveredTx>,
    clock: &mut Clock,
) -> Result<ChainBlock> {
    let now = clock.tick();
    let t = chain.template(Address::repeat_byte(0xb0), txs, now)?;
    let sealed = miner::seal_own(t, 1, 0, &AtomicBool::new(false), &AtomicU64::new(0))
        .ok_or_else(|| anyhow!("no seal"))?;
    let block = sealed.block.clone();
    match chain.commit_own(sealed, now)? {
        Imported::Head(_) => Ok(block),
        other => Err(anyhow!("own block not taken: {other:?}")),
    }
}

fn tx(key: &Key, nonce: u64, to: Address, data: Vec<u8>, gas: u64) -> Vec<u8> {
    let value = U256::from(if data.is_empty() { 1u64 } else { 0 });
    key.sign_raw(eip1559(
        31337,
        nonce,
        Some(to),
        value,
        data.into(),
        gas,
        100 * GWEI,
        GWEI,
    ))
}

/// Everything before the timed part: a chain (and a verifier's chain) at genesis with
/// `accounts` accounts, for ERC-20 a token whose balance every sender holds, and the
/// signed transactions.
fn prepare(
    kind: Kind,
    accounts: usize,
    n: usize,
    dir: &std::path::Path,
    clock: &mut Clock,
) -> Result<(Chain, Chain, Vec<Vec<u8>>)> {
    let senders: Vec<Key> = (0..SENDERS).map(sender).collect();
    let spec = spec(&senders)?;
    let mut chain = open(&spec, accounts, &dir.join("miner.redb"))?;
    let mut verifier = open(&spec, accounts, &dir.join("verifier.redb"))?;
    let target = match kind {
        Kind::Value => Address::repeat_byte(0x55),
        Kind::Erc20 => {
            // Deploy, then hand every sender tokens (untimed).
            let owner = Key::from_hex(DEV_KEYS[0])?;
            let mut code = hex::decode(TOKEN_BYTECODE.trim())?;
            code.extend_from_slice(&U256::from(10u64).pow(U256::from(30)).to_be_bytes::<32>());
            let deploy = owner.sign_raw(eip1559(
                31337,
                0,
                None,
                U256::ZERO,
                code.into(),
                2_000_000,
                100 * GWEI,
                GWEI,
            ));
            let token = owner.address.create(0);
            let mut setup = vec![RecoveredTx::decode(&deploy)?];
            for (i, k) in senders.iter().enumerate() {
                let data = call_data(
                    "transfer(address,uint256)",
                    &[
                        word(k.address.as_slice()),
                        U256::from(10u64).pow(U256::from(24)).to_be_bytes::<32>(),
                    ],
                );
                setup.push(RecoveredTx::decode(&tx(
                    &owner,
                    1 + i as u64,
                    token,
                    data,
                    80_000,
                ))?);
            }
            for part in setup.chunks(400) {
                let b = seal_and_commit(&mut chain, part.to_vec(), clock)?;
                verifier.import(b, clock.0)?;
            }
            token
        }
    };
    let raws = (0..n)
        .map(|i| {
            let k = &senders[i % SENDERS];
            let nonce = (i / SENDERS) as u64;
            match kind {
                Kind::Value => tx(k, nonce, target, vec![], 21_000),
                Kind::Erc20 => {
                    let to = Address::left_padding_from(&(i as u64 + 7).to_be_bytes());
                    let data = call_data(
                        "transfer(address,uint256)",
                        &[word(to.as_slice()), U256::from(3u64).to_be_bytes::<32>()],
                    );
                    tx(k, nonce, target, data, 80_000)
                }
            }
        })
        .collect();
    Ok((chain, verifier, raws))
}

pub fn import_row(
    kind: Kind,
    accounts: usize,
    n: usize,
    dir: &std::path::Path,
) -> Result<ImportRow> {
    let mut clock = Clock(1_000);
    let (mut chain, mut verifier, raws) = prepare(kind, accounts, n, dir, &mut clock)?;
    let mut pool = Mempool::new(n + 1, 64);
    let mut blocks = Vec::new();
    reset_peak_rss();
    let (rss_before, _) = rss();
    let started = Instant::now();
    for raw in &raws {
        let t = RecoveredTx::decode(raw)?;
        t.check_static(chain.spec.chain_id, chain.spec.gas_limit)?;
        let acct = chain
            .state()
            .account_or_log(&t.sender)
            .unwrap_or_default();
        pool.add(
            t,
            &AccountView {
                nonce: acct.nonce,
                balance: acct.balance,
            },
        )?;
    }
    let mut gas = 0u64;
    while !pool.is_empty() {
        let base_fee = chain.child_base_fee(chain.head());
        let state = chain.state();
        let picked = pool.select(base_fee, |a| state.nonce(a), 4096);
        if picked.is_empty() {
            return Err(anyhow!(
                "{} transactions left that no block takes",
                pool.len()
            ));
        }
        let block = seal_and_commit(&mut chain, picked, &mut clock)?;
        gas += block.header.gas_used;
        for t in &block.body.transactions {
            pool.remove(t.tx_hash());
        }
        blocks.push(block);
    }
    let end_to_end = started.elapsed().as_secs_f64();
    let count = blocks.len();
    let started = Instant::now();
    for b in blocks {
        verifier.import(b, clock.0)?;
    }
    let verify = started.elapsed().as_secs_f64();
    let (_, peak_rss) = rss();
    if verifier.head_hash() != chain.head_hash() {
        return Err(anyhow!("the verifier ended on another head"));
    }
    Ok(ImportRow {
        end_to_end: n as f64 / end_to_end,
        gas_per_sec: gas as f64 / end_to_end,
        verify: n as f64 / verify,
        blocks: count,
        peak_rss,
        rss_before,
    })
}

/// References measured in the same run: (revm alone, transfers/s on one core;
/// libsecp256k1 sender recovery, signatures/s on one core).
pub fn references(n: usize) -> Result<(f64, f64)> {
    use revm_alone::run;
    let senders: Vec<Key> = (0..SENDERS).map(sender).collect();
    let raws: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            tx(
                &senders[i % SENDERS],
                (i / SENDERS) as u64,
                Address::repeat_byte(0x55),
                vec![],
                21_000,
            )
        })
        .collect();
    let txs: Vec<RecoveredTx> = raws
        .iter()
        .map(|r| RecoveredTx::decode(r))
        .collect::<Result<_, _>>()?;
    let evm = run(&txs)?;
    let t = Instant::now();
    for r in &raws {
        std::hint::black_box(RecoveredTx::decode(r)?);
    }
    let recover = n as f64 / t.elapsed().as_secs_f64();
    Ok((evm, recover))
}

mod revm_alone {
    //! revm by itself: the transfers executed on an in-memory database, nothing else.
    use std::time::Instant;

    use anyhow::Result;
    use nodus_chain::primitives::U256;
    use nodus_chain::revm::context::{BlockEnv, CfgEnv};
    use nodus_chain::revm::database::{CacheDB, EmptyDB};
    use nodus_chain::revm::state::AccountInfo;
    use nodus_chain::revm::{Context, ExecuteCommitEvm, MainBuilder, MainContext};
    use nodus_chain::tx::RecoveredTx;

    pub fn run(txs: &[RecoveredTx]) -> Result<f64> {
        let mut db = CacheDB::new(EmptyDB::default());
        for t in txs {
            db.insert_account_info(
                t.sender,
                AccountInfo {
                    balance: U256::from(10u64).pow(U256::from(24)),
                    ..Default::default()
                },
            );
        }
        let mut cfg = CfgEnv::new_with_spec(nodus_chain::exec::SPEC);
        cfg.chain_id = 31337;
        let block = BlockEnv {
            basefee: 1_000_000_000,
            gas_limit: u64::MAX,
            ..Default::default()
        };
        let mut evm = Context::mainnet()
            .with_db(db)
            .with_cfg(cfg)
            .with_block(block)
            .build_mainnet();
        let envs: Vec<_> = txs.iter().map(|t| t.to_env()).collect();
        let started = Instant::now();
        for env in envs {
            evm.transact_commit(env)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok(txs.len() as f64 / started.elapsed().as_secs_f64())
    }
}
