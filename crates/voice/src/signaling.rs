//! What the voice service needs of messaging, declared here and implemented by the node
//! over the messaging service (`crates/node/src/wiring.rs`): who a contact is, and
//! signals to and from contacts, end-to-end encrypted over their Olm session. Only
//! contacts' signals arrive, so a stranger cannot ring.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::BoxStream;

/// A contact, as messaging knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub peer_id: String,
    pub name: String,
}

/// A call signal from a contact.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub from: Contact,
    pub body: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum SignalingError {
    #[error(
        "no contact {0:?}: add one with `nodus msg add <code>`; `nodus msg contacts` lists them"
    )]
    NotAContact(String),
    #[error("messaging: {0}")]
    Failed(String),
}

pub trait Signaling: Send + Sync + 'static {
    /// The contact `who` names (a name or a peer id).
    fn contact<'a>(&'a self, who: &'a str) -> BoxFuture<'a, Result<Contact, SignalingError>>;
    /// Sends a call signal to a contact (peer id).
    fn send<'a>(&'a self, to: &'a str, body: Vec<u8>) -> BoxFuture<'a, Result<(), SignalingError>>;
    /// Call signals from contacts, from now on.
    fn incoming(&self) -> BoxStream<'static, Incoming>;
}

/// How the service finds it in `ServiceContext::provided`.
pub type SharedSignaling = Arc<dyn Signaling>;
