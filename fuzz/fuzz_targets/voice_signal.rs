//! Call signals from contacts and relay allocation messages from peers: each decodes to
//! itself within its limits or not at all; nothing panics.
#![no_main]

#[path = "../../crates/voice/tests/oracle/voice_signal.rs"]
mod oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracle::check(data));
