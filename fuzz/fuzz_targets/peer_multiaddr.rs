//! Multiaddr bytes as identify and Kademlia deliver them, through the routing table's
//! IP-diversity check. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use libp2p::Multiaddr;
use nodus_net::diversity::{Limits, Subnet, admit};

fuzz_target!(|data: &[u8]| {
    let Ok(addr) = Multiaddr::try_from(data.to_vec()) else {
        return;
    };
    let subnet = Subnet::of_addr(&addr);
    let table: Vec<Subnet> = subnet.into_iter().collect();
    let limits = Limits {
        per_bucket: 2,
        per_table: 10,
    };
    let _ = admit(limits, &addr, [(true, table.as_slice()), (false, table.as_slice())]);
});
