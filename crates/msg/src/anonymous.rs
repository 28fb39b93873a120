//! Messaging that hides who talks to whom: `[msg] anonymous = true`.
//!
//! - **An identity of its own.** Messaging runs under `anonymous.key` (ed25519, 0600),
//!   never used on the overlay, with its own store (`anonymous.redb`): the peer id in
//!   the cards contacts hold leads nobody to this node's connections or IP. Its
//!   contacts and history are apart from the node identity's; switching back keeps both.
//! - **Onion services.** The identity is also an onion service's (crates/onion, wired by
//!   the node through [`Anonymity`]): a contact's address is its peer id's key, so cards
//!   carry nothing new. Envelopes go to the contact's service over circuits and come in
//!   on this node's, which forwards to a listener on 127.0.0.1. On that stream the
//!   frames, order and acknowledgements are those of `/nodus/msg/1`; the sender of each
//!   envelope is the one authenticated inside it (its Olm session, or the card of a
//!   first message), as for a mailbox item, since the link names nobody.
//! - **Mailboxes through circuits.** A message for a contact that is offline is stored,
//!   and this identity's mail fetched, on the peers closest to the identity's key in
//!   this node's routing table (no DHT lookup: it would tie this node to the key). Each
//!   mailbox is reached through a circuit of its own whose last relay opens the mailbox
//!   stream (crates/onion's BEGIN_OVERLAY); on it the identity proves itself by signing
//!   the mailbox's nonce ([`crate::wire::MailboxRequest::Prove`]), so the mailbox
//!   keeps and hands out mail by identity while seeing only the relay.
//! - **Not through circuits yet** (so not done at all in this mode, rather than done in
//!   the open): the DHT's key bundles (a contact is added from its invite code, which
//!   carries a one-time key), files, and signals (a call's carry the caller's
//!   addresses).

use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;
use libp2p::PeerId;
use libp2p::identity::Keypair;

use crate::MsgError;

/// The port clients ask for on a messaging onion service.
pub const VIRTUAL_PORT: u16 = 1;

/// Why the onion service did not do what messaging asked.
#[derive(Debug, thiserror::Error)]
pub enum AnonymityError {
    /// The peer's identity is not an ed25519 key, so it names no onion service.
    #[error("{0} is not an identity with an onion service")]
    NotAService(PeerId),
    /// The onion service refused or failed (its own error, as text).
    #[error("{0}")]
    Onion(String),
}

/// Onion services as messaging needs them; the node implements it over crates/onion.
pub trait Anonymity: Send + Sync {
    /// Runs 127.0.0.1:`port` as the onion service of `identity` (at [`VIRTUAL_PORT`]);
    /// its address.
    fn serve(&self, identity: Keypair, port: u16) -> Result<String, AnonymityError>;
    /// A stream to the messaging onion service of `peer` (an anonymous identity), over
    /// circuits.
    fn connect(
        &self,
        peer: PeerId,
    ) -> BoxFuture<'_, Result<tokio::io::DuplexStream, AnonymityError>>;
    /// A stream to overlay peer `peer` (a mailbox) on `protocol`, opened by the last
    /// relay of a circuit: `peer` sees that relay, not this node.
    fn connect_peer<'a>(
        &'a self,
        peer: PeerId,
        protocol: &'a str,
    ) -> BoxFuture<'a, Result<tokio::io::DuplexStream, AnonymityError>>;
}

/// How [`crate::MsgService`] finds the onion service in what the node provides.
pub type SharedAnonymity = Arc<dyn Anonymity>;

/// The anonymous identity in `path`, made there (mode 0600) on first use, as the node's
/// own identity file is.
pub fn identity(path: &Path) -> Result<Keypair, MsgError> {
    nodus_core::identity::load_or_create(path)
        .map(|(key, _)| key)
        .map_err(|e| {
            MsgError::Key(format!(
                "{}: {e} (remove it only if losing the anonymous contacts is meant)",
                path.display()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_is_made_once_kept_private_and_never_the_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("anonymous.key");
        let a = identity(&path).unwrap();
        let b = identity(&path).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, b"short").unwrap();
        let e = identity(&path).unwrap_err().to_string();
        assert!(
            e.contains("anonymous.key") && e.contains("remove it only if"),
            "{e}"
        );
    }
}
