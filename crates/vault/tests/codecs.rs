//! Every decoder of peer input in this crate (and the bundles a person imports), run
//! through the oracle its fuzz target uses: on random bytes (proptest), on the corpus
//! the fuzzers keep in the repo (`fuzz/corpus/<target>/`), and on typed messages.

#[path = "oracle/vault_wire.rs"]
mod vault_wire;

#[path = "oracle/vault_fhir.rs"]
mod vault_fhir;

#[path = "../../../fuzz/replay.rs"]
mod replay;

use nodus_vault::wire::{self, Refusal, Reply, Request, WireRecord};
use proptest::prelude::*;

#[test]
fn the_kept_corpus_passes_every_oracle() {
    replay::replay(&[
        ("vault_wire", vault_wire::check as fn(&[u8])),
        ("vault_fhir", vault_fhir::check),
    ]);
}

#[test]
fn the_fixture_passes_the_fhir_oracle() {
    vault_fhir::check(include_bytes!("../fixtures/hypertension.json"));
}

fn record() -> impl Strategy<Value = WireRecord> {
    (
        any::<String>(),
        any::<String>(),
        any::<u64>(),
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(rtype, id, version, epoch, body, wrap)| WireRecord {
            rtype,
            id,
            version,
            epoch,
            body,
            wrap,
        })
}

proptest! {
    #[test]
    fn vault_wire_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        vault_wire::check(&data);
    }

    #[test]
    fn vault_fhir_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        vault_fhir::check(&data);
    }

    /// Typed messages through the wire: each decodes to itself.
    #[test]
    fn messages_round_trip(types in proptest::collection::vec("[A-Za-z]{1,20}", 0..8), records in proptest::collection::vec(record(), 0..4), resource in proptest::collection::vec(any::<u8>(), 0..256)) {
        for r in [
            Request::Key,
            Request::Fetch { types: types.clone() },
            Request::Append { resource: resource.clone(), public_key: vec![1; 36], signature: vec![2; 64] },
        ] {
            let bytes = wire::encode(&r);
            prop_assert_eq!(wire::decode_request(&bytes).unwrap(), r);
            vault_wire::check(&bytes);
        }
        for r in [
            Reply::Records(records.clone()),
            Reply::Refused(Refusal::NotCovered { types: types.clone() }),
            Reply::Done,
        ] {
            let bytes = wire::encode(&r);
            prop_assert_eq!(wire::decode::<Reply>(&bytes).unwrap(), r);
            vault_wire::check(&bytes);
        }
    }

    /// FHIR-shaped JSON with any values where strings go.
    #[test]
    fn vault_fhir_on_resource_shaped_json(status in any::<String>(), code in any::<String>(), reference in any::<String>()) {
        let b = serde_json::json!({
            "resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": {"resourceType": "Observation", "status": status, "code": {"text": code}, "subject": {"reference": reference}}}]
        });
        vault_fhir::check(&serde_json::to_vec(&b).unwrap());
    }
}
