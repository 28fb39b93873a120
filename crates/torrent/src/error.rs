use crate::create::CreateError;
use crate::magnet::MagnetError;
use crate::metainfo::MetainfoError;

/// Errors of the torrent service. Those a person causes say what to do next.
#[derive(Debug, thiserror::Error)]
pub enum TorrentError {
    #[error(transparent)]
    Metainfo(#[from] MetainfoError),
    #[error(transparent)]
    Magnet(#[from] MagnetError),
    #[error(transparent)]
    Create(#[from] CreateError),
    #[error("no torrent {0:?}: `nodus torrents` lists them")]
    NotFound(String),
    #[error("torrent {0} is already added")]
    Duplicate(String),
    #[error("{0:?} is neither a magnet link, a 40-hex infohash nor a readable .torrent file")]
    BadSource(String),
    #[error("{0} is not a regular file: give a .torrent file, a magnet link or an infohash")]
    NotAFile(String),
    #[error("{path} is {size} bytes; a .torrent file is at most {max} bytes")]
    TorrentFileTooLarge { path: String, size: u64, max: u64 },
    #[error("file numbers {0:?} are out of range: the torrent has {1} files (numbered from 1)")]
    BadFileSelection(Vec<usize>, usize),
    #[error(
        "cannot listen for BitTorrent peers on {addr}: {source} (set [torrent] listen in config.toml)"
    )]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("torrent store: {0}")]
    Store(#[from] redb::Error),
    #[error("torrent store: torrent {0} has neither metainfo nor a magnet link to resume from")]
    NothingToResume(String),
    #[error("the HTTP client could not be built: {0}")]
    HttpClient(#[source] reqwest::Error),
    #[error("disk: {0}")]
    Io(#[from] std::io::Error),
    #[error("the torrent service has stopped")]
    Stopped,
    #[error("torrent {id} has no file {file}: it has {count} (numbered from 1)")]
    NoSuchFile {
        id: String,
        file: usize,
        count: usize,
    },
    #[error("torrent {0}'s metadata has not arrived from any peer yet")]
    NoMetadata(String),
    #[error(
        "piece {piece} of torrent {id} did not arrive within {waited:?} ({peers} peers connected); try again, or add peers"
    )]
    NotYet {
        id: String,
        piece: u32,
        waited: std::time::Duration,
        peers: usize,
    },
    #[error("torrent {0} is paused: resume it to stream it")]
    Paused(String),
}
