//! What volunteers and coordinators send each other: a request, a reply or a project
//! announcement decodes to itself within its limits (batch sizes, project names) or
//! not at all; nothing panics.
//!
//! The oracle for these decoders: fuzz/fuzz_targets/compute_wire.rs runs it under
//! libFuzzer, and tests/codecs.rs runs it on random bytes (proptest) and on the kept
//! corpus.

use nodus_compute::wire::{
    MAX_BATCH, MAX_NAME, MAX_PROJECTS, Reply, Request, decode_announce, decode_reply,
    decode_request, encode,
};

pub fn check(data: &[u8]) {
    if let Ok(r) = decode_request(data) {
        assert_eq!(decode_request(&encode(&r)).ok(), Some(r.clone()));
        match &r {
            Request::Submit { results, .. } => assert!(results.len() <= MAX_BATCH),
            Request::Work { max, .. } => assert!(*max as usize <= MAX_BATCH),
            _ => {}
        }
    }
    if let Ok(r) = decode_reply(data) {
        assert_eq!(decode_reply(&encode(&r)).ok(), Some(r.clone()));
        match &r {
            Reply::Units { units, .. } => assert!(units.len() <= MAX_BATCH),
            Reply::Projects(p) => {
                assert!(p.len() <= MAX_PROJECTS);
                assert!(p.iter().all(|a| a.name.len() <= MAX_NAME));
            }
            _ => {}
        }
    }
    if let Ok(a) = decode_announce(data) {
        assert!(a.name.len() <= MAX_NAME);
        assert_eq!(decode_announce(&encode(&a)).ok(), Some(a));
    }
}
