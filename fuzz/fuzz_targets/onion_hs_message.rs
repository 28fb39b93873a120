//! The onion-service relay messages a relay or a service reads from a circuit:
//! See the oracle for what it asserts.
#![no_main]

#[path = "../../crates/onion/tests/oracle/onion_hs_message.rs"]
mod oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracle::check(data));
