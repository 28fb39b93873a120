//! Block execution on revm: transactions run in order on an [`Overlay`] of the committed
//! state; the result is the receipts, the gas used and the state diff of the block.

use alloy_consensus::{Receipt, ReceiptEnvelope, ReceiptWithBloom, TxReceipt};
use alloy_primitives::{Address, B256, Bloom, Log, U256};
use revm::context::{BlockEnv, CfgEnv};
use revm::context_interface::block::BlobExcessGasAndPrice;
use revm::context_interface::result::ExecutionResult;
use revm::primitives::hardfork::SpecId;
use revm::{Context, ExecuteCommitEvm, MainBuilder, MainContext};

use crate::state::{Overlay, StateDiff, StateRead};
use crate::tx::RecoveredTx;

/// The EVM rules contracts run under: Osaka, so code from any current solc runs.
pub const SPEC: SpecId = SpecId::OSAKA;

/// Most gas one transaction may use (EIP-7825, part of Osaka).
pub const TX_GAS_CAP: u64 = 1 << 24;

/// The block fields execution depends on.
#[derive(Clone, Debug)]
pub struct BlockInfo {
    pub number: u64,
    pub beneficiary: Address,
    pub timestamp: u64,
    pub gas_limit: u64,
    pub base_fee: u64,
    pub prevrandao: B256,
}

impl BlockInfo {
    pub(crate) fn env(&self) -> BlockEnv {
        BlockEnv {
            number: U256::from(self.number),
            beneficiary: self.beneficiary,
            timestamp: U256::from(self.timestamp),
            gas_limit: self.gas_limit,
            basefee: self.base_fee,
            difficulty: U256::ZERO,
            prevrandao: Some(self.prevrandao),
            blob_excess_gas_and_price: Some(BlobExcessGasAndPrice::new(0, 1)),
            ..Default::default()
        }
    }
}

/// What executing a block produced.
#[derive(Debug, Default)]
pub struct Executed {
    pub receipts: Vec<ReceiptEnvelope>,
    pub gas_used: u64,
    pub diff: StateDiff,
    /// The transactions in the block (when building, those that fit and were valid).
    pub txs: Vec<RecoveredTx>,
    /// When building: transactions left out, with the reason.
    pub dropped: Vec<(B256, String)>,
}

impl Executed {
    pub fn bloom(&self) -> Bloom {
        let mut b = Bloom::default();
        for r in &self.receipts {
            b.accrue_bloom(&r.bloom());
        }
        b
    }
}

/// Whether an invalid transaction fails the block (import) or is left out (building).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Import,
    Build,
}

pub(crate) fn cfg(chain_id: u64) -> CfgEnv {
    let mut c = CfgEnv::new_with_spec(SPEC);
    c.chain_id = chain_id;
    c
}

/// How one transaction failed to execute.
pub type EvmError = revm::context_interface::result::EVMError<crate::state::StateError>;

/// Why a block's transactions do not execute.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("transaction {index}: {source}")]
    Tx {
        index: usize,
        #[source]
        source: Box<EvmError>,
    },
    #[error("block gas used exceeds the gas limit")]
    GasOverLimit,
    /// The state could not be read: not the block's fault.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// Executes `txs` in order on top of `base`, then pays `reward` to the beneficiary.
/// In [`Mode::Import`] the first invalid transaction fails the whole block (its index
/// and reason are returned).
pub fn execute_block(
    chain_id: u64,
    base: &dyn StateRead,
    hashes: &dyn Fn(u64) -> B256,
    block: &BlockInfo,
    txs: Vec<RecoveredTx>,
    reward: U256,
    mode: Mode,
) -> Result<Executed, ExecError> {
    let overlay = Overlay::new(base, hashes, SPEC);
    let mut evm = Context::mainnet()
        .with_db(overlay)
        .with_cfg(cfg(chain_id))
        .with_block(block.env())
        .build_mainnet();
    let mut out = Executed::default();
    let mut skipped_senders = std::collections::HashSet::new();
    for (i, tx) in txs.into_iter().enumerate() {
        if mode == Mode::Build {
            if skipped_senders.contains(&tx.sender) {
                out.dropped.push((
                    tx.hash,
                    "an earlier transaction of its sender was left out".into(),
                ));
                continue;
            }
            if out.gas_used + alloy_consensus::Transaction::gas_limit(tx.tx.as_ref())
                > block.gas_limit
            {
                skipped_senders.insert(tx.sender);
                continue;
            }
        }
        match evm.transact_commit(tx.to_env()) {
            Err(revm::context_interface::result::EVMError::Database(e)) => {
                return Err(ExecError::State(e));
            }
            Ok(result) => {
                out.gas_used += result.tx_gas_used();
                out.receipts.push(receipt(&tx, &result, out.gas_used));
                out.txs.push(tx);
            }
            Err(e) => match mode {
                Mode::Import => {
                    return Err(ExecError::Tx {
                        index: i,
                        source: Box::new(e),
                    });
                }
                Mode::Build => {
                    skipped_senders.insert(tx.sender);
                    out.dropped.push((tx.hash, e.to_string()));
                }
            },
        }
    }
    if out.gas_used > block.gas_limit {
        return Err(ExecError::GasOverLimit);
    }
    let mut overlay = evm.ctx.journaled_state.database;
    overlay.credit(block.beneficiary, reward)?;
    out.diff = overlay.into_diff()?;
    Ok(out)
}

fn receipt(tx: &RecoveredTx, result: &ExecutionResult, cumulative: u64) -> ReceiptEnvelope {
    let logs: Vec<Log> = result.logs().to_vec();
    let r = Receipt {
        status: result.is_success().into(),
        cumulative_gas_used: cumulative,
        logs,
    };
    let with_bloom = ReceiptWithBloom {
        logs_bloom: r.bloom_slow(),
        receipt: r,
    };
    ReceiptEnvelope::from_typed(tx.tx.tx_type(), with_bloom)
}
