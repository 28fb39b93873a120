//! What arrives on a call's socket from anyone: opening a datagram (SRTP frame or SRTCP
//! report) never panics and fails for anything not sealed with the call's keys; what a
//! contact seals (any RTCP plaintext) parses or fails without a panic; a redundant (RFC 2198) payload parses to parts within it or not
//! at all; frames with any sequence numbers, timestamps and arrival times, in any
//! order, go through the jitter buffer and the bandwidth estimator without a panic, the
//! buffer within its bound and the estimate a finite number.
//!
//! The oracle for this decoder: fuzz/fuzz_targets/voice_media.rs runs it under
//! libFuzzer, and tests/codecs.rs runs it on random bytes (proptest) and on the kept
//! corpus.

use nodus_voice::bwe::Estimator;
use nodus_voice::jitter::{JitterBuffer, Out};
use nodus_voice::media::{Keys, Receiver, parse_rtcp};

pub fn check(data: &[u8]) {
    let keys = Keys {
        key: [7; 16],
        salt: [9; 14],
        ssrc: 0x0102_0304,
    };
    // As the payload of a sealed packet (RFC 2198 redundancy): parts within it, or
    // nothing.
    if let Some((primary, previous)) = nodus_voice::red::decode(data) {
        assert!(primary.len() + previous.map_or(0, <[u8]>::len) < data.len());
    }
    let mut rx = Receiver::new(&keys).expect("keys of the right size");
    assert!(
        rx.open(data).is_err(),
        "bytes not sealed with the call's keys opened"
    );
    let _ = parse_rtcp(data);
    // The bytes as a stream of (seq, timestamp, arrival, length) frames.
    let mut j = JitterBuffer::new();
    let mut bwe = Estimator::new();
    for (i, c) in data.chunks(7).enumerate() {
        if c.len() < 7 {
            break;
        }
        let seq = u16::from_be_bytes([c[0], c[1]]);
        let ts = u32::from_be_bytes([c[2], c[3], c[4], c[5]]);
        j.push(
            seq,
            ts,
            i as f64 * 20.0 + c[6] as f64,
            vec![c[6]; c[6] as usize % 8],
        );
        match j.pop() {
            Out::Frame(_) | Out::Recover(_) | Out::Conceal | Out::Wait => {}
        }
        assert!(j.target() <= 25);
        bwe.arrived(i as f64 * 20.0 + c[6] as f64, ts, c[6] as usize * 8);
        assert!(bwe.received_bps().is_finite() && bwe.queue_ms().is_finite());
        if i % 5 == 4 {
            let _ = bwe.overused();
            let _ = bwe.report();
        }
    }
}
