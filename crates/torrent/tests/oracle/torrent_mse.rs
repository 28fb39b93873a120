//! What a peer may send during a message stream encryption handshake, on either side:
//! the accepting side reading a public key, padding and the rest; the connecting side
//! reading the answer. Neither panics, reads past its bounds, or waits for more input
//! than the handshake allows.
//!
//! The oracle for this decoder: fuzz/fuzz_targets/torrent_mse.rs runs it under libFuzzer, and
//! tests/codecs.rs runs it on random bytes (proptest) and on the kept corpus.

use nodus_torrent::mse::{Policy, initiate, respond};

pub fn check(data: &[u8]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (first, rest) = data.split_at(data.len().min(20));
        let io = tokio::io::join(rest, tokio::io::sink());
        let _ = respond(io, first, &[[1; 20]], Policy::Prefer).await;
        let io = tokio::io::join(data, tokio::io::sink());
        let _ = initiate(io, [1; 20], b"handshake", Policy::Prefer).await;
    });
}
