//! Reconciling with other nodus relays after a partition or a restart: negentropy
//! (NIP-77's set reconciliation, the `negentropy` crate) over a stream of the overlay.
//!
//! Each node starts a sync for what it wants: when a peer connects, when the operator
//! follows someone new (also with nodes the DHT names as holding that author's events),
//! and every [`PERIOD`], it reconciles the events of the authors it follows with the
//! peer's, fetches the ones it lacks, and sends the ones the peer lacks, which the peer
//! keeps only for the authors it follows itself. (The other side also starts its own
//! when it sees the connection; whichever runs first leaves the other little to do.)
//!
//! Bounds on a responder: [`MAX_SESSIONS`] at once ([`MAX_WAITING`] more wait their
//! turn), [`MAX_AUTHORS`] per request, sets
//! of at most [`crate::store::MAX_SYNC_ITEMS`], [`MAX_ROUNDS`] rounds, frames of at most
//! [`MAX_FRAME`] bytes, [`SESSION_TIME`] in all. A peer that sends what is not a sync
//! frame, or events it was not asked for, is reported and cut off.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{AsyncRead, AsyncWrite, AsyncWriteExt, StreamExt};
use negentropy::{Id, Negentropy, NegentropyStorageVector};
use nodus_net::{NetEvent, NetworkHandle, PeerId, StreamProtocol};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

use crate::event::Event;
use crate::filter::Filter;
use crate::relay::{Origin, Refusal, Relay, SocialEvent};
use crate::topics;

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/nodus/social/sync/1");
/// Largest sync frame (an event, or a negentropy message well under it).
pub const MAX_FRAME: usize = 1024 * 1024;
/// Negentropy messages are kept to this size (more rounds, smaller frames).
pub const NEG_FRAME: u64 = 60_000;
/// Authors one sync request may name.
pub const MAX_AUTHORS: usize = crate::relay::MAX_FOLLOWS + 1;
/// Ids one `Want` may ask for.
pub const MAX_WANT: usize = 500;
/// Reconciliation rounds a session may take.
pub const MAX_ROUNDS: usize = 64;
/// Sessions a node answers at once.
pub const MAX_SESSIONS: usize = 4;
/// Sessions (and this node's own syncs) waiting beside them, at most; beyond, a new
/// one is told the node is busy.
pub const MAX_WAITING: usize = 64;
/// A whole session, either side.
pub const SESSION_TIME: Duration = Duration::from_secs(60);
/// How often a node syncs with its peers when nothing else made it.
pub const PERIOD: Duration = Duration::from_secs(300);
/// Peers a periodic or follow-triggered sync asks, at most.
const FAN_OUT: usize = 8;
/// Attempts at one sync whose failures are transient, the first retry after
/// [`FIRST_RETRY`], each next one twice as late (with jitter).
const ATTEMPTS: u32 = 5;
const FIRST_RETRY: Duration = Duration::from_millis(500);

/// One frame of the sync protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The initiator's set: events by these authors since this time; its first message.
    Open {
        authors: Vec<[u8; 32]>,
        since: u64,
        msg: Vec<u8>,
    },
    /// A negentropy message.
    Neg(Vec<u8>),
    /// Ids the initiator lacks.
    Want(Vec<[u8; 32]>),
    /// One event asked for, as JSON.
    Event(String),
    /// The end of the events of one `Want`.
    Done,
    /// Why the responder will not go on.
    Error(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("empty frame")]
    Empty,
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    #[error("frame cut short")]
    Short,
    #[error("more than {0} entries")]
    TooMany(usize),
    #[error("text is not UTF-8")]
    NotUtf8,
}

fn ids_of(bytes: &[u8], max: usize) -> Result<Vec<[u8; 32]>, FrameError> {
    if !bytes.len().is_multiple_of(32) {
        return Err(FrameError::Short);
    }
    if bytes.len() / 32 > max {
        return Err(FrameError::TooMany(max));
    }
    Ok(bytes
        .chunks_exact(32)
        .map(|c| c.try_into().unwrap_or([0; 32]))
        .collect())
}

fn text(bytes: &[u8]) -> Result<String, FrameError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| FrameError::NotUtf8)
}

impl Frame {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Frame::Open {
                authors,
                since,
                msg,
            } => {
                out.push(1);
                out.extend_from_slice(&since.to_be_bytes());
                out.extend_from_slice(&(authors.len() as u32).to_be_bytes());
                authors.iter().for_each(|a| out.extend_from_slice(a));
                out.extend_from_slice(msg);
            }
            Frame::Neg(m) => {
                out.push(2);
                out.extend_from_slice(m);
            }
            Frame::Want(ids) => {
                out.push(3);
                ids.iter().for_each(|a| out.extend_from_slice(a));
            }
            Frame::Event(json) => {
                out.push(4);
                out.extend_from_slice(json.as_bytes());
            }
            Frame::Done => out.push(5),
            Frame::Error(why) => {
                out.push(6);
                out.extend_from_slice(why.as_bytes());
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
        let (&tag, body) = bytes.split_first().ok_or(FrameError::Empty)?;
        Ok(match tag {
            1 => {
                if body.len() < 12 {
                    return Err(FrameError::Short);
                }
                let since = u64::from_be_bytes(body[..8].try_into().unwrap_or_default());
                let n = u32::from_be_bytes(body[8..12].try_into().unwrap_or_default()) as usize;
                if n > MAX_AUTHORS {
                    return Err(FrameError::TooMany(MAX_AUTHORS));
                }
                let rest = &body[12..];
                if rest.len() < n * 32 {
                    return Err(FrameError::Short);
                }
                Frame::Open {
                    authors: ids_of(&rest[..n * 32], MAX_AUTHORS)?,
                    since,
                    msg: rest[n * 32..].to_vec(),
                }
            }
            2 => Frame::Neg(body.to_vec()),
            3 => Frame::Want(ids_of(body, MAX_WANT)?),
            4 => Frame::Event(text(body)?),
            5 if body.is_empty() => Frame::Done,
            6 => Frame::Error(text(body)?),
            t => return Err(FrameError::UnknownType(t)),
        })
    }
}

/// How a sync ended badly.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
    #[error("overlay: {0}")]
    Net(#[from] nodus_net::NetError),
    #[error("the peer sent a bad frame: {0}")]
    Garbage(String),
    #[error("the peer refused: {0}")]
    Refused(String),
    #[error("negentropy: {0}")]
    Negentropy(String),
    #[error("the peer sent an event it was not asked for, or an invalid one")]
    Unasked,
    #[error("more than {MAX_ROUNDS} rounds, or more events than a set holds")]
    TooLong,
    #[error("took longer than {0:?}")]
    Timeout(Duration),
    #[error("this relay: {0}")]
    Local(String),
}

impl SyncError {
    /// An error only the peer's misbehaviour explains.
    fn is_peer_fault(&self) -> bool {
        matches!(
            self,
            SyncError::Garbage(_) | SyncError::Unasked | SyncError::TooLong
        )
    }
}

impl SyncError {
    /// An error a later attempt may not meet: the peer busy, its service still
    /// starting, a connection that dropped.
    fn is_transient(&self) -> bool {
        matches!(
            self,
            SyncError::Io(_) | SyncError::Net(_) | SyncError::Refused(_) | SyncError::Timeout(_)
        )
    }
}

impl From<Refusal> for SyncError {
    fn from(r: Refusal) -> Self {
        SyncError::Local(r.to_string())
    }
}

/// A negentropy side over `items` (times and ids).
pub fn negentropy_of(
    items: &[(u64, [u8; 32])],
) -> Result<Negentropy<'static, NegentropyStorageVector>, negentropy::Error> {
    let mut storage = NegentropyStorageVector::with_capacity(items.len());
    for (t, id) in items {
        storage.insert(*t, Id::from_byte_array(*id))?;
    }
    storage.seal()?;
    Negentropy::owned(storage, NEG_FRAME)
}

fn neg_err(e: negentropy::Error) -> SyncError {
    SyncError::Negentropy(e.to_string())
}

async fn write<S: AsyncWrite + Unpin>(s: &mut S, f: &Frame) -> Result<(), SyncError> {
    let body = f.encode();
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    s.write_all(&buf).await?;
    Ok(())
}

async fn read<S: AsyncRead + Unpin>(s: &mut S) -> Result<Option<Frame>, SyncError> {
    match nodus_net::frame::read(s, MAX_FRAME).await {
        Ok(None) => Ok(None),
        Ok(Some(b)) => Frame::decode(&b)
            .map(Some)
            .map_err(|e| SyncError::Garbage(e.to_string())),
        Err(nodus_net::frame::FrameError::Io(e)) => Err(e.into()),
        Err(e) => Err(SyncError::Garbage(e.to_string())),
    }
}

/// Takes events a peer sent, at once (so the store writes them in shared
/// transactions); how many were new. An invalid one is the peer's fault.
async fn take_all(relay: &Relay, events: Vec<Event>) -> Result<usize, SyncError> {
    let outcomes =
        futures::future::join_all(events.into_iter().map(|e| relay.accept(e, Origin::Overlay)))
            .await;
    let mut taken = 0;
    for o in outcomes {
        match o {
            Ok(crate::store::Stored::New) => taken += 1,
            Ok(_) => {}
            Err(r) if r.is_peer_fault() => return Err(SyncError::Unasked),
            Err(Refusal::Full) => return Err(Refusal::Full.into()),
            Err(_) => {}
        }
    }
    Ok(taken)
}

/// What one sync fetched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fetched {
    /// Events the peer had that this node lacked, and took.
    pub taken: usize,
    /// Events this node has that the peer lacked, sent to it.
    pub pushed: usize,
}

/// Reconciles the events of `authors` with the peer on `stream` and takes what this
/// node lacks.
pub async fn pull<S: AsyncRead + AsyncWrite + Unpin>(
    relay: &Relay,
    stream: &mut S,
    authors: Vec<[u8; 32]>,
) -> Result<Fetched, SyncError> {
    let wanted: HashSet<[u8; 32]> = authors.iter().copied().collect();
    let items = relay
        .sync_items(Filter {
            authors: Some(authors.clone()),
            ..Filter::default()
        })
        .await?;
    let mut neg = negentropy_of(&items).map_err(neg_err)?;
    let msg = neg.initiate().map_err(neg_err)?;
    write(
        stream,
        &Frame::Open {
            authors,
            since: 0,
            msg,
        },
    )
    .await?;
    let (mut have, mut need) = (Vec::new(), Vec::new());
    let mut rounds = 0;
    loop {
        let m = match read(stream).await? {
            Some(Frame::Neg(m)) => m,
            Some(Frame::Error(why)) => return Err(SyncError::Refused(why)),
            Some(f) => return Err(SyncError::Garbage(format!("{f:?} in reconciliation"))),
            None => return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into()),
        };
        rounds += 1;
        if rounds > MAX_ROUNDS {
            return Err(SyncError::TooLong);
        }
        match neg
            .reconcile_with_ids(&m, &mut have, &mut need)
            .map_err(|e| SyncError::Garbage(format!("negentropy: {e}")))?
        {
            Some(next) => write(stream, &Frame::Neg(next)).await?,
            None => break,
        }
    }
    let mut taken = 0;
    for chunk in need.chunks(MAX_WANT) {
        let ids: Vec<[u8; 32]> = chunk.iter().map(|id| id.to_bytes()).collect();
        let mut asked: HashSet<[u8; 32]> = ids.iter().copied().collect();
        write(stream, &Frame::Want(ids)).await?;
        let mut got = Vec::with_capacity(chunk.len());
        loop {
            match read(stream).await? {
                Some(Frame::Event(json)) => {
                    let e: Event = serde_json::from_str(&json).map_err(|_| SyncError::Unasked)?;
                    if !asked.remove(&e.id) || !wanted.contains(&e.pubkey) {
                        return Err(SyncError::Unasked);
                    }
                    got.push(e);
                }
                Some(Frame::Done) => break,
                Some(Frame::Error(why)) => return Err(SyncError::Refused(why)),
                Some(f) => return Err(SyncError::Garbage(format!("{f:?} among events"))),
                None => return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into()),
            }
        }
        taken += take_all(relay, got).await?;
    }
    // What the peer lacks goes to it in the same session (it takes only the authors it
    // follows), then an end.
    let mut pushed = 0;
    for chunk in have.chunks(MAX_WANT) {
        let ids: Vec<[u8; 32]> = chunk.iter().map(|id| id.to_bytes()).collect();
        for json in relay.get_many(ids).await? {
            write(stream, &Frame::Event(json)).await?;
            pushed += 1;
        }
    }
    write(stream, &Frame::Done).await?;
    let _ = stream.close().await;
    Ok(Fetched { taken, pushed })
}

/// Answers one peer's sync on `stream`.
/// Answers one peer's sync on `stream`; how many events it pushed were new here.
pub async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    relay: &Relay,
    stream: &mut S,
) -> Result<usize, SyncError> {
    let (authors, since, msg) = match read(stream).await? {
        Some(Frame::Open {
            authors,
            since,
            msg,
        }) => (authors, since, msg),
        Some(f) => return Err(SyncError::Garbage(format!("{f:?} before Open"))),
        None => return Ok(0),
    };
    let named: HashSet<[u8; 32]> = authors.iter().copied().collect();
    let items = match relay
        .sync_items(Filter {
            authors: Some(authors),
            since: Some(since),
            ..Filter::default()
        })
        .await
    {
        Ok(items) => items,
        Err(r) => {
            write(stream, &Frame::Error(r.to_string())).await?;
            return Ok(0);
        }
    };
    let mut neg = negentropy_of(&items).map_err(neg_err)?;
    let mut next = Some(msg);
    let mut rounds = 0;
    let (mut pushed, mut taken, mut pushes) = (Vec::new(), 0, 0);
    loop {
        if let Some(m) = next.take() {
            rounds += 1;
            if rounds > MAX_ROUNDS {
                return Err(SyncError::TooLong);
            }
            let reply = neg
                .reconcile(&m)
                .map_err(|e| SyncError::Garbage(format!("negentropy: {e}")))?;
            write(stream, &Frame::Neg(reply)).await?;
        }
        match read(stream).await? {
            Some(Frame::Neg(m)) => next = Some(m),
            Some(Frame::Want(ids)) => {
                for json in relay.get_many(ids).await? {
                    write(stream, &Frame::Event(json)).await?;
                }
                write(stream, &Frame::Done).await?;
            }
            Some(Frame::Event(json)) => {
                pushes += 1;
                if pushes > crate::store::MAX_SYNC_ITEMS {
                    return Err(SyncError::TooLong);
                }
                let e: Event = serde_json::from_str(&json).map_err(|_| SyncError::Unasked)?;
                if !named.contains(&e.pubkey) {
                    return Err(SyncError::Unasked);
                }
                // Only what this node follows is kept; the rest is not the peer's fault.
                if relay.wants(&e.pubkey) {
                    pushed.push(e);
                }
                if pushed.len() >= MAX_WANT {
                    taken += take_all(relay, std::mem::take(&mut pushed)).await?;
                }
            }
            Some(Frame::Done) => {
                taken += take_all(relay, std::mem::take(&mut pushed)).await?;
            }
            Some(f) => return Err(SyncError::Garbage(format!("{f:?} from the initiator"))),
            None => return Ok(taken + take_all(relay, pushed).await?),
        }
    }
}

/// Syncs with `peer` for `authors`, reporting it if it misbehaved.
pub async fn with_peer(
    relay: &Relay,
    net: &NetworkHandle,
    peer: PeerId,
    authors: Vec<[u8; 32]>,
) -> Result<Fetched, SyncError> {
    let session = async {
        let mut stream = net.open_stream(peer, PROTOCOL).await?;
        pull(relay, &mut stream, authors).await
    };
    let r = tokio::time::timeout(SESSION_TIME, session)
        .await
        .unwrap_or(Err(SyncError::Timeout(SESSION_TIME)));
    match &r {
        Ok(f) => {
            tracing::debug!(target: "nodus::social", %peer, taken = f.taken, pushed = f.pushed, "synced");
            relay.metrics.synced.inc_by(f.taken as u64);
            let _ = relay.events.send(SocialEvent::Synced {
                peer: peer.to_string(),
                taken: f.taken,
            });
        }
        Err(e) if e.is_peer_fault() => {
            net.report_misbehaviour(peer, format!("social sync: {e}"));
        }
        Err(e) => {
            tracing::debug!(target: "nodus::social", %peer, "sync ended: {e}");
        }
    }
    r
}

/// Peers a sync is running with, so a burst of reasons starts one each; a reason that
/// comes while one waits to retry (the peer connected again) makes it retry at once.
#[derive(Clone, Default)]
struct Running(Arc<Mutex<HashMap<PeerId, Arc<Notify>>>>);

impl Running {
    /// A new session's wake-up, or `None` (and the running one woken) if one runs.
    fn start(&self, peer: PeerId) -> Option<Arc<Notify>> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(wake) = map.get(&peer) {
            wake.notify_one();
            return None;
        }
        let wake = Arc::new(Notify::new());
        map.insert(peer, wake.clone());
        Some(wake)
    }

    fn end(&self, peer: &PeerId) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(peer);
    }
}

/// Sessions belong to the sync task's [`JoinSet`]: if that task is aborted (the node
/// killed), they end with it instead of holding the store open.
fn spawn_sync(
    tasks: &mut JoinSet<()>,
    own: &Arc<Semaphore>,
    relay: &Arc<Relay>,
    net: &NetworkHandle,
    running: &Running,
    peer: PeerId,
    authors: Vec<[u8; 32]>,
) {
    if authors.is_empty() {
        return;
    }
    let Some(wake) = running.start(peer) else {
        return;
    };
    let (relay, net, running, own) = (relay.clone(), net.clone(), running.clone(), own.clone());
    tasks.spawn(async move {
        let mut delay = FIRST_RETRY;
        for attempt in 1..=ATTEMPTS {
            // This node's own sessions are bounded as those it answers are.
            let Ok(permit) = own.clone().acquire_owned().await else {
                break;
            };
            let r = with_peer(&relay, &net, peer, authors.clone()).await;
            drop(permit);
            match r {
                Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                    let jitter = delay.mul_f64(rand::random::<f64>() / 2.0);
                    tokio::select! {
                        _ = tokio::time::sleep(delay + jitter) => {}
                        _ = wake.notified() => {}
                    }
                    delay *= 2;
                }
                _ => break,
            }
        }
        running.end(&peer);
    });
}

async fn connected(net: &NetworkHandle) -> Vec<PeerId> {
    net.peers()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p.peer_id.parse().ok())
        .collect()
}

/// Answers peers' syncs and starts this node's own.
pub async fn run(relay: Arc<Relay>, net: NetworkHandle, mut shutdown: watch::Receiver<bool>) {
    let mut incoming = match net.incoming(PROTOCOL) {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(target: "nodus::social", "not answering syncs: {e}");
            return;
        }
    };
    let sessions = Arc::new(Semaphore::new(MAX_SESSIONS));
    let running = Running::default();
    let mut tasks = JoinSet::new();
    let own = Arc::new(Semaphore::new(MAX_SESSIONS));
    let (found_tx, mut found_rx) = tokio::sync::mpsc::channel::<(Vec<PeerId>, Vec<[u8; 32]>)>(16);
    let mut net_events = net.events();
    let mut interest = relay.interest();
    let mut known: BTreeSet<[u8; 32]> =
        interest.borrow_and_update().authors().into_iter().collect();
    for peer in connected(&net).await {
        spawn_sync(
            &mut tasks,
            &own,
            &relay,
            &net,
            &running,
            peer,
            known.iter().copied().collect(),
        );
    }
    let mut periodic = tokio::time::interval(PERIOD);
    periodic.tick().await;
    loop {
        tokio::select! {
            s = incoming.next() => {
                let Some((peer, mut stream)) = s else { return };
                // Sessions beyond MAX_SESSIONS wait their turn (a node that just
                // joined hears from all its peers at once), up to MAX_WAITING of them.
                if tasks.len() >= MAX_SESSIONS + MAX_WAITING {
                    tasks.spawn(async move {
                        let _ = write(&mut stream, &Frame::Error("busy: try again later".into())).await;
                        let _ = stream.close().await;
                    });
                    continue;
                }
                let (relay, net, sessions) = (relay.clone(), net.clone(), sessions.clone());
                tasks.spawn(async move {
                    let session = async {
                        let _permit = sessions.acquire_owned().await.map_err(|_| SyncError::Local("stopping".into()))?;
                        answer(&relay, &mut stream).await
                    };
                    let r = tokio::time::timeout(SESSION_TIME, session)
                        .await
                        .unwrap_or(Err(SyncError::Timeout(SESSION_TIME)));
                    match r {
                        Err(e) if e.is_peer_fault() => {
                            net.report_misbehaviour(peer, format!("social sync: {e}"));
                        }
                        Err(e) => tracing::debug!(target: "nodus::social", %peer, "sync answer ended: {e}"),
                        Ok(taken) => {
                            relay.metrics.synced.inc_by(taken as u64);
                            if taken > 0 {
                                let _ = relay.events.send(SocialEvent::Synced { peer: peer.to_string(), taken });
                            }
                        }
                    }
                    let _ = stream.close().await;
                });
            }
            e = net_events.recv() => match e {
                Ok(NetEvent::PeerConnected { peer, .. }) => {
                    if let Ok(peer) = peer.parse() {
                        spawn_sync(&mut tasks, &own, &relay, &net, &running, peer, known.iter().copied().collect());
                    }
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            },
            changed = interest.changed() => {
                if changed.is_err() {
                    return;
                }
                let now: BTreeSet<[u8; 32]> = interest.borrow_and_update().authors().into_iter().collect();
                let new: Vec<[u8; 32]> = now.difference(&known).copied().collect();
                known = now;
                if !new.is_empty() {
                    // Finding the nodes that hold them is a DHT lookup that can take
                    // seconds: done aside, so streams keep being accepted meanwhile.
                    let (net, found) = (net.clone(), found_tx.clone());
                    tasks.spawn(async move {
                        let mut peers = connected(&net).await;
                        peers.truncate(FAN_OUT);
                        for a in new.iter().take(20) {
                            let providers = net.providers(topics::provider_key(a)).await.unwrap_or_default();
                            for p in providers.into_iter().take(3) {
                                if p != net.local_peer_id() && !peers.contains(&p) {
                                    peers.push(p);
                                }
                            }
                        }
                        let _ = found.send((peers, new)).await;
                    });
                }
            }
            Some((peers, authors)) = found_rx.recv() => {
                for peer in peers {
                    spawn_sync(&mut tasks, &own, &relay, &net, &running, peer, authors.clone());
                }
            }
            _ = periodic.tick() => {
                let mut peers = connected(&net).await;
                peers.truncate(FAN_OUT);
                for peer in peers {
                    spawn_sync(&mut tasks, &own, &relay, &net, &running, peer, known.iter().copied().collect());
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_round_trip() {
        for f in [
            Frame::Open {
                authors: vec![[1; 32], [2; 32]],
                since: 7,
                msg: vec![0x61, 0],
            },
            Frame::Neg(vec![0x61]),
            Frame::Want(vec![[3; 32]]),
            Frame::Event("{}".into()),
            Frame::Done,
            Frame::Error("busy".into()),
        ] {
            assert_eq!(Frame::decode(&f.encode()).unwrap(), f);
        }
        assert_eq!(Frame::decode(&[]), Err(FrameError::Empty));
        assert_eq!(Frame::decode(&[9]), Err(FrameError::UnknownType(9)));
        assert_eq!(Frame::decode(&[3, 1, 2]), Err(FrameError::Short));
        let mut claims = vec![1];
        claims.extend_from_slice(&0u64.to_be_bytes());
        claims.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            Frame::decode(&claims),
            Err(FrameError::TooMany(MAX_AUTHORS))
        );
    }

    #[test]
    fn two_sets_reconcile_to_what_each_lacks() {
        let common: Vec<(u64, [u8; 32])> =
            (0..2000u64).map(|i| (i, [(i % 251) as u8; 32])).collect();
        let mut mine = common.clone();
        mine.push((5000, [0xaa; 32]));
        let mut theirs = common;
        theirs.push((6000, [0xbb; 32]));
        theirs.sort();
        let mut a = negentropy_of(&mine).unwrap();
        let mut b = negentropy_of(&theirs).unwrap();
        let mut msg = a.initiate().unwrap();
        let (mut have, mut need) = (vec![], vec![]);
        loop {
            let reply = b.reconcile(&msg).unwrap();
            match a.reconcile_with_ids(&reply, &mut have, &mut need).unwrap() {
                Some(m) => msg = m,
                None => break,
            }
        }
        assert_eq!(
            have.iter().map(|i| i.to_bytes()).collect::<Vec<_>>(),
            vec![[0xaa; 32]]
        );
        assert_eq!(
            need.iter().map(|i| i.to_bytes()).collect::<Vec<_>>(),
            vec![[0xbb; 32]]
        );
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_fail_cleanly(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(f) = Frame::decode(&b) {
                prop_assert_eq!(Frame::decode(&f.encode()).unwrap(), f);
            }
        }

        #[test]
        fn a_responder_survives_any_message(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut n = negentropy_of(&[(1, [1; 32]), (2, [2; 32])]).unwrap();
            let _ = n.reconcile(&b);
        }
    }
}
