//! A DHT record as a peer sends it: arbitrary key and value bytes through the namespace
//! validators. Must never panic.
#![no_main]

#[path = "../../crates/net/tests/oracle/dht_record.rs"]
mod oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracle::check(data));
