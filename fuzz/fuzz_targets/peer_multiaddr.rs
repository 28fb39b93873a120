//! Multiaddr bytes as identify and Kademlia deliver them, through the routing table's
//! IP-diversity check. Must never panic.
#![no_main]

#[path = "../../crates/net/tests/oracle/peer_multiaddr.rs"]
mod oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracle::check(data));
