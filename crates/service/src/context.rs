//! What a service is started with.

use std::path::PathBuf;

use libp2p::identity::Keypair;
use nodus_core::DataDir;
use nodus_net::NetworkHandle;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

/// Everything a service gets from the node. Nothing here names another service.
pub struct ServiceContext<'a> {
    /// `<data dir>/<name>/`, created (mode 0700) before the service starts. The service's
    /// files go here and nothing else writes here.
    pub dir: PathBuf,
    /// The node's data dir, for what a person reads directly (downloads, made torrents).
    pub data_dir: DataDir,
    /// The node's identity.
    pub key: Keypair,
    /// The overlay.
    pub net: NetworkHandle,
    /// The node's registry, prefixed `nodus_<name>`: register `requests` and it is
    /// exported as `nodus_<name>_requests`.
    pub metrics: &'a mut Registry,
    /// Turns true when the node stops; every task of the service ends then.
    pub shutdown: watch::Receiver<bool>,
    /// What services started before this one offer it (see [`crate::Provided`]).
    pub provided: &'a crate::Provided,
}
