//! Relay allocations over the overlay (`/nodus/voice/relay/1`): a caller asks a relay
//! peer for an allocation and gets the relay's UDP address and two tokens, its own and
//! the one it passes to the callee inside their encrypted signalling. One request per
//! stream, postcard frames. Relays announce themselves as DHT providers of
//! [`DHT_KEY`]. A request that does not decode is garbage: dropped, counted, reported.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::AsyncWriteExt;
use libp2p::{PeerId, StreamProtocol};
use nodus_net::NetworkHandle;
use serde::{Deserialize, Serialize};

use crate::VoiceError;
use crate::relay::{Relay, RelayError, Token};

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/nodus/voice/relay/1");
/// Voice relays provide this key in the DHT.
pub const DHT_KEY: &[u8] = b"/nodus/voice/relays";
const MAX_FRAME: usize = 256;
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AllocRequest {
    Allocate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AllocReply {
    Allocated {
        addr: SocketAddr,
        caller: Token,
        callee: Token,
    },
    /// The relay carries as many calls as it will.
    Full,
    /// This peer holds as many allocations as one may.
    TooMany,
}

impl AllocRequest {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("requests serialize")
    }
}

impl AllocReply {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("replies serialize")
    }
}

pub fn decode_request(bytes: &[u8]) -> Option<AllocRequest> {
    postcard::from_bytes(bytes).ok()
}

pub fn decode_reply(bytes: &[u8]) -> Option<AllocReply> {
    postcard::from_bytes(bytes).ok()
}

async fn write_frame<W: futures::AsyncWrite + Unpin>(
    w: &mut W,
    body: &[u8],
) -> std::io::Result<()> {
    w.write_all(&(body.len() as u32).to_be_bytes()).await?;
    w.write_all(body).await?;
    w.flush().await
}

/// Asks `relay` for an allocation: its address, this side's token, the other side's.
pub async fn request(
    net: &NetworkHandle,
    relay: PeerId,
) -> Result<(SocketAddr, Token, Token), VoiceError> {
    let ask = async {
        let mut s = net
            .open_stream(relay, PROTOCOL)
            .await
            .map_err(|e| VoiceError::Relay(format!("{relay}: {e}")))?;
        write_frame(&mut s, &AllocRequest::Allocate.encode())
            .await
            .map_err(|e| VoiceError::Relay(format!("{relay}: {e}")))?;
        let raw = nodus_net::frame::read(&mut s, MAX_FRAME)
            .await
            .map_err(|e| VoiceError::Relay(format!("{relay}: {e}")))?
            .ok_or_else(|| VoiceError::Relay(format!("{relay} closed the stream")))?;
        match decode_reply(&raw) {
            Some(AllocReply::Allocated {
                addr,
                caller,
                callee,
            }) => Ok((addr, caller, callee)),
            Some(AllocReply::Full) => Err(VoiceError::Relay(format!("{relay} is full"))),
            Some(AllocReply::TooMany) => Err(VoiceError::Relay(format!(
                "{relay} holds as many of our allocations as it allows"
            ))),
            None => {
                net.report_misbehaviour(relay, "a voice relay reply that does not decode");
                Err(VoiceError::Relay(format!("{relay} answered garbage")))
            }
        }
    };
    tokio::time::timeout(TIMEOUT, ask)
        .await
        .map_err(|_| VoiceError::Relay(format!("{relay} did not answer")))?
}

/// The relay's side: allocations for whoever asks, within its limits.
pub struct Server {
    pub relay: Arc<Relay>,
    /// The address allocations name (the relay socket's, with the node's IP when it is
    /// bound to all interfaces).
    pub addr: SocketAddr,
    pub max_per_peer: usize,
    held: Mutex<HashMap<PeerId, Vec<Token>>>,
}

impl Server {
    pub fn new(relay: Arc<Relay>, addr: SocketAddr, max_per_peer: usize) -> Server {
        Server {
            relay,
            addr,
            max_per_peer,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// What a request from `peer` gets.
    pub fn answer(&self, peer: PeerId) -> AllocReply {
        let mut held = self.held.lock().expect("held");
        held.retain(|_, tokens| {
            tokens.retain(|t| self.relay.live(t));
            !tokens.is_empty()
        });
        let mine = held.entry(peer).or_default();
        if mine.len() >= self.max_per_peer {
            return AllocReply::TooMany;
        }
        match self.relay.allocate() {
            Ok((caller, callee)) => {
                mine.push(caller);
                AllocReply::Allocated {
                    addr: self.addr,
                    caller,
                    callee,
                }
            }
            Err(RelayError::Full(_)) | Err(RelayError::Io(_)) => AllocReply::Full,
        }
    }

    /// One stream: a request, an answer. `Err` with a reason when the peer sent garbage.
    pub async fn serve(&self, peer: PeerId, mut stream: libp2p::Stream) -> Result<(), String> {
        let raw =
            match tokio::time::timeout(TIMEOUT, nodus_net::frame::read(&mut stream, MAX_FRAME))
                .await
            {
                Ok(Ok(Some(raw))) => raw,
                Ok(Err(nodus_net::frame::FrameError::TooLarge { len, .. })) => {
                    return Err(format!("a {len}-byte allocation request"));
                }
                _ => return Ok(()),
            };
        let Some(AllocRequest::Allocate) = decode_request(&raw) else {
            return Err("an allocation request that does not decode".into());
        };
        let _ = write_frame(&mut stream, &self.answer(peer).encode()).await;
        let _ = stream.close().await;
        Ok(())
    }
}
