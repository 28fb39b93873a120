//! The grammar of the chain and wallet commands.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// The chain and wallet commands (flattened into the top level).
#[derive(Subcommand, Debug)]
pub enum Commands {
    /// Ethereum accounts, kept as keystore v3 files in the data dir
    Wallet {
        #[command(subcommand)]
        command: WalletCommand,
    },
    /// Send ether from a wallet account (amount in ether, e.g. 1.5, or in wei with `wei`)
    Send {
        to: String,
        amount: String,
        /// The wallet account to pay from (needed when there are several)
        #[arg(long)]
        from: Option<String>,
        #[command(flatten)]
        password: PasswordArgs,
        /// A legacy (type 0) transaction instead of EIP-1559
        #[arg(long)]
        legacy: bool,
        /// Return once the node has accepted it, without waiting for the receipt
        #[arg(long)]
        no_wait: bool,
    },
    /// Mine on the running node (or stop)
    Mine {
        /// Hashing threads
        #[arg(long)]
        threads: Option<usize>,
        /// Address paid for mined blocks
        #[arg(long)]
        to: Option<String>,
        /// Stop mining
        #[arg(long)]
        stop: bool,
    },
    /// The chain: height, tip, difficulty, hash rate, peers, mempool
    Chain,
    /// A block by number, hash, or `latest`
    Block { id: String },
    /// A transaction and its receipt
    Tx { hash: String },
}

#[derive(Args, Debug, Clone)]
pub struct PasswordArgs {
    /// File whose first line is the wallet password [or NODUS_WALLET_PASSWORD]
    #[arg(long)]
    pub password_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum WalletCommand {
    /// Create an account (a new random key)
    New {
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Import a private key (hex) or another tool's keystore v3 file
    Import {
        key_or_file: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// The accounts in the wallet
    List,
    /// Balance and nonce of an account (default: every wallet account)
    Balance { address: Option<String> },
}
