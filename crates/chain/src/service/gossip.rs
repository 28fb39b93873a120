//! Gossip of transactions and blocks: what arrives goes to the actor tagged with the
//! peer that forwarded it; what the actor wants published goes out here.

use std::sync::atomic::Ordering;

use libp2p::PeerId;
use nodus_net::NetworkHandle;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::{Publish, Topics};
use crate::error::ChainError;
use crate::error::TxError;
use crate::handle::{BlockOutcome, ChainHandle, Input, Origin};

/// The chain's answer on a gossiped message, to come.
enum Verdict {
    /// One answer per transaction of the message.
    Txs(Vec<oneshot::Receiver<Result<alloy_primitives::B256, TxError>>>),
    Block(oneshot::Receiver<Result<BlockOutcome, ChainError>>),
}

impl Verdict {
    async fn wait(self) -> nodus_net::Verdict {
        use nodus_net::Verdict as V;
        match self {
            // Forwarded if any was new here, refused if any was garbage.
            Verdict::Txs(answers) => {
                let mut verdict = V::Ignore;
                for rx in answers {
                    match rx.await {
                        Ok(Ok(_)) => verdict = V::Accept,
                        Ok(Err(
                            TxError::Decode(_)
                            | TxError::Signature(_)
                            | TxError::ChainId { .. }
                            | TxError::Unprotected
                            | TxError::Oversized(_)
                            | TxError::Type,
                        )) => return V::Reject,
                        // Already known, a nonce race, a full pool: not the sender's fault.
                        _ => {}
                    }
                }
                verdict
            }
            Verdict::Block(rx) => match rx.await {
                Ok(Ok(BlockOutcome::Head { .. } | BlockOutcome::Side)) => V::Accept,
                Ok(Err(_)) => V::Reject,
                // Known, or its parent unknown here (sync fetches it): not forwarded.
                _ => V::Ignore,
            },
        }
    }
}

/// Tries to publish one message (250 ms apart) before giving it up to sync.
const PUBLISH_ATTEMPTS: usize = 20;

pub(super) async fn spawn(
    net: NetworkHandle,
    handle: ChainHandle,
    topics: Topics,
    mut publish: mpsc::Receiver<Publish>,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>, ChainError> {
    let mut txs = net.subscribe_validated(&topics.tx).await?;
    let mut blocks = net.subscribe_validated(&topics.block).await?;
    let mut stop = shutdown.clone();
    let h = handle.clone();
    let h_net = net.clone();
    let inbound = tokio::spawn(async move {
        loop {
            let (mut msg, is_block) = tokio::select! {
                _ = super::stopped(&mut stop) => break,
                m = txs.recv() => match m { Some(m) => (m, false), None => break },
                m = blocks.recv() => match m { Some(m) => (m, true), None => break },
            };
            let from = msg.via.parse::<PeerId>().ok().map(|peer| Origin {
                peer,
                accountable: msg.source.as_deref() == Some(msg.via.as_str()),
            });
            let data = std::mem::take(&mut msg.data);
            // The chain's verdict decides whether gossipsub forwards it: nothing
            // invalid travels further than the first honest node.
            let verdict = if is_block {
                let (reply, rx) = oneshot::channel();
                let input = Input::Block {
                    raw: data,
                    from,
                    reply: Some(reply),
                };
                if h.tx.send(input).await.is_err() {
                    break;
                }
                Verdict::Block(rx)
            } else {
                let raws = match crate::wire::decode_txs(&data) {
                    Ok(raws) => raws,
                    Err(e) => {
                        tracing::debug!(target: "nodus::chain", "undecodable transaction gossip: {e}");
                        h_net.validate(&msg, nodus_net::Verdict::Reject);
                        continue;
                    }
                };
                let mut verdicts = Vec::with_capacity(raws.len());
                for raw in raws {
                    let (reply, rx) = oneshot::channel();
                    let input = Input::Submit {
                        tx: crate::tx::RecoveredTx::decode(&raw),
                        raw,
                        from,
                        reply: Some(reply),
                    };
                    if h.tx.send(input).await.is_err() {
                        return;
                    }
                    verdicts.push(rx);
                }
                Verdict::Txs(verdicts)
            };
            let net = h_net.clone();
            tokio::spawn(async move {
                net.validate(&msg, verdict.wait().await);
            });
        }
    });
    let mut stop = shutdown;
    let peers = handle.peers.clone();
    let outbound = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = super::stopped(&mut stop) => break,
                _ = tick.tick() => {
                    if let Ok(p) = net.topic_peers(&topics.block).await {
                        peers.store(p.len() as u64, Ordering::Relaxed);
                    }
                }
                p = publish.recv() => {
                    let Some(p) = p else { break };
                    // With no subscribed peer known yet (just started, or alone for a
                    // while), retry for a few seconds rather than drop it.
                    for attempt in 0..PUBLISH_ATTEMPTS {
                        match net.publish(&p.topic, p.data.clone()).await {
                            Ok(_) => break,
                            Err(e) => {
                                tracing::debug!(target: "nodus::chain", attempt, "gossip on {}: {e}", p.topic);
                                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                            }
                        }
                    }
                }
            }
        }
    });
    Ok(vec![inbound, outbound])
}
