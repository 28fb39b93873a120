use std::sync::Arc;

use libp2p::swarm::DialError;
use libp2p::{gossipsub, kad};

/// A setup failure's cause: libp2p reports some of these as plain strings.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Errors from the overlay, each with enough context to act on and its cause kept as the
/// error's source.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("the network task has stopped")]
    Stopped,
    #[error("invalid multiaddr {addr:?}: {reason}")]
    BadAddr { addr: String, reason: String },
    #[error("could not listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    /// Shared because every caller waiting on the same dial gets the same failure.
    #[error("dial failed: {}", crate::actor::describe(.0))]
    Dial(#[source] Arc<DialError>),
    #[error("peer {0} could not be found in the DHT; connect to it by address first")]
    PeerNotFound(String),
    #[error("record not found")]
    NotFound,
    #[error("record refused: {0}")]
    RecordRefused(#[from] crate::records::RecordError),
    #[error("the local record store refused the record: {0}")]
    LocalRecordStore(#[from] kad::store::Error),
    #[error("no known peers to ask; connect to a peer first")]
    NoKnownPeers(#[from] kad::NoKnownPeers),
    #[error("announcing as a provider failed: {0}")]
    Provide(#[from] kad::AddProviderError),
    #[error("could not subscribe: {0}")]
    Subscribe(#[from] gossipsub::SubscriptionError),
    #[error("no connected peer is subscribed to this topic yet")]
    NoTopicPeers,
    #[error("publish failed: {0}")]
    Publish(#[source] gossipsub::PublishError),
    #[error("could not open a stream: {0}")]
    OpenStream(#[from] libp2p_stream::OpenStreamError),
    #[error("another task already accepts this protocol: {0}")]
    AlreadyAccepting(#[from] libp2p_stream::AlreadyRegistered),
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
    #[error("ping: the peer echoed different bytes")]
    PingMismatch,
    #[error("DHT record store: {0}")]
    RecordStore(#[source] Box<redb::Error>),
    #[error("{what} could not be set up: {source}")]
    Setup {
        what: &'static str,
        #[source]
        source: BoxError,
    },
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
}

impl NetError {
    /// Wraps a setup failure of `what` (transport, gossipsub, mdns, ...).
    pub(crate) fn setup<E: Into<BoxError>>(what: &'static str) -> impl FnOnce(E) -> NetError {
        move |e| NetError::Setup {
            what,
            source: e.into(),
        }
    }
}

impl From<gossipsub::PublishError> for NetError {
    fn from(e: gossipsub::PublishError) -> Self {
        match e {
            gossipsub::PublishError::NoPeersSubscribedToTopic => NetError::NoTopicPeers,
            other => NetError::Publish(other),
        }
    }
}
