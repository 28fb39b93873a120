//! Every decoder of peer input in this crate, run through the oracle its fuzz target
//! uses: on random bytes (proptest) and on the corpus the fuzzers keep in the repo
//! (`fuzz/corpus/<target>/`); and real packets, altered, refused.

#[path = "oracle/voice_media.rs"]
mod voice_media;
#[path = "oracle/voice_signal.rs"]
mod voice_signal;

#[path = "../../../fuzz/replay.rs"]
mod replay;

use nodus_voice::media::{Keys, Receiver, Sender};
use proptest::prelude::*;

#[test]
fn the_kept_corpus_passes_every_oracle() {
    replay::replay(&[
        ("voice_media", voice_media::check as fn(&[u8])),
        ("voice_signal", voice_signal::check as fn(&[u8])),
    ]);
}

proptest! {
    #[test]
    fn voice_media_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        voice_media::check(&data);
    }

    #[test]
    fn voice_signal_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        voice_signal::check(&data);
    }

    /// A real packet with any one byte changed does not open.
    #[test]
    fn a_packet_changed_anywhere_is_refused(payload in proptest::collection::vec(any::<u8>(), 1..200), at in any::<usize>(), bit in 0u8..8) {
        let keys = Keys::random();
        let mut tx = Sender::new(&keys).unwrap();
        let mut rx = Receiver::new(&keys).unwrap();
        let mut p = tx.packet(&payload).unwrap().to_vec();
        let i = at % p.len();
        p[i] ^= 1 << bit;
        prop_assert!(rx.open(&p).is_err());
    }
}
