//! FHIR JSON as it reaches the vault: a resource a provider's node appends (peer input)
//! and a bundle a person imports. Checking never panics and stops at a path; a bundle
//! that imports exports to a bundle that imports to the same records.
//!
//! The oracle for this decoder: fuzz/fuzz_targets/vault_fhir.rs runs it under
//! libFuzzer, and tests/codecs.rs runs it on random bytes (proptest) and on the kept
//! corpus.

use nodus_vault::fhir::{bundle, validate};

pub fn check(data: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = validate::resource(&v, "Resource");
    }
    if let Ok(entries) = bundle::parse(data, |_, _| false) {
        let out = bundle::export(entries.iter().map(|e| &e.resource));
        let again = bundle::parse(&out, |_, _| false).expect("an export imports");
        assert_eq!(again, entries);
        assert_eq!(bundle::export(again.iter().map(|e| &e.resource)), out);
    }
}
