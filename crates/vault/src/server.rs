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
    };
    if let Err(e) = result {
        tracing::debug!(target: "nodus::vault", %peer, "answering a provider: {e}");
    }
    let _ = stream.close().await;
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
