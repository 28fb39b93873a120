//! A peer's answer for the relay and service lists: reading it never panics; what it
//! reads are items within their bounds that encode back to the same bytes; taking them
//! into a node's lists never panics.

use nodus_onion::directory::Directory;
use nodus_onion::hs::descriptor::Services;
use nodus_onion::lists::{self, Item, MAX_ITEM};

pub fn check(data: &[u8]) {
    if let Ok(items) = lists::decode(data) {
        let mut again = Vec::new();
        for i in &items {
            let (Item::Relay(b) | Item::Service(b)) = i;
            assert!(!b.is_empty() && b.len() <= MAX_ITEM);
            i.encode(&mut again);
        }
        assert_eq!(again, data, "the items encode back to the same bytes");
        let (mut relays, mut services) = (Directory::default(), Services::default());
        for i in &items {
            match i {
                Item::Relay(b) => drop(relays.insert(b, 0)),
                Item::Service(b) => drop(services.insert(b, 0)),
            }
        }
    }
}
