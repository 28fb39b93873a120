//! What another node sends in a social sync (`/nodus/social/sync/1`): decoding a frame
//! never panics, what decodes re-encodes to the same frame, and a negentropy message
//! of any bytes is answered or refused by either side without a panic.
//!
//! The oracle for this decoder: fuzz/fuzz_targets/social_sync.rs runs it under
//! libFuzzer, and tests/codecs.rs runs it on random bytes (proptest) and on the kept
//! corpus.

use nodus_social::sync::{Frame, negentropy_of};

pub fn check(data: &[u8]) {
    if let Ok(f) = Frame::decode(data) {
        assert_eq!(Frame::decode(&f.encode()).as_ref(), Ok(&f));
        if let Frame::Open { msg, .. } | Frame::Neg(msg) = &f {
            let set = [(1, [1; 32]), (5, [7; 32]), (9, [2; 32])];
            let mut responder = negentropy_of(&set).expect("a set of three");
            let _ = responder.reconcile(msg);
            let mut initiator = negentropy_of(&set).expect("a set of three");
            let _ = initiator.initiate();
            let (mut have, mut need) = (Vec::new(), Vec::new());
            let _ = initiator.reconcile_with_ids(msg, &mut have, &mut need);
        }
    }
}
