//! What any DHT node may send nodus over UDP: KRPC queries, responses and errors
//! (BEP 5). Decoding never panics, and a decoded query or response re-encodes to a
//! message that decodes to the same thing.
#![no_main]

#[path = "../../crates/torrent/tests/oracle/torrent_krpc.rs"]
mod oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracle::check(data));
