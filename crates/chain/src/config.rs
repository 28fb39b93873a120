//! The `[chain]` section of config.toml: its types, defaults and template text.

use nodus_core::Section;
use serde::{Deserialize, Serialize};

/// The chain service (crates/chain): proof-of-work blocks in Ethereum's formats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChainConfig {
    pub enabled: bool,
    /// Ethereum JSON-RPC over HTTP. Empty: no JSON-RPC server.
    pub rpc_listen: String,
    /// Host names JSON-RPC answers to besides IP addresses ("*": any).
    pub rpc_hosts: Vec<String>,
    /// Origins (web pages) allowed to call JSON-RPC ("*": any). Empty: none.
    pub rpc_origins: Vec<String>,
    /// The longest one eth_call or eth_estimateGas runs, in milliseconds; one request
    /// (a batch included) gets twice this in all.
    pub rpc_call_timeout_ms: u64,
    /// Pending transactions kept, in all and per sender.
    pub mempool_max: usize,
    pub mempool_max_per_sender: usize,
    /// Keep every block's state readable (JSON-RPC at any block number), not only the
    /// last 128 blocks'.
    pub archive: bool,
    pub genesis: GenesisConfig,
    pub mining: MiningConfig,
}

impl Default for ChainConfig {
    fn default() -> Self {
        ChainConfig {
            enabled: true,
            rpc_listen: "127.0.0.1:8545".into(),
            rpc_hosts: vec!["localhost".into()],
            rpc_origins: vec![],
            rpc_call_timeout_ms: 5000,
            mempool_max: 4096,
            mempool_max_per_sender: 64,
            archive: false,
            genesis: GenesisConfig::default(),
            mining: MiningConfig::default(),
        }
    }
}

/// What every node of one chain must agree on; any change makes a different chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenesisConfig {
    pub chain_id: u64,
    /// Fund the ten development accounts of the mnemonic
    /// `test test test test test test test test test test test junk` with 10,000 ether each.
    pub dev_accounts: bool,
    /// Target seconds between blocks.
    pub block_time_secs: u64,
    /// Seconds ahead of or behind schedule that halve or double the difficulty (ASERT).
    pub half_life_secs: u64,
    /// Expected hashes for the first block.
    pub initial_difficulty: u64,
    pub gas_limit: u64,
    /// Block reward in wei (decimal), paid to the miner besides the priority fees.
    pub block_reward_wei: String,
    /// Further balances: address (0x...) to wei (decimal).
    pub alloc: std::collections::BTreeMap<String, String>,
}

impl Default for GenesisConfig {
    fn default() -> Self {
        GenesisConfig {
            chain_id: 31337,
            dev_accounts: true,
            block_time_secs: 2,
            half_life_secs: 120,
            initial_difficulty: 400_000,
            gas_limit: 30_000_000,
            block_reward_wei: "2000000000000000000".into(),
            alloc: Default::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MiningConfig {
    /// Mine from start (`nodus mine` turns it on at run time).
    pub enabled: bool,
    pub threads: usize,
    /// Address that receives rewards; empty: the first development account.
    pub coinbase: String,
    /// Cap on hashes per second per node (0: as fast as the threads go), so a testnet of
    /// several miners on one machine leaves CPU for everything else.
    pub max_hashes_per_sec: u64,
}

impl Default for MiningConfig {
    fn default() -> Self {
        MiningConfig {
            enabled: false,
            threads: 1,
            coinbase: String::new(),
            max_hashes_per_sec: 0,
        }
    }
}

impl Section for ChainConfig {
    const NAME: &'static str = "chain";
    const TEMPLATE: &'static str = TEMPLATE;
    fn enabled(&self) -> bool {
        self.enabled
    }
}

/// The `[chain]` part of the commented config.toml that `nodus init` writes.
pub const TEMPLATE: &str = r#"[chain]
enabled = true
# Ethereum JSON-RPC (web3.py, ethers, wallets), over HTTP and, with eth_subscribe, over
# WebSocket on the same address. No token: it holds no keys, so it offers only what a
# public node does. Keep it on 127.0.0.1. Empty: no JSON-RPC server.
rpc_listen = "127.0.0.1:8545"
# Host names it answers to besides IP addresses (a web page's DNS name pointed at this
# machine is refused), and web pages (Origins) allowed to call it; "*" allows any.
rpc_hosts = ["localhost"]
rpc_origins = []
# The longest one eth_call or eth_estimateGas may run, in milliseconds (a request, batch
# included, gets twice this). Calls run beside the chain, never holding up its blocks.
rpc_call_timeout_ms = 5000
# Pending transactions kept, in all and per sender.
mempool_max = 4096
mempool_max_per_sender = 64
# JSON-RPC reads state (balances, code, storage, eth_call) at the last 128 blocks; true
# keeps every block's state from now on, at the cost of disk (an archive node).
archive = false

[chain.genesis]
# Every node of a chain must have the same values here.
chain_id = 31337
# Fund the ten accounts of the mnemonic "test test ... test junk" (as Hardhat and anvil).
dev_accounts = true
block_time_secs = 2
# ASERT difficulty: being this many seconds ahead of schedule doubles the difficulty.
half_life_secs = 120
initial_difficulty = 400000
gas_limit = 30000000
block_reward_wei = "2000000000000000000"
# Further balances, e.g. "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266" = "1000000000000000000"
[chain.genesis.alloc]

[chain.mining]
enabled = false
threads = 1
# Address paid for mined blocks; empty: the first development account.
coinbase = ""
# Hashes per second at most (0: no cap).
max_hashes_per_sec = 0
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_is_the_defaults() {
        assert_eq!(
            nodus_core::config::parse_template::<ChainConfig>().unwrap(),
            ChainConfig::default()
        );
    }
}
