//! Datagrams on a call's media path, and frames in any order through the jitter buffer:
//! nothing not sealed with the call's keys opens, nothing panics, the buffer stays bounded.
#![no_main]

#[path = "../../crates/voice/tests/oracle/voice_media.rs"]
mod oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracle::check(data));
