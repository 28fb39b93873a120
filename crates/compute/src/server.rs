//! The coordinator's side of `/nodus/compute/2`, its announcements, and its clock.
//!
//! A volunteer's stream carries one request at a time until it closes or stays idle
//! for [`IDLE`]. A frame that does not decode or breaks a limit is garbage: the stream
//! is dropped, counted and the peer reported to the overlay.

use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncWriteExt, StreamExt};
use nodus_net::PeerId;
use tokio::sync::watch;

use crate::coordinator::now_ms;
use crate::handle::{ComputeEvent, ComputeHandle};
use crate::wire::{self, Refusal, Reply, Request};

/// A volunteer's stream closes after this long without a request.
const IDLE: Duration = Duration::from_secs(300);
/// Announcements are repeated this often while a project has work.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(10);
/// The coordinator key is provided in the DHT again this often.
const REPROVIDE_EVERY: Duration = Duration::from_secs(600);

pub(crate) async fn accept(
    h: ComputeHandle,
    mut incoming: libp2p_stream::IncomingStreams,
    max: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(max.max(1)));
    let mut serving = tokio::task::JoinSet::new();
    loop {
        let (peer, stream) = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            Some(_) = serving.join_next(), if !serving.is_empty() => continue,
            s = incoming.next() => match s { Some(s) => s, None => break },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Full: the volunteer tries again later.
            let mut stream = stream;
            let _ = wire::write(&mut stream, &Reply::Refused(Refusal::Busy)).await;
            continue;
        };
        let h = h.clone();
        serving.spawn(async move {
            serve(&h, peer, stream).await;
            drop(permit);
        });
    }
}

async fn serve(h: &ComputeHandle, peer: PeerId, mut stream: libp2p::Stream) {
    let inner = &h.inner;
    let host = peer.to_bytes();
    loop {
        let raw = match tokio::time::timeout(IDLE, wire::read_raw(&mut stream)).await {
            Ok(Ok(raw)) => raw,
            Ok(Err(wire::WireError::Frame(nodus_net::frame::FrameError::TooLarge { .. }))) => {
                return garbage(h, peer, "a frame over the limit");
            }
            _ => break,
        };
        let req = match wire::decode_request(&raw) {
            Ok(r) => r,
            Err(e) => return garbage(h, peer, &e.to_string()),
        };
        let c = inner.coordinator.clone();
        let reply = match req {
            Request::Projects => {
                Reply::Projects(c.announces().into_iter().take(wire::MAX_PROJECTS).collect())
            }
            Request::Module { project } => match c.module(&project) {
                Ok(Some(wasm)) => Reply::Module { wasm },
                _ => Reply::Refused(Refusal::UnknownProject),
            },
            Request::Work {
                project,
                max,
                class,
                payout,
            } => {
                let host = host.clone();
                let r = tokio::task::spawn_blocking(move || {
                    c.work(&project, &host, &class, max as usize, payout, now_ms())
                })
                .await;
                match r {
                    Ok(Ok(Some((units, credit, finished)))) => {
                        if units.is_empty() {
                            Reply::NoWork { finished, credit }
                        } else {
                            Reply::Units { units, credit }
                        }
                    }
                    Ok(Ok(None)) => Reply::Refused(Refusal::UnknownProject),
                    Ok(Err(e)) => {
                        tracing::warn!(target: "nodus::compute", "handing out work: {e}");
                        Reply::Refused(Refusal::Busy)
                    }
                    Err(_) => break,
                }
            }
            Request::Submit { project, results } => {
                let host = host.clone();
                let r =
                    tokio::task::spawn_blocking(move || c.submit(&project, &host, results)).await;
                match r {
                    Ok(Ok(Some(out))) => {
                        let pid = hex::encode(project);
                        inner.metrics.accepted.inc_by(out.accepted.len() as u64);
                        inner.metrics.invalid.inc_by(out.invalid.len() as u64);
                        if !out.accepted.is_empty() {
                            let _ = inner.events.send(ComputeEvent::UnitsAccepted {
                                project: pid.clone(),
                                units: out.accepted.clone(),
                            });
                        }
                        for (unit, v) in &out.invalid {
                            let volunteer = PeerId::from_bytes(v)
                                .map(|p| p.to_string())
                                .unwrap_or_default();
                            tracing::info!(target: "nodus::compute", project = %pid, unit, %volunteer, "a result the quorum rejected");
                            let _ = inner.events.send(ComputeEvent::ResultInvalid {
                                project: pid.clone(),
                                unit: *unit,
                                volunteer,
                            });
                        }
                        if out.finished {
                            inner.metrics.projects.dec();
                            let _ = inner
                                .events
                                .send(ComputeEvent::ProjectFinished { project: pid });
                            inner.announce.notify_one();
                        }
                        Reply::Accepted { credit: out.credit }
                    }
                    Ok(Ok(None)) => Reply::Refused(Refusal::UnknownProject),
                    Ok(Err(e)) => {
                        tracing::warn!(target: "nodus::compute", "taking results: {e}");
                        Reply::Refused(Refusal::Busy)
                    }
                    Err(_) => break,
                }
            }
        };
        if wire::write(&mut stream, &reply).await.is_err() {
            break;
        }
    }
    let _ = stream.close().await;
}

fn garbage(h: &ComputeHandle, peer: PeerId, what: &str) {
    h.inner.metrics.garbage.inc();
    tracing::debug!(target: "nodus::compute", %peer, "garbage on the compute protocol: {what}");
    h.inner
        .net
        .report_misbehaviour(peer, format!("compute protocol: {what}"));
}

/// Announces active projects on the gossip topic and provides the coordinator key in
/// the DHT: at once when a project is made, then every [`ANNOUNCE_EVERY`].
pub(crate) async fn announce(h: ComputeHandle, mut shutdown: watch::Receiver<bool>) {
    let inner = &h.inner;
    let mut provided: Option<std::time::Instant> = None;
    loop {
        let list = inner.coordinator.announces();
        if !list.is_empty() {
            // Gossip first: a DHT provide can take seconds where routing tables still
            // list dead peers, and must not hold announcements back.
            for a in &list {
                let _ = inner.net.publish(wire::TOPIC, wire::encode(a)).await;
            }
            if provided.is_none_or(|t| t.elapsed() > REPROVIDE_EVERY) {
                provided = Some(std::time::Instant::now());
                let net = inner.net.clone();
                tokio::spawn(async move {
                    let _ = net.provide(wire::PROVIDER_KEY.to_vec()).await;
                });
            }
        }
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            _ = inner.announce.notified() => {}
            _ = tokio::time::sleep(ANNOUNCE_EVERY) => {}
        }
    }
}

/// Marks late replicas every second, so their units go out again.
pub(crate) async fn tick(h: ComputeHandle, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let c = h.inner.coordinator.clone();
        match tokio::task::spawn_blocking(move || c.tick(now_ms())).await {
            Ok(Ok(n)) if n > 0 => {
                tracing::debug!(target: "nodus::compute", "{n} units had late replicas");
            }
            Ok(Err(e)) => tracing::warn!(target: "nodus::compute", "marking late replicas: {e}"),
            _ => {}
        }
    }
}
