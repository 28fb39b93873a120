//! Where the gateway reads content from. The gateway names no torrent type: the node
//! implements [`Content`] over the torrent service's handle and offers it through
//! [`nodus_service::Provided`] (see docs/architecture.md).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;

/// The content provider, as the gateway finds it in its context.
pub type SharedContent = Arc<dyn Content>;

/// A torrent as the gateway shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TorrentView {
    /// The id the provider knows it by (its hex infohash).
    pub id: String,
    pub name: String,
    /// Its files (numbered from 1 in this order): `/`-joined path and length.
    pub files: Vec<(String, u64)>,
    /// Bytes of the torrent, and of them verified.
    pub size: u64,
    pub done: u64,
    /// Whether its metadata is here (a magnet's comes from peers).
    pub has_metadata: bool,
}

/// What to add.
#[derive(Debug, Clone)]
pub enum AddSource {
    /// A magnet link or a hex infohash.
    Link(String),
    /// The bytes of a .torrent file.
    Torrent(Vec<u8>),
}

/// Errors of the provider, by kind.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// No such torrent or file.
    #[error("{0}")]
    NotFound(String),
    /// The request was wrong (a bad magnet link).
    #[error("{0}")]
    BadRequest(String),
    /// What was asked for did not arrive in time.
    #[error("{0}")]
    NotYet(String),
    /// The torrent cannot be read now (paused).
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Other(String),
}

/// Torrents to read from.
pub trait Content: Send + Sync + 'static {
    fn torrent(&self, id: &str) -> Result<TorrentView, SourceError>;
    fn list(&self) -> Vec<TorrentView>;
    /// Adds a torrent (or finds it); returns its id and whether this call added it.
    fn add(&self, source: AddSource) -> BoxFuture<'_, Result<(String, bool), SourceError>>;
    /// Waits up to `wait` for a torrent's metadata.
    fn wait_metadata(
        &self,
        id: &str,
        wait: Duration,
    ) -> BoxFuture<'_, Result<TorrentView, SourceError>>;
    /// Opens file `file` (from 1) for streaming.
    fn open(&self, id: &str, file: usize) -> Result<Box<dyn Reader>, SourceError>;
    /// Removes a torrent and its files.
    fn remove(&self, id: &str) -> BoxFuture<'_, Result<(), SourceError>>;
}

/// An open file: reads come only from verified data.
pub trait Reader: Send + 'static {
    /// Up to `max` bytes at `pos`, waiting up to `wait` for the data under `pos`;
    /// empty at the end.
    fn read(
        &mut self,
        pos: u64,
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Bytes, SourceError>>;
}
