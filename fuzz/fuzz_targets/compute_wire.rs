//! What volunteers and coordinators send each other: each message decodes to itself
//! within its limits or not at all; nothing panics.
#![no_main]

#[path = "../../crates/compute/tests/oracle/compute_wire.rs"]
mod oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracle::check(data));
