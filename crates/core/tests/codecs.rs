//! Every decoder of peer (or person) input in this crate, run through the oracle its
//! fuzz target uses: on random bytes (proptest), on the corpus the fuzzers keep in the
//! repo (`fuzz/corpus/<target>/`, grown by `scripts/fuzz` and CI), and, where the type
//! allows, typed values that must survive encoding and decoding unchanged.

#[path = "oracle/config_toml.rs"]
mod config_toml;

#[path = "../../../fuzz/replay.rs"]
mod replay;

use proptest::prelude::*;

#[test]
fn the_kept_corpus_passes_every_oracle() {
    replay::replay(&[("config_toml", config_toml::check as fn(&[u8]))]);
}

proptest! {
    #[test]
    fn config_toml_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        config_toml::check(&data);
    }
}
