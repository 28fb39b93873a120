//! Errors of the chain service. Messages say what to do next where a person caused them.

use alloy_primitives::B256;

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("config: {0}")]
    Config(String),
    #[error("chain store {path}: {reason}")]
    Store {
        path: String,
        #[source]
        reason: StoreFault,
    },
    #[error("invalid transaction: {0}")]
    Tx(#[from] TxError),
    #[error("invalid block {hash}: {reason}")]
    Block {
        hash: B256,
        #[source]
        reason: Box<BlockFault>,
    },
    #[error("unknown block {0}")]
    UnknownBlock(String),
    #[error("wallet: {0}")]
    Wallet(String),
    #[error("keystore: {0}")]
    Keystore(#[from] crate::keystore::KeystoreFault),
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
    #[error(
        "the state of block {number} is not kept: this node keeps the state of the last \
         {} blocks (the oldest now is {oldest}); set `archive = true` under [chain] in \
         config.toml to keep every block's state from now on",
        crate::chain::HISTORY_BLOCKS
    )]
    StatePruned { number: u64, oldest: u64 },
    #[error("the chain's timestamps are {0} s ahead of this clock; waiting for it")]
    AheadOfClock(u64),
    #[error("a block template could not be built: {0}")]
    Template(#[source] crate::exec::ExecError),
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

/// Why a block is invalid: whoever sent it is at fault, and it is never asked for again.
#[derive(Debug, thiserror::Error)]
pub enum BlockFault {
    #[error("number is not its parent's plus one")]
    Number,
    #[error("timestamp not after the median of the last 11 blocks")]
    TimestampNotAfterMedian,
    #[error("timestamp more than {0} s in the future")]
    TimestampInFuture(u64),
    #[error("gas limit or gas used out of bounds")]
    GasBounds,
    #[error("wrong base fee")]
    BaseFee,
    #[error("difficulty does not follow ASERT")]
    Difficulty,
    #[error("proof of work does not meet the target")]
    ProofOfWork,
    #[error("header fields this chain does not use are set")]
    UnusedHeaderFields,
    #[error("its parent is invalid")]
    InvalidParent,
    #[error("ommers or withdrawals present")]
    OmmersOrWithdrawals,
    #[error("transactions root does not match the body")]
    TransactionsRoot,
    #[error("transaction {index}: {source}")]
    Tx {
        index: usize,
        #[source]
        source: TxError,
    },
    #[error(transparent)]
    Exec(#[from] crate::exec::ExecError),
    #[error("gas used differs from the header")]
    GasUsed,
    #[error("receipts root or logs bloom differs from the header")]
    Receipts,
    #[error("state root differs from the header")]
    StateRoot,
}

/// Why a transaction was refused. The messages follow geth's, which wallets and
/// libraries recognise.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TxError {
    #[error("rlp: {0}")]
    Decode(#[from] alloy_eips::eip2718::Eip2718Error),
    /// Shared: a refused transaction's error is kept by the pool and sent to callers.
    #[error("invalid sender: {0}")]
    Signature(#[source] std::sync::Arc<alloy_primitives::SignatureError>),
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
    #[error("exceeds block gas limit: gas {gas}, block limit {limit}")]
    GasLimit { gas: u64, limit: u64 },
    /// EIP-7825: no transaction may ask for more than 2^24 gas, whatever the block's limit.
    #[error(
        "transaction gas limit too high (cap: {cap}, tx: {gas}): EIP-7825 caps every transaction at 2^24 gas"
    )]
    GasCap { gas: u64, cap: u64 },
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
    pub fn store(path: &std::path::Path, e: impl Into<StoreFault>) -> ChainError {
        ChainError::Store {
            path: path.display().to_string(),
            reason: e.into(),
        }
    }
}

/// What went wrong with the chain's file.
#[derive(Debug, thiserror::Error)]
pub enum StoreFault {
    #[error(transparent)]
    Db(Box<redb::Error>),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("undecodable record: {0}")]
    Record(#[from] postcard::Error),
    #[error("undecodable block: {0}")]
    Block(#[from] alloy_rlp::Error),
    #[error("undecodable receipt: {0}")]
    Receipt(#[from] alloy_eips::eip2718::Eip2718Error),
    #[error("block {0} has metadata but no body")]
    MissingBody(B256),
    #[error("the stored state does not match head {0}; the file is damaged")]
    StateMismatch(B256),
    #[error(transparent)]
    State(Box<crate::state::StateError>),
}

impl From<crate::state::StateError> for StoreFault {
    fn from(e: crate::state::StateError) -> Self {
        StoreFault::State(Box::new(e))
    }
}

macro_rules! db_fault {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreFault {
            fn from(e: $t) -> Self {
                StoreFault::Db(Box::new(e.into()))
            }
        }
    )*};
}
db_fault!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::Error
);
