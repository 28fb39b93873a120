//! What another node sends on `/nodus/vault/1`: a patient's node decodes requests, a
//! provider's node decodes replies and opens the records in them. Decoding never
//! panics; what decodes re-encodes to the same message; a request that decodes holds
//! the protocol's limits; records from anyone but the patient fail to open cleanly;
//! the stored rows inside what replicas are sent decode or fail cleanly.
//!
//! The oracle for this decoder: fuzz/fuzz_targets/vault_wire.rs runs it under
//! libFuzzer, and tests/codecs.rs runs it on random bytes (proptest) and on the kept
//! corpus.

use nodus_vault::crypto::Keys;
use nodus_vault::store::{self, AnchorRow, GrantRow, LogRow, RecordRow};
use nodus_vault::wire::{self, Chunk, Reply, Request, Snapshot};

/// The rows a replica or a restoring patient decodes out of what it is sent.
fn rows(snap: Option<&Snapshot>, chunk: Option<&Chunk>) {
    if let Some(s) = snap {
        for g in &s.grants {
            let _ = store::decode::<GrantRow>(g, "grant");
        }
        for (_, a) in &s.anchors {
            let _ = store::decode::<AnchorRow>(a, "anchor");
        }
    }
    if let Some(c) = chunk {
        for (_, r) in &c.records {
            let _ = store::decode::<RecordRow>(r, "record");
        }
        for (_, l) in &c.log {
            let _ = store::decode::<LogRow>(l, "log");
        }
        assert!(c.bytes() >= c.records.len() * 8);
    }
}

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
            Request::Hold(s) => {
                assert!(s.grants.len() <= wire::MAX_GRANTS && s.anchors.len() <= wire::MAX_ANCHORS);
                rows(Some(&s), None);
            }
            Request::HoldMore(c) => rows(None, Some(&c)),
            Request::Key | Request::HoldEnd | Request::Restore => {}
        }
    }
    if let Ok(r) = wire::decode::<Reply>(data) {
        assert_eq!(
            wire::decode::<Reply>(&wire::encode(&r)).ok(),
            Some(r.clone())
        );
        match &r {
            Reply::Snapshot(s) => rows(Some(s), None),
            Reply::Chunk(c) => rows(None, Some(c)),
            _ => {}
        }
        if let Reply::Records(records) = r {
            let keys = Keys::ephemeral();
            let opened = nodus_vault::vault::open_fetched(
                &keys, "provider", "patient", 0, &[0; 32], &[0; 48], &records,
            );
            assert!(records.is_empty() || opened.is_err());
        }
    }
}
