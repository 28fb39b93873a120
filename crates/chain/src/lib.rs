//! nodus chain: P2P cash and contracts on a proof-of-work chain in Ethereum's formats.
//!
//! Blocks and transactions are Ethereum's (alloy types, RLP, EIP-2718); the seal is our
//! own proof of work ([`pow`]) with ASERT difficulty ([`asert`]); contracts run on revm
//! ([`exec`]). The chain with the most cumulative work wins; a reorg undoes blocks by the
//! state diffs kept for them and returns their transactions to the mempool.
//!
//! Invariants: the store ([`store`]) commits a block, its receipts, its diff, the new
//! state and the new canonical head in one redb transaction, so `kill -9` at any moment
//! leaves the previous or the next consistent chain; nothing else writes `chain.redb`.
//! The state lives on disk ([`statedb`]): memory holds what the blocks in progress
//! changed and the top of the account trie, whatever the size of the state.

pub mod asert;
pub mod call;
pub mod chain;
pub mod config;
pub mod error;
pub mod exec;
pub mod handle;
pub mod http;
pub mod keystore;
pub mod mempool;
pub mod miner;
pub mod pow;
pub mod rpc;
mod service;
pub mod spec;
pub mod state;
pub mod statedb;
pub mod store;
pub mod trie;
pub mod tx;
pub mod wallet;
pub mod wire;

pub use alloy_primitives as primitives;
pub use config::{ChainConfig, GenesisConfig, MiningConfig};
pub use error::{BlockFault, ChainError, TxError};
pub use handle::{BlockOutcome, ChainEvent, ChainHandle, ChainStatus, MiningState};
pub use revm;
pub use service::{ChainService, spawn};
pub use spec::ChainSpec;
