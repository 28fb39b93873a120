//! The chain's constants and its genesis block, from `[chain.genesis]` in config.toml.

use crate::config::GenesisConfig;
use alloy_consensus::{EMPTY_OMMER_ROOT_HASH, Header};
use alloy_primitives::{Address, B64, B256, Bytes, U256};
use alloy_trie::EMPTY_ROOT_HASH;

use crate::asert::{self, AsertParams};
use crate::error::ChainError;

/// Private keys of the first ten accounts of the development mnemonic
/// `test test test test test test test test test test test junk` (path m/44'/60'/0'/0/i),
/// the accounts Hardhat and anvil fund; published, so never use them for real value.
pub const DEV_KEYS: [&str; 10] = [
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "dbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
];

/// A signed transfer of `wei` to `to` from development account `dev` (of [`DEV_KEYS`]),
/// with nonce `nonce`, on the dev chain (id 31337): how tests and the demo fund accounts.
pub fn dev_transfer(dev: usize, nonce: u64, to: Address, wei: U256) -> Vec<u8> {
    let key = crate::wallet::Key::from_hex(DEV_KEYS[dev]).expect("the dev keys are valid");
    let gwei = 1_000_000_000;
    let tx = crate::wallet::eip1559(
        31337,
        nonce,
        Some(to),
        wei,
        Default::default(),
        21_000,
        50 * gwei,
        gwei,
    );
    key.sign_raw(tx)
}

/// 10,000 ether.
pub const DEV_BALANCE: U256 = U256::from_limbs([0x19e0c9bab2400000, 0x21e, 0, 0]);

/// Base fee of the first block (1 gwei), then adjusted per EIP-1559.
pub const INITIAL_BASE_FEE: u64 = 1_000_000_000;

/// Seconds a block's timestamp may be ahead of the local clock.
pub const MAX_FUTURE_SECS: u64 = 15;

/// Blocks whose timestamps' median a new block must exceed.
pub const MEDIAN_SPAN: usize = 11;

#[derive(Clone, Debug)]
pub struct ChainSpec {
    pub chain_id: u64,
    pub asert: AsertParams,
    /// Compact target of block 1, the ASERT anchor.
    pub initial_bits: u32,
    pub gas_limit: u64,
    pub block_reward: U256,
    pub alloc: Vec<(Address, U256)>,
}

impl ChainSpec {
    pub fn from_config(g: &GenesisConfig) -> Result<ChainSpec, ChainError> {
        let bad = |what: &str| ChainError::Config(what.to_string());
        if g.block_time_secs == 0 || g.half_life_secs == 0 {
            return Err(bad(
                "chain.genesis: block_time_secs and half_life_secs must be above 0",
            ));
        }
        if g.initial_difficulty == 0 {
            return Err(bad("chain.genesis.initial_difficulty must be at least 1"));
        }
        let reward = g
            .block_reward_wei
            .parse::<U256>()
            .map_err(|_| bad("chain.genesis.block_reward_wei must be a decimal number of wei"))?;
        let mut alloc = Vec::new();
        if g.dev_accounts {
            for key in DEV_KEYS {
                alloc.push((crate::wallet::address_of_hex(key)?, DEV_BALANCE));
            }
        }
        for (addr, wei) in &g.alloc {
            let a: Address = addr.parse().map_err(|_| {
                bad(&format!(
                    "chain.genesis.alloc: `{addr}` is not a 0x-prefixed 20-byte address"
                ))
            })?;
            let v = wei.parse::<U256>().map_err(|_| {
                bad(&format!(
                    "chain.genesis.alloc: balance of {addr} must be decimal wei"
                ))
            })?;
            alloc.push((a, v));
        }
        // Easiest allowed target: 256 expected hashes, so a dev chain can start slow.
        let pow_limit = U256::MAX >> 8;
        let target = (U256::MAX / U256::from(g.initial_difficulty)).min(pow_limit);
        Ok(ChainSpec {
            chain_id: g.chain_id,
            asert: AsertParams {
                spacing_secs: g.block_time_secs as i64,
                half_life_secs: g.half_life_secs as i64,
                pow_limit,
            },
            initial_bits: asert::to_compact(target),
            gas_limit: g.gas_limit,
            block_reward: reward,
            alloc,
        })
    }

    /// The genesis header over a state whose root is `state_root` (the alloc's).
    /// Timestamp 0 and difficulty 1: the schedule starts at block 1, whose own time
    /// anchors ASERT.
    pub fn genesis_header(&self, state_root: B256) -> Header {
        Header {
            parent_hash: B256::ZERO,
            ommers_hash: EMPTY_OMMER_ROOT_HASH,
            beneficiary: Address::ZERO,
            state_root,
            transactions_root: EMPTY_ROOT_HASH,
            receipts_root: EMPTY_ROOT_HASH,
            difficulty: U256::from(1),
            number: 0,
            gas_limit: self.gas_limit,
            gas_used: 0,
            timestamp: 0,
            extra_data: Bytes::from_static(b"nodus"),
            mix_hash: B256::ZERO,
            nonce: B64::ZERO,
            base_fee_per_gas: Some(INITIAL_BASE_FEE),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_accounts_are_the_well_known_ones() {
        let spec = ChainSpec::from_config(&GenesisConfig::default()).unwrap();
        let first = spec.alloc[0].0;
        assert_eq!(
            first,
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
                .parse::<Address>()
                .unwrap()
        );
        assert_eq!(
            spec.alloc[9].0,
            "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720"
                .parse::<Address>()
                .unwrap()
        );
        assert_eq!(
            spec.alloc[0].1,
            "10000000000000000000000".parse::<U256>().unwrap()
        );
    }

    #[test]
    fn bad_config_is_a_clear_error() {
        let g = GenesisConfig {
            block_reward_wei: "lots".into(),
            ..Default::default()
        };
        let e = ChainSpec::from_config(&g).unwrap_err().to_string();
        assert!(e.contains("block_reward_wei"), "{e}");
    }
}
