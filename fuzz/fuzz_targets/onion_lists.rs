//! A peer's answer for the relay and onion service lists (`/nodus/onion/lists/1`):
//! reading it never panics, and what it reads is within bounds.
#![no_main]

#[path = "../../crates/onion/tests/oracle/onion_lists.rs"]
mod oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracle::check(data));
