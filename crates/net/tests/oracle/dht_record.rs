//! A DHT record as a peer sends it: arbitrary key and value bytes through the namespace
//! validators. Must never panic.
//!
//! The oracle for this decoder: fuzz/fuzz_targets/dht_record.rs runs it under libFuzzer, and
//! tests/codecs.rs runs it on random bytes (proptest) and on the kept corpus.

use libp2p::kad::{Record, RecordKey};
use nodus_net::Validators;

pub fn check(data: &[u8]) {
    let split = data.first().copied().unwrap_or(0) as usize;
    let rest = data.get(1..).unwrap_or_default();
    let (key, value) = rest.split_at(split.min(rest.len()));
    let record = Record::new(RecordKey::new(&key), value.to_vec());
    let _ = Validators::namespace(key);
    let _ = Validators::default().validate(&record);
}
