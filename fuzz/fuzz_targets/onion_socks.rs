//! What a local program sends the SOCKS5 proxy: reading it never panics, and what it
//! accepts names a target the exit can parse.
#![no_main]

#[path = "../../crates/onion/tests/oracle/onion_socks.rs"]
mod oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracle::check(data));
