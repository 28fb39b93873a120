//! nodus-torrent: a BitTorrent engine that real clients accept as one of their own.
//!
//! - **Formats.** Bencode ([`bencode`]), metainfo v1, v2 and hybrid ([`metainfo`]),
//!   BEP 52 merkle trees ([`merkle`]), magnet links ([`magnet`]); making torrents
//!   ([`create`], hybrid by default).
//! - **Wire.** The peer protocol with the fast extension and the extension protocol:
//!   metadata exchange (BEP 9) and peer exchange (BEP 11) ([`wire`]); HTTP trackers
//!   ([`tracker`]).
//! - **Engine.** A session ([`session`]) with one listener and one task per torrent;
//!   three tasks per peer connection (reader, writer, uploader; see `peer.rs`); a piece
//!   picker (rarest first, sequential for streaming, endgame; [`picker`]); tit-for-tat
//!   choking with an optimistic unchoke; storage by pread/pwrite ([`storage`]); resume
//!   state in torrent.redb ([`store`]).
//!
//! Invariants:
//! - Nothing a peer sends can panic the node or make it allocate beyond fixed bounds
//!   (messages up to [`wire::MAX_MESSAGE`], metadata up to [`wire::MAX_METADATA`], a
//!   bounded number of pieces in progress, bounded queues per peer).
//! - A piece counts as had only after it matched its hash and was written; the store
//!   records it only after the data was synced, so `kill -9` loses no verified piece
//!   and a restart re-hashes nothing.
//! - No path in a torrent can escape its download directory.

pub mod bencode;
pub mod bitfield;
pub mod check;
pub mod config;
pub mod create;
pub mod dht;
mod error;
mod fresh;
mod hashes;
pub mod http;
pub mod magnet;
pub mod merkle;
pub mod metainfo;
pub mod mse;
mod peer;
pub mod picker;
pub mod piecebuf;
mod session;
pub mod storage;
pub mod store;
pub mod stream;
mod torrent;
pub mod tracker;
pub mod tracker_server;
pub mod tracker_udp;
pub mod types;
pub mod webseed;
pub mod wire;

pub use config::{Encryption, TorrentConfig};
pub use error::TorrentError;
pub use session::{
    MAX_TORRENT_FILE, Metrics, PENDING_HANDSHAKES, SpawnOptions, TorrentHandle, TorrentService,
    read_torrent_file, spawn,
};
pub use stream::{FileMeta, FileReader};
pub use types::{AddRequest, PeerInfo, ShareRequest, TorrentEvent, TorrentInfo, TorrentState};
