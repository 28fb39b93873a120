//! Requests and replies of /nodus/vault/1 as another node sends them: decoding never
//! panics, what decodes re-encodes the same, records from a stranger fail to open.
#![no_main]

#[path = "../../crates/vault/tests/oracle/vault_wire.rs"]
mod oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracle::check(data));
