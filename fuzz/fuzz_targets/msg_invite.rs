//! Contact codes a person pastes and key bundles the DHT returns: parsing and signature
//! checks never panic, whatever the text or bytes.
#![no_main]

#[path = "../../crates/msg/tests/oracle/msg_invite.rs"]
mod oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracle::check(data));
