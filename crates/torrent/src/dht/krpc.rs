//! KRPC (BEP 5): the bencoded query, response and error messages DHT nodes exchange
//! over UDP. Decoding takes what any client sends (transaction ids of any length up to
//! a bound, keys in any order, unknown keys) and refuses what is malformed.

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::bencode::{self, BValue, Dict, Value};

pub type NodeId = [u8; 20];

/// The longest transaction id accepted (libtorrent sends 2 bytes, others 4).
pub const MAX_TID: usize = 32;
/// Nodes and peers read from one message, at most.
pub const MAX_NODES: usize = 64;
pub const MAX_VALUES: usize = 200;
/// The longest token accepted (ours are 8 bytes; BEP 5 leaves the length open).
pub const MAX_TOKEN: usize = 64;
/// Our client version, as the optional `v` key.
const VERSION: &[u8] = b"ND\x01\x00";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    Ping,
    FindNode {
        target: NodeId,
    },
    GetPeers {
        info_hash: NodeId,
    },
    AnnouncePeer {
        info_hash: NodeId,
        port: u16,
        token: Vec<u8>,
        /// Use the UDP source port instead of `port` (BEP 5, for peers behind NAT).
        implied_port: bool,
    },
    /// A method this node does not serve (answered with error 204).
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryMsg {
    pub tid: Vec<u8>,
    pub id: NodeId,
    pub query: Query,
    /// BEP 43: the sender does not answer queries, so it stays out of routing tables.
    pub read_only: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    pub tid: Vec<u8>,
    pub id: NodeId,
    pub nodes: Vec<(NodeId, SocketAddrV4)>,
    pub values: Vec<SocketAddrV4>,
    pub token: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Query(QueryMsg),
    Response(Response),
    Error { tid: Vec<u8>, code: i64 },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KrpcError {
    #[error(transparent)]
    Bencode(#[from] bencode::BencodeError),
    #[error("KRPC: {0}")]
    Malformed(&'static str),
}

fn id20(v: Option<&[u8]>, what: &'static str) -> Result<NodeId, KrpcError> {
    v.and_then(|b| b.try_into().ok())
        .ok_or(KrpcError::Malformed(what))
}

pub fn decode(buf: &[u8]) -> Result<Message, KrpcError> {
    let v = bencode::decode_exact(buf)?;
    let d = v
        .as_dict()
        .ok_or(KrpcError::Malformed("not a dictionary"))?;
    let tid = d
        .bytes("t")
        .filter(|t| t.len() <= MAX_TID)
        .ok_or(KrpcError::Malformed("transaction id"))?
        .to_vec();
    match d.bytes("y") {
        Some(b"q") => {
            let a = d.dict("a").ok_or(KrpcError::Malformed("query arguments"))?;
            let id = id20(a.bytes("id"), "node id")?;
            let method = d.str("q").ok_or(KrpcError::Malformed("query method"))?;
            let query = match method {
                "ping" => Query::Ping,
                "find_node" => Query::FindNode {
                    target: id20(a.bytes("target"), "target")?,
                },
                "get_peers" => Query::GetPeers {
                    info_hash: id20(a.bytes("info_hash"), "info_hash")?,
                },
                "announce_peer" => Query::AnnouncePeer {
                    info_hash: id20(a.bytes("info_hash"), "info_hash")?,
                    port: a
                        .int("port")
                        .and_then(|p| u16::try_from(p).ok())
                        .ok_or(KrpcError::Malformed("port"))?,
                    token: a
                        .bytes("token")
                        .filter(|t| t.len() <= MAX_TOKEN)
                        .ok_or(KrpcError::Malformed("token"))?
                        .to_vec(),
                    implied_port: a.int("implied_port").is_some_and(|p| p != 0),
                },
                other => Query::Other(other.chars().take(32).collect()),
            };
            Ok(Message::Query(QueryMsg {
                tid,
                id,
                query,
                read_only: d.int("ro") == Some(1),
            }))
        }
        Some(b"r") => {
            let r = d.dict("r").ok_or(KrpcError::Malformed("response body"))?;
            Ok(Message::Response(decode_response(tid, r)?))
        }
        Some(b"e") => {
            let code = d
                .list("e")
                .and_then(|l| l.first())
                .and_then(Value::as_int)
                .unwrap_or(0);
            Ok(Message::Error { tid, code })
        }
        _ => Err(KrpcError::Malformed("message type")),
    }
}

fn decode_response(tid: Vec<u8>, r: &Dict<'_>) -> Result<Response, KrpcError> {
    let id = id20(r.bytes("id"), "node id")?;
    let nodes = r
        .bytes("nodes")
        .unwrap_or_default()
        .chunks_exact(26)
        .take(MAX_NODES)
        .filter_map(|c| {
            let addr = compact_addr(&c[20..])?;
            Some((c[..20].try_into().ok()?, addr))
        })
        .collect();
    let values = r
        .list("values")
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_bytes)
        .filter_map(compact_addr)
        .take(MAX_VALUES)
        .collect();
    let token = r
        .bytes("token")
        .filter(|t| t.len() <= MAX_TOKEN)
        .map(<[u8]>::to_vec);
    Ok(Response {
        tid,
        id,
        nodes,
        values,
        token,
    })
}

/// A 6-byte compact IPv4 address; None for port 0 or a wrong length.
fn compact_addr(b: &[u8]) -> Option<SocketAddrV4> {
    let b: &[u8; 6] = b.try_into().ok()?;
    let port = u16::from_be_bytes([b[4], b[5]]);
    (port != 0).then(|| SocketAddrV4::new(Ipv4Addr::new(b[0], b[1], b[2], b[3]), port))
}

fn compact(a: &SocketAddrV4) -> Vec<u8> {
    let mut out = a.ip().octets().to_vec();
    out.extend_from_slice(&a.port().to_be_bytes());
    out
}

fn envelope(tid: &[u8], kind: &str, key: &str, body: BValue) -> Vec<u8> {
    bencode::dict([
        ("t", BValue::Bytes(tid.to_vec())),
        ("y", BValue::str(kind)),
        (key, body),
        ("v", BValue::Bytes(VERSION.to_vec())),
    ])
    .encode()
}

pub fn encode_query(tid: &[u8], id: &NodeId, q: &Query) -> Vec<u8> {
    let mut a = vec![("id", BValue::Bytes(id.to_vec()))];
    let method = match q {
        Query::Ping => "ping",
        Query::FindNode { target } => {
            a.push(("target", BValue::Bytes(target.to_vec())));
            "find_node"
        }
        Query::GetPeers { info_hash } => {
            a.push(("info_hash", BValue::Bytes(info_hash.to_vec())));
            "get_peers"
        }
        Query::AnnouncePeer {
            info_hash,
            port,
            token,
            implied_port,
        } => {
            a.push(("info_hash", BValue::Bytes(info_hash.to_vec())));
            a.push(("port", BValue::Int(*port as i64)));
            a.push(("token", BValue::Bytes(token.clone())));
            a.push(("implied_port", BValue::Int(*implied_port as i64)));
            "announce_peer"
        }
        Query::Other(m) => m.as_str(),
    };
    let a = BValue::Dict(
        a.into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect(),
    );
    bencode::dict([
        ("t", BValue::Bytes(tid.to_vec())),
        ("y", BValue::str("q")),
        ("q", BValue::str(method)),
        ("a", a),
        ("v", BValue::Bytes(VERSION.to_vec())),
    ])
    .encode()
}

pub fn encode_response(r: &Response) -> Vec<u8> {
    let mut body = vec![("id", BValue::Bytes(r.id.to_vec()))];
    if !r.nodes.is_empty() {
        let mut nodes = Vec::with_capacity(r.nodes.len() * 26);
        for (id, addr) in &r.nodes {
            nodes.extend_from_slice(id);
            nodes.extend_from_slice(&compact(addr));
        }
        body.push(("nodes", BValue::Bytes(nodes)));
    }
    if !r.values.is_empty() {
        body.push((
            "values",
            BValue::List(r.values.iter().map(|a| BValue::Bytes(compact(a))).collect()),
        ));
    }
    if let Some(t) = &r.token {
        body.push(("token", BValue::Bytes(t.clone())));
    }
    let body = BValue::Dict(
        body.into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect(),
    );
    envelope(&r.tid, "r", "r", body)
}

/// BEP 5 error codes: 201 generic, 202 server, 203 protocol (a bad token), 204 method unknown.
pub fn encode_error(tid: &[u8], code: i64, msg: &str) -> Vec<u8> {
    envelope(
        tid,
        "e",
        "e",
        BValue::List(vec![BValue::Int(code), BValue::str(msg)]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_libtorrent_get_peers_query_with_a_two_byte_tid() {
        let mut raw = b"d1:ad2:bsi1e2:id20:".to_vec();
        raw.extend_from_slice(&[7; 20]);
        raw.extend_from_slice(b"9:info_hash20:");
        raw.extend_from_slice(&[9; 20]);
        raw.extend_from_slice(b"e1:q9:get_peers1:t2:\x10\x461:v4:LT\x02\x111:y1:qe");
        let Message::Query(q) = decode(&raw).unwrap() else {
            panic!("a query")
        };
        assert_eq!(q.tid, b"\x10\x46");
        assert_eq!(q.id, [7; 20]);
        assert_eq!(q.query, Query::GetPeers { info_hash: [9; 20] });
        assert!(!q.read_only);
    }

    #[test]
    fn queries_and_responses_round_trip() {
        for q in [
            Query::Ping,
            Query::FindNode { target: [3; 20] },
            Query::GetPeers { info_hash: [4; 20] },
            Query::AnnouncePeer {
                info_hash: [5; 20],
                port: 6881,
                token: b"tok".to_vec(),
                implied_port: true,
            },
        ] {
            let raw = encode_query(b"ab", &[1; 20], &q);
            assert_eq!(
                decode(&raw).unwrap(),
                Message::Query(QueryMsg {
                    tid: b"ab".to_vec(),
                    id: [1; 20],
                    query: q,
                    read_only: false
                })
            );
        }
        let r = Response {
            tid: b"xyzw".to_vec(),
            id: [2; 20],
            nodes: vec![([8; 20], "10.0.0.1:4000".parse().unwrap())],
            values: vec!["10.0.0.2:5000".parse().unwrap()],
            token: Some(vec![1, 2, 3]),
        };
        assert_eq!(decode(&encode_response(&r)).unwrap(), Message::Response(r));
        assert_eq!(
            decode(&encode_error(b"e1", 203, "bad token")).unwrap(),
            Message::Error {
                tid: b"e1".to_vec(),
                code: 203
            }
        );
    }

    #[test]
    fn refuses_what_is_malformed() {
        for bad in [
            &b""[..],
            b"le",
            b"d1:t2:aa1:y1:qe",                          // query without arguments
            b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe",   // short node id
            b"d1:rd2:id20:01234567890123456789e1:y1:re", // no transaction id
            b"d1:t2:aa1:y1:ze",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long_tid = format!("d1:t{}:{}1:y1:ee", MAX_TID + 1, "x".repeat(MAX_TID + 1));
        assert!(decode(long_tid.as_bytes()).is_err());
    }
}
