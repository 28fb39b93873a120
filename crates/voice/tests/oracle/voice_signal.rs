//! What a call's peers send outside the media path: a call signal from a contact
//! decodes to itself within its limits (candidates, relay legs) or not at all; a relay
//! allocation request or reply from a peer on the overlay decodes to itself or not at
//! all. Nothing panics.
//!
//! The oracle for these decoders: fuzz/fuzz_targets/voice_signal.rs runs it under
//! libFuzzer, and tests/codecs.rs runs it on random bytes (proptest) and on the kept
//! corpus.

use nodus_voice::alloc::{decode_reply, decode_request};
use nodus_voice::signal::{CallSignal, MAX_CANDIDATES, MAX_RELAYS};

pub fn check(data: &[u8]) {
    if let Some(s) = CallSignal::decode(data) {
        assert_eq!(CallSignal::decode(&s.encode()), Some(s.clone()));
        if let CallSignal::Offer { candidates, .. } | CallSignal::Answer { candidates, .. } = &s {
            assert!(candidates.len() <= MAX_CANDIDATES);
        }
        if let CallSignal::Offer { relays, .. } | CallSignal::Move { relays, .. } = &s {
            assert!(relays.len() <= MAX_RELAYS);
        }
    }
    if let Some(r) = decode_request(data) {
        assert_eq!(decode_request(&r.encode()), Some(r));
    }
    if let Some(r) = decode_reply(data) {
        assert_eq!(decode_reply(&r.encode()), Some(r));
    }
}
