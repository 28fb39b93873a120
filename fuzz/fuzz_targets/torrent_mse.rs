//! What a peer may send during a message stream encryption handshake, on either side:
//! the accepting side reading a public key, padding and the rest; the connecting side
//! reading the answer. Neither panics, reads past its bounds, or waits for more input
//! than the handshake allows.
#![no_main]

#[path = "../../crates/torrent/tests/oracle/torrent_mse.rs"]
mod oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracle::check(data));
