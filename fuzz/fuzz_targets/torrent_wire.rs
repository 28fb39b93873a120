//! Everything a BitTorrent peer or tracker sends nodus: peer messages as a byte stream
//! (length prefixes and all), handshakes, extension handshakes, ut_metadata and ut_pex
//! messages, bitfields, tracker answers (HTTP and UDP) and UDP tracker requests.
//! Decoding never panics, and a decoded peer message re-encodes to the same bytes it
//! came from.
#![no_main]

#[path = "../../crates/torrent/tests/oracle/torrent_wire.rs"]
mod oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracle::check(data));
