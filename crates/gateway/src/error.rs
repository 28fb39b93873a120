//! Errors of the gateway service.

/// Errors of the gateway, at start and in its API.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot listen for HTTP on {addr}: {source} (set [gateway] listen in config.toml)")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error(
        "the gateway reads torrents, and file sharing is off: set [torrent] enabled = true, or [gateway] enabled = false"
    )]
    NoTorrents,
    #[error("gateway cache: {0}")]
    Store(#[from] redb::Error),
    #[error("{0}")]
    Source(#[from] crate::source::SourceError),
    #[error("file {file} is out of range: the torrent has {count} files (numbered from 1)")]
    NoSuchFile { file: usize, count: usize },
}
