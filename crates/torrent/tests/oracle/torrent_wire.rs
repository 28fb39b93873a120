//! Everything a BitTorrent peer or tracker sends nodus: peer messages as a byte stream
//! (length prefixes and all), handshakes, extension handshakes, ut_metadata and ut_pex
//! messages, bitfields, tracker answers (HTTP and UDP) and UDP tracker requests.
//! Decoding never panics, and a decoded peer message re-encodes to the same bytes it
//! came from.
//!
//! The oracle for this decoder: fuzz/fuzz_targets/torrent_wire.rs runs it under libFuzzer, and
//! tests/codecs.rs runs it on random bytes (proptest) and on the kept corpus.

use bytes::{Bytes, BytesMut};
use nodus_torrent::bitfield::Bitfield;
use nodus_torrent::tracker::parse_response;
use nodus_torrent::tracker_udp;
use nodus_torrent::wire::{ExtHandshake, Handshake, Message, MetadataMsg, Pex};

pub fn check(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.clone();
        match Message::decode(&mut buf) {
            Ok(Some(m)) => {
                let used = before.len() - buf.len();
                let mut again = BytesMut::new();
                m.encode(&mut again);
                if !matches!(m, Message::Unknown(_)) {
                    assert_eq!(&again[..], &before[..used]);
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    let _ = Handshake::decode(data);
    if let Ok(h) = ExtHandshake::decode(data) {
        assert_eq!(ExtHandshake::decode(&h.encode()).ok(), Some(h));
    }
    let b = Bytes::copy_from_slice(data);
    if let Ok(m) = MetadataMsg::decode(&b) {
        assert_eq!(MetadataMsg::decode(&m.encode()).ok(), Some(m));
    }
    let _ = Pex::decode(data);
    let _ = parse_response(data);
    // UDP trackers (BEP 15): what a client hears and what a tracker server hears.
    let tid = data
        .get(4..8)
        .map_or(0, |t| u32::from_be_bytes(t.try_into().unwrap()));
    let _ = tracker_udp::parse_connect_response(data, tid);
    let _ = tracker_udp::parse_announce_response(data, tid);
    let _ = tracker_udp::parse_request(data);
    if let Some((&n, rest)) = data.split_first() {
        let _ = Bitfield::from_bytes(rest, n as u32 * 8 + 3);
    }
}
