//! The calls of one node: placing, ringing, answering, rejecting and hanging up, over
//! call signals between contacts; each answered call's media on its own UDP socket.
//!
//! One call at a time (an offer while in a call is answered busy). A call offers the
//! routes it has: the relay legs the caller allocated (each with the callee's token)
//! and each side's direct candidates (the node's own addresses, with the call socket's
//! port; a node with no address of its own, reachable only through relays, offers
//! none). Signals are matched by call id and by the contact they came from, so a
//! contact cannot end or move another's call. The history row is written when a call
//! starts ringing, is answered and ends.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::PeerId;
use libp2p::multiaddr::Protocol;
use nodus_net::NetworkHandle;
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, oneshot, watch};

use crate::VoiceError;
use crate::alloc;
use crate::codec::SampleRate;
use crate::config::VoiceConfig;
use crate::history::{CallRecord, CallState, Direction, History, Outcome};
use crate::media::Keys;
use crate::session::{Recording, Route, Samples, Session, Setup, Sink, Source};
use crate::signal::{CallId, CallSignal, MAX_CANDIDATES, MAX_RELAYS, RelayLeg, WireKeys};
use crate::signaling::{Contact, Incoming, SharedSignaling};

/// What a call says and what it does with what it hears.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Media {
    /// A WAV file (16-bit mono at the node's `[voice] sample_rate`) to send; silence
    /// after it ends.
    pub input: Option<PathBuf>,
    /// Write what is heard to this WAV file (at the node's rate) when the call ends.
    pub record: Option<PathBuf>,
    /// The machine's sound devices (default input and output).
    pub device: bool,
}

/// Media checked before anything rings: the input read, the recording's folder there.
struct Prepared {
    pcm: Option<Vec<i16>>,
    record: Option<PathBuf>,
    device: bool,
}

impl Media {
    fn prepare(&self, rate: SampleRate) -> Result<Prepared, VoiceError> {
        let pcm = match &self.input {
            Some(p) => Some(crate::wav::read_at(p, rate)?),
            None => None,
        };
        if let Some(r) = &self.record {
            let parent = r.parent().filter(|p| !p.as_os_str().is_empty());
            if let Some(dir) = parent
                && !dir.is_dir()
            {
                return Err(VoiceError::File(
                    r.display().to_string(),
                    format!("its folder {} does not exist", dir.display()),
                ));
            }
        }
        if self.device {
            crate::device::check()?;
        }
        Ok(Prepared {
            pcm,
            record: self.record.clone(),
            device: self.device,
        })
    }
}

/// What the voice service tells the node's event stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum VoiceEvent {
    /// A contact is calling.
    Incoming {
        call: String,
        from: String,
        name: String,
    },
    /// Our call rings at the other side.
    Ringing {
        call: String,
    },
    Answered {
        call: String,
    },
    /// The call moved to another route.
    Route {
        call: String,
        route: String,
    },
    Ended {
        call: String,
        outcome: Outcome,
        duration_ms: u64,
    },
}

pub(crate) struct Live {
    record: CallRecord,
    call: CallId,
    /// What this side sends with.
    keys: Keys,
    socket: Option<UdpSocket>,
    /// Relay legs with this side's tokens.
    relays: Vec<RelayLeg>,
    candidates: Vec<SocketAddr>,
    /// The other side's keys and direct candidates, once known.
    remote: Option<(Keys, Vec<SocketAddr>)>,
    media: Option<Prepared>,
    session: Option<Arc<Session>>,
    stop: watch::Sender<bool>,
    /// The media task finishes the record when there is one.
    finish: Option<oneshot::Sender<CallRecord>>,
}

impl Live {
    /// Its record as of now: with the media's figures so far while it runs.
    fn now(&self) -> CallRecord {
        let mut r = self.record.clone();
        if let Some(s) = &self.session {
            r.quality = s.quality();
        }
        r
    }
}

pub(crate) struct Calls {
    pub config: VoiceConfig,
    /// `config.sample_rate`, checked.
    pub rate: SampleRate,
    pub net: NetworkHandle,
    pub me: PeerId,
    pub signaling: Option<SharedSignaling>,
    pub history: History,
    pub live: Mutex<HashMap<String, Live>>,
    pub events: broadcast::Sender<VoiceEvent>,
    pub metrics: crate::handle::Metrics,
    pub relay: Option<Arc<alloc::Server>>,
    /// Voice relays the DHT named before (at most 64, newest last).
    pub relays_seen: Mutex<Vec<PeerId>>,
    /// When each contact last got a busy answer (its history row), for a minute.
    pub last_busy: Mutex<HashMap<String, std::time::Instant>>,
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

fn call_id_hex(call: &CallId) -> String {
    hex::encode(call)
}

impl Calls {
    fn signaling(&self) -> Result<&SharedSignaling, VoiceError> {
        self.signaling.as_ref().ok_or(VoiceError::NoMessaging)
    }

    fn store(&self, record: &CallRecord) {
        if let Err(e) = self.history.put(record) {
            tracing::warn!(target: "nodus::voice", "call history: {e}");
        }
    }

    fn emit(&self, e: VoiceEvent) {
        let _ = self.events.send(e);
    }

    pub fn list(&self) -> Vec<CallRecord> {
        let mut v: Vec<CallRecord> = self
            .live
            .lock()
            .expect("calls")
            .values()
            .map(Live::now)
            .collect();
        v.sort_by_key(|c| c.started_ms);
        v
    }

    pub fn get(&self, id: &str) -> Option<CallRecord> {
        if let Some(l) = self.live.lock().expect("calls").get(id) {
            return Some(l.now());
        }
        self.history.all().ok()?.into_iter().find(|c| c.id == id)
    }

    fn busy(&self) -> Option<String> {
        self.live.lock().expect("calls").keys().next().cloned()
    }

    /// The node's own addresses (not relayed), with `port`: what the other side may try
    /// directly.
    async fn candidates(&self, socket: &UdpSocket) -> Vec<SocketAddr> {
        let Ok(local) = socket.local_addr() else {
            return Vec::new();
        };
        let Ok(status) = self.net.status().await else {
            return Vec::new();
        };
        let mut out: Vec<SocketAddr> = Vec::new();
        for a in status
            .listen_addrs
            .iter()
            .chain(status.external_addrs.iter())
        {
            let Ok(m) = a.parse::<libp2p::Multiaddr>() else {
                continue;
            };
            if m.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
                continue;
            }
            let ip = m.iter().find_map(|p| match p {
                Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
                Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
                _ => None,
            });
            let Some(ip) = ip else { continue };
            if ip.is_unspecified() || (!local.ip().is_unspecified() && ip != local.ip()) {
                continue;
            }
            let c = SocketAddr::new(ip, local.port());
            if !out.contains(&c) && out.len() < MAX_CANDIDATES {
                out.push(c);
            }
        }
        out
    }

    async fn bind(&self) -> Result<UdpSocket, VoiceError> {
        let ip: IpAddr = self.config.media_ip.parse().map_err(|_| {
            VoiceError::File(
                "[voice] media_ip".into(),
                format!("{:?} is not an IP address", self.config.media_ip),
            )
        })?;
        Ok(UdpSocket::bind(SocketAddr::new(ip, 0)).await?)
    }

    /// Up to `n` relay allocations, from relays other than `exclude`: the configured
    /// ones first, then those the DHT knows. Each leg: (mine, theirs).
    async fn allocate(&self, n: usize, exclude: &[PeerId]) -> Vec<(RelayLeg, RelayLeg)> {
        if n == 0 {
            return Vec::new();
        }
        // The configured relays, then those found in the DHT before (kept), then a
        // lookup only when that is not enough to choose from: a call moving off a dead
        // relay should not wait for the DHT.
        let usable = |p: &PeerId| *p != self.me && !exclude.contains(p);
        let mut peers: Vec<PeerId> = self
            .config
            .relays
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect();
        peers.extend(self.relays_seen.lock().expect("relays").iter().copied());
        if peers.iter().filter(|p| usable(p)).count() < n * 2
            && let Ok(Ok(found)) = tokio::time::timeout(
                Duration::from_secs(3),
                self.net.providers(alloc::DHT_KEY.to_vec()),
            )
            .await
        {
            let mut seen = self.relays_seen.lock().expect("relays");
            for p in found {
                if !seen.contains(&p) {
                    seen.push(p);
                    peers.push(p);
                }
            }
            let over = seen.len().saturating_sub(64);
            seen.drain(..over);
        }
        let mut seen = Vec::new();
        peers.retain(|p| {
            let keep = usable(p) && !seen.contains(p);
            seen.push(*p);
            keep
        });
        peers.truncate(n * 2);
        // Asked at once; the first to answer are taken (a dead relay's silence costs
        // nothing while enough others answer).
        let want = n.min(MAX_RELAYS);
        let mut asks: futures::stream::FuturesUnordered<_> = peers
            .iter()
            .map(|p| async move { (*p, alloc::request(&self.net, *p).await) })
            .collect();
        let mut legs = Vec::new();
        while legs.len() < want {
            let Some((p, r)) = futures::StreamExt::next(&mut asks).await else {
                break;
            };
            match r {
                Ok((addr, mine, theirs)) => legs.push((
                    RelayLeg { addr, token: mine },
                    RelayLeg {
                        addr,
                        token: theirs,
                    },
                )),
                Err(e) => {
                    tracing::debug!(target: "nodus::voice", "no allocation from relay {p}: {e}")
                }
            }
        }
        legs
    }

    fn new_record(&self, id: &str, contact: &Contact, direction: Direction) -> CallRecord {
        CallRecord {
            id: id.to_string(),
            peer: contact.peer_id.clone(),
            name: contact.name.clone(),
            direction,
            state: match direction {
                Direction::Outgoing => CallState::Calling,
                Direction::Incoming => CallState::Ringing,
            },
            outcome: None,
            started_ms: now_ms(),
            answered_ms: None,
            ended_ms: None,
            duration_ms: 0,
            route: None,
            quality: None,
        }
    }
}

/// `nodus call <contact>`.
pub(crate) async fn place(
    calls: &Arc<Calls>,
    who: &str,
    media: Media,
) -> Result<CallRecord, VoiceError> {
    let signaling = calls.signaling()?.clone();
    let contact = signaling.contact(who).await?;
    if contact.peer_id == calls.me.to_string() {
        return Err(VoiceError::Myself(who.to_string()));
    }
    if let Some(id) = calls.busy() {
        return Err(VoiceError::InCall(id));
    }
    let prepared = media.prepare(calls.rate)?;
    let socket = calls.bind().await?;
    let candidates = calls.candidates(&socket).await;
    let peer: Option<PeerId> = contact.peer_id.parse().ok();
    let legs = calls
        .allocate(
            calls.config.relays_per_call,
            &peer.into_iter().collect::<Vec<_>>(),
        )
        .await;
    let call: CallId = rand::random();
    let id = call_id_hex(&call);
    let keys = Keys::random();
    let record = calls.new_record(&id, &contact, Direction::Outgoing);
    let offer = CallSignal::Offer {
        call,
        keys: WireKeys::from(&keys),
        candidates: candidates.clone(),
        relays: legs.iter().map(|(_, theirs)| theirs.clone()).collect(),
    };
    {
        let mut live = calls.live.lock().expect("calls");
        if let Some(other) = live.keys().next() {
            return Err(VoiceError::InCall(other.clone()));
        }
        live.insert(
            id.clone(),
            Live {
                record: record.clone(),
                call,
                keys,
                socket: Some(socket),
                relays: legs.into_iter().map(|(mine, _)| mine).collect(),
                candidates,
                remote: None,
                media: Some(prepared),
                session: None,
                stop: watch::channel(false).0,
                finish: None,
            },
        );
    }
    calls.store(&record);
    calls.metrics.placed.inc();
    if let Err(e) = signaling.send(&contact.peer_id, offer.encode()).await {
        end(calls, &id, Outcome::Failed);
        return Err(e.into());
    }
    ring_timeout(calls.clone(), id.clone());
    Ok(record)
}

/// Ends a call that is still ringing after `ring_secs`.
fn ring_timeout(calls: Arc<Calls>, id: String) {
    let wait = Duration::from_secs(calls.config.ring_secs);
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        let pending = {
            let live = calls.live.lock().expect("calls");
            live.get(&id)
                .filter(|l| l.record.state != CallState::Active)
                .map(|l| (l.record.direction, l.record.peer.clone(), l.call))
        };
        let Some((direction, peer, call)) = pending else {
            return;
        };
        match direction {
            Direction::Outgoing => {
                send(&calls, &peer, &CallSignal::Hangup { call }).await;
                end(&calls, &id, Outcome::NoAnswer);
            }
            Direction::Incoming => {
                end(&calls, &id, Outcome::Missed);
            }
        }
    });
}

async fn send(calls: &Calls, peer: &str, signal: &CallSignal) {
    if let Some(s) = &calls.signaling
        && let Err(e) = s.send(peer, signal.encode()).await
    {
        tracing::debug!(target: "nodus::voice", "call signal to {peer}: {e}");
    }
}

/// The call `id` names, or the only one ringing here when `id` is None.
fn ringing_here(calls: &Calls, id: Option<&str>) -> Result<String, VoiceError> {
    let live = calls.live.lock().expect("calls");
    match id {
        Some(id) => {
            let l = live
                .get(id)
                .ok_or_else(|| VoiceError::NoSuchCall(id.to_string()))?;
            if l.record.direction != Direction::Incoming || l.record.state != CallState::Ringing {
                return Err(VoiceError::NotRinging(id.to_string()));
            }
            Ok(id.to_string())
        }
        None => {
            let ringing: Vec<&String> = live
                .iter()
                .filter(|(_, l)| {
                    l.record.direction == Direction::Incoming
                        && l.record.state == CallState::Ringing
                })
                .map(|(k, _)| k)
                .collect();
            match ringing.as_slice() {
                [] => Err(VoiceError::NothingRinging),
                [one] => Ok((*one).clone()),
                many => Err(VoiceError::WhichCall(many.len())),
            }
        }
    }
}

/// `nodus call answer`.
pub(crate) async fn answer(
    calls: &Arc<Calls>,
    id: Option<&str>,
    media: Media,
) -> Result<CallRecord, VoiceError> {
    let id = ringing_here(calls, id)?;
    let prepared = media.prepare(calls.rate)?;
    let (peer, signal) = {
        let mut live = calls.live.lock().expect("calls");
        let l = live
            .get_mut(&id)
            .ok_or_else(|| VoiceError::NoSuchCall(id.clone()))?;
        l.media = Some(prepared);
        (
            l.record.peer.clone(),
            CallSignal::Answer {
                call: l.call,
                keys: WireKeys::from(&l.keys),
                candidates: l.candidates.clone(),
            },
        )
    };
    send(calls, &peer, &signal).await;
    start_media(calls, &id)?;
    calls.get(&id).ok_or(VoiceError::NoSuchCall(id))
}

/// `nodus call reject`.
pub(crate) async fn reject(calls: &Arc<Calls>, id: Option<&str>) -> Result<CallRecord, VoiceError> {
    let id = ringing_here(calls, id)?;
    let (peer, call) = {
        let live = calls.live.lock().expect("calls");
        let l = live
            .get(&id)
            .ok_or_else(|| VoiceError::NoSuchCall(id.clone()))?;
        (l.record.peer.clone(), l.call)
    };
    send(calls, &peer, &CallSignal::Reject { call, busy: false }).await;
    end(calls, &id, Outcome::Rejected).ok_or(VoiceError::NoSuchCall(id))
}

/// `nodus call hangup`: the call `id` names, or the only one there is.
pub(crate) async fn hangup(calls: &Arc<Calls>, id: Option<&str>) -> Result<CallRecord, VoiceError> {
    let (id, peer, call, answered) = {
        let live = calls.live.lock().expect("calls");
        let (id, l) = match id {
            Some(id) => live
                .get_key_value(id)
                .ok_or_else(|| VoiceError::NoSuchCall(id.to_string()))?,
            None => {
                let mut it = live.iter();
                match (it.next(), it.next()) {
                    (Some(one), None) => one,
                    (None, _) => return Err(VoiceError::NoSuchCall("in progress".into())),
                    (Some(_), Some(_)) => return Err(VoiceError::WhichCall(live.len())),
                }
            }
        };
        (
            id.clone(),
            l.record.peer.clone(),
            l.call,
            l.record.answered_ms.is_some(),
        )
    };
    send(calls, &peer, &CallSignal::Hangup { call }).await;
    let outcome = if answered {
        Outcome::Completed
    } else {
        Outcome::Cancelled
    };
    end(calls, &id, outcome).ok_or(VoiceError::NoSuchCall(id))
}

/// Takes the call out of the live ones and stops its media. The record as it ended
/// (the media task adds what the media did and stores it again).
fn end(calls: &Calls, id: &str, outcome: Outcome) -> Option<CallRecord> {
    let mut l = calls.live.lock().expect("calls").remove(id)?;
    let now = now_ms();
    l.record.state = CallState::Ended;
    l.record.outcome = Some(outcome);
    l.record.ended_ms = Some(now);
    l.record.duration_ms = l.record.answered_ms.map_or(0, |a| now.saturating_sub(a));
    let _ = l.stop.send(true);
    calls.metrics.active.set(0);
    match l.finish.take() {
        Some(finish) => {
            let _ = finish.send(l.record.clone());
        }
        None => {
            calls.store(&l.record);
            calls.emit(VoiceEvent::Ended {
                call: id.to_string(),
                outcome,
                duration_ms: l.record.duration_ms,
            });
        }
    }
    Some(l.record)
}

/// Starts the answered call's media; its task runs until the call ends.
fn start_media(calls: &Arc<Calls>, id: &str) -> Result<(), VoiceError> {
    let (session, setup, prepared, stop, finished) = {
        let mut live = calls.live.lock().expect("calls");
        let l = live
            .get_mut(id)
            .ok_or_else(|| VoiceError::NoSuchCall(id.to_string()))?;
        let (their_keys, their_candidates) = l
            .remote
            .take()
            .ok_or_else(|| VoiceError::NotRinging(id.to_string()))?;
        let socket = l
            .socket
            .take()
            .ok_or_else(|| VoiceError::NotRinging(id.to_string()))?;
        let mut routes: Vec<Route> = l
            .relays
            .iter()
            .map(|r| Route::Relay {
                relay: r.addr,
                token: r.token,
            })
            .collect();
        routes.extend(their_candidates.into_iter().map(Route::Direct));
        tracing::debug!(target: "nodus::voice", "call {id}: media on {:?}", routes.iter().map(|r| r.to_string()).collect::<Vec<_>>());
        let session = Arc::new(Session::new(socket, routes));
        l.session = Some(session.clone());
        l.record.state = CallState::Active;
        l.record.answered_ms = Some(now_ms());
        let (tx, rx) = oneshot::channel();
        l.finish = Some(tx);
        let setup = Setup {
            send: l.keys.clone(),
            receive: their_keys,
            bitrate: calls.config.bitrate,
            rate: calls.rate,
        };
        calls.store(&l.record);
        (
            session,
            setup,
            l.media.take().unwrap_or(Prepared {
                pcm: None,
                record: None,
                device: false,
            }),
            l.stop.subscribe(),
            rx,
        )
    };
    calls.metrics.active.set(1);
    calls.metrics.answered.inc();
    calls.emit(VoiceEvent::Answered {
        call: id.to_string(),
    });
    tokio::spawn(run_media(
        calls.clone(),
        id.to_string(),
        session,
        setup,
        prepared,
        stop,
        finished,
    ));
    Ok(())
}

/// Every route this quiet (when the standby ones would have taken over after 200 ms):
/// the caller asks for new relay legs.
const QUIET: Duration = Duration::from_millis(500);
/// A call whose other side has not been heard on any route for this long is over.
const DROP_AFTER: Duration = Duration::from_secs(10);

/// A running call's media: the session, the route it uses reported as it changes, new
/// relay legs when every route has gone quiet; at the end the recording written and the
/// record finished with what the media did.
async fn run_media(
    calls: Arc<Calls>,
    id: String,
    session: Arc<Session>,
    setup: Setup,
    media: Prepared,
    stop: watch::Receiver<bool>,
    finished: oneshot::Receiver<CallRecord>,
) {
    let recording = Recording::default();
    let result = {
        let source: Box<dyn Source> = match (&media.pcm, media.device) {
            (Some(pcm), _) => Box::new(Samples::new(pcm.clone())),
            (None, true) => match crate::device::input(calls.rate) {
                Ok(s) => Box::new(s),
                Err(e) => {
                    tracing::warn!(target: "nodus::voice", "call {id}: {e}; sending silence");
                    Box::new(Samples::new(Vec::new()))
                }
            },
            (None, false) => Box::new(Samples::new(Vec::new())),
        };
        let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(recording.clone())];
        if media.device {
            match crate::device::output(calls.rate) {
                Ok(s) => sinks.push(Box::new(s)),
                Err(e) => tracing::warn!(target: "nodus::voice", "call {id}: {e}"),
            }
        }
        let run = session.run(setup, source, Tee(sinks), stop);
        tokio::pin!(run);
        let mut routes = session.active();
        let mut quiet = tokio::time::interval(Duration::from_millis(250));
        let mut last_move: Option<std::time::Instant> = None;
        let started = std::time::Instant::now();
        let caller = calls
            .live
            .lock()
            .expect("calls")
            .get(&id)
            .is_some_and(|l| l.record.direction == Direction::Outgoing);
        loop {
            tokio::select! {
                r = &mut run => break r,
                changed = routes.changed() => {
                    if changed.is_err() { continue; }
                    let route = routes.borrow_and_update().clone();
                    if let Some(route) = route {
                        let text = route.to_string();
                        tracing::debug!(target: "nodus::voice", "call {id}: route now {text}");
                        if let Some(l) = calls.live.lock().expect("calls").get_mut(&id) {
                            l.record.route = Some(text.clone());
                        }
                        calls.emit(VoiceEvent::Route { call: id.clone(), route: text });
                    }
                }
                _ = quiet.tick() => {
                    let settled = started.elapsed() > Duration::from_secs(2);
                    if settled && !session.heard_within(DROP_AFTER) {
                        // The other side is gone (its node stopped, every route died
                        // and no new relay helped): the call is over.
                        tracing::info!(target: "nodus::voice", "call {id}: nothing heard for {DROP_AFTER:?}, dropped");
                        end(&calls, &id, Outcome::Dropped);
                        continue;
                    }
                    // The caller asks (both asking would make two legs through one
                    // relay address, which the routes cannot tell apart).
                    let due = caller && last_move.is_none_or(|t| t.elapsed() > Duration::from_secs(5));
                    if settled && due && !session.heard_within(QUIET) {
                        last_move = Some(std::time::Instant::now());
                        // Asking relays takes a while: the media goes on meanwhile.
                        let (calls, id, session) = (calls.clone(), id.clone(), session.clone());
                        tokio::spawn(async move { new_relays(&calls, &id, &session).await });
                    }
                }
            }
        }
    };
    let summary = match result {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(target: "nodus::voice", "call {id}: media stopped: {e}");
            None
        }
    };
    // The media ends when the call does; the other side's BYE ends it as its hangup
    // signal would; if it stopped by itself (an encoder error), the call ends here
    // (nothing happens if it had ended already).
    if summary.as_ref().is_some_and(|s| s.bye) {
        tracing::debug!(target: "nodus::voice", "call {id}: the other side said BYE");
        end(&calls, &id, Outcome::Completed);
    }
    end(&calls, &id, Outcome::Failed);
    // The record as the call ended (the call is already out of the live ones).
    let Ok(mut record) = finished.await else {
        return;
    };
    if let Some(path) = &media.record {
        let pcm = recording.0.lock().expect("recording").clone();
        if let Err(e) = crate::wav::write_at(path, calls.rate, &pcm) {
            tracing::warn!(target: "nodus::voice", "call {id}: {e}");
        }
    }
    if let Some(s) = &summary {
        calls.metrics.media_dropped.inc_by(s.dropped);
    }
    record.quality = summary;
    calls.store(&record);
    calls.emit(VoiceEvent::Ended {
        call: id,
        outcome: record.outcome.unwrap_or(Outcome::Completed),
        duration_ms: record.duration_ms,
    });
}

/// Every route went quiet: new relay legs, tried here and offered to the other side
/// (a Move signal). The caller's side does this; the callee's follows the Move.
async fn new_relays(calls: &Arc<Calls>, id: &str, session: &Session) {
    let (peer, call) = {
        let live = calls.live.lock().expect("calls");
        let Some(l) = live.get(id) else { return };
        (l.record.peer.clone(), l.call)
    };
    let exclude: Vec<PeerId> = peer.parse().ok().into_iter().collect();
    let legs = calls
        .allocate(calls.config.relays_per_call.max(1), &exclude)
        .await;
    tracing::debug!(target: "nodus::voice", "call {id}: every route went quiet; {} new relay legs", legs.len());
    if legs.is_empty() {
        return;
    }
    for (mine, _) in &legs {
        session.add_route(Route::Relay {
            relay: mine.addr,
            token: mine.token,
        });
    }
    let relays = legs.into_iter().map(|(_, theirs)| theirs).collect();
    send(calls, &peer, &CallSignal::Move { call, relays }).await;
}

/// Several sinks as one.
struct Tee(Vec<Box<dyn Sink>>);

impl Sink for Tee {
    fn play(&mut self, frame: &[i16]) {
        for s in &mut self.0 {
            s.play(frame);
        }
    }
}

impl Source for Box<dyn Source> {
    fn next_frame(&mut self, len: usize) -> Option<Vec<i16>> {
        (**self).next_frame(len)
    }
}

impl Sink for Box<dyn Sink> {
    fn play(&mut self, frame: &[i16]) {
        (**self).play(frame)
    }
}

/// Call signals from contacts, until shutdown.
pub(crate) async fn listen(
    calls: Arc<Calls>,
    mut incoming: futures::stream::BoxStream<'static, Incoming>,
    mut shutdown: watch::Receiver<bool>,
) {
    use futures::StreamExt;
    loop {
        let next = tokio::select! {
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => return,
            n = incoming.next() => n,
        };
        let Some(Incoming { from, body }) = next else {
            return;
        };
        let Some(signal) = CallSignal::decode(&body) else {
            calls.metrics.bad_signals.inc();
            tracing::debug!(target: "nodus::voice", "a call signal from {} that does not decode", from.peer_id);
            continue;
        };
        on_signal(&calls, from, signal).await;
    }
}

/// The live call `call` from `from`, if it is one.
fn matching(calls: &Calls, from: &Contact, call: &CallId) -> Option<String> {
    let id = call_id_hex(call);
    let live = calls.live.lock().expect("calls");
    live.get(&id)
        .filter(|l| l.record.peer == from.peer_id)
        .map(|_| id)
}

async fn on_signal(calls: &Arc<Calls>, from: Contact, signal: CallSignal) {
    match signal {
        CallSignal::Offer {
            call,
            keys,
            candidates,
            relays,
        } => offered(calls, from, call, Keys::from(&keys), candidates, relays).await,
        CallSignal::Ringing { call } => {
            let Some(id) = matching(calls, &from, &call) else {
                return;
            };
            let mut rang = false;
            if let Some(l) = calls.live.lock().expect("calls").get_mut(&id)
                && l.record.state == CallState::Calling
            {
                l.record.state = CallState::Ringing;
                rang = true;
            }
            if rang {
                calls.emit(VoiceEvent::Ringing { call: id });
            }
        }
        CallSignal::Answer {
            call,
            keys,
            candidates,
        } => {
            let Some(id) = matching(calls, &from, &call) else {
                return;
            };
            {
                let mut live = calls.live.lock().expect("calls");
                let Some(l) = live.get_mut(&id) else { return };
                if l.record.direction != Direction::Outgoing || l.record.state == CallState::Active
                {
                    return;
                }
                l.remote = Some((Keys::from(&keys), candidates));
            }
            if let Err(e) = start_media(calls, &id) {
                tracing::warn!(target: "nodus::voice", "call {id}: {e}");
                end(calls, &id, Outcome::Failed);
            }
        }
        CallSignal::Reject { call, busy } => {
            let Some(id) = matching(calls, &from, &call) else {
                return;
            };
            end(
                calls,
                &id,
                if busy {
                    Outcome::Busy
                } else {
                    Outcome::Rejected
                },
            );
        }
        CallSignal::Hangup { call } => {
            let Some(id) = matching(calls, &from, &call) else {
                return;
            };
            let answered = calls
                .live
                .lock()
                .expect("calls")
                .get(&id)
                .is_some_and(|l| l.record.answered_ms.is_some());
            let outcome = match (answered, calls.get(&id).map(|c| c.direction)) {
                (true, _) => Outcome::Completed,
                (false, Some(Direction::Incoming)) => Outcome::Missed,
                (false, _) => Outcome::Cancelled,
            };
            end(calls, &id, outcome);
        }
        CallSignal::Move { call, relays } => {
            tracing::debug!(target: "nodus::voice", "a move from {}: {} relay legs", from.peer_id, relays.len());
            let Some(id) = matching(calls, &from, &call) else {
                return;
            };
            let session = calls
                .live
                .lock()
                .expect("calls")
                .get(&id)
                .and_then(|l| l.session.clone());
            if let Some(session) = session {
                for r in relays {
                    session.add_route(Route::Relay {
                        relay: r.addr,
                        token: r.token,
                    });
                }
            }
        }
    }
}

async fn offered(
    calls: &Arc<Calls>,
    from: Contact,
    call: CallId,
    keys: Keys,
    candidates: Vec<SocketAddr>,
    relays: Vec<RelayLeg>,
) {
    let id = call_id_hex(&call);
    if calls.live.lock().expect("calls").contains_key(&id) {
        return; // a repeat
    }
    let mut record = calls.new_record(&id, &from, Direction::Incoming);
    if calls.busy().is_some() {
        send(
            calls,
            &from.peer_id,
            &CallSignal::Reject { call, busy: true },
        )
        .await;
        // A contact calling again and again while we talk is one row a minute.
        {
            let mut last = calls.last_busy.lock().expect("busy");
            let now = std::time::Instant::now();
            last.retain(|_, t| now.duration_since(*t) < Duration::from_secs(60));
            if last.contains_key(&from.peer_id) || last.len() >= 1024 {
                return;
            }
            last.insert(from.peer_id.clone(), now);
        }
        record.state = CallState::Ended;
        record.outcome = Some(Outcome::Busy);
        record.ended_ms = Some(record.started_ms);
        calls.store(&record);
        calls.emit(VoiceEvent::Ended {
            call: id,
            outcome: Outcome::Busy,
            duration_ms: 0,
        });
        return;
    }
    let socket = match calls.bind().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(target: "nodus::voice", "an incoming call cannot bind its socket: {e}");
            return;
        }
    };
    let mine = calls.candidates(&socket).await;
    {
        let mut live = calls.live.lock().expect("calls");
        if !live.is_empty() {
            return;
        }
        live.insert(
            id.clone(),
            Live {
                record: record.clone(),
                call,
                keys: Keys::random(),
                socket: Some(socket),
                relays,
                candidates: mine,
                remote: Some((keys, candidates)),
                media: None,
                session: None,
                stop: watch::channel(false).0,
                finish: None,
            },
        );
    }
    calls.store(&record);
    calls.metrics.received.inc();
    calls.emit(VoiceEvent::Incoming {
        call: id.clone(),
        from: from.peer_id.clone(),
        name: from.name.clone(),
    });
    send(calls, &from.peer_id, &CallSignal::Ringing { call }).await;
    ring_timeout(calls.clone(), id);
}

/// Serves relay allocation requests until shutdown.
pub(crate) async fn serve_allocations(
    calls: Arc<Calls>,
    server: Arc<alloc::Server>,
    mut incoming: libp2p_stream::IncomingStreams,
    mut shutdown: watch::Receiver<bool>,
) {
    use futures::StreamExt;
    loop {
        let next = tokio::select! {
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => return,
            n = incoming.next() => n,
        };
        let Some((peer, stream)) = next else { return };
        let (calls, server) = (calls.clone(), server.clone());
        tokio::spawn(async move {
            if let Err(reason) = server.serve(peer, stream).await {
                calls.metrics.bad_requests.inc();
                calls.net.report_misbehaviour(peer, reason);
            }
        });
    }
}
