//! nodus-torrent: a BitTorrent engine.
pub mod bencode;
pub mod merkle;
pub mod metainfo;
