//! An onion service's descriptor as gossip brings it: checking never panics and never
//! See the oracle for what it asserts.
#![no_main]

#[path = "../../crates/onion/tests/oracle/onion_service_descriptor.rs"]
mod oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracle::check(data));
