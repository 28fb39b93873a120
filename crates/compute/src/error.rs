//! The compute service's errors: a person's mistakes say what to do; a peer's are strikes.

#[cfg(feature = "runtime")]
use crate::sandbox::SandboxError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[cfg(feature = "runtime")]
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("no project {0} on this node (`nodus compute list` shows them)")]
    NoSuchProject(String),
    #[error("{0} matches more than one project; give more of its id")]
    Ambiguous(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the overlay: {0}")]
    Net(String),
    #[error("a peer: {0}")]
    Peer(String),
    #[error(transparent)]
    Pay(#[from] crate::pay::PayError),
    #[error("the compute service stopped")]
    Stopped,
}
