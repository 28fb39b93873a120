//! What another node sends on `/nodus/vault/1`: a patient's node decodes requests, a
//! provider's node decodes replies and opens the records in them. Decoding never
//! panics; what decodes re-encodes to the same message; a request that decodes holds
//! the protocol's limits; records from anyone but the patient fail to open cleanly.
//!
//! The oracle for this decoder: fuzz/fuzz_targets/vault_wire.rs runs it under
//! libFuzzer, and tests/codecs.rs runs it on random bytes (proptest) and on the kept
//! corpus.

use nodus_vault::crypto::Keys;
use nodus_vault::wire::{self, Reply, Request};

pub fn check(data: &[u8]) {
    if let Ok(r) = wire::decode_request(data) {
        assert_eq!(
            wire::decode::<Request>(&wire::encode(&r)).ok(),
            Some(r.clone())
        );
        match r {
            Request::Fetch { types } => {
                assert!(types.len() <= wire::MAX_TYPES);
                assert!(types.iter().all(|t| t.len() <= wire::MAX_TYPE_LEN));
            }
            Request::Append { resource, .. } => assert!(resource.len() <= wire::MAX_RESOURCE),
            Request::Key => {}
        }
    }
    if let Ok(r) = wire::decode::<Reply>(data) {
        assert_eq!(
            wire::decode::<Reply>(&wire::encode(&r)).ok(),
            Some(r.clone())
        );
        if let Reply::Records(records) = r {
            let keys = Keys::ephemeral();
            let opened = nodus_vault::vault::open_fetched(
                &keys, "provider", "patient", 0, &[0; 32], &[0; 48], &records,
            );
            assert!(records.is_empty() || opened.is_err());
        }
    }
}
