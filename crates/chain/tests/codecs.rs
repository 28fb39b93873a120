//! Every decoder of peer (or person) input in this crate, run through the oracle its
//! fuzz target uses: on random bytes (proptest), on the corpus the fuzzers keep in the
//! repo (`fuzz/corpus/<target>/`, grown by `scripts/fuzz` and CI), and, where the type
//! allows, typed values that must survive encoding and decoding unchanged.

#[path = "oracle/chain_wire.rs"]
mod chain_wire;

#[path = "../../../fuzz/replay.rs"]
mod replay;

use proptest::prelude::*;

#[test]
fn the_kept_corpus_passes_every_oracle() {
    replay::replay(&[("chain_wire", chain_wire::check as fn(&[u8]))]);
}

proptest! {
    #[test]
    fn chain_wire_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        chain_wire::check(&data);
    }
}
