//! What any DHT node may send nodus over UDP: KRPC queries, responses and errors
//! (BEP 5). Decoding never panics, and a decoded query or response re-encodes to a
//! message that decodes to the same thing.
//!
//! The oracle for this decoder: fuzz/fuzz_targets/torrent_krpc.rs runs it under libFuzzer, and
//! tests/codecs.rs runs it on random bytes (proptest) and on the kept corpus.

use nodus_torrent::dht::krpc::{Message, decode, encode_query, encode_response};

pub fn check(data: &[u8]) {
    match decode(data) {
        Ok(Message::Query(q)) => {
            let again = decode(&encode_query(&q.tid, &q.id, &q.query));
            if let Ok(Message::Query(back)) = again {
                assert_eq!(back.query, q.query);
                assert_eq!(back.id, q.id);
            } else if !matches!(q.query, nodus_torrent::dht::krpc::Query::Other(_)) {
                panic!("a query did not survive re-encoding: {q:?}");
            }
        }
        Ok(Message::Response(r)) => {
            assert_eq!(
                decode(&encode_response(&r)).ok(),
                Some(Message::Response(r))
            );
        }
        Ok(Message::Error { .. }) | Err(_) => {}
    }
}
