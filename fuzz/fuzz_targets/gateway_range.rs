//! Range headers any HTTP client sends the content gateway: planning never panics and
//! yields only ranges inside the file, without overlaps.
#![no_main]

#[path = "../../crates/gateway/tests/oracle/gateway_range.rs"]
mod oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracle::check(data));
