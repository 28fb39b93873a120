//! What a Nostr client sends the relay, and what other nodes pass on over the overlay:
//! decoding never panics; an event that decodes re-encodes to the same event; checking
//! its signature and matching it against filters never panics.
//!
//! The oracle for this decoder: fuzz/fuzz_targets/social_message.rs runs it under
//! libFuzzer, and tests/codecs.rs runs it on random bytes (proptest) and on the kept
//! corpus.

use nodus_social::event::Event;
use nodus_social::filter::Filter;
use nodus_social::message::ClientMessage;

fn round_trips(e: &Event) {
    let _ = e.verify();
    let _ = e.retention();
    let _ = e.expires_at();
    let back: Event = serde_json::from_str(&e.to_json()).expect("an event re-encodes");
    assert_eq!(&back, e);
}

pub fn check(data: &[u8]) {
    // As gossip delivers it: an event's JSON alone.
    if let Ok(e) = serde_json::from_slice::<Event>(data) {
        round_trips(&e);
    }
    if let Ok(f) = serde_json::from_slice::<Filter>(data) {
        let probe = serde_json::from_str::<Event>(PROBE).expect("the probe decodes");
        let _ = f.matches(&probe);
        assert!(f.limit() <= nodus_social::filter::MAX_LIMIT);
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ClientMessage::decode(text) {
        Ok(ClientMessage::Event(e)) => round_trips(&e),
        Ok(ClientMessage::Req { id, filters } | ClientMessage::Count { id, filters }) => {
            assert!(!id.is_empty() && id.chars().count() <= nodus_social::message::MAX_SUB_ID);
            assert!(filters.len() <= nodus_social::message::MAX_FILTERS);
        }
        Ok(ClientMessage::Close(id) | ClientMessage::NegClose(id)) => assert!(!id.is_empty()),
        Ok(ClientMessage::Auth(e)) => round_trips(&e),
        Ok(ClientMessage::NegOpen { id, msg, .. } | ClientMessage::NegMsg { id, msg }) => {
            assert!(!id.is_empty());
            // What the relay does with a client's negentropy message: answer or refuse.
            let mut n = nodus_social::sync::negentropy_of(&[(1, [1; 32]), (9, [2; 32])])
                .expect("a set of two");
            let _ = n.reconcile(&msg);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

const PROBE: &str = r#"{"id":"0000000000000000000000000000000000000000000000000000000000000000","pubkey":"1111111111111111111111111111111111111111111111111111111111111111","created_at":1700000000,"kind":1,"tags":[["e","aa"],["t","nostr"]],"content":"probe","sig":"00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"}"#;
