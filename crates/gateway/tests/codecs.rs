//! Every decoder of client input in this crate, run through the oracle its fuzz target
//! uses: on random bytes (proptest) and on the corpus the fuzzers keep in the repo
//! (`fuzz/corpus/<target>/`).

#[path = "oracle/gateway_range.rs"]
mod gateway_range;

#[path = "../../../fuzz/replay.rs"]
mod replay;

use proptest::prelude::*;

#[test]
fn the_kept_corpus_passes_every_oracle() {
    replay::replay(&[("gateway_range", gateway_range::check as fn(&[u8]))]);
}

proptest! {
    #[test]
    fn gateway_range_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        gateway_range::check(&data);
    }

    #[test]
    fn gateway_range_on_range_like_text(len in any::<u64>(), spec in "bytes=[0-9, -]{0,40}") {
        let mut data = len.to_le_bytes().to_vec();
        data.extend_from_slice(spec.as_bytes());
        gateway_range::check(&data);
    }
}
