//! Every decoder of peer (or person) input in this crate, run through the oracle its
//! fuzz target uses: on random bytes (proptest), on the corpus the fuzzers keep in the
//! repo (`fuzz/corpus/<target>/`, grown by `scripts/fuzz` and CI), and, where the type
//! allows, typed values that must survive encoding and decoding unchanged.

#[path = "oracle/dht_record.rs"]
mod dht_record;
#[path = "oracle/peer_multiaddr.rs"]
mod peer_multiaddr;

#[path = "../../../fuzz/replay.rs"]
mod replay;

use proptest::prelude::*;

#[test]
fn the_kept_corpus_passes_every_oracle() {
    replay::replay(&[
        ("dht_record", dht_record::check as fn(&[u8])),
        ("peer_multiaddr", peer_multiaddr::check as fn(&[u8])),
    ]);
}

proptest! {
    #[test]
    fn dht_record_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        dht_record::check(&data);
    }

    #[test]
    fn peer_multiaddr_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        peer_multiaddr::check(&data);
    }
}
