//! Every decoder of client or peer input in this crate, run through the oracle its fuzz
//! target uses: on random bytes (proptest), on the corpus the fuzzers keep in the repo
//! (`fuzz/corpus/<target>/`), and typed events that must survive signing, encoding,
//! decoding and verification unchanged.

#[path = "oracle/social_message.rs"]
mod social_message;

#[path = "oracle/social_sync.rs"]
mod social_sync;

#[path = "../../../fuzz/replay.rs"]
mod replay;

use nodus_social::event::{Event, Keys};
use nodus_social::message::ClientMessage;
use proptest::prelude::*;

#[test]
fn the_kept_corpus_passes_every_oracle() {
    replay::replay(&[
        ("social_message", social_message::check as fn(&[u8])),
        ("social_sync", social_sync::check),
    ]);
}

fn tags() -> impl Strategy<Value = Vec<Vec<String>>> {
    proptest::collection::vec(proptest::collection::vec(any::<String>(), 1..4), 0..6)
}

proptest! {
    #[test]
    fn social_message_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        social_message::check(&data);
    }

    #[test]
    fn social_sync_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        social_sync::check(&data);
    }

    /// Frames of each type with any body.
    #[test]
    fn social_sync_on_any_frame(tag in 1u8..7, body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut data = vec![tag];
        data.extend(body);
        social_sync::check(&data);
    }

    #[test]
    fn social_message_on_any_text(text in any::<String>()) {
        social_message::check(text.as_bytes());
        social_message::check(format!("[\"EVENT\",{text}]").as_bytes());
        social_message::check(format!("[\"REQ\",\"s\",{text}]").as_bytes());
        social_message::check(format!("[\"NEG-OPEN\",\"s\",{{}},{text}]").as_bytes());
    }

    /// Any content and tags (quotes, control characters, any Unicode): the id the
    /// signer computes is the one the relay computes, through the wire.
    #[test]
    fn signed_events_survive_the_wire(
        content in any::<String>(),
        tags in tags(),
        kind in any::<u16>(),
        created_at in 0u64..4_000_000_000,
    ) {
        let keys = Keys::generate();
        let e = keys.sign(created_at, kind, tags, &content);
        let m = ClientMessage::decode(&format!("[\"EVENT\",{}]", e.to_json())).unwrap();
        prop_assert_eq!(&m, &ClientMessage::Event(Box::new(e.clone())));
        let back: Event = serde_json::from_str(&e.to_json()).unwrap();
        prop_assert_eq!(back.verify(), Ok(()));
        social_message::check(e.to_json().as_bytes());
    }
}
