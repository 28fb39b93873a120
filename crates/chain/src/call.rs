//! eth_call and eth_estimateGas: a call that changes nothing, run on a snapshot of the
//! head ([`CallSnapshot`]) on a worker thread, within a [`Budget`].
//!
//! Invariants:
//! - A call never runs on the chain's thread, so block import never waits for one.
//! - A call stops (between two instructions, or between two runs of an estimate) once its
//!   budget's deadline passes or its caller has gone; it then reports
//!   [`CallOutcome::aborted`], never a result.
//! - Halts are named as geth names them ("out of gas", "invalid opcode: INVALID", ...);
//!   only a REVERT is "execution reverted".

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, Bytes, TxKind, U256};
use revm::context::TxEnv;
use revm::context_interface::result::{ExecutionResult, HaltReason};
use revm::interpreter::interpreter::EthInterpreter;
use revm::interpreter::{InstructionResult, Interpreter};
use revm::{Context, InspectEvm, Inspector, MainBuilder, MainContext};

use crate::exec::{BlockInfo, SPEC, TX_GAS_CAP, cfg};
use crate::state::Overlay;
use crate::statedb::StateAt;

/// A call as eth_call and eth_estimateGas take it.
#[derive(Clone, Debug, Default)]
pub struct CallRequest {
    pub from: Option<Address>,
    pub to: Option<Address>,
    pub gas: Option<u64>,
    pub gas_price: Option<u128>,
    pub value: Option<U256>,
    pub data: Bytes,
}

/// Outcome of a call that changes nothing.
#[derive(Clone, Debug, Default)]
pub struct CallOutcome {
    pub success: bool,
    pub gas_used: u64,
    pub output: Bytes,
    /// Set when the call could not even start (for example: not enough balance).
    pub error: Option<String>,
    /// Why execution stopped other than by RETURN, STOP or REVERT, as geth says it.
    pub halted: Option<String>,
    /// Set when the budget ran out or the caller went away: the call did not finish.
    pub aborted: Option<String>,
}

/// When a call must give up: a deadline, and a flag its caller sets when it goes away.
#[derive(Clone, Debug)]
pub struct Budget {
    pub deadline: Instant,
    /// What the deadline allowed, for the message.
    pub allowed: Duration,
    pub cancelled: Arc<AtomicBool>,
}

impl Budget {
    pub fn new(allowed: Duration) -> Self {
        Budget {
            deadline: Instant::now() + allowed,
            allowed,
            cancelled: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Why the call must stop now, if it must.
    fn exhausted(&self) -> Option<String> {
        if self.cancelled.load(Ordering::Relaxed) {
            Some("execution aborted: the caller went away".into())
        } else if Instant::now() >= self.deadline {
            Some(format!("execution aborted (timeout = {:?})", self.allowed))
        } else {
            None
        }
    }
}

/// The head (or a recent block) as a call sees it, detached from the chain: a snapshot
/// of the committed state, the hashes of the last 256 blocks and the next block's fields.
#[derive(Clone)]
pub struct CallSnapshot {
    pub chain_id: u64,
    pub state: StateAt,
    /// Number of `hashes[0]`.
    pub first: u64,
    pub hashes: Vec<B256>,
    pub block: BlockInfo,
}

impl CallSnapshot {
    fn hash(&self, n: u64) -> B256 {
        n.checked_sub(self.first)
            .and_then(|i| self.hashes.get(i as usize))
            .copied()
            .unwrap_or_default()
    }

    fn gas_cap(&self, req: &CallRequest) -> u64 {
        req.gas
            .unwrap_or(TX_GAS_CAP)
            .min(self.block.gas_limit)
            .min(TX_GAS_CAP)
    }

    /// Runs `req` on the snapshot without changing it.
    pub fn call(&self, req: &CallRequest, budget: &Budget) -> CallOutcome {
        if let Some(why) = budget.exhausted() {
            return CallOutcome::aborted(why);
        }
        let hashes = |n: u64| self.hash(n);
        let overlay = Overlay::new(&self.state, &hashes, SPEC);
        let mut c = cfg(self.chain_id);
        c.disable_nonce_check = true;
        let price = req.gas_price.unwrap_or(0);
        // A call without a gas price runs at base fee 0, as geth's eth_call does.
        let mut b = self.block.env();
        if price == 0 {
            b.basefee = 0;
        }
        let mut evm = Context::mainnet()
            .with_db(overlay)
            .with_cfg(c)
            .with_block(b)
            .build_mainnet_with_inspector(Watchdog {
                budget: budget.clone(),
                steps: 0,
                stopped: None,
            });
        let tx = TxEnv {
            tx_type: if price == 0 { 0 } else { 2 },
            caller: req.from.unwrap_or_default(),
            gas_limit: self.gas_cap(req),
            gas_price: price,
            gas_priority_fee: if price == 0 { None } else { Some(0) },
            kind: match req.to {
                Some(a) => TxKind::Call(a),
                None => TxKind::Create,
            },
            value: req.value.unwrap_or_default(),
            data: req.data.clone(),
            chain_id: Some(self.chain_id),
            ..Default::default()
        };
        let result = evm.inspect_tx(tx);
        if let Some(why) = evm.inspector.stopped.take() {
            return CallOutcome::aborted(why);
        }
        match result {
            Ok(r) => {
                let (output, halted) = match &r.result {
                    ExecutionResult::Success { output, .. } => (output.data().clone(), None),
                    ExecutionResult::Revert { output, .. } => (output.clone(), None),
                    ExecutionResult::Halt { reason, .. } => (Bytes::new(), Some(halt(reason))),
                };
                CallOutcome {
                    success: r.result.is_success(),
                    gas_used: r.result.tx_gas_used(),
                    output,
                    halted,
                    ..Default::default()
                }
            }
            Err(e) => CallOutcome {
                error: Some(e.to_string()),
                ..Default::default()
            },
        }
    }

    /// The least gas limit with which the call succeeds (binary search, as geth does).
    pub fn estimate_gas(&self, req: &CallRequest, budget: &Budget) -> Result<u64, CallOutcome> {
        let cap = self.gas_cap(req);
        let at = |gas: u64| {
            let out = self.call(
                &CallRequest {
                    gas: Some(gas),
                    ..req.clone()
                },
                budget,
            );
            match out.aborted {
                Some(_) => Err(out),
                None => Ok(out),
            }
        };
        let first = at(cap)?;
        if !first.success {
            if first.halted.as_deref() == Some("out of gas") {
                return Err(CallOutcome {
                    halted: Some(format!("gas required exceeds allowance ({cap})")),
                    ..first
                });
            }
            return Err(first);
        }
        let (mut lo, mut hi) = (first.gas_used.saturating_sub(1), cap);
        // Most calls succeed with exactly the gas they used; try that before searching.
        if at(first.gas_used)?.success {
            return Ok(first.gas_used);
        }
        while lo + 1 < hi {
            let mid = lo + (hi - lo) / 2;
            if at(mid)?.success {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Ok(hi)
    }
}

impl CallOutcome {
    fn aborted(why: String) -> Self {
        CallOutcome {
            aborted: Some(why),
            ..Default::default()
        }
    }
}

/// Stops a call whose budget ran out: it looks every few thousand instructions, and once
/// it has stopped one frame it stops every frame at its next instruction.
struct Watchdog {
    budget: Budget,
    steps: u32,
    stopped: Option<String>,
}

impl<CTX> Inspector<CTX, EthInterpreter> for Watchdog {
    fn step(&mut self, interp: &mut Interpreter<EthInterpreter>, _: &mut CTX) {
        self.steps = self.steps.wrapping_add(1);
        if self.stopped.is_none() && self.steps.is_multiple_of(4096) {
            self.stopped = self.budget.exhausted();
        }
        if self.stopped.is_some() {
            interp.halt(InstructionResult::OutOfGas);
        }
    }
}

/// A halt as geth reports it.
fn halt(reason: &HaltReason) -> String {
    match reason {
        HaltReason::OutOfGas(_) => "out of gas".into(),
        HaltReason::OpcodeNotFound => "invalid opcode: opcode not defined".into(),
        HaltReason::InvalidFEOpcode => "invalid opcode: INVALID".into(),
        HaltReason::InvalidJump => "invalid jump destination".into(),
        HaltReason::NotActivated => "invalid opcode: not active in this fork".into(),
        HaltReason::StackUnderflow => "stack underflow".into(),
        HaltReason::StackOverflow => "stack limit reached 1024".into(),
        HaltReason::OutOfOffset => "return data out of bounds".into(),
        HaltReason::CreateCollision => "contract address collision".into(),
        HaltReason::NonceOverflow => "nonce uint64 overflow".into(),
        HaltReason::CreateContractSizeLimit => "max code size exceeded".into(),
        HaltReason::CreateContractStartingWithEF => "invalid code: must not begin with 0xef".into(),
        HaltReason::CreateInitCodeSizeLimit => "max initcode size exceeded".into(),
        HaltReason::OverflowPayment => "gas uint64 overflow".into(),
        HaltReason::StateChangeDuringStaticCall | HaltReason::CallNotAllowedInsideStatic => {
            "write protection".into()
        }
        HaltReason::OutOfFunds => "insufficient balance for transfer".into(),
        HaltReason::CallTooDeep => "max call depth exceeded".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> CallSnapshot {
        CallSnapshot {
            chain_id: 31337,
            state: crate::statedb::empty_for_tests().at(None),
            first: 0,
            hashes: vec![B256::repeat_byte(1)],
            block: BlockInfo {
                number: 1,
                beneficiary: Address::ZERO,
                timestamp: 1,
                gas_limit: 30_000_000,
                base_fee: 0,
                prevrandao: B256::ZERO,
            },
        }
    }

    /// Creation code that jumps to itself until its gas runs out.
    fn endless() -> CallRequest {
        CallRequest {
            data: Bytes::from_static(&[0x5b, 0x60, 0x00, 0x56]),
            ..Default::default()
        }
    }

    fn creation(code: &'static [u8]) -> CallRequest {
        CallRequest {
            data: Bytes::from_static(code),
            ..Default::default()
        }
    }

    #[test]
    fn halts_are_named_as_geth_names_them() {
        let s = snapshot();
        let budget = Budget::new(Duration::from_secs(60));
        let out = s.call(&endless(), &budget);
        assert_eq!(out.halted.as_deref(), Some("out of gas"));
        assert!(out.aborted.is_none());
        let out = s.call(&creation(&[0xfe]), &budget);
        assert_eq!(out.halted.as_deref(), Some("invalid opcode: INVALID"));
        let out = s.call(&creation(&[0x60, 0x05, 0x56]), &budget);
        assert_eq!(out.halted.as_deref(), Some("invalid jump destination"));
        // A revert is not a halt: its data is the answer.
        let out = s.call(&creation(&[0x60, 0x00, 0x60, 0x00, 0xfd]), &budget);
        assert!(!out.success && out.halted.is_none() && out.aborted.is_none());
        let est = s.estimate_gas(&endless(), &budget).unwrap_err();
        assert_eq!(
            est.halted.as_deref(),
            Some("gas required exceeds allowance (16777216)")
        );
    }

    #[test]
    fn a_call_past_its_deadline_stops_midway() {
        let s = snapshot();
        let budget = Budget {
            deadline: Instant::now(),
            allowed: Duration::ZERO,
            cancelled: Arc::new(AtomicBool::new(false)),
        };
        let out = s.call(&endless(), &budget);
        assert_eq!(
            out.aborted.as_deref(),
            Some("execution aborted (timeout = 0ns)")
        );
        assert!(out.halted.is_none() && !out.success);
        assert!(
            s.estimate_gas(&endless(), &budget)
                .unwrap_err()
                .aborted
                .is_some()
        );
    }

    #[test]
    fn a_call_whose_caller_went_away_stops() {
        let s = snapshot();
        let budget = Budget::new(Duration::from_secs(60));
        budget.cancelled.store(true, Ordering::Relaxed);
        let out = s.call(&endless(), &budget);
        assert_eq!(
            out.aborted.as_deref(),
            Some("execution aborted: the caller went away")
        );
    }

    #[test]
    fn blockhash_sees_the_snapshots_recent_blocks() {
        let s = snapshot();
        // BLOCKHASH(0), returned as the creation's 32 bytes.
        let out = s.call(
            &creation(&[
                0x60, 0x00, 0x40, 0x60, 0x00, 0x52, 0x60, 0x20, 0x60, 0x00, 0xf3,
            ]),
            &Budget::new(Duration::from_secs(60)),
        );
        assert!(out.success, "{out:?}");
        assert_eq!(out.output.as_ref(), B256::repeat_byte(1).as_slice());
    }
}
