//! An onion service's descriptor as gossip brings it: checking never panics and never
//! takes more than its bounds; one that verifies names 1 to 8 introduction points and
//! is taken into a node's list once.

use nodus_onion::hs::descriptor::{self, MAX_INTROS, Services};

pub fn check(data: &[u8]) {
    if let Ok(s) = descriptor::verify(data) {
        assert!(!s.intros.is_empty() && s.intros.len() <= MAX_INTROS);
        let mut known = Services::default();
        let now = s.published_ms;
        assert!(known.insert(data, now).expect("it verified"));
        assert!(
            !known.insert(data, now).unwrap(),
            "the same one again is old"
        );
        assert_eq!(
            known.get(&s.id).map(|k| k.intros.len()),
            Some(s.intros.len())
        );
    }
}
