//! The peer wire protocol (BEP 3) with the fast extension (BEP 6) and the extension
//! protocol (BEP 10), whose ut_metadata (BEP 9) and ut_pex (BEP 11) messages are
//! decoded here too. Decoders take untrusted bytes: every length is checked before use
//! and nothing a peer sends can make them panic or allocate beyond [`MAX_MESSAGE`].

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::bencode::{self, BValue};

pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
pub const HANDSHAKE_LEN: usize = 68;
/// The first 20 bytes of every plain handshake (length byte, then the protocol name).
pub const PROTOCOL_PREFIX: &[u8; 20] = b"\x13BitTorrent protocol";
/// Largest message accepted: a bitfield of the most pieces, or a 16 KiB block (some
/// clients send up to 128 KiB blocks; refuse more).
pub const MAX_MESSAGE: usize = 512 * 1024;
pub const BLOCK: u32 = 16 * 1024;
/// Largest block we serve on request.
pub const MAX_REQUEST: u32 = 128 * 1024;

/// Reserved-bit flags of the handshake.
pub mod reserved {
    /// BEP 10, byte 5 bit 0x10.
    pub const EXTENSION: (usize, u8) = (5, 0x10);
    /// BEP 6, byte 7 bit 0x04.
    pub const FAST: (usize, u8) = (7, 0x04);
    /// BEP 5, byte 7 bit 0x01.
    pub const DHT: (usize, u8) = (7, 0x01);
    /// BEP 52 (v2 upgrade), byte 7 bit 0x10.
    pub const V2: (usize, u8) = (7, 0x10);

    pub fn has(bits: &[u8; 8], flag: (usize, u8)) -> bool {
        bits[flag.0] & flag.1 != 0
    }
    pub fn ours(dht: bool) -> [u8; 8] {
        let mut r = [0u8; 8];
        r[EXTENSION.0] |= EXTENSION.1;
        r[FAST.0] |= FAST.1;
        if dht {
            r[DHT.0] |= DHT.1;
        }
        r
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    pub reserved: [u8; 8],
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("not a BitTorrent handshake")]
    BadHandshake,
    #[error("message of {0} bytes is over the limit")]
    TooLong(usize),
    #[error("malformed message {id} of {len} bytes")]
    Malformed { id: u8, len: usize },
    #[error("{ext}: {source}")]
    ExtBencode {
        ext: &'static str,
        #[source]
        source: bencode::BencodeError,
    },
    #[error("{0}: not a dictionary")]
    ExtNotDict(&'static str),
    #[error("ut_metadata: {0} missing or out of range")]
    MetadataField(&'static str),
    #[error("ut_metadata: piece over 16 KiB")]
    MetadataPieceTooLarge,
}

impl Handshake {
    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        out[0] = 19;
        out[1..20].copy_from_slice(PROTOCOL);
        out[20..28].copy_from_slice(&self.reserved);
        out[28..48].copy_from_slice(&self.info_hash);
        out[48..68].copy_from_slice(&self.peer_id);
        out
    }

    pub fn decode(b: &[u8]) -> Result<Handshake, WireError> {
        if b.len() != HANDSHAKE_LEN || b[0] != 19 || &b[1..20] != PROTOCOL {
            return Err(WireError::BadHandshake);
        }
        let mut h = Handshake {
            reserved: [0; 8],
            info_hash: [0; 20],
            peer_id: [0; 20],
        };
        h.reserved.copy_from_slice(&b[20..28]);
        h.info_hash.copy_from_slice(&b[28..48]);
        h.peer_id.copy_from_slice(&b[48..68]);
        Ok(h)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    Bitfield(Bytes),
    Request {
        index: u32,
        begin: u32,
        length: u32,
    },
    Piece {
        index: u32,
        begin: u32,
        data: Bytes,
    },
    Cancel {
        index: u32,
        begin: u32,
        length: u32,
    },
    Port(u16),
    Suggest(u32),
    HaveAll,
    HaveNone,
    Reject {
        index: u32,
        begin: u32,
        length: u32,
    },
    AllowedFast(u32),
    Extended {
        id: u8,
        payload: Bytes,
    },
    /// BEP 52: asks for hashes of a file's merkle tree.
    HashRequest(HashRange),
    /// BEP 52: the hashes asked for, then the uncle hashes proving them.
    Hashes(HashRange, Vec<[u8; 32]>),
    HashReject(HashRange),
    /// A message id we do not speak (ignored, as BEP 3 asks).
    Unknown(u8),
}

/// Which hashes of a file's merkle tree (BEP 52): `length` hashes from `index` on,
/// in the layer `base` above the 16 KiB leaves, and proof up to `proof_layers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashRange {
    pub pieces_root: [u8; 32],
    pub base: u32,
    pub index: u32,
    pub length: u32,
    pub proof_layers: u32,
}

impl HashRange {
    const LEN: usize = 48;

    /// None when `body` is too short.
    fn decode(body: &mut Bytes) -> Option<HashRange> {
        if body.len() < Self::LEN {
            return None;
        }
        let mut pieces_root = [0u8; 32];
        body.copy_to_slice(&mut pieces_root);
        Some(HashRange {
            pieces_root,
            base: body.get_u32(),
            index: body.get_u32(),
            length: body.get_u32(),
            proof_layers: body.get_u32(),
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_slice(&self.pieces_root);
        out.put_u32(self.base);
        out.put_u32(self.index);
        out.put_u32(self.length);
        out.put_u32(self.proof_layers);
    }
}

impl Message {
    /// Takes one whole message off the front of `buf`, or `None` if more bytes are
    /// needed.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Message>, WireError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len > MAX_MESSAGE {
            return Err(WireError::TooLong(len));
        }
        if buf.len() < 4 + len {
            buf.reserve(4 + len - buf.len());
            return Ok(None);
        }
        buf.advance(4);
        if len == 0 {
            return Ok(Some(Message::KeepAlive));
        }
        let mut body = buf.split_to(len).freeze();
        let id = body.get_u8();
        let bad = || WireError::Malformed { id, len };
        let fixed = |body: &Bytes, n: usize| if body.len() == n { Ok(()) } else { Err(bad()) };
        let triple = |mut b: Bytes| (b.get_u32(), b.get_u32(), b.get_u32());
        let msg = match id {
            0 => {
                fixed(&body, 0)?;
                Message::Choke
            }
            1 => {
                fixed(&body, 0)?;
                Message::Unchoke
            }
            2 => {
                fixed(&body, 0)?;
                Message::Interested
            }
            3 => {
                fixed(&body, 0)?;
                Message::NotInterested
            }
            4 => {
                fixed(&body, 4)?;
                Message::Have(body.get_u32())
            }
            5 => Message::Bitfield(body),
            6 | 8 | 16 => {
                fixed(&body, 12)?;
                let (index, begin, length) = triple(body);
                match id {
                    6 => Message::Request {
                        index,
                        begin,
                        length,
                    },
                    8 => Message::Cancel {
                        index,
                        begin,
                        length,
                    },
                    _ => Message::Reject {
                        index,
                        begin,
                        length,
                    },
                }
            }
            7 => {
                if body.len() < 8 {
                    return Err(bad());
                }
                let index = body.get_u32();
                let begin = body.get_u32();
                Message::Piece {
                    index,
                    begin,
                    data: body,
                }
            }
            9 => {
                fixed(&body, 2)?;
                Message::Port(body.get_u16())
            }
            13 => {
                fixed(&body, 4)?;
                Message::Suggest(body.get_u32())
            }
            14 => {
                fixed(&body, 0)?;
                Message::HaveAll
            }
            15 => {
                fixed(&body, 0)?;
                Message::HaveNone
            }
            17 => {
                fixed(&body, 4)?;
                Message::AllowedFast(body.get_u32())
            }
            21 | 23 => {
                fixed(&body, HashRange::LEN)?;
                let r = HashRange::decode(&mut body).ok_or_else(bad)?;
                if id == 21 {
                    Message::HashRequest(r)
                } else {
                    Message::HashReject(r)
                }
            }
            22 => {
                let r = HashRange::decode(&mut body).ok_or_else(bad)?;
                if !body.len().is_multiple_of(32) {
                    return Err(bad());
                }
                let hashes = body
                    .chunks_exact(32)
                    .map(|c| c.try_into().expect("32 bytes"))
                    .collect();
                Message::Hashes(r, hashes)
            }
            20 => {
                if body.is_empty() {
                    return Err(bad());
                }
                let id = body.get_u8();
                Message::Extended { id, payload: body }
            }
            other => Message::Unknown(other),
        };
        Ok(Some(msg))
    }

    pub fn encode(&self, out: &mut BytesMut) {
        let simple = |out: &mut BytesMut, id: u8| {
            out.put_u32(1);
            out.put_u8(id);
        };
        let triple = |out: &mut BytesMut, id: u8, a: u32, b: u32, c: u32| {
            out.put_u32(13);
            out.put_u8(id);
            out.put_u32(a);
            out.put_u32(b);
            out.put_u32(c);
        };
        match self {
            Message::KeepAlive => out.put_u32(0),
            Message::Choke => simple(out, 0),
            Message::Unchoke => simple(out, 1),
            Message::Interested => simple(out, 2),
            Message::NotInterested => simple(out, 3),
            Message::Have(i) => {
                out.put_u32(5);
                out.put_u8(4);
                out.put_u32(*i);
            }
            Message::Bitfield(b) => {
                out.put_u32(1 + b.len() as u32);
                out.put_u8(5);
                out.put_slice(b);
            }
            Message::Request {
                index,
                begin,
                length,
            } => triple(out, 6, *index, *begin, *length),
            Message::Piece { index, begin, data } => {
                out.put_u32(9 + data.len() as u32);
                out.put_u8(7);
                out.put_u32(*index);
                out.put_u32(*begin);
                out.put_slice(data);
            }
            Message::Cancel {
                index,
                begin,
                length,
            } => triple(out, 8, *index, *begin, *length),
            Message::Port(p) => {
                out.put_u32(3);
                out.put_u8(9);
                out.put_u16(*p);
            }
            Message::Suggest(i) => {
                out.put_u32(5);
                out.put_u8(13);
                out.put_u32(*i);
            }
            Message::HaveAll => simple(out, 14),
            Message::HaveNone => simple(out, 15),
            Message::Reject {
                index,
                begin,
                length,
            } => triple(out, 16, *index, *begin, *length),
            Message::AllowedFast(i) => {
                out.put_u32(5);
                out.put_u8(17);
                out.put_u32(*i);
            }
            Message::Extended { id, payload } => {
                out.put_u32(2 + payload.len() as u32);
                out.put_u8(20);
                out.put_u8(*id);
                out.put_slice(payload);
            }
            Message::HashRequest(r) | Message::HashReject(r) => {
                out.put_u32(1 + HashRange::LEN as u32);
                out.put_u8(if matches!(self, Message::HashRequest(_)) {
                    21
                } else {
                    23
                });
                r.encode(out);
            }
            Message::Hashes(r, hashes) => {
                out.put_u32((1 + HashRange::LEN + 32 * hashes.len()) as u32);
                out.put_u8(22);
                r.encode(out);
                for h in hashes {
                    out.put_slice(h);
                }
            }
            Message::Unknown(id) => simple(out, *id),
        }
    }
}

/// Our local ids for extension messages (what we put in our `m` dictionary).
pub const UT_METADATA: u8 = 1;
pub const UT_PEX: u8 = 2;

/// The BEP 10 extension handshake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtHandshake {
    pub ut_metadata: Option<u8>,
    pub ut_pex: Option<u8>,
    pub metadata_size: Option<u32>,
    pub listen_port: Option<u16>,
    pub client: Option<String>,
    pub reqq: Option<u32>,
}

/// Largest info dictionary accepted by metadata exchange.
pub const MAX_METADATA: u32 = 16 * 1024 * 1024;
pub const METADATA_PIECE: u32 = 16 * 1024;

fn decode_ext<'a>(
    ext: &'static str,
    payload: &'a [u8],
) -> Result<(bencode::Value<'a>, usize), WireError> {
    bencode::decode_prefix(payload).map_err(|source| WireError::ExtBencode { ext, source })
}

impl ExtHandshake {
    pub fn decode(payload: &[u8]) -> Result<ExtHandshake, WireError> {
        let (v, _) = decode_ext("extension handshake", payload)?;
        let d = v
            .as_dict()
            .ok_or(WireError::ExtNotDict("extension handshake"))?;
        let id = |name: &str| {
            d.dict("m")
                .and_then(|m| m.int(name))
                .filter(|&i| (1..=255).contains(&i))
                .map(|i| i as u8)
        };
        Ok(ExtHandshake {
            ut_metadata: id("ut_metadata"),
            ut_pex: id("ut_pex"),
            metadata_size: d
                .int("metadata_size")
                .filter(|&s| s > 0 && s <= MAX_METADATA as i64)
                .map(|s| s as u32),
            listen_port: d
                .int("p")
                .filter(|&p| (1..=65535).contains(&p))
                .map(|p| p as u16),
            client: d.str("v").map(|s| s.chars().take(64).collect()),
            reqq: d
                .int("reqq")
                .filter(|&q| q > 0)
                .map(|q| q.min(10_000) as u32),
        })
    }

    pub fn encode(&self) -> Bytes {
        let mut m = std::collections::BTreeMap::new();
        if let Some(i) = self.ut_metadata {
            m.insert(b"ut_metadata".to_vec(), BValue::Int(i as i64));
        }
        if let Some(i) = self.ut_pex {
            m.insert(b"ut_pex".to_vec(), BValue::Int(i as i64));
        }
        let mut d = std::collections::BTreeMap::new();
        d.insert(b"m".to_vec(), BValue::Dict(m));
        if let Some(s) = self.metadata_size {
            d.insert(b"metadata_size".to_vec(), BValue::Int(s as i64));
        }
        if let Some(p) = self.listen_port {
            d.insert(b"p".to_vec(), BValue::Int(p as i64));
        }
        if let Some(v) = &self.client {
            d.insert(b"v".to_vec(), BValue::str(v));
        }
        if let Some(q) = self.reqq {
            d.insert(b"reqq".to_vec(), BValue::Int(q as i64));
        }
        Bytes::from(BValue::Dict(d).encode())
    }
}

/// A ut_metadata message (BEP 9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataMsg {
    Request(u32),
    Data {
        piece: u32,
        total_size: u32,
        data: Bytes,
    },
    Reject(u32),
}

impl MetadataMsg {
    pub fn decode(payload: &Bytes) -> Result<MetadataMsg, WireError> {
        let bad = WireError::MetadataField;
        let (v, used) = decode_ext("ut_metadata", payload)?;
        let d = v.as_dict().ok_or(WireError::ExtNotDict("ut_metadata"))?;
        let piece = d
            .int("piece")
            .filter(|&p| (0..(MAX_METADATA / METADATA_PIECE) as i64).contains(&p))
            .ok_or_else(|| bad("piece"))? as u32;
        match d.int("msg_type") {
            Some(0) => Ok(MetadataMsg::Request(piece)),
            Some(1) => {
                let total_size = d
                    .int("total_size")
                    .filter(|&s| s > 0 && s <= MAX_METADATA as i64)
                    .ok_or_else(|| bad("total_size"))? as u32;
                let data = payload.slice(used..);
                if data.len() > METADATA_PIECE as usize {
                    return Err(WireError::MetadataPieceTooLarge);
                }
                Ok(MetadataMsg::Data {
                    piece,
                    total_size,
                    data,
                })
            }
            Some(2) => Ok(MetadataMsg::Reject(piece)),
            _ => Err(bad("msg_type")),
        }
    }

    pub fn encode(&self) -> Bytes {
        let (kind, piece) = match self {
            MetadataMsg::Request(p) => (0, *p),
            MetadataMsg::Data { piece, .. } => (1, *piece),
            MetadataMsg::Reject(p) => (2, *p),
        };
        let mut d = std::collections::BTreeMap::new();
        d.insert(b"msg_type".to_vec(), BValue::Int(kind));
        d.insert(b"piece".to_vec(), BValue::Int(piece as i64));
        if let MetadataMsg::Data { total_size, .. } = self {
            d.insert(b"total_size".to_vec(), BValue::Int(*total_size as i64));
        }
        let mut out = BValue::Dict(d).encode();
        if let MetadataMsg::Data { data, .. } = self {
            out.extend_from_slice(data);
        }
        Bytes::from(out)
    }
}

/// A ut_pex message (BEP 11): IPv4 peers added and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pex {
    pub added: Vec<SocketAddr>,
    pub dropped: Vec<SocketAddr>,
}

/// Most peers taken from one PEX message.
pub const MAX_PEX: usize = 200;

pub fn compact_v4(addrs: &[SocketAddr]) -> Vec<u8> {
    let mut out = Vec::with_capacity(addrs.len() * 6);
    for a in addrs {
        if let SocketAddr::V4(a) = a {
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_be_bytes());
        }
    }
    out
}

pub fn parse_compact_v4(b: &[u8], max: usize) -> Vec<SocketAddr> {
    b.chunks_exact(6)
        .take(max)
        .map(|c| {
            SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::new(c[0], c[1], c[2], c[3]),
                u16::from_be_bytes([c[4], c[5]]),
            ))
        })
        .filter(|a| a.port() != 0)
        .collect()
}

impl Pex {
    pub fn decode(payload: &[u8]) -> Result<Pex, WireError> {
        let (v, _) = decode_ext("ut_pex", payload)?;
        let d = v.as_dict().ok_or(WireError::ExtNotDict("ut_pex"))?;
        Ok(Pex {
            added: parse_compact_v4(d.bytes("added").unwrap_or_default(), MAX_PEX),
            dropped: parse_compact_v4(d.bytes("dropped").unwrap_or_default(), MAX_PEX),
        })
    }

    pub fn encode(&self) -> Bytes {
        let v = bencode::dict([
            ("added", BValue::Bytes(compact_v4(&self.added))),
            ("dropped", BValue::Bytes(compact_v4(&self.dropped))),
        ]);
        Bytes::from(v.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let msgs = vec![
            Message::KeepAlive,
            Message::Choke,
            Message::Unchoke,
            Message::Interested,
            Message::NotInterested,
            Message::Have(7),
            Message::Bitfield(Bytes::from_static(&[0xff, 0x80])),
            Message::Request {
                index: 1,
                begin: 16384,
                length: 16384,
            },
            Message::Piece {
                index: 2,
                begin: 0,
                data: Bytes::from_static(b"abc"),
            },
            Message::Cancel {
                index: 1,
                begin: 0,
                length: 16384,
            },
            Message::Port(6881),
            Message::HashRequest(HashRange {
                pieces_root: [3; 32],
                base: 4,
                index: 512,
                length: 512,
                proof_layers: 7,
            }),
            Message::Hashes(
                HashRange {
                    pieces_root: [4; 32],
                    base: 0,
                    index: 0,
                    length: 2,
                    proof_layers: 1,
                },
                vec![[5; 32], [6; 32], [7; 32]],
            ),
            Message::HaveAll,
            Message::HaveNone,
            Message::Reject {
                index: 3,
                begin: 0,
                length: 1,
            },
            Message::AllowedFast(9),
            Message::Extended {
                id: 0,
                payload: ExtHandshake::default().encode(),
            },
        ];
        let mut buf = BytesMut::new();
        for m in &msgs {
            m.encode(&mut buf);
        }
        // Fed a byte at a time, the decoder waits for whole messages.
        let mut input = BytesMut::new();
        let mut out = Vec::new();
        for b in buf.iter() {
            input.put_u8(*b);
            while let Some(m) = Message::decode(&mut input).unwrap() {
                out.push(m);
            }
        }
        assert_eq!(out, msgs);
    }

    #[test]
    fn refuses_garbage() {
        let mut b = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 0][..]);
        assert!(matches!(
            Message::decode(&mut b),
            Err(WireError::TooLong(_))
        ));
        let mut b = BytesMut::from(&[0, 0, 0, 2, 4, 1][..]);
        assert!(matches!(
            Message::decode(&mut b),
            Err(WireError::Malformed { .. })
        ));
        assert!(Handshake::decode(&[0u8; 68]).is_err());
        assert!(MetadataMsg::decode(&Bytes::from_static(b"d8:msg_typei1e5:piecei0ee")).is_err());
    }

    #[test]
    fn extension_messages_round_trip() {
        let h = ExtHandshake {
            ut_metadata: Some(3),
            ut_pex: Some(4),
            metadata_size: Some(1234),
            listen_port: Some(51413),
            client: Some("x".into()),
            reqq: Some(250),
        };
        assert_eq!(ExtHandshake::decode(&h.encode()).unwrap(), h);
        let d = MetadataMsg::Data {
            piece: 1,
            total_size: 20000,
            data: Bytes::from_static(b"xyz"),
        };
        assert_eq!(MetadataMsg::decode(&d.encode()).unwrap(), d);
        let p = Pex {
            added: vec!["127.0.0.1:6881".parse().unwrap()],
            dropped: vec![],
        };
        assert_eq!(Pex::decode(&p.encode()).unwrap(), p);
    }
}
