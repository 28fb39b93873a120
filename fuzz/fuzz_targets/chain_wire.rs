//! Everything a peer sends the chain service: gossiped transactions (EIP-2718) and
//! blocks (RLP), sync requests and responses and their framing, and headers. Decoding
//! never panics; a block that decodes re-encodes to the same bytes.
#![no_main]

#[path = "../../crates/chain/tests/oracle/chain_wire.rs"]
mod oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracle::check(data));
