//! Sync over `/nodus/chain/sync/1`: serving peers' requests, and catching up with a peer
//! that has more work. Headers come first (their links and proof of work are checked
//! before any body is asked for), then bodies, spread over every peer ahead of us.

use std::time::Duration;

use alloy_primitives::{B256, U256};
use futures::StreamExt;
use libp2p::{PeerId, StreamProtocol};
use nodus_net::NetworkHandle;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::Topics;
use crate::error::ChainError;
use crate::handle::{BlockOutcome, ChainHandle};
use crate::wire::{self, PeerStatus, SyncRequest, SyncResponse};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const SYNC_TICK: Duration = Duration::from_secs(3);
/// Streams served at once; more wait.
const MAX_SERVING: usize = 32;

pub(super) fn spawn(
    net: NetworkHandle,
    handle: ChainHandle,
    topics: Topics,
    mut hints: mpsc::Receiver<PeerId>,
    shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, ChainError> {
    let protocol = StreamProtocol::new(wire::SYNC_PROTOCOL);
    let mut incoming = net.incoming(protocol.clone())?;
    let server_handle = handle.clone();
    let server_net = net.clone();
    let mut stop = shutdown.clone();
    let server = tokio::spawn(async move {
        let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_SERVING));
        loop {
            let (peer, stream) = tokio::select! {
                _ = super::stopped(&mut stop) => break,
                s = incoming.next() => match s { Some(s) => s, None => break },
            };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let (h, n) = (server_handle.clone(), server_net.clone());
            tokio::spawn(async move {
                serve(h, n, peer, stream).await;
                drop(permit);
            });
        }
    });
    let mut stop = shutdown;
    Ok(tokio::spawn(async move {
        let mut tick = tokio::time::interval(SYNC_TICK);
        loop {
            let hint = tokio::select! {
                _ = super::stopped(&mut stop) => break,
                _ = tick.tick() => None,
                p = hints.recv() => p,
            };
            let mut peers = net.topic_peers(&topics.block).await.unwrap_or_default();
            if let Some(p) = hint {
                peers.retain(|q| *q != p);
                peers.insert(0, p);
            }
            if let Err(e) = catch_up(&net, &handle, &peers, &protocol, &topics.block).await {
                tracing::debug!(target: "nodus::chain", "sync: {e}");
            }
        }
        server.abort();
    }))
}

async fn serve(handle: ChainHandle, net: NetworkHandle, peer: PeerId, mut stream: libp2p::Stream) {
    loop {
        let raw = match tokio::time::timeout(
            IDLE_TIMEOUT,
            wire::read_frame(&mut stream, wire::MAX_REQUEST_FRAME),
        )
        .await
        {
            Ok(Ok(raw)) => raw,
            _ => return,
        };
        let response = match wire::decode_request(&raw) {
            Ok(req) => answer(&handle, req).await,
            Err(e) => {
                // A peer's garbage is dropped and counted against it.
                net.report_misbehaviour(peer, format!("bad sync request: {e}"));
                return;
            }
        };
        let Ok(response) = response else { return };
        if wire::write_frame(&mut stream, &wire::encode(&response))
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn answer(handle: &ChainHandle, req: SyncRequest) -> Result<SyncResponse, ChainError> {
    handle
        .read(move |c| match req {
            SyncRequest::Status => SyncResponse::status(PeerStatus {
                genesis: c.chain.genesis_hash(),
                head: c.chain.head_hash(),
                number: c.chain.head_number(),
                total_work: c.chain.total_work(),
            }),
            SyncRequest::Headers { locator, max } => {
                let locator: Vec<B256> = locator.into_iter().map(B256::from).collect();
                let hashes = c
                    .chain
                    .hashes_after(&locator, (max as usize).min(wire::MAX_HEADERS));
                SyncResponse::Headers(
                    hashes
                        .iter()
                        .filter_map(|h| c.chain.header(h))
                        .map(|h| {
                            let mut out = Vec::new();
                            alloy_rlp::Encodable::encode(h, &mut out);
                            out
                        })
                        .collect(),
                )
            }
            SyncRequest::Blocks { hashes } => SyncResponse::Blocks(
                hashes
                    .into_iter()
                    .filter_map(|h| c.chain.block(&B256::from(h)).ok().flatten())
                    .map(|b| crate::store::encode_block(&b))
                    .collect(),
            ),
        })
        .await
}

/// Why a sync round ended early. [`SyncError::peer_at_fault`] tells which kinds are a
/// peer's doing (penalized) and which are the network's or ours.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SyncError {
    #[error("stream: {0}")]
    Stream(#[from] nodus_net::NetError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Wire(#[from] wire::WireError),
    #[error("answered {0} with something else")]
    Unexpected(&'static str),
    #[error("headers that do not link up")]
    Unlinked,
    #[error("a header without valid proof of work")]
    BadWork,
    #[error("headers that do not connect to our chain")]
    Disconnected,
    #[error("no peer served the blocks")]
    NoBlocks,
    #[error("a block other than the one asked")]
    WrongBlock,
    #[error("a synced block whose parent is unknown")]
    Orphan,
    #[error("synced block refused: {0}")]
    Refused(#[source] ChainError),
    #[error(transparent)]
    Chain(#[from] ChainError),
}

impl SyncError {
    /// Whether the peer that answered is to blame (garbage, lies about work or blocks).
    fn peer_at_fault(&self) -> bool {
        matches!(
            self,
            SyncError::Wire(_)
                | SyncError::Unexpected(_)
                | SyncError::Unlinked
                | SyncError::BadWork
                | SyncError::WrongBlock
        )
    }
}

/// One request and its response on a fresh stream. Garbage in the answer is a strike
/// against the peer.
async fn ask(
    net: &NetworkHandle,
    peer: PeerId,
    protocol: &StreamProtocol,
    req: &SyncRequest,
) -> Result<SyncResponse, SyncError> {
    let fut = async {
        let mut s = net.open_stream(peer, protocol.clone()).await?;
        wire::write_frame(&mut s, &wire::encode(req)).await?;
        let raw = wire::read_frame(&mut s, wire::MAX_FRAME).await?;
        Ok::<_, SyncError>(wire::decode_response(&raw)?)
    };
    let r = tokio::time::timeout(REQUEST_TIMEOUT, fut)
        .await
        .map_err(|_| SyncError::Timeout(REQUEST_TIMEOUT))?;
    blame(net, peer, r)
}

/// Reports `peer` when `r` is an error it is to blame for.
fn blame<T>(net: &NetworkHandle, peer: PeerId, r: Result<T, SyncError>) -> Result<T, SyncError> {
    if let Err(e) = &r
        && e.peer_at_fault()
    {
        net.report_misbehaviour(peer, format!("sync: {e}"));
    }
    r
}

async fn status_of(
    net: &NetworkHandle,
    peer: PeerId,
    protocol: &StreamProtocol,
) -> Result<PeerStatus, SyncError> {
    match ask(net, peer, protocol, &SyncRequest::Status).await? {
        SyncResponse::Status {
            genesis,
            head,
            number,
            total_work,
        } => Ok(PeerStatus {
            genesis: B256::from(genesis),
            head: B256::from(head),
            number,
            total_work: U256::from_be_bytes(total_work),
        }),
        _ => blame(net, peer, Err(SyncError::Unexpected("Status"))),
    }
}

/// Downloads and imports what the best peer has beyond our head.
/// The peers ahead of us: asks the status of those in `peers` not asked yet.
struct Ahead {
    genesis: B256,
    our_work: U256,
    asked: std::collections::HashSet<PeerId>,
    peers: Vec<(PeerId, PeerStatus)>,
}

impl Ahead {
    async fn learn(&mut self, net: &NetworkHandle, protocol: &StreamProtocol, peers: &[PeerId]) {
        for p in peers {
            if self.asked.len() >= 16 || !self.asked.insert(*p) {
                continue;
            }
            match status_of(net, *p, protocol).await {
                Ok(s) if s.genesis == self.genesis && s.total_work > self.our_work => {
                    self.peers.push((*p, s))
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(target: "nodus::chain", peer = %p, "status: {e}"),
            }
        }
        self.peers
            .sort_by_key(|(_, s)| std::cmp::Reverse(s.total_work));
    }
}

async fn catch_up(
    net: &NetworkHandle,
    handle: &ChainHandle,
    peers: &[PeerId],
    protocol: &StreamProtocol,
    topic: &str,
) -> Result<(), SyncError> {
    let (genesis, our_work) = handle
        .read(|c| (c.chain.genesis_hash(), c.chain.total_work()))
        .await?;
    let mut ahead = Ahead {
        genesis,
        our_work,
        asked: Default::default(),
        peers: Vec::new(),
    };
    ahead.learn(net, protocol, peers).await;
    let ahead_first = ahead.peers.first().copied();
    let Some((best, _)) = ahead_first else {
        return Ok(());
    };
    loop {
        let locator: Vec<[u8; 32]> = handle
            .read(|c| c.chain.locator())
            .await?
            .into_iter()
            .map(|h| h.0)
            .collect();
        let headers = match ask(
            net,
            best,
            protocol,
            &SyncRequest::Headers {
                locator,
                max: wire::MAX_HEADERS as u32,
            },
        )
        .await?
        {
            SyncResponse::Headers(raw) => blame(
                net,
                best,
                wire::decode_headers(&raw).map_err(SyncError::from),
            )?,
            _ => return blame(net, best, Err(SyncError::Unexpected("Headers"))),
        };
        if headers.is_empty() {
            return Ok(());
        }
        // Headers first: they must link up and carry valid proof of work for the
        // difficulty they claim before any body is fetched.
        let hashes = blame(net, best, check_header_chain(&headers))?;
        let known_parent = handle
            .read({
                let p = headers[0].parent_hash;
                move |c| c.chain.knows(&p)
            })
            .await?;
        if !known_parent {
            return Err(SyncError::Disconnected);
        }
        let mut served: Vec<PeerId> = Vec::new();
        for (i, chunk) in hashes.chunks(wire::MAX_BLOCKS).enumerate() {
            // Peers met since the sync began serve bodies too.
            if let Ok(now) = net.topic_peers(topic).await {
                ahead.learn(net, protocol, &now).await;
            }
            let sources: Vec<PeerId> = ahead.peers.iter().map(|(p, _)| *p).collect();
            let mut got = None;
            for k in 0..sources.len() {
                let peer = sources[(i + k) % sources.len()];
                let req = SyncRequest::Blocks {
                    hashes: chunk.iter().map(|h| h.0).collect(),
                };
                match ask(net, peer, protocol, &req).await {
                    Ok(SyncResponse::Blocks(raw)) if raw.len() == chunk.len() => {
                        got = Some((peer, raw));
                        break;
                    }
                    Ok(_) => continue,
                    Err(e) => tracing::debug!(target: "nodus::chain", %peer, "blocks: {e}"),
                }
            }
            if let Some((peer, _)) = &got
                && !served.contains(peer)
            {
                served.push(*peer);
            }
            let Some((peer, raw)) = got else {
                return Err(SyncError::NoBlocks);
            };
            for (want, r) in chunk.iter().zip(raw) {
                let hash = wire::decode_block(&r).map(|b| b.header.hash_slow());
                if hash.as_ref().ok() != Some(want) {
                    return blame(net, peer, Err(SyncError::WrongBlock));
                }
                let (reply, rx) = tokio::sync::oneshot::channel();
                handle
                    .tx
                    .send(crate::handle::Input::Block {
                        raw: r,
                        from: Some(crate::handle::Origin {
                            peer,
                            accountable: true,
                        }),
                        reply: Some(reply),
                    })
                    .await
                    .map_err(|_| ChainError::Stopped)?;
                match rx.await {
                    Ok(Ok(BlockOutcome::Orphan)) => return Err(SyncError::Orphan),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(SyncError::Refused(e)),
                    Err(_) => return Err(ChainError::Stopped.into()),
                }
            }
        }
        let _ = handle.events.send(crate::handle::ChainEvent::Synced {
            blocks: hashes.len(),
            peers: served.iter().map(|p| p.to_string()).collect(),
        });
    }
}

/// Checks that headers link one to the next and that each meets its claimed difficulty.
/// Returns their hashes.
fn check_header_chain(headers: &[alloy_consensus::Header]) -> Result<Vec<B256>, SyncError> {
    let mut hashes: Vec<B256> = Vec::with_capacity(headers.len());
    for h in headers {
        if let Some(prev) = hashes.last()
            && h.parent_hash != *prev
        {
            return Err(SyncError::Unlinked);
        }
        let target = if h.difficulty.is_zero() {
            U256::ZERO
        } else {
            U256::MAX / h.difficulty
        };
        if !crate::pow::verify(h, target) {
            return Err(SyncError::BadWork);
        }
        hashes.push(h.hash_slow());
    }
    Ok(hashes)
}
