//! .torrent files and magnet-fetched info dictionaries: bencode and the metainfo parser
//! (v1, v2, hybrid) never panic, and a torrent that loads writes out bytes that load
//! again to the same infohashes and layout.
#![no_main]

#[path = "../../crates/torrent/tests/oracle/torrent_metainfo.rs"]
mod oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracle::check(data));
