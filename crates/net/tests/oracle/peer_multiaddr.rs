//! Multiaddr bytes as identify and Kademlia deliver them, through the routing table's
//! IP-diversity check. Must never panic.
//!
//! The oracle for this decoder: fuzz/fuzz_targets/peer_multiaddr.rs runs it under libFuzzer, and
//! tests/codecs.rs runs it on random bytes (proptest) and on the kept corpus.

use libp2p::Multiaddr;
use nodus_net::diversity::{Limits, Subnet, admit};

pub fn check(data: &[u8]) {
    let Ok(addr) = Multiaddr::try_from(data.to_vec()) else {
        return;
    };
    let subnet = Subnet::of_addr(&addr);
    let table: Vec<Subnet> = subnet.into_iter().collect();
    let limits = Limits {
        per_bucket: 2,
        per_table: 10,
    };
    let _ = admit(
        limits,
        &addr,
        [(true, table.as_slice()), (false, table.as_slice())],
    );
}
