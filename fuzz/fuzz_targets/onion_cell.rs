//! A cell from a neighbouring hop and the relay message inside it: decoding never
//! panics, and what decodes re-encodes to the same bytes.
#![no_main]

#[path = "../../crates/onion/tests/oracle/onion_cell.rs"]
mod oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracle::check(data));
