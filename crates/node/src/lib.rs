//! nodus-node: composition. Turns a data dir and its config into a running node: the
//! overlay, the services, and the HTTP API that every CLI command talks to.
//!
//! Invariants:
//! - One node per data dir, enforced by an exclusive lock on `node.lock`.
//! - The API binds where config says (127.0.0.1 by default) and answers nothing without
//!   the bearer token from `api.cookie`, which is renewed at every start (mode 0600).
//! - `endpoints.json` is written once the API and the P2P listeners are up, rewritten
//!   when listen addresses change, and removed on clean shutdown.

pub mod api;
pub mod client;
mod error;
pub mod events;
pub mod init;
pub mod narration;
mod node;
pub mod services;
mod wiring;

pub use client::{ApiClient, ClientError};
pub use error::NodeError;
pub use init::{InitReport, check_config, config_template, init, load_config};
pub use node::{Node, RunningNode, StartOptions};
