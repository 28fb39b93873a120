//! What peers send each other: gossip payloads (an EIP-2718 transaction, an RLP block)
//! and the sync protocol's framed requests and responses (`/nodus/chain/sync/1`).
//!
//! Every decoder here takes untrusted bytes: sizes are bounded before allocation and
//! nothing panics (see fuzz/fuzz_targets/chain_wire.rs).

use alloy_consensus::Header;
use alloy_primitives::{B256, U256};
use alloy_rlp::Decodable;
use futures::AsyncWriteExt;
use serde::{Deserialize, Serialize};

use crate::store::{self, ChainBlock};

pub const SYNC_PROTOCOL: &str = "/nodus/chain/sync/1";
/// Largest sync frame (a batch of blocks).
pub const MAX_FRAME: usize = 16 * 1024 * 1024;
/// Largest sync request: a locator or a block list of 64 hashes, and framing.
pub const MAX_REQUEST_FRAME: usize = 8 * 1024;
/// Largest gossiped block.
pub const MAX_BLOCK_BYTES: usize = 4 * 1024 * 1024;
/// Most headers per response, and blocks per request.
pub const MAX_HEADERS: usize = 512;
pub const MAX_BLOCKS: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncRequest {
    Status,
    /// Canonical headers after the first hash of `locator` (newest first) the peer knows.
    Headers {
        locator: Vec<[u8; 32]>,
        max: u32,
    },
    Blocks {
        hashes: Vec<[u8; 32]>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncResponse {
    Status {
        genesis: [u8; 32],
        head: [u8; 32],
        number: u64,
        total_work: [u8; 32],
    },
    /// RLP-encoded headers, oldest first.
    Headers(Vec<Vec<u8>>),
    /// RLP-encoded blocks, in the order asked (unknown ones left out).
    Blocks(Vec<Vec<u8>>),
    Error(String),
}

/// Why bytes from a peer were refused. Every kind is the sender's fault: a peer that
/// sends them is penalized.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("{0} transactions in one gossip message (at most {MAX_GOSSIP_TXS})")]
    TooManyTxs(usize),
    #[error("undecodable RLP: {0}")]
    Rlp(#[from] alloy_rlp::Error),
    #[error("trailing bytes after a header")]
    TrailingBytes,
    #[error("block of {0} bytes is over the limit of {MAX_BLOCK_BYTES}")]
    BlockTooLarge(usize),
    #[error("undecodable sync frame: {0}")]
    Frame(#[from] postcard::Error),
    #[error("a locator of {0} hashes; at most 64")]
    LocatorTooLong(usize),
    #[error("{0} blocks asked at once; at most {MAX_BLOCKS}")]
    TooManyBlocks(usize),
}

/// A peer's view of its chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    pub genesis: B256,
    pub head: B256,
    pub number: u64,
    pub total_work: U256,
}

impl SyncResponse {
    pub fn status(s: PeerStatus) -> Self {
        SyncResponse::Status {
            genesis: s.genesis.0,
            head: s.head.0,
            number: s.number,
            total_work: s.total_work.to_be_bytes(),
        }
    }
}

pub fn decode_headers(raw: &[Vec<u8>]) -> Result<Vec<Header>, WireError> {
    raw.iter()
        .map(|r| {
            let mut s = r.as_slice();
            let h = Header::decode(&mut s)?;
            if !s.is_empty() {
                return Err(WireError::TrailingBytes);
            }
            Ok(h)
        })
        .collect()
}

pub fn decode_block(raw: &[u8]) -> Result<ChainBlock, WireError> {
    if raw.len() > MAX_BLOCK_BYTES {
        return Err(WireError::BlockTooLarge(raw.len()));
    }
    Ok(store::decode_block(raw)?)
}

pub fn decode_request(raw: &[u8]) -> Result<SyncRequest, WireError> {
    let req: SyncRequest = postcard::from_bytes(raw)?;
    match &req {
        SyncRequest::Headers { locator, .. } if locator.len() > 64 => {
            Err(WireError::LocatorTooLong(locator.len()))
        }
        SyncRequest::Blocks { hashes } if hashes.len() > MAX_BLOCKS => {
            Err(WireError::TooManyBlocks(hashes.len()))
        }
        _ => Ok(req),
    }
}

/// Transactions gossiped together, as the node took them (EIP-2718 bytes each), in one
/// message on the `txs/2` topic: one gossip message per batch instead of one per
/// transaction. At most [`MAX_GOSSIP_TXS`] of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxBatch(pub Vec<serde_bytes::ByteBuf>);

/// Transactions in one gossip message, at most.
pub const MAX_GOSSIP_TXS: usize = 4096;
/// The bytes of transactions put in one gossip message, at most (gossipsub's limit is
/// 256 KiB; a single transaction larger than this goes alone).
pub const GOSSIP_TX_BYTES: usize = 192 * 1024;

pub fn encode_txs(raws: &[&[u8]]) -> Vec<u8> {
    encode(&TxBatch(
        raws.iter()
            .map(|r| serde_bytes::ByteBuf::from(r.to_vec()))
            .collect(),
    ))
}

pub fn decode_txs(raw: &[u8]) -> Result<Vec<Vec<u8>>, WireError> {
    let TxBatch(txs) = postcard::from_bytes(raw)?;
    if txs.len() > MAX_GOSSIP_TXS {
        return Err(WireError::TooManyTxs(txs.len()));
    }
    Ok(txs.into_iter().map(|t| t.into_vec()).collect())
}

/// Splits transactions into gossip messages of at most [`GOSSIP_TX_BYTES`] (and
/// [`MAX_GOSSIP_TXS`]) each, in order.
pub fn tx_messages(raws: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut chunk: Vec<&[u8]> = Vec::new();
    let mut bytes = 0;
    for r in raws {
        if !chunk.is_empty() && (bytes + r.len() > GOSSIP_TX_BYTES || chunk.len() == MAX_GOSSIP_TXS)
        {
            out.push(encode_txs(&chunk));
            chunk.clear();
            bytes = 0;
        }
        chunk.push(r);
        bytes += r.len();
    }
    if !chunk.is_empty() {
        out.push(encode_txs(&chunk));
    }
    out
}

pub fn decode_response(raw: &[u8]) -> Result<SyncResponse, WireError> {
    Ok(postcard::from_bytes(raw)?)
}

pub async fn write_frame<W: futures::AsyncWrite + Unpin>(
    w: &mut W,
    body: &[u8],
) -> std::io::Result<()> {
    w.write_all(&(body.len() as u32).to_be_bytes()).await?;
    w.write_all(body).await?;
    w.flush().await
}

/// Reads one frame of at most `max` bytes ([`MAX_REQUEST_FRAME`] for what a peer asks,
/// [`MAX_FRAME`] for what it answers), as its bytes arrive.
pub async fn read_frame<R: futures::AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> std::io::Result<Vec<u8>> {
    use nodus_net::frame::{self, FrameError};
    match frame::read(r, max).await {
        Ok(Some(body)) => Ok(body),
        Ok(None) => Err(std::io::ErrorKind::UnexpectedEof.into()),
        Err(FrameError::Io(e)) => Err(e),
        Err(e @ FrameError::TooLarge { .. }) => {
            Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        }
    }
}

pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_are_gossiped_in_bounded_batches_in_order() {
        let raws: Vec<Vec<u8>> = (0..3000u32)
            .map(|i| vec![(i % 251) as u8; 100 + (i % 7) as usize])
            .collect();
        let messages = tx_messages(&raws);
        assert!(messages.len() > 1);
        let mut back = Vec::new();
        for m in &messages {
            assert!(m.len() <= GOSSIP_TX_BYTES + 8 * 1024, "{}", m.len());
            back.extend(decode_txs(m).unwrap());
        }
        assert_eq!(back, raws);
        let big = vec![vec![7u8; GOSSIP_TX_BYTES + 1]];
        assert_eq!(decode_txs(&tx_messages(&big)[0]).unwrap(), big);
        let too_many = encode_txs(&vec![&b"x"[..]; MAX_GOSSIP_TXS + 1]);
        assert!(matches!(
            decode_txs(&too_many),
            Err(WireError::TooManyTxs(_))
        ));
    }

    #[test]
    fn garbage_is_refused_with_its_kind() {
        for raw in [&b""[..], b"\xff\xff\xff", b"\x05\xff\xff\xff\xff\xff\x0f"] {
            assert!(
                matches!(decode_request(raw), Err(WireError::Frame(_))),
                "{raw:?}"
            );
            assert!(
                matches!(decode_response(raw), Err(WireError::Frame(_))),
                "{raw:?}"
            );
            assert!(
                matches!(decode_block(raw), Err(WireError::Rlp(_))),
                "{raw:?}"
            );
        }
        let long = SyncRequest::Blocks {
            hashes: vec![[0; 32]; MAX_BLOCKS + 1],
        };
        assert!(matches!(
            decode_request(&encode(&long)),
            Err(WireError::TooManyBlocks(n)) if n == MAX_BLOCKS + 1
        ));
        let locator = SyncRequest::Headers {
            locator: vec![[0; 32]; 65],
            max: 1,
        };
        assert!(matches!(
            decode_request(&encode(&locator)),
            Err(WireError::LocatorTooLong(65))
        ));
        assert!(matches!(
            decode_block(&vec![0u8; MAX_BLOCK_BYTES + 1]),
            Err(WireError::BlockTooLarge(_))
        ));
        let mut header = Vec::new();
        alloy_rlp::Encodable::encode(&Header::default(), &mut header);
        header.push(0);
        assert!(matches!(
            decode_headers(&[header]),
            Err(WireError::TrailingBytes)
        ));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_or_are_refused(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            let _request_or_error: Result<SyncRequest, WireError> = decode_request(&raw);
            let _response_or_error: Result<SyncResponse, WireError> = decode_response(&raw);
            let _block_or_error: Result<ChainBlock, WireError> = decode_block(&raw);
        }

        #[test]
        fn requests_round_trip(locator in proptest::collection::vec(proptest::array::uniform32(proptest::num::u8::ANY), 0..=64), max in proptest::num::u32::ANY) {
            let req = SyncRequest::Headers { locator, max };
            proptest::prop_assert_eq!(decode_request(&encode(&req)).unwrap(), req);
        }

        #[test]
        fn responses_round_trip(blocks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..64), 0..8), text in ".{0,40}") {
            for resp in [SyncResponse::Blocks(blocks.clone()), SyncResponse::Headers(blocks.clone()), SyncResponse::Error(text.clone())] {
                proptest::prop_assert_eq!(decode_response(&encode(&resp)).unwrap(), resp);
            }
        }
    }
}
