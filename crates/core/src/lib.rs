//! nodus-core: the base layer every other nodus crate stands on.
//!
//! What lives here, and only here:
//! - [`datadir`]: where a node keeps its files, and the names of those files.
//! - [`identity`]: the node's ed25519 key, kept in a file of mode 0600. A key file is
//!   never replaced: a missing key is created once; a corrupt or over-readable one is an
//!   error, never silently a new identity.
//! - [`config`]: `config.toml`, its defaults and its commented template.
//! - [`endpoints`]: `endpoints.json`, where a running node says where it listens.
//! - [`token`]: the API bearer token in a cookie file (mode 0600), as bitcoind does.
//! - [`fsutil`]: atomic writes with explicit modes.
//!
//! Invariants: every file this crate writes is written atomically (temp file, fsync,
//! rename), and secret files are created with mode 0600 before any byte is written.

pub mod config;
pub mod datadir;
pub mod endpoints;
pub mod error;
pub mod fsutil;
pub mod identity;
pub mod token;

pub use config::{
    ChainConfig, Config, Encryption, GenesisConfig, MiningConfig, MsgConfig, TorrentConfig,
};
pub use datadir::DataDir;
pub use endpoints::Endpoints;
pub use error::CoreError;
