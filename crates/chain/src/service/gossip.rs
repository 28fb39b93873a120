//! Gossip of transactions and blocks: what arrives goes to the actor tagged with the
//! peer that forwarded it; what the actor wants published goes out here.

use std::sync::atomic::Ordering;

use libp2p::PeerId;
use nodus_net::NetworkHandle;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::{Publish, Topics};
use crate::error::ChainError;
use crate::handle::{ChainHandle, Input, Origin};

/// Tries to publish one message (250 ms apart) before giving it up to sync.
const PUBLISH_ATTEMPTS: usize = 20;

pub(super) async fn spawn(
    net: NetworkHandle,
    handle: ChainHandle,
    topics: Topics,
    mut publish: mpsc::Receiver<Publish>,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>, ChainError> {
    let mut txs = net
        .subscribe(&topics.tx)
        .await
        .map_err(|e| ChainError::Other(e.to_string()))?;
    let mut blocks = net
        .subscribe(&topics.block)
        .await
        .map_err(|e| ChainError::Other(e.to_string()))?;
    let mut stop = shutdown.clone();
    let h = handle.clone();
    let inbound = tokio::spawn(async move {
        loop {
            let (msg, is_block) = tokio::select! {
                _ = super::stopped(&mut stop) => break,
                m = txs.recv() => match m { Some(m) => (m, false), None => break },
                m = blocks.recv() => match m { Some(m) => (m, true), None => break },
            };
            let from = msg.via.parse::<PeerId>().ok().map(|peer| Origin {
                peer,
                accountable: msg.source.as_deref() == Some(msg.via.as_str()),
            });
            let input = if is_block {
                Input::Block {
                    raw: msg.data,
                    from,
                    reply: None,
                }
            } else {
                Input::Submit {
                    tx: crate::tx::RecoveredTx::decode(&msg.data),
                    raw: msg.data,
                    from,
                    reply: None,
                }
            };
            if h.tx.send(input).await.is_err() {
                break;
            }
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
