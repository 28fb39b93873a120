use crate::store::StoreError;

/// Errors of the social service.
#[derive(Debug, thiserror::Error)]
pub enum SocialError {
    #[error(
        "the Nostr relay could not listen on {addr}: {source}; is another relay using it? Change [social] listen in config.toml"
    )]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the social key file {0} is damaged; move it away to make a new key")]
    BadKey(std::path::PathBuf),
    #[error(transparent)]
    Core(#[from] nodus_core::CoreError),
    #[error("[social] blocked_authors: {0:?} is not a 64-character hex public key")]
    BadBlockedAuthor(String),
    #[error("the social service has stopped")]
    Stopped,
}
