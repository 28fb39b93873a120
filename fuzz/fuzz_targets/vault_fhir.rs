//! FHIR JSON as a provider appends it and a person imports it: checking never panics,
//! and a bundle that imports exports to one that imports the same.
#![no_main]

#[path = "../../crates/vault/tests/oracle/vault_fhir.rs"]
mod oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracle::check(data));
