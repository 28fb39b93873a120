//! Serving the three stream protocols (messages, mailboxes, files). Each inbound stream gets a task that decodes
//! frames and hands them to the service; replies go back in order, so a sender can
//! pipeline. A frame that does not decode ends that stream, is counted, and is a strike
//! against the peer in the overlay (repeated ones get it banned); it never reaches the
//! service.

use std::sync::Arc;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream};
use nodus_net::NetworkHandle;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use crate::files::{Blobs, transfer};
use crate::service::{Input, Metrics, Origin};
use crate::wire::{
    self, Envelope, FILE_PROTOCOL, MAILBOX_PROTOCOL, MSG_PROTOCOL, MailboxReply, MailboxRequest,
    MsgReply,
};

/// Inbound streams served at once, over both protocols.
const MAX_STREAMS: usize = 512;
/// Frames of one stream in the service's hands at once.
const PIPELINE: usize = 1024;

/// Files served at once (each a stream and a disk thread).
const MAX_UPLOADS: usize = 32;

pub fn serve(
    net: &NetworkHandle,
    inputs: mpsc::Sender<Input>,
    metrics: Metrics,
    shutdown: &watch::Receiver<bool>,
    blobs: Arc<Blobs>,
    upload_rate: Option<u64>,
    anonymous: bool,
) -> Result<Vec<tokio::task::JoinHandle<()>>, crate::MsgError> {
    let limit = Arc::new(Semaphore::new(MAX_STREAMS));
    let ctx = Accept {
        inputs,
        peers: Peers {
            metrics,
            net: net.clone(),
        },
        limit,
        stop: shutdown.clone(),
    };
    let files = Accept {
        limit: Arc::new(Semaphore::new(MAX_UPLOADS)),
        ..ctx.clone()
    };
    let file_stream = move |peer, stream, inputs, peers| {
        transfer::serve(peer, stream, inputs, peers, blobs.clone(), upload_rate)
    };
    let mut tasks = vec![tokio::spawn(
        ctx.clone()
            .run(net.incoming(MAILBOX_PROTOCOL)?, mailbox_stream),
    )];
    // An anonymous identity takes messages only through its onion service: on the
    // overlay, answering for it would tie it to this node's peer id.
    if !anonymous {
        tasks.push(tokio::spawn(
            ctx.run(net.incoming(MSG_PROTOCOL)?, msg_stream),
        ));
        tasks.push(tokio::spawn(
            files.run(net.incoming(FILE_PROTOCOL)?, file_stream),
        ));
    }
    Ok(tasks)
}

/// What every accept loop shares: where inputs go, the counters, the stream limit
/// across both protocols, and the shutdown signal.
#[derive(Clone)]
struct Accept {
    inputs: mpsc::Sender<Input>,
    peers: Peers,
    limit: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
}

/// Where a peer's garbage is reported: the service's counters and the overlay's strikes.
#[derive(Clone)]
pub(crate) struct Peers {
    pub(crate) metrics: Metrics,
    net: NetworkHandle,
}

impl Peers {
    pub(crate) fn new(metrics: Metrics, net: NetworkHandle) -> Peers {
        Peers { metrics, net }
    }

    /// A stream that failed: garbage if the peer sent what does not decode (counted and
    /// struck), not if the link broke (a relay that died is nobody's misbehaviour).
    pub(crate) fn failed(&self, peer: PeerId, what: &str, error: &wire::WireError) {
        tracing::debug!(target: "nodus::msg", %peer, "dropping {what} stream: {error}");
        if matches!(error, wire::WireError::Io(_)) {
            return;
        }
        self.metrics.garbage("bad_frame");
        self.net
            .report_misbehaviour(peer, format!("undecodable {what} frame: {error}"));
    }
}

impl Accept {
    /// Hands each inbound stream to `handle` in its own task, within the stream limit.
    async fn run<I, F, Fut>(mut self, mut incoming: I, handle: F)
    where
        I: futures::Stream<Item = (PeerId, Stream)> + Unpin,
        F: Fn(PeerId, Stream, mpsc::Sender<Input>, Peers) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        while let Some((peer, stream)) = tokio::select! {
            s = incoming.next() => s,
            _ = self.stop.wait_for(|s| *s) => None,
        } {
            let Ok(permit) = self.limit.clone().try_acquire_owned() else {
                self.peers.metrics.garbage("too_many_streams");
                continue;
            };
            let work = handle(peer, stream, self.inputs.clone(), self.peers.clone());
            tokio::spawn(async move {
                work.await;
                drop(permit);
            });
        }
    }
}

async fn msg_stream(peer: PeerId, stream: Stream, inputs: mpsc::Sender<Input>, peers: Peers) {
    envelopes(Origin::Peer(peer), stream, inputs, peers).await
}

/// Serves the message protocol on connections to `listener` (127.0.0.1), which this
/// node's anonymous onion service forwards to: envelopes whose sender only their
/// contents name. A connection that sends garbage is dropped and counted; there is no
/// peer to strike, the link being a circuit.
pub async fn serve_circuits(
    listener: tokio::net::TcpListener,
    inputs: mpsc::Sender<Input>,
    peers: Peers,
    mut stop: watch::Receiver<bool>,
) {
    use tokio_util::compat::TokioAsyncReadCompatExt;
    let limit = Arc::new(Semaphore::new(MAX_STREAMS));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of file descriptors, say: a pause, not a busy loop.
                tracing::debug!(target: "nodus::msg", "anonymous listener: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            peers.metrics.garbage("too_many_streams");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let work = envelopes(Origin::Circuit, tcp.compat(), inputs.clone(), peers.clone());
        tokio::spawn(async move {
            work.await;
            drop(permit);
        });
    }
}

/// Hands each envelope read from `stream` to the service and writes its replies back,
/// in order, so a sender can pipeline.
async fn envelopes<S>(from: Origin, stream: S, inputs: mpsc::Sender<Input>, peers: Peers)
where
    S: futures::AsyncRead + futures::AsyncWrite + Send + Unpin,
{
    let (mut r, mut w) = stream.split();
    let (pending_tx, mut pending_rx) = mpsc::channel::<oneshot::Receiver<MsgReply>>(PIPELINE);
    let reader = async move {
        loop {
            match wire::read_frame::<_, Envelope>(&mut r).await {
                Ok(Some(envelope)) => {
                    let (tx, rx) = oneshot::channel();
                    let input = Input::Envelope {
                        from,
                        envelope,
                        reply: Some(tx),
                    };
                    if inputs.send(input).await.is_err() || pending_tx.send(rx).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    match from {
                        Origin::Peer(peer) => peers.failed(peer, "message", &e),
                        _ if matches!(e, wire::WireError::Io(_)) => {}
                        _ => peers.metrics.garbage("bad_frame"),
                    }
                    return;
                }
            }
        }
    };
    let writer = async move {
        while let Some(rx) = pending_rx.recv().await {
            let Ok(reply) = rx.await else { break };
            if wire::write_frame(&mut w, &reply).await.is_err() {
                break;
            }
            if pending_rx.is_empty() && w.flush().await.is_err() {
                break;
            }
        }
        let _ = w.close().await;
    };
    futures::join!(reader, writer);
}

/// A mailbox stream. Its requests are its peer's, unless the stream proved it speaks
/// for another identity (an anonymous one, through a circuit whose last relay is the
/// peer): then they are that identity's.
async fn mailbox_stream(
    peer: PeerId,
    mut stream: Stream,
    inputs: mpsc::Sender<Input>,
    peers: Peers,
) {
    let me = peers.net.local_peer_id();
    let mut from = peer;
    let mut nonce: Option<[u8; 32]> = None;
    loop {
        let request = match wire::read_frame::<_, MailboxRequest>(&mut stream).await {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => {
                peers.failed(peer, "mailbox", &e);
                break;
            }
        };
        let reply = match request {
            MailboxRequest::Challenge => {
                let n: [u8; 32] = rand::random();
                nonce = Some(n);
                MailboxReply::Nonce(n)
            }
            MailboxRequest::Prove { key, sig } => {
                match nonce
                    .take()
                    .and_then(|n| wire::check_proof(&me, &n, &key, &sig))
                {
                    Some(identity) => {
                        from = identity;
                        MailboxReply::Proven
                    }
                    None => {
                        // Its sender is further back than `peer` (a circuit's client),
                        // so it is counted, and the stream ends, but `peer` not struck.
                        peers.metrics.garbage("bad_mailbox_proof");
                        let refused = MailboxReply::Refused("the proof does not check".into());
                        let _ = wire::write_frame(&mut stream, &refused).await;
                        break;
                    }
                }
            }
            request => {
                let (tx, rx) = oneshot::channel();
                if inputs
                    .send(Input::Mailbox {
                        from,
                        request,
                        reply: tx,
                    })
                    .await
                    .is_err()
                {
                    break;
                }
                rx.await
                    .unwrap_or_else(|_| MailboxReply::Refused("shutting down".into()))
            }
        };
        if wire::write_frame(&mut stream, &reply).await.is_err() || stream.flush().await.is_err() {
            break;
        }
    }
    let _ = stream.close().await;
}
