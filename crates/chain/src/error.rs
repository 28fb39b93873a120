//! Errors of the chain service. Messages say what to do next where a person caused them.

use alloy_primitives::B256;

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("config: {0}")]
    Config(String),
    #[error("chain store {path}: {reason}")]
    Store { path: String, reason: String },
    #[error("invalid transaction: {0}")]
    Tx(#[from] TxError),
    #[error("invalid block {hash}: {reason}")]
    Block { hash: B256, reason: String },
    #[error("unknown block {0}")]
    UnknownBlock(String),
    #[error("wallet: {0}")]
    Wallet(String),
    /// Bytes a peer (or a caller) sent that do not decode.
    #[error(transparent)]
    Wire(#[from] crate::wire::WireError),
    #[error("the overlay: {0}")]
    Net(#[from] nodus_net::NetError),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("no state diff kept for canonical block {0}; the chain store is damaged")]
    MissingDiff(B256),
    #[error("the chain's timestamps are {0} s ahead of this clock; waiting for it")]
    AheadOfClock(u64),
    #[error("a block template could not be built: transaction {index}: {reason}")]
    Template { index: usize, reason: String },
    #[error("the miner did not stop within {0:?}")]
    MinerStuck(std::time::Duration),
    #[error("still at height {height} after {waited:?}, waiting for {wanted}")]
    HeightTimeout {
        height: u64,
        wanted: u64,
        waited: std::time::Duration,
    },
    #[error("the chain service has stopped")]
    Stopped,
}

/// Why a transaction was refused. The messages follow geth's, which wallets and
/// libraries recognise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("rlp: {0}")]
    Decode(String),
    #[error("invalid sender: {0}")]
    Signature(String),
    #[error("invalid chain id for signer: have {have:?} want {want}")]
    ChainId { have: Option<u64>, want: u64 },
    #[error("only replay-protected (EIP-155) transactions allowed over RPC")]
    Unprotected,
    #[error("transaction type not supported")]
    Type,
    #[error("nonce too low: next nonce {next}, tx nonce {nonce}")]
    NonceTooLow { next: u64, nonce: u64 },
    #[error("nonce too high: next nonce {next}, tx nonce {nonce} (at most {max_gap} ahead)")]
    NonceGap { next: u64, nonce: u64, max_gap: u64 },
    #[error("insufficient funds for gas * price + value: balance {balance}, tx cost {cost}")]
    InsufficientFunds { balance: String, cost: String },
    #[error("intrinsic gas too low: gas {gas}, minimum needed {needed}")]
    IntrinsicGas { gas: u64, needed: u64 },
    #[error("exceeds block gas limit")]
    GasLimit,
    #[error(
        "max fee per gas less than block base fee: maxFeePerGas: {max_fee}, baseFee: {base_fee}"
    )]
    FeeCapTooLow { max_fee: u128, base_fee: u64 },
    #[error("max priority fee per gas higher than max fee per gas")]
    TipAboveFeeCap,
    #[error("replacement transaction underpriced")]
    Underpriced,
    #[error("already known")]
    AlreadyKnown,
    #[error("txpool is full")]
    PoolFull,
    #[error("oversized data: {0} bytes")]
    Oversized(usize),
}

impl ChainError {
    pub fn store(path: &std::path::Path, e: impl std::fmt::Display) -> ChainError {
        ChainError::Store {
            path: path.display().to_string(),
            reason: e.to_string(),
        }
    }
}
