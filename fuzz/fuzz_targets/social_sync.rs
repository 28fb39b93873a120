//! Frames another node sends in a social sync, and the negentropy messages in them:
//! decoding never panics, what decodes re-encodes to the same frame, and reconciling
//! any message fails cleanly or answers.
#![no_main]

#[path = "../../crates/social/tests/oracle/social_sync.rs"]
mod oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracle::check(data));
