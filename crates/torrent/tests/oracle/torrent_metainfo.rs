//! .torrent files and magnet-fetched info dictionaries: bencode and the metainfo parser
//! (v1, v2, hybrid) never panic, and a torrent that loads writes out bytes that load
//! again to the same infohashes and layout.
//!
//! The oracle for this decoder: fuzz/fuzz_targets/torrent_metainfo.rs runs it under libFuzzer, and
//! tests/codecs.rs runs it on random bytes (proptest) and on the kept corpus.

use nodus_torrent::bencode::{self, BValue};
use nodus_torrent::magnet::Magnet;
use nodus_torrent::metainfo::Metainfo;

pub fn check(data: &[u8]) {
    if let Ok((v, used)) = bencode::decode_prefix(data) {
        assert!(BValue::from(&v).encode().len() <= used);
    }
    if let Ok(m) = Metainfo::from_bytes(data) {
        let again = Metainfo::from_bytes(&m.to_bytes()).expect("written torrent loads");
        assert_eq!(again.hashes, m.hashes);
        assert_eq!(again.info.files, m.info.files);
        assert_eq!(again.info.num_pieces, m.info.num_pieces);
        for f in &m.info.files {
            for c in &f.path {
                assert!(!c.is_empty() && c != ".." && !c.contains('/'));
            }
        }
    }
    let _ = Metainfo::from_info_bytes(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = Magnet::parse(s);
    }
}
