//! A relay descriptor as gossip brings it: checking never panics and never takes more
//! than its bound; one that verifies verifies again from the bytes it keeps, and names
//! at most the addresses allowed.

use nodus_onion::descriptor::{self, MAX_ADDRS};

pub fn check(data: &[u8]) {
    if let Ok(v) = descriptor::verify(data) {
        assert!(v.addrs.len() <= MAX_ADDRS);
        let again = descriptor::verify(&v.signed).expect("kept bytes verify");
        assert_eq!(again.descriptor, v.descriptor);
        assert_eq!(again.peer, v.peer);
    }
}
