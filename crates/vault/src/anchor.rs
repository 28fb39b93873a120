//! Pinning the audit log on the chain. The vault declares what it needs ([`Anchor`]);
//! the node implements it over the chain service (crates/node/src/wiring.rs) and offers
//! it as [`SharedAnchor`]. Without a chain, the log is still hash-chained; `log verify`
//! says it is not anchored.
//!
//! The task sends the head (entry number and hash, [`crate::log::anchor_payload`]) in a
//! transaction when the log has grown since the last anchor, one at a time: a sent
//! anchor is waited for until it is mined, and sent again after [`RESEND_AFTER`] if it
//! never is.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;

use crate::VaultError;
use crate::log;
use crate::store::AnchorRow;
use crate::vault::{LogCheck, Vault};

/// A mined anchor transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Mined {
    pub payload: Vec<u8>,
    pub block: u64,
    /// The sender's address, as the chain writes it.
    pub from: String,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnchorError {
    #[error(
        "the anchor account {account} has no funds for gas; send it some (e.g. `nodus send {account} 0.1`)"
    )]
    NoFunds { account: String },
    #[error("chain: {0}")]
    Chain(String),
}

/// What the vault needs of a chain.
pub trait Anchor: Send + Sync {
    /// Sends `payload` in a transaction from [`Anchor::account`]; its hash.
    fn send(&self, payload: Vec<u8>) -> BoxFuture<'_, Result<[u8; 32], AnchorError>>;
    /// The transaction `tx` if it is in a block of the chain (None: not, or not yet).
    fn find(&self, tx: [u8; 32]) -> BoxFuture<'_, Result<Option<Mined>, AnchorError>>;
    /// The account that pays for anchors.
    fn account(&self) -> String;
}

pub type SharedAnchor = Arc<dyn Anchor>;

/// A sent anchor not mined within this long is sent again.
pub const RESEND_AFTER: Duration = Duration::from_secs(600);

/// How anchoring is going, for `nodus vault status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AnchorState {
    pub account: Option<String>,
    /// Last entry whose anchor is in a block, and that block.
    pub anchored_entry: Option<u64>,
    pub anchored_block: Option<u64>,
    /// An anchor sent and not yet mined.
    pub pending_entry: Option<u64>,
    pub last_error: Option<String>,
}

/// Why a round of anchoring did not get through (kept for `status` as text).
#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Anchor(#[from] AnchorError),
    #[error("the transaction sent for entry {0} carries something else")]
    Mismatch(u64),
}

/// One round: checks a pending anchor, or sends a new one if the log grew.
pub async fn round(vault: &Arc<Vault>, anchor: &SharedAnchor, state: &Mutex<AnchorState>) {
    let r = round_inner(vault, anchor, state).await;
    let mut s = state.lock().expect("anchor state");
    s.account = Some(anchor.account());
    s.last_error = r.err().map(|e| e.to_string());
}

async fn blocking<T: Send + 'static>(
    vault: &Arc<Vault>,
    f: impl FnOnce(&Vault) -> Result<T, crate::VaultError> + Send + 'static,
) -> Result<T, RoundError> {
    let v = vault.clone();
    tokio::task::spawn_blocking(move || f(&v))
        .await
        .map_err(|_| VaultError::Stopped)?
        .map_err(RoundError::from)
}

async fn round_inner(
    vault: &Arc<Vault>,
    anchor: &SharedAnchor,
    state: &Mutex<AnchorState>,
) -> Result<(), RoundError> {
    let anchors = blocking(vault, |v| v.anchors()).await?;
    if let Some((seq, row)) = anchors.iter().rev().find(|(_, a)| a.block.is_none()) {
        let (seq, row) = (*seq, row.clone());
        state.lock().expect("anchor state").pending_entry = Some(seq);
        match anchor.find(row.tx).await? {
            Some(m) if log::parse_anchor(&m.payload) == Some((seq, row.head)) => {
                let done = AnchorRow {
                    block: Some(m.block),
                    ..row
                };
                blocking(vault, move |v| v.put_anchor(seq, &done)).await?;
                let mut s = state.lock().expect("anchor state");
                s.pending_entry = None;
                s.anchored_entry = Some(seq);
                s.anchored_block = Some(m.block);
            }
            Some(_) => {
                blocking(vault, move |v| v.remove_anchor(seq)).await?;
                return Err(RoundError::Mismatch(seq));
            }
            None if vault.now().saturating_sub(row.sent_ms) > RESEND_AFTER.as_millis() as u64 => {
                blocking(vault, move |v| v.remove_anchor(seq)).await?;
                state.lock().expect("anchor state").pending_entry = None;
            }
            None => {}
        }
        return Ok(());
    }
    if let Some((seq, row)) = anchors.last() {
        let mut s = state.lock().expect("anchor state");
        s.anchored_entry = Some(*seq);
        s.anchored_block = row.block;
    }
    let (entries, head) = blocking(vault, |v| v.head()).await?;
    let last = anchors.last().map(|(s, _)| *s);
    if entries == 0 || last == Some(entries - 1) {
        return Ok(());
    }
    let seq = entries - 1;
    let tx = anchor.send(log::anchor_payload(seq, &head)).await?;
    let row = AnchorRow {
        head,
        tx,
        block: None,
        sent_ms: vault.now(),
    };
    blocking(vault, move |v| v.put_anchor(seq, &row)).await?;
    state.lock().expect("anchor state").pending_entry = Some(seq);
    tracing::info!(target: "nodus::vault", entry = seq, tx = %hex::encode(tx), "audit log head sent to the chain");
    Ok(())
}

/// The log checked, and its anchors against the chain.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    #[serde(flatten)]
    pub log: LogCheck,
    /// Anchors found in blocks with the hash the log holds at their entry.
    pub anchors_confirmed: usize,
    /// Anchors sent, not yet seen in a block.
    pub anchors_pending: usize,
    /// The newest confirmed anchor: entry, block, transaction.
    pub last_anchor: Option<(u64, u64, String)>,
    /// Why there is no anchor to check, when there is none.
    pub note: Option<String>,
}

/// Checks the log's chain of hashes, then each anchor mined in a block against what
/// the chain holds: the transaction must carry the hash the log holds at its entry.
pub async fn verify(
    vault: &Arc<Vault>,
    anchor: Option<&SharedAnchor>,
    last_error: Option<String>,
) -> Result<Verified, VaultError> {
    let v = vault.clone();
    let (log, pinned) = tokio::task::spawn_blocking(move || v.verify_log())
        .await
        .map_err(|_| VaultError::Stopped)??;
    let mut out = Verified {
        log,
        anchors_confirmed: 0,
        anchors_pending: 0,
        last_anchor: None,
        note: None,
    };
    let Some(anchor) = anchor else {
        out.note = Some(
            "not anchored: the chain service is not running on this node ([chain] enabled)".into(),
        );
        return Ok(out);
    };
    for (seq, hash, row) in pinned {
        let Some(block) = row.block else {
            out.anchors_pending += 1;
            continue;
        };
        let mined = anchor
            .find(row.tx)
            .await
            .map_err(|e| VaultError::Peer(e.to_string()))?;
        match mined {
            Some(m) if log::parse_anchor(&m.payload) == Some((seq, hash)) => {
                out.anchors_confirmed += 1;
                out.last_anchor = Some((seq, m.block, hex::encode(row.tx)));
            }
            Some(_) => {
                return Err(VaultError::LogBroken {
                    entry: seq,
                    why: format!("the anchor in block {block} holds another head"),
                });
            }
            None => {
                return Err(VaultError::LogBroken {
                    entry: seq,
                    why: format!(
                        "its anchor (transaction 0x{}, block {block}) is not on the chain",
                        hex::encode(row.tx)
                    ),
                });
            }
        }
    }
    if out.anchors_confirmed == 0 && out.anchors_pending == 0 {
        out.note = Some(match last_error {
            Some(e) => format!("not anchored yet: {e}"),
            None => "not anchored yet".into(),
        });
    }
    Ok(out)
}
