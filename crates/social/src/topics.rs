//! Where events travel between nodus relays: one gossipsub topic per author, one per
//! person mentioned (`p` tags), and a DHT provider key per author naming the nodes
//! whose clients publish as them, so a new follower finds someone to sync with.

use crate::event::Event;

/// Mention topics one event is published on, at most (the first distinct `p` tags).
pub const MAX_MENTIONS: usize = 8;

pub fn author(pubkey: &[u8; 32]) -> String {
    format!("nodus/social/1/author/{}", hex::encode(pubkey))
}

pub fn mention(pubkey: &[u8; 32]) -> String {
    format!("nodus/social/1/mention/{}", hex::encode(pubkey))
}

/// The DHT key under which nodes holding an author's events announce themselves.
pub fn provider_key(pubkey: &[u8; 32]) -> Vec<u8> {
    let mut k = b"/nodus/social/author/".to_vec();
    k.extend_from_slice(pubkey);
    k
}

/// The keys an event's `p` tags name (valid ones, distinct, at most [`MAX_MENTIONS`]).
pub fn mentioned(e: &Event) -> Vec<[u8; 32]> {
    let mut out: Vec<[u8; 32]> = Vec::new();
    for k in e.p_keys() {
        if out.len() == MAX_MENTIONS {
            break;
        }
        if !out.contains(&k) {
            out.push(k);
        }
    }
    out
}

/// Every topic `e` is published on.
pub fn of(e: &Event) -> Vec<String> {
    let mut t = vec![author(&e.pubkey)];
    t.extend(mentioned(e).iter().map(mention));
    t
}

/// Whether `e` belongs on `topic`: a peer that forwards an event on a topic it does
/// not belong to is at fault.
pub fn belongs(e: &Event, topic: &str) -> bool {
    topic == author(&e.pubkey) || mentioned(e).iter().any(|k| topic == mention(k))
}
