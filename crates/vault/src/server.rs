//! The patient's side of `/nodus/vault/1`: one request per stream, answered from the
//! vault. A request that does not decode or breaks the limits is garbage: the stream is
//! dropped, counted, and the peer reported to the overlay (which bans repeat
//! offenders). A refusal (no grant, expired, other types) is not misbehaviour: it is
//! answered, counted and logged.

use std::time::Duration;

use futures::AsyncWriteExt;
use nodus_net::PeerId;

use crate::handle::{VaultEvent, VaultHandle};
use crate::wire::{self, Refusal, Reply, Request};

/// A request must arrive within this long of the stream opening.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) async fn serve(h: &VaultHandle, peer: PeerId, mut stream: libp2p::Stream) {
    let inner = h.inner();
    let raw = match tokio::time::timeout(
        REQUEST_TIMEOUT,
        nodus_net::frame::read(&mut stream, wire::MAX_FRAME),
    )
    .await
    {
        Ok(Ok(Some(raw))) => raw,
        Ok(Err(nodus_net::frame::FrameError::TooLarge { .. })) => {
            return garbage(h, peer, "a frame over the limit");
        }
        _ => return,
    };
    let req = match wire::decode_request(&raw) {
        Ok(r) => r,
        Err(e) => return garbage(h, peer, &e.to_string()),
    };
    let provider = peer.to_string();
    let vault = inner.vault.clone();
    let result = match req {
        Request::Key => {
            let public = vault.keys().public();
            wire::write(&mut stream, &Reply::Key { public }).await
        }
        Request::Fetch { types } => {
            let p = provider.clone();
            let served = tokio::task::spawn_blocking(move || vault.serve_fetch(&p, &types))
                .await
                .unwrap_or(Err(Refusal::Unavailable));
            match served {
                Ok(s) => {
                    inner.metrics.served.inc();
                    let _ = inner.events.send(VaultEvent::Served {
                        provider: provider.clone(),
                        records: s.records.len(),
                    });
                    send_records(&mut stream, h.inner().vault.me(), s).await
                }
                Err(r) => refuse(h, &mut stream, &provider, r).await,
            }
        }
        Request::Append {
            resource,
            public_key,
            signature,
        } => {
            let p = provider.clone();
            let taken = tokio::task::spawn_blocking(move || {
                vault.accept_append(&p, &resource, &public_key, &signature)
            })
            .await
            .unwrap_or(Err(Refusal::Unavailable));
            match taken {
                Ok(info) => {
                    inner.metrics.appended.inc();
                    inner
                        .metrics
                        .records
                        .set(inner.vault.count().unwrap_or(0) as i64);
                    let _ = inner.events.send(VaultEvent::Appended {
                        provider: provider.clone(),
                        record: format!("{}/{}", info.rtype, info.id),
                    });
                    let reply = Reply::Appended {
                        rtype: info.rtype,
                        id: info.id,
                        version: info.version,
                    };
                    wire::write(&mut stream, &reply).await
                }
                Err(r) => refuse(h, &mut stream, &provider, r).await,
            }
        }
        Request::Hold(snap) => hold(h, peer, &mut stream, snap).await,
        Request::Restore => {
            let p = provider.clone();
            let held = tokio::task::spawn_blocking(move || vault.held(&p))
                .await
                .map_err(|_| crate::VaultError::Stopped)
                .and_then(|r| r);
            match held {
                Ok((snap, chunks)) => send_copy(&mut stream, snap, chunks).await,
                Err(crate::VaultError::Refused(r)) => refuse(h, &mut stream, &provider, r).await,
                Err(e) => {
                    tracing::warn!(target: "nodus::vault", "a restore for {provider}: {e}");
                    refuse(h, &mut stream, &provider, Refusal::Unavailable).await
                }
            }
        }
        Request::HoldMore(_) | Request::HoldEnd => {
            return garbage(h, peer, "hold frames without a hold");
        }
    };
    if let Err(e) = result {
        tracing::debug!(target: "nodus::vault", %peer, "answering a provider: {e}");
    }
    // A fetch or an append wrote the log: replicas have something new.
    inner.replicate.notify_one();
    let _ = stream.close().await;
}

/// Most bytes one hold may bring in one go (it is kept in memory until it is checked
/// and written in one transaction).
const HOLD_STREAM_MAX: usize = 256 << 20;

/// A patient's copy to hold: the snapshot came, the chunks follow until `HoldEnd`.
async fn hold(
    h: &VaultHandle,
    peer: PeerId,
    stream: &mut libp2p::Stream,
    snap: wire::Snapshot,
) -> Result<(), wire::WireError> {
    let patient = peer.to_string();
    let inner = h.inner();
    if !inner.vault.is_holding(&patient).unwrap_or(false) {
        return refuse(h, stream, &patient, Refusal::NotHolding).await;
    }
    let budget = inner.held_budget;
    let mut chunks = Vec::new();
    let mut bytes = 0usize;
    loop {
        let raw = match tokio::time::timeout(
            REQUEST_TIMEOUT,
            nodus_net::frame::read(stream, wire::MAX_FRAME),
        )
        .await
        {
            Ok(Ok(Some(raw))) => raw,
            _ => return Ok(()),
        };
        match wire::decode_request(&raw) {
            Ok(Request::HoldMore(c)) => {
                bytes += c.bytes();
                if bytes as u64 > budget || bytes > HOLD_STREAM_MAX {
                    return refuse(
                        h,
                        stream,
                        &patient,
                        Refusal::Full {
                            budget_mb: budget >> 20,
                        },
                    )
                    .await;
                }
                chunks.push(c);
            }
            Ok(Request::HoldEnd) => break,
            _ => {
                garbage(h, peer, "a hold interrupted by something else");
                return Ok(());
            }
        }
    }
    let vault = inner.vault.clone();
    let p = patient.clone();
    let held = tokio::task::spawn_blocking(move || vault.hold(&p, snap, chunks, budget))
        .await
        .unwrap_or(Err(Refusal::Unavailable));
    match held {
        Ok(upto) => wire::write(stream, &Reply::Held { upto }).await,
        Err(r) => refuse(h, stream, &patient, r).await,
    }
}

async fn send_copy(
    stream: &mut libp2p::Stream,
    snap: wire::Snapshot,
    chunks: Vec<wire::Chunk>,
) -> Result<(), wire::WireError> {
    wire::write(stream, &Reply::Snapshot(snap)).await?;
    for c in chunks {
        wire::write(stream, &Reply::Chunk(c)).await?;
    }
    wire::write(stream, &Reply::Done).await
}

fn garbage(h: &VaultHandle, peer: PeerId, why: &str) {
    h.inner().metrics.garbage.inc();
    h.inner()
        .net
        .report_misbehaviour(peer, format!("vault protocol: {why}"));
}

async fn refuse(
    h: &VaultHandle,
    stream: &mut libp2p::Stream,
    provider: &str,
    r: Refusal,
) -> Result<(), wire::WireError> {
    h.inner().metrics.refused.inc();
    let _ = h.inner().events.send(VaultEvent::Refused {
        provider: provider.to_string(),
        reason: r.to_string(),
    });
    wire::write(stream, &Reply::Refused(r)).await
}

async fn send_records(
    stream: &mut libp2p::Stream,
    patient: &str,
    s: crate::vault::Served,
) -> Result<(), wire::WireError> {
    wire::write(
        stream,
        &Reply::Grant {
            patient: patient.to_string(),
            no: s.no,
            enc: s.enc,
            sealed: s.sealed,
            total: s.records.len() as u64,
        },
    )
    .await?;
    let mut batch = Vec::new();
    let mut bytes = 0;
    for r in s.records {
        bytes += r.body.len() + r.wrap.len() + 64;
        batch.push(r);
        if bytes >= wire::BATCH_BYTES {
            wire::write(stream, &Reply::Records(std::mem::take(&mut batch))).await?;
            bytes = 0;
        }
    }
    if !batch.is_empty() {
        wire::write(stream, &Reply::Records(batch)).await?;
    }
    wire::write(stream, &Reply::Done).await
}
