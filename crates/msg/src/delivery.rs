//! Getting envelopes to their recipient: one worker per recipient that keeps a stream
//! open and pipelines envelopes on it (over a direct connection or a relayed circuit,
//! whichever libp2p reaches the peer by), and the mailbox client that stores sealed
//! envelopes on the peers closest to an offline recipient and fetches our own.

use std::collections::VecDeque;
use std::time::Duration;

use futures::{AsyncWriteExt, StreamExt};
use libp2p::identity::Keypair;
use libp2p::{PeerId, Stream};
use nodus_net::NetworkHandle;
use tokio::sync::mpsc;

use crate::anonymous::SharedAnonymity;
use crate::error::DeliveryError;
use crate::service::Input;
use crate::types::DeliveryPath;
use crate::wire::{
    self, MAILBOX_PROTOCOL, MAX_FETCH, MSG_PROTOCOL, MailboxItem, MailboxReply, MailboxRequest,
    MsgId, MsgReply, WireError,
};

/// A worker with nothing to send for this long closes its stream and ends.
const IDLE: Duration = Duration::from_secs(60);
/// Reaching a peer (dial, lookup, stream) may take this long before we call it offline.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A peer must answer a batch within this.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// One envelope for a worker: its outbox key and its encoded bytes.
pub struct Outgoing {
    pub key: String,
    pub bytes: Vec<u8>,
}

pub async fn connect(
    net: &NetworkHandle,
    peer: PeerId,
    protocol: libp2p::StreamProtocol,
) -> Result<Stream, DeliveryError> {
    let attempt = async {
        net.dial_peer(peer).await?;
        Ok(net.open_stream(peer, protocol).await?)
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(r) => r,
        Err(_) => Err(DeliveryError::Timeout(CONNECT_TIMEOUT)),
    }
}

/// How a worker reaches its recipient.
#[derive(Clone)]
pub enum Route {
    /// By peer id over the overlay, on `/nodus/msg/1`.
    Overlay(NetworkHandle),
    /// Through circuits to the recipient's onion service ([`crate::anonymous`]).
    Onion(SharedAnonymity),
}

/// A circuit to an onion service may take this long, rendezvous included.
pub const ONION_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The stream a session runs on, whichever route opened it.
trait Link: futures::AsyncRead + futures::AsyncWrite + Send + Unpin + 'static {}
impl<T: futures::AsyncRead + futures::AsyncWrite + Send + Unpin + 'static> Link for T {}

/// The way a stream just opened to `peer` goes: onion circuits, or the overlay's
/// connection to it, which is a relay's circuit only when no direct one is open (libp2p
/// then opens streams on that one).
async fn path_of(route: &Route, peer: PeerId) -> Option<DeliveryPath> {
    let net = match route {
        Route::Onion(_) => return Some(DeliveryPath::Onion),
        Route::Overlay(net) => net,
    };
    let peers = net.peers().await.ok()?;
    let info = peers.iter().find(|p| p.peer_id == peer.to_string())?;
    if !info.relayed {
        return Some(DeliveryPath::Direct);
    }
    info.relay().map(|relay| DeliveryPath::Relay { relay })
}

async fn open(route: &Route, peer: PeerId) -> Result<Box<dyn Link>, DeliveryError> {
    match route {
        Route::Overlay(net) => Ok(Box::new(connect(net, peer, MSG_PROTOCOL).await?)),
        Route::Onion(onion) => {
            use tokio_util::compat::TokioAsyncReadCompatExt;
            match tokio::time::timeout(ONION_CONNECT_TIMEOUT, onion.connect(peer)).await {
                Ok(Ok(s)) => Ok(Box::new(s.compat())),
                Ok(Err(e)) => Err(DeliveryError::Onion(e)),
                Err(_) => Err(DeliveryError::Timeout(ONION_CONNECT_TIMEOUT)),
            }
        }
    }
}

/// Envelopes written and not yet answered on one stream. Below the receiver's own
/// pipeline (1024), so neither side ever blocks writing while the other waits.
const WINDOW: usize = 512;

fn frame(o: &Outgoing, buf: &mut Vec<u8>) {
    buf.extend_from_slice(&(o.bytes.len() as u32).to_be_bytes());
    buf.extend_from_slice(&o.bytes);
}

enum SessionEnd {
    /// Nothing to send for a while, or the service is gone.
    Idle,
    Closed,
    Failed {
        answered: usize,
        error: DeliveryError,
    },
}

/// Sends `pending` (oldest first) and whatever arrives on `rx` over one stream, keeping
/// up to [`WINDOW`] envelopes in flight; replies come back in order and are reported in
/// batches. Answered items leave `pending`; on failure the rest stay there.
async fn session(
    peer: PeerId,
    path: Option<DeliveryPath>,
    stream: Box<dyn Link>,
    pending: &mut VecDeque<Outgoing>,
    rx: &mut mpsc::Receiver<Vec<Outgoing>>,
    inputs: &mpsc::Sender<Input>,
) -> SessionEnd {
    let (mut r, mut w) = futures::AsyncReadExt::split(stream);
    let (reply_tx, mut reply_rx) = mpsc::channel::<Result<MsgReply, DeliveryError>>(2 * WINDOW);
    let reader = tokio::spawn(async move {
        loop {
            let r = match wire::read_frame::<_, MsgReply>(&mut r).await {
                Ok(Some(reply)) => Ok(reply),
                Ok(None) => Err(DeliveryError::Closed),
                Err(e) => Err(e.into()),
            };
            let stop = r.is_err();
            if reply_tx.send(r).await.is_err() || stop {
                return;
            }
        }
    });
    let mut written = 0usize;
    let mut answered = 0usize;
    let mut open = true;
    let end = loop {
        // Write what is pending and fits the window.
        if written < pending.len() && written < WINDOW {
            let upto = pending.len().min(WINDOW);
            let mut buf = Vec::new();
            for o in pending.range(written..upto) {
                frame(o, &mut buf);
            }
            if let Err(e) = async {
                w.write_all(&buf).await?;
                w.flush().await
            }
            .await
            {
                break SessionEnd::Failed {
                    answered,
                    error: WireError::Io(e).into(),
                };
            }
            written = upto;
        }
        let timer = if written > 0 { REPLY_TIMEOUT } else { IDLE };
        tokio::select! {
            r = reply_rx.recv() => {
                let mut replies = Vec::new();
                let mut next = r;
                let mut failure = None;
                loop {
                    match next {
                        Some(Ok(reply)) => match pending.pop_front() {
                            Some(o) if written > 0 => {
                                written -= 1;
                                answered += 1;
                                replies.push((o.key, reply));
                            }
                            _ => {
                                failure = Some(DeliveryError::ReplyForNothing);
                                break;
                            }
                        },
                        Some(Err(e)) => {
                            failure = Some(e);
                            break;
                        }
                        None => {
                            failure = Some(DeliveryError::Closed);
                            break;
                        }
                    }
                    match reply_rx.try_recv() {
                        Ok(more) => next = Some(more),
                        Err(_) => break,
                    }
                }
                if !replies.is_empty()
                    && inputs.send(Input::Replies { peer, replies, path: path.clone() }).await.is_err()
                {
                    break SessionEnd::Closed;
                }
                if let Some(error) = failure {
                    break SessionEnd::Failed { answered, error };
                }
            }
            batch = rx.recv(), if open && pending.len() < 4 * WINDOW => match batch {
                Some(b) => pending.extend(b),
                None => open = false,
            },
            _ = tokio::time::sleep(timer) => {
                if written > 0 {
                    break SessionEnd::Failed {
                        answered,
                        error: DeliveryError::Timeout(REPLY_TIMEOUT),
                    };
                }
                break SessionEnd::Idle;
            }
        }
        if !open && pending.is_empty() {
            break SessionEnd::Closed;
        }
    };
    reader.abort();
    let _ = w.close().await;
    end
}

/// Delivers to one peer, in order, until idle. A stream that breaks before any reply is
/// tried again on fresh ones: the connection under it (a relay circuit, say) may have
/// died while another path to the peer is fine, and until libp2p has seen the old
/// connection close a new stream lands on it and fails too, hence the pauses. What
/// still fails is handed back to the service, with everything queued behind it, so
/// that nothing overtakes what was not delivered.
pub async fn worker(
    peer: PeerId,
    route: Route,
    mut rx: mpsc::Receiver<Vec<Outgoing>>,
    inputs: mpsc::Sender<Input>,
) {
    let mut pending: VecDeque<Outgoing> = VecDeque::new();
    let mut attempt = 0;
    loop {
        if pending.is_empty() {
            match tokio::time::timeout(IDLE, rx.recv()).await {
                Ok(Some(b)) => pending.extend(b),
                _ => return,
            }
        }
        // A peer that cannot be reached at all is not retried here: the service has
        // its mailboxes for that.
        let (end, reached) = match open(&route, peer).await {
            Ok(stream) => {
                let path = path_of(&route, peer).await;
                (
                    session(peer, path, stream, &mut pending, &mut rx, &inputs).await,
                    true,
                )
            }
            Err(error) => (SessionEnd::Failed { answered: 0, error }, false),
        };
        match end {
            SessionEnd::Idle => attempt = 0,
            SessionEnd::Closed => return,
            SessionEnd::Failed { answered, error } => {
                if answered > 0 {
                    attempt = 0;
                }
                const PAUSES_MS: [u64; 3] = [100, 300, 1000];
                if let Some(pause) = PAUSES_MS.get(attempt).filter(|_| reached) {
                    attempt += 1;
                    tracing::debug!(target: "nodus::msg", %peer, "delivery failed ({error}); trying a new stream");
                    tokio::time::sleep(Duration::from_millis(*pause)).await;
                    continue;
                }
                attempt = 0;
                tracing::debug!(target: "nodus::msg", %peer, n = pending.len(), "delivery failed: {error}");
                let mut keys: Vec<String> = pending.drain(..).map(|o| o.key).collect();
                while let Ok(more) = rx.try_recv() {
                    keys.extend(more.into_iter().map(|o| o.key));
                }
                if inputs
                    .send(Input::SendFailed { peer, keys, error })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// How this node reaches mailboxes, and as whom.
#[derive(Clone)]
pub struct Mailboxes {
    net: NetworkHandle,
    /// Through circuits whose last relay opens the stream, proving this identity to the
    /// mailbox ([`crate::anonymous`]); the overlay's own connection otherwise.
    anonymous: Option<(SharedAnonymity, Keypair)>,
}

impl Mailboxes {
    pub fn overlay(net: NetworkHandle) -> Mailboxes {
        Mailboxes {
            net,
            anonymous: None,
        }
    }

    /// Mailboxes reached through circuits, as `identity`.
    pub fn anonymous(net: NetworkHandle, onion: SharedAnonymity, identity: Keypair) -> Mailboxes {
        Mailboxes {
            net,
            anonymous: Some((onion, identity)),
        }
    }

    /// Whose mail this node fetches.
    fn me(&self) -> PeerId {
        match &self.anonymous {
            Some((_, key)) => key.public().to_peer_id(),
            None => self.net.local_peer_id(),
        }
    }

    /// The peers that keep `recipient`'s mail: the closest to its key (not itself or
    /// us) in our routing table, at once. `lookup` adds those a DHT query finds, which
    /// is slower (it waits on peers that have gone) but sees past our own table; never
    /// for an anonymous identity, whose lookups would tie this node to its key.
    pub async fn candidates(
        &self,
        recipient: PeerId,
        count: usize,
        lookup: bool,
    ) -> Result<Vec<PeerId>, DeliveryError> {
        let lookup = lookup && self.anonymous.is_none();
        let (node, me) = (self.net.local_peer_id(), self.me());
        let key = recipient.to_bytes();
        let mut found = self.net.local_closest_peers(key.clone(), count + 2).await?;
        if lookup
            && let Ok(Ok(more)) =
                tokio::time::timeout(Duration::from_secs(10), self.net.closest_peers(key)).await
        {
            found.extend(more);
        }
        let mut seen = std::collections::HashSet::new();
        Ok(found
            .into_iter()
            .filter(|p| *p != recipient && *p != node && *p != me && seen.insert(*p))
            .take(if lookup { 2 * count } else { count })
            .collect())
    }

    /// A stream to `mailbox` on which our requests are ours.
    async fn open(&self, mailbox: PeerId) -> Result<Box<dyn Link>, DeliveryError> {
        let Some((onion, key)) = &self.anonymous else {
            return Ok(Box::new(
                connect(&self.net, mailbox, MAILBOX_PROTOCOL).await?,
            ));
        };
        use tokio_util::compat::TokioAsyncReadCompatExt;
        let protocol = MAILBOX_PROTOCOL;
        let opened = onion.connect_peer(mailbox, protocol.as_ref());
        let mut s = match tokio::time::timeout(ONION_CONNECT_TIMEOUT, opened).await {
            Ok(Ok(s)) => s.compat(),
            Ok(Err(e)) => return Err(DeliveryError::Onion(e)),
            Err(_) => return Err(DeliveryError::Timeout(ONION_CONNECT_TIMEOUT)),
        };
        let nonce = match ask(&mut s, &MailboxRequest::Challenge).await? {
            MailboxReply::Nonce(n) => n,
            other => return Err(DeliveryError::Unexpected(format!("{other:?}"))),
        };
        let sig = key
            .sign(&wire::proof_payload(&mailbox, &nonce))
            .map_err(|e| DeliveryError::Unexpected(format!("signing the proof: {e}")))?;
        let prove = MailboxRequest::Prove {
            key: key.public().encode_protobuf(),
            sig,
        };
        match ask(&mut s, &prove).await? {
            MailboxReply::Proven => Ok(Box::new(s)),
            MailboxReply::Refused(why) => Err(DeliveryError::Refused(why)),
            other => Err(DeliveryError::Unexpected(format!("{other:?}"))),
        }
    }
}

/// One mailbox request and its answer, within [`REPLY_TIMEOUT`].
async fn ask<S: futures::AsyncRead + futures::AsyncWrite + Unpin>(
    s: &mut S,
    request: &MailboxRequest,
) -> Result<MailboxReply, DeliveryError> {
    wire::write_frame(s, request).await?;
    match tokio::time::timeout(REPLY_TIMEOUT, wire::read_frame::<_, MailboxReply>(s)).await {
        Ok(Ok(Some(reply))) => Ok(reply),
        Ok(Ok(None)) => Err(DeliveryError::Closed),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(DeliveryError::Timeout(REPLY_TIMEOUT)),
    }
}

async fn store_on(
    boxes: &Mailboxes,
    mailbox: PeerId,
    recipient: PeerId,
    items: &[(MsgId, u64, Vec<u8>)],
    ttl_secs: u32,
) -> Result<(), DeliveryError> {
    let mut s = boxes.open(mailbox).await?;
    for (id, order, sealed) in items {
        let req = MailboxRequest::Store {
            to: recipient.to_bytes(),
            id: *id,
            order: *order,
            ttl_secs,
            sealed: sealed.clone(),
        };
        wire::write_frame(&mut s, &req).await?;
        match tokio::time::timeout(REPLY_TIMEOUT, wire::read_frame::<_, MailboxReply>(&mut s)).await
        {
            Ok(Ok(Some(MailboxReply::Stored))) => {}
            Ok(Ok(Some(MailboxReply::Refused(why)))) => return Err(DeliveryError::Refused(why)),
            Ok(Ok(Some(other))) => return Err(DeliveryError::Unexpected(format!("{other:?}"))),
            Ok(Ok(None)) => return Err(DeliveryError::Closed),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err(DeliveryError::Timeout(REPLY_TIMEOUT)),
        }
    }
    let _ = s.close().await;
    Ok(())
}

/// Stores sealed envelopes for `recipient` on its mailboxes; returns those that took
/// every item.
pub async fn store(
    via: Mailboxes,
    recipient: PeerId,
    items: Vec<(MsgId, u64, Vec<u8>)>,
    replicas: usize,
    ttl_secs: u32,
) -> Result<Vec<PeerId>, DeliveryError> {
    // Candidates beyond the replicas stand in for those that have gone.
    let boxes = via.candidates(recipient, 2 * replicas, false).await?;
    if boxes.is_empty() {
        return Err(DeliveryError::NoMailboxes);
    }
    // `replicas` stores in flight; each that fails is replaced by the next candidate at
    // once, rather than after the slowest of its wave (a mailbox gone offline answers
    // only when its connection times out).
    let mut ok = Vec::new();
    let mut why = Vec::new();
    let mut next = boxes.into_iter();
    let mut running = futures::stream::FuturesUnordered::new();
    let store_one = |b: PeerId| {
        let (via, items) = (&via, &items);
        async move { (b, store_on(via, b, recipient, items, ttl_secs).await) }
    };
    running.extend(next.by_ref().take(replicas).map(store_one));
    while let Some((b, r)) = running.next().await {
        match r {
            Ok(()) => ok.push(b),
            Err(e) => {
                why.push(e);
                running.extend(next.next().map(store_one));
            }
        }
    }
    if ok.is_empty() {
        return Err(DeliveryError::NoMailboxTook(why));
    }
    Ok(ok)
}

/// Tells a mailbox to forget what we stored there for `recipient`.
pub async fn retract(via: Mailboxes, mailbox: PeerId, recipient: PeerId, ids: Vec<MsgId>) {
    let result = async {
        let mut s = via.open(mailbox).await?;
        for chunk in ids.chunks(MAX_FETCH) {
            let req = MailboxRequest::Retract {
                to: recipient.to_bytes(),
                ids: chunk.to_vec(),
            };
            wire::write_frame(&mut s, &req).await?;
            let _ =
                tokio::time::timeout(REPLY_TIMEOUT, wire::read_frame::<_, MailboxReply>(&mut s))
                    .await;
        }
        let _ = s.close().await;
        Ok::<(), DeliveryError>(())
    };
    if let Err(e) = result.await {
        tracing::debug!(target: "nodus::msg", %mailbox, "mailbox retract failed: {e}");
    }
}

/// Asks one mailbox for what it holds for us.
pub async fn fetch_from(
    via: &Mailboxes,
    mailbox: PeerId,
) -> Result<Vec<MailboxItem>, DeliveryError> {
    let mut s = via.open(mailbox).await?;
    wire::write_frame(
        &mut s,
        &MailboxRequest::Fetch {
            max: MAX_FETCH as u32,
        },
    )
    .await?;
    let reply = tokio::time::timeout(REPLY_TIMEOUT, wire::read_frame::<_, MailboxReply>(&mut s))
        .await
        .map_err(|_| DeliveryError::Timeout(REPLY_TIMEOUT))??;
    let _ = s.close().await;
    match reply {
        Some(MailboxReply::Items(items)) => Ok(items),
        Some(other) => Err(DeliveryError::Unexpected(format!("{other:?}"))),
        None => Err(DeliveryError::Closed),
    }
}

/// Runs a mailbox request, and once more on a fresh stream if it failed: a stream cut
/// under us while connections settle (after churn, say) is common and short-lived. An
/// asked-for poll must not answer having skipped a live mailbox, and a delete that is
/// lost leaves the item there until a later poll happens to take it again.
pub async fn once_more_on_failure<T, F, Fut>(mut request: F) -> Result<T, DeliveryError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, DeliveryError>>,
{
    match request().await {
        Ok(v) => Ok(v),
        Err(_) => {
            tokio::time::sleep(Duration::from_millis(100)).await;
            request().await
        }
    }
}

/// Tells a mailbox to forget items it held for us.
pub async fn delete_from(
    via: &Mailboxes,
    mailbox: PeerId,
    ids: Vec<MsgId>,
) -> Result<(), DeliveryError> {
    let mut s = via.open(mailbox).await?;
    for chunk in ids.chunks(MAX_FETCH) {
        wire::write_frame(
            &mut s,
            &MailboxRequest::Delete {
                ids: chunk.to_vec(),
            },
        )
        .await?;
        // Only the mailbox's answer says the delete landed; a stream cut before it is a
        // failure, so that it is tried again.
        match tokio::time::timeout(REPLY_TIMEOUT, wire::read_frame::<_, MailboxReply>(&mut s)).await
        {
            Ok(Ok(Some(MailboxReply::Deleted(_)))) => {}
            Ok(Ok(Some(other))) => return Err(DeliveryError::Unexpected(format!("{other:?}"))),
            Ok(Ok(None)) => return Err(DeliveryError::Closed),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err(DeliveryError::Timeout(REPLY_TIMEOUT)),
        }
    }
    let _ = s.close().await;
    Ok(())
}

/// Fetches from every mailbox of ours and hands each batch to the service.
/// The closest mailboxes of our own table are asked first, so what they hold arrives at
/// once; then those a DHT lookup adds.
/// `answer` is told once the first wave is in the service's hands; `periodic` polls
/// report their end, which schedules the next one.
pub async fn poll(
    via: Mailboxes,
    replicas: usize,
    inputs: mpsc::Sender<Input>,
    mut answer: Option<crate::service::Answer>,
    periodic: bool,
) {
    let me = via.me();
    let mut asked = std::collections::HashSet::new();
    let mut reached = 0;
    let mut n = 0;
    for lookup in [false, true] {
        let boxes = match via.candidates(me, 2 * replicas, lookup).await {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(target: "nodus::msg", "no mailboxes to poll: {e}");
                continue;
            }
        };
        let boxes: Vec<PeerId> = boxes.into_iter().filter(|b| asked.insert(*b)).collect();
        n += boxes.len();
        let fetched = futures::stream::iter(boxes)
            .map(|b| {
                let via = via.clone();
                async move { (b, once_more_on_failure(|| fetch_from(&via, b)).await) }
            })
            .buffer_unordered(8)
            .collect::<Vec<_>>()
            .await;
        for (mailbox, r) in fetched {
            match r {
                Ok(items) => {
                    reached += 1;
                    if !items.is_empty() {
                        let _ = inputs.send(Input::Fetched { mailbox, items }).await;
                    }
                }
                Err(e) => {
                    tracing::debug!(target: "nodus::msg", %mailbox, "mailbox fetch failed: {e}");
                }
            }
        }
        if let Some(reply) = answer.take() {
            let _ = inputs.send(Input::PollAnswered(reply)).await;
        }
    }
    if !periodic {
        return;
    }
    let error = (reached == 0 && n > 0).then_some(DeliveryError::NoMailboxAnswered);
    let _ = inputs
        .send(Input::PollDone {
            mailboxes: reached,
            error,
        })
        .await;
}
