//! Transactions as the chain takes them: decoded from EIP-2718 bytes, sender recovered
//! (libsecp256k1), and checked for what does not depend on state.

use std::sync::Arc;

use alloy_consensus::transaction::Transaction as _;
use alloy_consensus::{TxEnvelope, TxType};
use alloy_eips::eip2718::{Decodable2718, Encodable2718};
use alloy_primitives::{Address, B256, Bytes, TxKind};
use revm::context::TxEnv;

use crate::error::TxError;

/// Largest transaction accepted, encoded (as geth's 128 KiB).
pub const MAX_TX_BYTES: usize = 128 * 1024;

/// A transaction with its sender recovered and its hash computed once.
#[derive(Clone, Debug)]
pub struct RecoveredTx {
    pub tx: Arc<TxEnvelope>,
    pub sender: Address,
    pub hash: B256,
}

impl RecoveredTx {
    /// Decodes and recovers. Refuses types this chain does not run (blobs, set-code).
    pub fn decode(raw: &[u8]) -> Result<RecoveredTx, TxError> {
        if raw.len() > MAX_TX_BYTES {
            return Err(TxError::Oversized(raw.len()));
        }
        let tx = TxEnvelope::decode_2718_exact(raw)?;
        RecoveredTx::recover(tx)
    }

    pub fn recover(tx: TxEnvelope) -> Result<RecoveredTx, TxError> {
        if !matches!(
            tx.tx_type(),
            TxType::Legacy | TxType::Eip2930 | TxType::Eip1559
        ) {
            return Err(TxError::Type);
        }
        let sender = tx
            .signature()
            .recover_address_from_prehash(&tx.signature_hash())
            .map_err(|e| TxError::Signature(Arc::new(e)))?;
        let hash = *tx.tx_hash();
        Ok(RecoveredTx {
            tx: Arc::new(tx),
            sender,
            hash,
        })
    }

    pub fn encoded(&self) -> Vec<u8> {
        self.tx.encoded_2718()
    }

    pub fn nonce(&self) -> u64 {
        self.tx.nonce()
    }

    /// Checks that need no state: chain id, fee fields, gas.
    pub fn check_static(&self, chain_id: u64, block_gas_limit: u64) -> Result<(), TxError> {
        match self.tx.chain_id() {
            None => return Err(TxError::Unprotected),
            Some(c) if c != chain_id => {
                return Err(TxError::ChainId {
                    have: Some(c),
                    want: chain_id,
                });
            }
            Some(_) => {}
        }
        if let Some(tip) = self.tx.max_priority_fee_per_gas()
            && tip > self.tx.max_fee_per_gas()
        {
            return Err(TxError::TipAboveFeeCap);
        }
        let gas = self.tx.gas_limit();
        if gas > block_gas_limit {
            return Err(TxError::GasLimit {
                gas,
                limit: block_gas_limit,
            });
        }
        if gas > crate::exec::TX_GAS_CAP {
            return Err(TxError::GasCap {
                gas,
                cap: crate::exec::TX_GAS_CAP,
            });
        }
        let needed = intrinsic_gas(&self.tx);
        if self.tx.gas_limit() < needed {
            return Err(TxError::IntrinsicGas {
                gas: self.tx.gas_limit(),
                needed,
            });
        }
        Ok(())
    }

    /// The most this transaction can cost its sender: gas limit × fee cap + value.
    pub fn max_cost(&self) -> alloy_primitives::U256 {
        use alloy_primitives::U256;
        U256::from(self.tx.gas_limit())
            .saturating_mul(U256::from(self.tx.max_fee_per_gas()))
            .saturating_add(self.tx.value())
    }

    /// The tip per gas a miner gets at `base_fee` (None if the fee cap is below it).
    pub fn tip_at(&self, base_fee: u64) -> Option<u128> {
        self.tx.effective_tip_per_gas(base_fee)
    }

    /// The transaction as revm executes it.
    pub fn to_env(&self) -> TxEnv {
        let t = &self.tx;
        TxEnv {
            tx_type: t.tx_type() as u8,
            caller: self.sender,
            gas_limit: t.gas_limit(),
            gas_price: t.max_fee_per_gas(),
            gas_priority_fee: t.max_priority_fee_per_gas(),
            kind: t.kind(),
            value: t.value(),
            data: t.input().clone(),
            nonce: t.nonce(),
            chain_id: t.chain_id(),
            access_list: t.access_list().cloned().unwrap_or_default(),
            ..Default::default()
        }
    }
}

/// Gas charged before execution (Prague rules without the calldata floor).
pub fn intrinsic_gas(tx: &TxEnvelope) -> u64 {
    let data: &Bytes = tx.input();
    let zeros = data.iter().filter(|b| **b == 0).count() as u64;
    let nonzeros = data.len() as u64 - zeros;
    let mut gas = 21_000 + zeros * 4 + nonzeros * 16;
    if matches!(tx.kind(), TxKind::Create) {
        gas += 32_000 + 2 * (data.len() as u64).div_ceil(32);
    }
    if let Some(list) = tx.access_list() {
        for item in list.iter() {
            gas += 2_400 + 1_900 * item.storage_keys.len() as u64;
        }
    }
    gas
}
