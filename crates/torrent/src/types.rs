//! What the torrent service tells the node: snapshots and events.

use serde::{Deserialize, Serialize};

/// Where each piece of a torrent came from, for the dashboard's piece map.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PieceMap {
    /// Pieces in the torrent (0 until the metadata is here).
    pub pieces: u32,
    /// Peers' addresses and web seeds' URLs that sent pieces, in order of their first.
    pub sources: Vec<String>,
    /// One entry per piece: 0 missing, 1 here from before (the disk, or shared from
    /// here), `2 + k` verified from `sources[k]` in this process.
    pub map: Vec<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TorrentState {
    FetchingMetadata,
    Downloading,
    Seeding,
    Paused,
    Error,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerInfo {
    pub addr: String,
    pub client: String,
    pub incoming: bool,
    /// RC4-encrypted (MSE/PE).
    pub encrypted: bool,
    /// "tcp" or "utp".
    pub transport: String,
    pub downloaded: u64,
    pub uploaded: u64,
    /// Pieces credited to this peer (it sent most of their blocks).
    pub pieces: u32,
    pub seed: bool,
    /// From asking it for a block to receiving it, smoothed, in milliseconds.
    pub latency_ms: Option<f64>,
    /// Too slow to be given the pieces a streaming reader needs next.
    pub slow: bool,
    pub choked: bool,
    pub interested: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TorrentInfo {
    pub id: String,
    pub name: String,
    pub infohash_v1: Option<String>,
    pub infohash_v2: Option<String>,
    pub state: TorrentState,
    /// Share of the wanted bytes verified, 0 to 1.
    pub progress: f64,
    /// Wanted bytes (with padding).
    pub size: u64,
    pub done: u64,
    pub pieces_total: u32,
    pub pieces_have: u32,
    /// Bytes per second.
    pub download_rate: u64,
    pub upload_rate: u64,
    pub downloaded: u64,
    pub uploaded: u64,
    pub ratio: f64,
    pub eta_secs: Option<u64>,
    pub save_dir: String,
    pub sequential: bool,
    pub error: Option<String>,
    pub hash_failures: u64,
    /// Pieces credited per peer address, over the torrent's life in this process.
    pub pieces_from: Vec<(String, u32)>,
    pub peers: Vec<PeerInfo>,
    pub magnet: Option<String>,
    /// Files (path, length), numbered from 1 in this order by `--files`.
    pub files: Vec<(String, u64)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TorrentEvent {
    Added { id: String, name: String },
    Progress(Box<TorrentInfo>),
    Completed { id: String },
    Removed { id: String },
}

/// What `share` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shared {
    pub id: String,
    pub name: String,
    pub infohash_v1: Option<String>,
    pub infohash_v2: Option<String>,
    pub magnet: String,
    pub torrent_path: String,
    pub pieces: u32,
    pub piece_length: u64,
    pub size: u64,
    /// For a v2 or hybrid torrent: the common clients it leaves out, and what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaves_out: Option<String>,
}

/// What a v2 or hybrid torrent costs in reach, measured with the clients of the interop
/// tests (Debian 12's).
pub const V2_LEAVES_OUT: &str = "Transmission 3.00 cannot open v2 or hybrid torrents and \
aria2 1.36 reads a hybrid one under another infohash, so neither can download it; share \
without --v2/--hybrid (v1, the default) for them";

/// What `add` takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AddRequest {
    /// A magnet link, a 40-hex infohash, or a .torrent file's path (on the node's host).
    #[serde(default)]
    pub source: String,
    /// The .torrent file's bytes in base64 (instead of `source`).
    #[serde(default)]
    pub torrent_base64: Option<String>,
    #[serde(default)]
    pub out_dir: Option<String>,
    /// File numbers from 1 (as `TorrentInfo::files`); all when absent.
    #[serde(default)]
    pub files: Option<Vec<usize>>,
    #[serde(default)]
    pub sequential: bool,
    /// Peers to connect to besides those found.
    #[serde(default)]
    pub peers: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShareRequest {
    pub path: String,
    /// "hybrid" (default), "v1" or "v2".
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub trackers: Vec<String>,
    #[serde(default)]
    pub web_seeds: Vec<String>,
    #[serde(default)]
    pub piece_length: Option<u64>,
}
