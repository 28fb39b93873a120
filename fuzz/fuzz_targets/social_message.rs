//! Every message a Nostr client can send the relay, and events as other nodes pass them
//! on: decoding never panics, and what decodes re-encodes to the same value.
#![no_main]

#[path = "../../crates/social/tests/oracle/social_message.rs"]
mod oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracle::check(data));
