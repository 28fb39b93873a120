//! Every decoder of peer (or person) input in this crate, run through the oracle its
//! fuzz target uses: on random bytes (proptest), on the corpus the fuzzers keep in the
//! repo (`fuzz/corpus/<target>/`, grown by `scripts/fuzz` and CI), and, where the type
//! allows, typed values that must survive encoding and decoding unchanged.

#[path = "oracle/torrent_krpc.rs"]
mod torrent_krpc;
#[path = "oracle/torrent_metainfo.rs"]
mod torrent_metainfo;
#[path = "oracle/torrent_mse.rs"]
mod torrent_mse;
#[path = "oracle/torrent_tracker_request.rs"]
mod torrent_tracker_request;
#[path = "oracle/torrent_wire.rs"]
mod torrent_wire;

use bytes::{Bytes, BytesMut};
use nodus_torrent::dht::krpc::{self, Query};
use nodus_torrent::tracker_server::{Announce, Request, parse_request};
use nodus_torrent::wire::Message;
#[path = "../../../fuzz/replay.rs"]
mod replay;

use proptest::prelude::*;

#[test]
fn the_kept_corpus_passes_every_oracle() {
    replay::replay(&[
        ("torrent_wire", torrent_wire::check as fn(&[u8])),
        ("torrent_krpc", torrent_krpc::check as fn(&[u8])),
        ("torrent_metainfo", torrent_metainfo::check as fn(&[u8])),
        ("torrent_mse", torrent_mse::check as fn(&[u8])),
        (
            "torrent_tracker_request",
            torrent_tracker_request::check as fn(&[u8]),
        ),
    ]);
}

fn message() -> impl Strategy<Value = Message> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..256).prop_map(Bytes::from);
    prop_oneof![
        Just(Message::KeepAlive),
        Just(Message::Choke),
        Just(Message::Unchoke),
        Just(Message::Interested),
        Just(Message::NotInterested),
        any::<u32>().prop_map(Message::Have),
        bytes().prop_map(Message::Bitfield),
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(index, begin, length)| {
            Message::Request {
                index,
                begin,
                length,
            }
        }),
        (any::<u32>(), any::<u32>(), bytes()).prop_map(|(index, begin, data)| Message::Piece {
            index,
            begin,
            data
        }),
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(index, begin, length)| {
            Message::Cancel {
                index,
                begin,
                length,
            }
        }),
        any::<u16>().prop_map(Message::Port),
        Just(Message::HaveAll),
        Just(Message::HaveNone),
        any::<u32>().prop_map(Message::AllowedFast),
        (1u8.., bytes()).prop_map(|(id, payload)| Message::Extended { id, payload }),
    ]
}

fn query() -> impl Strategy<Value = Query> {
    prop_oneof![
        Just(Query::Ping),
        any::<[u8; 20]>().prop_map(|target| Query::FindNode { target }),
        any::<[u8; 20]>().prop_map(|info_hash| Query::GetPeers { info_hash }),
        (
            any::<[u8; 20]>(),
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..32),
            any::<bool>()
        )
            .prop_map(
                |(info_hash, port, token, implied_port)| Query::AnnouncePeer {
                    info_hash,
                    port,
                    token,
                    implied_port,
                }
            ),
    ]
}

fn announce() -> impl Strategy<Value = Announce> {
    (
        any::<[u8; 20]>(),
        any::<u16>(),
        proptest::option::of(any::<std::net::IpAddr>()),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(info_hash, port, ip, stopped, seed)| Announce {
            info_hash,
            port,
            ip,
            stopped,
            seed,
        })
}

proptest! {
    #[test]
    fn torrent_wire_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        torrent_wire::check(&data);
    }

    #[test]
    fn torrent_krpc_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        torrent_krpc::check(&data);
    }

    #[test]
    fn torrent_metainfo_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        torrent_metainfo::check(&data);
    }

    #[test]
    fn torrent_mse_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        torrent_mse::check(&data);
    }

    #[test]
    fn torrent_tracker_request_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        torrent_tracker_request::check(&data);
    }

    #[test]
    fn peer_messages_round_trip(messages in proptest::collection::vec(message(), 1..8)) {
        let mut buf = BytesMut::new();
        for m in &messages {
            m.encode(&mut buf);
        }
        for m in &messages {
            let back = Message::decode(&mut buf).unwrap();
            prop_assert_eq!(back.as_ref(), Some(m));
        }
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn dht_queries_round_trip(tid in proptest::collection::vec(any::<u8>(), 0..8), id in any::<[u8; 20]>(), q in query()) {
        match krpc::decode(&krpc::encode_query(&tid, &id, &q)) {
            Ok(krpc::Message::Query(back)) => {
                prop_assert_eq!(back.tid, tid);
                prop_assert_eq!(back.id, id);
                prop_assert_eq!(back.query, q);
            }
            other => prop_assert!(false, "{other:?}"),
        }
    }

    #[test]
    fn tracker_announces_round_trip(a in announce()) {
        let line = torrent_tracker_request::announce_line(&a);
        prop_assert_eq!(parse_request(&line), Ok(Request::Announce(a)));
    }
}
