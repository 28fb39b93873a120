//! The proof-of-work seal. A header's seal hash is its hash with `mix_hash` and `nonce`
//! zeroed; the work hash is keccak256(seal hash ‖ nonce), stored in `mix_hash`, and must
//! not exceed the block's target. Verifying costs two hashes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use alloy_consensus::Header;
use alloy_primitives::{B64, B256, U256, keccak256};

pub fn seal_hash(h: &Header) -> B256 {
    let mut bare = h.clone();
    bare.mix_hash = B256::ZERO;
    bare.nonce = B64::ZERO;
    bare.hash_slow()
}

pub fn work_hash(seal: &B256, nonce: u64) -> B256 {
    let mut buf = [0u8; 40];
    buf[..32].copy_from_slice(seal.as_slice());
    buf[32..].copy_from_slice(&nonce.to_be_bytes());
    keccak256(buf)
}

/// True when the header's seal is valid for `target`.
pub fn verify(h: &Header, target: U256) -> bool {
    let nonce = u64::from_be_bytes(h.nonce.0);
    let work = work_hash(&seal_hash(h), nonce);
    work == h.mix_hash && U256::from_be_bytes(work.0) <= target
}

/// Searches nonces `start, start + step, ...` until one meets `target`, `stop` is set,
/// or `rate` (hashes per second, 0 = unlimited) would be exceeded (then it sleeps).
/// Returns the nonce, its work hash, and the hashes tried.
pub fn search(
    seal: &B256,
    target: U256,
    start: u64,
    step: u64,
    rate: u64,
    stop: &AtomicBool,
) -> (Option<(u64, B256)>, u64) {
    search_until(seal, target, start, step, rate, stop)
}

/// Something that says when to give up a search.
pub trait Stop {
    fn stopped(&self) -> bool;
}

impl Stop for AtomicBool {
    fn stopped(&self) -> bool {
        self.load(Ordering::Relaxed)
    }
}

/// [`search`] with any stop condition.
pub fn search_until(
    seal: &B256,
    target: U256,
    start: u64,
    step: u64,
    rate: u64,
    stop: &dyn Stop,
) -> (Option<(u64, B256)>, u64) {
    const BATCH: u64 = 1024;
    let began = Instant::now();
    let mut nonce = start;
    let mut tried = 0u64;
    loop {
        for _ in 0..BATCH {
            let w = work_hash(seal, nonce);
            tried += 1;
            if U256::from_be_bytes(w.0) <= target {
                return (Some((nonce, w)), tried);
            }
            nonce = nonce.wrapping_add(step);
        }
        if stop.stopped() {
            return (None, tried);
        }
        if rate > 0 {
            let due = Duration::from_secs_f64(tried as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(began.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn found_seal_verifies_and_a_changed_one_does_not() {
        let mut h = Header {
            number: 7,
            difficulty: U256::from(1000),
            ..Default::default()
        };
        let target = U256::MAX / U256::from(1000);
        let stop = AtomicBool::new(false);
        let (found, _) = search(&seal_hash(&h), target, 0, 1, 0, &stop);
        let (nonce, work) = found.unwrap();
        h.nonce = B64::from(nonce.to_be_bytes());
        h.mix_hash = work;
        assert!(verify(&h, target));
        h.timestamp += 1;
        assert!(!verify(&h, target), "the seal covers the header");
    }
}
