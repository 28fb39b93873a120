//! What peers send each other: gossip payloads (an EIP-2718 transaction, an RLP block)
//! and the sync protocol's framed requests and responses (`/nodus/chain/sync/1`).
//!
//! Every decoder here takes untrusted bytes: sizes are bounded before allocation and
//! nothing panics (see fuzz/fuzz_targets/chain_wire.rs).

use alloy_consensus::Header;
use alloy_primitives::{B256, U256};
use alloy_rlp::Decodable;
use futures::{AsyncReadExt, AsyncWriteExt};
use serde::{Deserialize, Serialize};

use crate::store::{self, ChainBlock};

pub const SYNC_PROTOCOL: &str = "/nodus/chain/sync/1";
/// Largest sync frame (a batch of blocks).
pub const MAX_FRAME: usize = 16 * 1024 * 1024;
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

pub fn decode_headers(raw: &[Vec<u8>]) -> Result<Vec<Header>, String> {
    raw.iter()
        .map(|r| {
            let mut s = r.as_slice();
            let h = Header::decode(&mut s).map_err(|e| e.to_string())?;
            if !s.is_empty() {
                return Err("trailing bytes after a header".into());
            }
            Ok(h)
        })
        .collect()
}

pub fn decode_block(raw: &[u8]) -> Result<ChainBlock, String> {
    if raw.len() > MAX_BLOCK_BYTES {
        return Err(format!("block of {} bytes is over the limit", raw.len()));
    }
    store::decode_block(raw).map_err(|e| e.to_string())
}

pub fn decode_request(raw: &[u8]) -> Result<SyncRequest, String> {
    let req: SyncRequest = postcard::from_bytes(raw).map_err(|e| e.to_string())?;
    match &req {
        SyncRequest::Headers { locator, .. } if locator.len() > 64 => {
            Err("locator too long".into())
        }
        SyncRequest::Blocks { hashes } if hashes.len() > MAX_BLOCKS => {
            Err("too many blocks asked".into())
        }
        _ => Ok(req),
    }
}

pub fn decode_response(raw: &[u8]) -> Result<SyncResponse, String> {
    postcard::from_bytes(raw).map_err(|e| e.to_string())
}

pub async fn write_frame<W: futures::AsyncWrite + Unpin>(
    w: &mut W,
    body: &[u8],
) -> std::io::Result<()> {
    w.write_all(&(body.len() as u32).to_be_bytes()).await?;
    w.write_all(body).await?;
    w.flush().await
}

pub async fn read_frame<R: futures::AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "frame over 16 MiB",
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    Ok(buf)
}

pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for raw in [&b""[..], b"\xff\xff\xff", b"\x01\xff\xff\xff\xff\xff\x0f"] {
            let _ = decode_request(raw);
            let _ = decode_response(raw);
            let _ = decode_block(raw);
        }
        let long = SyncRequest::Blocks {
            hashes: vec![[0; 32]; MAX_BLOCKS + 1],
        };
        assert!(decode_request(&encode(&long)).is_err());
    }
}
