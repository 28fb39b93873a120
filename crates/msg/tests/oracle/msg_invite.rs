//! Contact codes a person pastes and key bundles the DHT returns: parsing and signature
//! checks never panic, whatever the text or bytes.
//!
//! The oracle for this decoder: fuzz/fuzz_targets/msg_invite.rs runs it under libFuzzer, and
//! tests/codecs.rs runs it on random bytes (proptest) and on the kept corpus.

use nodus_msg::card::{self, Invite};

pub fn check(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Invite::from_code(text);
        let _ = Invite::from_code(&format!("{}{text}", card::CODE_PREFIX));
    }
    let split = data.first().copied().unwrap_or(0) as usize;
    let rest = data.get(1..).unwrap_or_default();
    let (key, value) = rest.split_at(split.min(rest.len()));
    let _ = card::validate_record(key, value);
    let _ = card::validate_record(
        b"/msg/keys/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
        value,
    );
}
