//! config.toml text as a person may write it: parse errors, never panics, and the line
//! number reported is within the text.
#![no_main]

#[path = "../../crates/core/tests/oracle/config_toml.rs"]
mod oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracle::check(data));
