//! nodus-core: the base layer every other nodus crate stands on.
//!
//! What lives here, and only here:
//! - [`datadir`]: where a node keeps its files: the node-wide ones by name, each
//!   service's under `<data dir>/<service>/`, and the move from the flat layout.
//! - [`identity`]: the node's ed25519 key, kept in a file of mode 0600. A key file is
//!   never replaced: a missing key is created once; a corrupt or over-readable one is an
//!   error, never silently a new identity.
//! - [`config`]: `config.toml`: the node-wide sections (`[p2p]`, `[api]`) typed, and
//!   the services' sections ([`Section`], each defined by its service crate).
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

pub use config::{Config, Section};
pub use datadir::DataDir;
pub use endpoints::Endpoints;
pub use error::{CoreError, KeyProblem};
