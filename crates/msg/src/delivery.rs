//! Getting envelopes to their recipient: one worker per recipient that keeps a stream
//! open and pipelines envelopes on it (over a direct connection or a relayed circuit,
//! whichever libp2p reaches the peer by), and the mailbox client that stores sealed
//! envelopes on the peers closest to an offline recipient and fetches our own.

use std::time::Duration;

use futures::{AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream};
use nodus_net::NetworkHandle;
use tokio::sync::mpsc;

use crate::service::Input;
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
    pub id: MsgId,
    pub bytes: Vec<u8>,
}

pub async fn connect(
    net: &NetworkHandle,
    peer: PeerId,
    protocol: libp2p::StreamProtocol,
) -> Result<Stream, String> {
    let attempt = async {
        net.dial_peer(peer).await.map_err(|e| e.to_string())?;
        net.open_stream(peer, protocol)
            .await
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
    }
}

/// Writes a batch and reads one reply per envelope, in order.
async fn exchange(
    stream: &mut Stream,
    batch: &[Outgoing],
    replies: &mut Vec<MsgReply>,
) -> Result<(), WireError> {
    let mut buf = Vec::with_capacity(batch.iter().map(|o| o.bytes.len() + 4).sum());
    for o in batch {
        buf.extend_from_slice(&(o.bytes.len() as u32).to_be_bytes());
        buf.extend_from_slice(&o.bytes);
    }
    stream.write_all(&buf).await?;
    stream.flush().await?;
    while replies.len() < batch.len() {
        match wire::read_frame::<_, MsgReply>(stream).await? {
            Some(r) => replies.push(r),
            None => {
                return Err(WireError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }
    Ok(())
}

pub async fn worker(
    peer: PeerId,
    net: NetworkHandle,
    mut rx: mpsc::Receiver<Vec<Outgoing>>,
    inputs: mpsc::Sender<Input>,
) {
    let mut stream: Option<Stream> = None;
    loop {
        let mut batch = match tokio::time::timeout(IDLE, rx.recv()).await {
            Ok(Some(b)) => b,
            _ => break,
        };
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        if stream.is_none() {
            match connect(&net, peer, MSG_PROTOCOL).await {
                Ok(s) => stream = Some(s),
                Err(error) => {
                    let keys = batch.into_iter().map(|o| o.key).collect();
                    if inputs
                        .send(Input::SendFailed { peer, keys, error })
                        .await
                        .is_err()
                    {
                        break;
                    }
                    continue;
                }
            }
        }
        let mut replies = Vec::with_capacity(batch.len());
        let mut error = None;
        // A stream that breaks before any reply is tried again on fresh ones: the
        // connection under it (a relay circuit, say) may have died while another path
        // to the peer is fine. Until libp2p has seen the old connection close, a new
        // stream lands on it and fails too, hence the pauses.
        for pause_ms in [0, 100, 300, 1000] {
            if pause_ms > 0 {
                tokio::time::sleep(Duration::from_millis(pause_ms)).await;
                stream = connect(&net, peer, MSG_PROTOCOL).await.ok();
            }
            let Some(s) = stream.as_mut() else { continue };
            let result =
                tokio::time::timeout(REPLY_TIMEOUT, exchange(s, &batch, &mut replies)).await;
            error = match result {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no reply within {REPLY_TIMEOUT:?}")),
            };
            if error.is_none() || !replies.is_empty() {
                break;
            }
        }
        if stream.is_none() && error.is_none() {
            error = Some("no stream to the peer".into());
        }
        let answered = replies.len();
        let mut keys = batch.into_iter().map(|o| (o.key, o.id));
        let acked: Vec<(String, MsgReply)> = replies
            .into_iter()
            .zip(keys.by_ref())
            .map(|(r, (k, _))| (k, r))
            .collect();
        let sent = inputs
            .send(Input::Replies {
                peer,
                replies: acked,
            })
            .await;
        if let Some(error) = error {
            stream = None;
            tracing::debug!(target: "nodus::msg", %peer, answered, "delivery stream failed: {error}");
            // Batches queued behind the failed one fail with it, so that nothing
            // overtakes what was not delivered.
            let mut keys: Vec<String> = keys.map(|(k, _)| k).collect();
            while let Ok(more) = rx.try_recv() {
                keys.extend(more.into_iter().map(|o| o.key));
            }
            if inputs
                .send(Input::SendFailed { peer, keys, error })
                .await
                .is_err()
            {
                break;
            }
        }
        if sent.is_err() {
            break;
        }
    }
    if let Some(mut s) = stream {
        let _ = s.close().await;
    }
}

/// The peers that keep `recipient`'s mail: the closest to its key (not itself or us)
/// in our routing table, at once. `lookup` adds those a DHT query finds, which is slower
/// (it waits on peers that have gone) but sees past our own table.
pub async fn mailboxes(
    net: &NetworkHandle,
    recipient: PeerId,
    count: usize,
    lookup: bool,
) -> Result<Vec<PeerId>, String> {
    let me = net.local_peer_id();
    let key = recipient.to_bytes();
    let mut found = net
        .local_closest_peers(key.clone(), count + 2)
        .await
        .map_err(|e| e.to_string())?;
    if lookup
        && let Ok(Ok(more)) =
            tokio::time::timeout(Duration::from_secs(10), net.closest_peers(key)).await
    {
        found.extend(more);
    }
    let mut seen = std::collections::HashSet::new();
    Ok(found
        .into_iter()
        .filter(|p| *p != recipient && *p != me && seen.insert(*p))
        .take(if lookup { 2 * count } else { count })
        .collect())
}

async fn store_on(
    net: &NetworkHandle,
    mailbox: PeerId,
    recipient: PeerId,
    items: &[(MsgId, Vec<u8>)],
    ttl_secs: u32,
) -> Result<(), String> {
    let mut s = connect(net, mailbox, MAILBOX_PROTOCOL).await?;
    for (id, sealed) in items {
        let req = MailboxRequest::Store {
            to: recipient.to_bytes(),
            id: *id,
            ttl_secs,
            sealed: sealed.clone(),
        };
        wire::write_frame(&mut s, &req)
            .await
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(REPLY_TIMEOUT, wire::read_frame::<_, MailboxReply>(&mut s)).await
        {
            Ok(Ok(Some(MailboxReply::Stored))) => {}
            Ok(Ok(Some(MailboxReply::Refused(why)))) => return Err(format!("refused: {why}")),
            Ok(Ok(_)) => return Err("unexpected reply".into()),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("timed out".into()),
        }
    }
    let _ = s.close().await;
    Ok(())
}

/// Stores sealed envelopes for `recipient` on its mailboxes; returns those that took
/// every item.
pub async fn store(
    net: NetworkHandle,
    recipient: PeerId,
    items: Vec<(MsgId, Vec<u8>)>,
    replicas: usize,
    ttl_secs: u32,
) -> Result<Vec<PeerId>, String> {
    // Candidates beyond the replicas stand in for those that have gone.
    let boxes = mailboxes(&net, recipient, 2 * replicas, false).await?;
    if boxes.is_empty() {
        return Err("no mailbox peers known".into());
    }
    let mut ok = Vec::new();
    let mut why = Vec::new();
    let mut next = boxes.into_iter();
    while ok.len() < replicas {
        let wave: Vec<PeerId> = next.by_ref().take(replicas - ok.len()).collect();
        if wave.is_empty() {
            break;
        }
        let results = futures::future::join_all(
            wave.iter()
                .map(|b| store_on(&net, *b, recipient, &items, ttl_secs)),
        )
        .await;
        for (b, r) in wave.into_iter().zip(results) {
            match r {
                Ok(()) => ok.push(b),
                Err(e) => why.push(e),
            }
        }
    }
    if ok.is_empty() {
        return Err(why.join("; "));
    }
    Ok(ok)
}

/// Tells a mailbox to forget what we stored there for `recipient`.
pub async fn retract(net: NetworkHandle, mailbox: PeerId, recipient: PeerId, ids: Vec<MsgId>) {
    let result = async {
        let mut s = connect(&net, mailbox, MAILBOX_PROTOCOL).await?;
        for chunk in ids.chunks(MAX_FETCH) {
            let req = MailboxRequest::Retract {
                to: recipient.to_bytes(),
                ids: chunk.to_vec(),
            };
            wire::write_frame(&mut s, &req)
                .await
                .map_err(|e| e.to_string())?;
            let _ =
                tokio::time::timeout(REPLY_TIMEOUT, wire::read_frame::<_, MailboxReply>(&mut s))
                    .await;
        }
        let _ = s.close().await;
        Ok::<(), String>(())
    };
    if let Err(e) = result.await {
        tracing::debug!(target: "nodus::msg", %mailbox, "mailbox retract failed: {e}");
    }
}

/// Asks one mailbox for what it holds for us.
pub async fn fetch_from(net: &NetworkHandle, mailbox: PeerId) -> Result<Vec<MailboxItem>, String> {
    let mut s = connect(net, mailbox, MAILBOX_PROTOCOL).await?;
    wire::write_frame(
        &mut s,
        &MailboxRequest::Fetch {
            max: MAX_FETCH as u32,
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let reply = tokio::time::timeout(REPLY_TIMEOUT, wire::read_frame::<_, MailboxReply>(&mut s))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let _ = s.close().await;
    match reply {
        Some(MailboxReply::Items(items)) => Ok(items),
        other => Err(format!("unexpected reply {other:?}")),
    }
}

/// Tells a mailbox to forget items it held for us.
pub async fn delete_from(
    net: &NetworkHandle,
    mailbox: PeerId,
    ids: Vec<MsgId>,
) -> Result<(), String> {
    let mut s = connect(net, mailbox, MAILBOX_PROTOCOL).await?;
    for chunk in ids.chunks(MAX_FETCH) {
        wire::write_frame(
            &mut s,
            &MailboxRequest::Delete {
                ids: chunk.to_vec(),
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        let _ =
            tokio::time::timeout(REPLY_TIMEOUT, wire::read_frame::<_, MailboxReply>(&mut s)).await;
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
    net: NetworkHandle,
    replicas: usize,
    inputs: mpsc::Sender<Input>,
    mut answer: Option<crate::service::Answer>,
    periodic: bool,
) {
    let me = net.local_peer_id();
    let mut asked = std::collections::HashSet::new();
    let mut reached = 0;
    let mut n = 0;
    for lookup in [false, true] {
        let boxes = match mailboxes(&net, me, 2 * replicas, lookup).await {
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
                let net = net.clone();
                async move { (b, fetch_from(&net, b).await) }
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
    let error = (reached == 0 && n > 0).then(|| "no mailbox answered".to_string());
    let _ = inputs
        .send(Input::PollDone {
            mailboxes: reached,
            error,
        })
        .await;
}
