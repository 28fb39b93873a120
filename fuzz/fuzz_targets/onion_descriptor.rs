//! A relay descriptor as gossip brings it: checking never panics, and one that verifies
//! verifies again from the bytes it keeps.
#![no_main]

#[path = "../../crates/onion/tests/oracle/onion_descriptor.rs"]
mod oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracle::check(data));
