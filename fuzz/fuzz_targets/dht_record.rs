//! A DHT record as a peer sends it: arbitrary key and value bytes through the namespace
//! validators. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use libp2p::kad::{Record, RecordKey};
use nodus_net::Validators;

fuzz_target!(|data: &[u8]| {
    let split = data.first().copied().unwrap_or(0) as usize;
    let rest = data.get(1..).unwrap_or_default();
    let (key, value) = rest.split_at(split.min(rest.len()));
    let record = Record::new(RecordKey::new(&key), value.to_vec());
    let _ = Validators::namespace(key);
    let _ = Validators::default().validate(&record);
});
