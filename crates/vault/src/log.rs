//! The audit log's hash chain and the anchors that pin it.
//!
//! Entry `n` holds an AuditEvent's JSON and `hash(n) = SHA-256("nodus-vault log" ||
//! hash(n-1) || n as u64 big-endian || event)`, with `hash(-1)` all zeros. Changing,
//! dropping or reordering an entry changes every hash after it; an anchor (the head hash
//! at entry `n`, in a chain transaction whose payload is [`anchor_payload`]) makes even
//! a rewrite that recomputes the hashes detectable by whoever holds the anchor.

use sha2::{Digest, Sha256};

pub const GENESIS: [u8; 32] = [0; 32];
/// First bytes of an anchor transaction's payload.
pub const ANCHOR_MAGIC: &[u8; 4] = b"NVA1";
pub const ANCHOR_LEN: usize = 4 + 8 + 32;

pub fn entry_hash(prev: &[u8; 32], seq: u64, event: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"nodus-vault log");
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(event);
    h.finalize().into()
}

/// What an anchor transaction carries: magic, entry number, head hash.
pub fn anchor_payload(seq: u64, head: &[u8; 32]) -> Vec<u8> {
    let mut p = Vec::with_capacity(ANCHOR_LEN);
    p.extend_from_slice(ANCHOR_MAGIC);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(head);
    p
}

/// `(entry number, head hash)` out of a payload.
pub fn parse_anchor(payload: &[u8]) -> Option<(u64, [u8; 32])> {
    if payload.len() != ANCHOR_LEN || &payload[..4] != ANCHOR_MAGIC {
        return None;
    }
    let seq = u64::from_be_bytes(payload[4..12].try_into().ok()?);
    Some((seq, payload[12..].try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_reads_back() {
        let p = anchor_payload(42, &[7; 32]);
        assert_eq!(parse_anchor(&p), Some((42, [7; 32])));
        assert_eq!(parse_anchor(&p[1..]), None);
    }

    #[test]
    fn every_input_moves_the_hash() {
        let a = entry_hash(&GENESIS, 0, b"x");
        assert_ne!(a, entry_hash(&GENESIS, 1, b"x"));
        assert_ne!(a, entry_hash(&GENESIS, 0, b"y"));
        assert_ne!(a, entry_hash(&[1; 32], 0, b"x"));
    }
}
