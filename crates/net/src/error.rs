/// Errors from the overlay, each with enough context to act on.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("the network task has stopped")]
    Stopped,
    #[error("invalid multiaddr {addr:?}: {reason}")]
    BadAddr { addr: String, reason: String },
    #[error("could not listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("dial failed: {0}")]
    Dial(String),
    #[error("peer {0} could not be found in the DHT; connect to it by address first")]
    PeerNotFound(String),
    #[error("record not found")]
    NotFound,
    #[error("record refused: {0}")]
    RecordRefused(#[from] crate::records::RecordError),
    #[error("DHT query failed: {0}")]
    Query(String),
    #[error("publish failed: {0}")]
    Publish(String),
    #[error("stream: {0}")]
    Stream(String),
    #[error("transport setup failed: {0}")]
    Transport(String),
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
}
