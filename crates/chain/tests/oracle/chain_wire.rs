//! Everything a peer sends the chain service: gossiped transactions (batches of
//! EIP-2718 bytes) and blocks (RLP), sync requests and responses and their framing, and headers. Decoding
//! never panics; a block that decodes re-encodes to the same bytes.
//!
//! The oracle for this decoder: fuzz/fuzz_targets/chain_wire.rs runs it under libFuzzer, and
//! tests/codecs.rs runs it on random bytes (proptest) and on the kept corpus.

use futures::executor::block_on;
use nodus_chain::store::encode_block;
use nodus_chain::tx::RecoveredTx;
use nodus_chain::wire;

pub fn check(data: &[u8]) {
    if let Ok(tx) = RecoveredTx::decode(data) {
        let _ = tx.check_static(31337, 30_000_000);
        assert_eq!(
            tx.encoded(),
            data,
            "a decoded transaction re-encodes to its bytes"
        );
    }
    if let Ok(block) = wire::decode_block(data) {
        assert_eq!(
            encode_block(&block),
            data,
            "a decoded block re-encodes to its bytes"
        );
        let _ = nodus_chain::chain::recover_all(&block);
    }
    if let Ok(txs) = wire::decode_txs(data) {
        assert!(txs.len() <= wire::MAX_GOSSIP_TXS);
        let refs: Vec<&[u8]> = txs.iter().map(Vec::as_slice).collect();
        assert_eq!(
            wire::decode_txs(&wire::encode_txs(&refs)).unwrap(),
            txs,
            "a decoded batch round trips"
        );
        for raw in &txs {
            let _ = RecoveredTx::decode(raw);
        }
    }
    let _ = wire::decode_request(data);
    if let Ok(wire::SyncResponse::Headers(raw)) = wire::decode_response(data) {
        let _ = wire::decode_headers(&raw);
    }
    let mut r = futures::io::Cursor::new(data);
    while let Ok(frame) = block_on(wire::read_frame(&mut r, wire::MAX_REQUEST_FRAME)) {
        assert!(frame.len() <= wire::MAX_REQUEST_FRAME);
        let _ = wire::decode_request(&frame);
    }
}
