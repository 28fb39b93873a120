//! Every decoder of peer (or person) input in this crate, run through the oracle its
//! fuzz target uses: on random bytes (proptest), on the corpus the fuzzers keep in the
//! repo (`fuzz/corpus/<target>/`, grown by `scripts/fuzz` and CI), and, where the type
//! allows, typed values that must survive encoding and decoding unchanged.

#[path = "oracle/msg_invite.rs"]
mod msg_invite;
#[path = "oracle/msg_mailbox_item.rs"]
mod msg_mailbox_item;
#[path = "oracle/msg_wire.rs"]
mod msg_wire;

#[path = "../../../fuzz/replay.rs"]
mod replay;

use proptest::prelude::*;

#[test]
fn the_kept_corpus_passes_every_oracle() {
    replay::replay(&[
        ("msg_wire", msg_wire::check as fn(&[u8])),
        ("msg_invite", msg_invite::check as fn(&[u8])),
        ("msg_mailbox_item", msg_mailbox_item::check as fn(&[u8])),
    ]);
}

proptest! {
    #[test]
    fn msg_wire_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        msg_wire::check(&data);
    }

    #[test]
    fn msg_invite_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        msg_invite::check(&data);
    }

    #[test]
    fn msg_mailbox_item_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        msg_mailbox_item::check(&data);
    }
}
