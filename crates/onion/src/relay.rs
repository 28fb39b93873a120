//! A relay's side of circuits: answers CREATE, peels its layer off cells from the client,
//! passes on what is not for it, extends to the next hop when asked, and, at an exit,
//! opens streams within its policy.
//!
//! Per circuit, one task reads the client's side (this one), one writes to it (it owns
//! the backward layer, so cells from the next hop and this hop's own messages share one
//! keystream in one order), one reads the next hop's side, and one per exit stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::io::{ReadHalf, WriteHalf};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream};
use nodus_net::NetworkHandle;
use nodus_service::rate::RateLimiter;
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::cell::{CELL_LEN, Cell, Command, EndReason, RelayCommand, RelayMsg};
use crate::congestion::{Received, Vegas, Window};
use crate::exit::{self, ExitPolicy};
use crate::hs::address::ServiceId;
use crate::hs::messages::{self, Cookie, EstablishIntro, Introduce};
use crate::layers::{Backward, HopLayers};
use crate::link::{self, BufReader, BufWriter, PROTOCOL, read_cell, write_cell};
use crate::ntor::{self, CREATE_LEN, CREATED_LEN, OnionKey, RelayId};
use crate::stream::{self, Control, ControlRx, Out, Shared, StreamSlot};
use crate::{OnionError, lock};

/// How long a neighbour has for its half of a handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a relay tries to open a stream to a peer of the overlay (BEGIN_OVERLAY):
/// one that has not answered by then is taken as offline, as messaging takes it.
pub const OVERLAY_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Streams one circuit may have open at an exit.
pub const MAX_STREAMS: usize = 256;
const QUEUE: usize = 64;

/// A relay's identity in handshakes: SHA-256 of its peer id's bytes.
pub fn relay_id(peer: &PeerId) -> RelayId {
    Sha256::digest(peer.to_bytes()).into()
}

/// What a relay learns of a circuit: only its neighbours, and at an exit the
/// destination. Sent on [`Relay::views`] for tests and the demo, never logged: a relay
/// keeps no record of whose traffic went where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    Created { prev: PeerId },
    Extended { prev: PeerId, next: PeerId },
    Exit { prev: PeerId, target: String },
}

impl View {
    /// The peers this view names.
    pub fn peers(&self) -> Vec<PeerId> {
        match self {
            View::Created { prev } | View::Exit { prev, .. } => vec![*prev],
            View::Extended { prev, next } => vec![*prev, *next],
        }
    }
}

/// A [`View`] and which of this relay's circuits it is of (a number local to the relay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub circuit: u64,
    pub view: View,
}

pub struct Relay {
    pub id: RelayId,
    /// The current onion key first, then older ones still accepted.
    pub keys: Vec<OnionKey>,
    /// Set on an exit.
    pub exit: Option<ExitPolicy>,
    pub views: broadcast::Sender<Seen>,
    /// Onion services this relay introduces: each one's circuit here.
    intros: Mutex<HashMap<ServiceId, mpsc::Sender<Out>>>,
    /// Rendezvous cookies waiting for their service.
    rendezvous: Mutex<HashMap<Cookie, Waiting>>,
    /// Circuits taken so far, which numbers them in views.
    circuits: std::sync::atomic::AtomicU64,
    /// What every circuit through this relay passes on, together (`[onion]
    /// relay_bandwidth`): each cell written toward the client or to the next hop.
    rate: Arc<RateLimiter>,
    /// Where a relay said it listens (this node's relay list), to reach the next hop
    /// when the overlay does not know it yet.
    addrs_of: Option<AddrsOf>,
    /// Overlay protocols this relay opens for circuits that end here (BEGIN_OVERLAY).
    overlay: Vec<libp2p::StreamProtocol>,
    /// Tests only: the relay builds circuits as it should, then ignores every BEGIN,
    /// as a hostile one that passes EXTEND and drops data would.
    #[doc(hidden)]
    pub swallow_begins: std::sync::atomic::AtomicBool,
    /// The largest congestion window any circuit ending here reached.
    largest_window: Arc<std::sync::atomic::AtomicU32>,
    /// XOFFs and XONs heard from clients, on streams ending here.
    flow_heard: [std::sync::atomic::AtomicU64; 2],
    /// Benchmarks only: circuits ending here send within a fixed window of this many
    /// cells, as before congestion control (Tor's fixed windows, for comparison).
    #[doc(hidden)]
    pub fixed_window: Option<u32>,
}

/// Looks up the addresses a relay published.
pub type AddrsOf = Arc<dyn Fn(&PeerId) -> Vec<libp2p::Multiaddr> + Send + Sync>;

/// A client circuit at its rendezvous point, until the service's circuit arrives.
struct Waiting {
    out: mpsc::Sender<Out>,
    joined: Arc<OnceLock<mpsc::Sender<Out>>>,
}

/// Cookies one relay holds at once.
pub const MAX_RENDEZVOUS: usize = 4096;

impl Relay {
    pub fn new(peer: &PeerId, key: OnionKey, exit: Option<ExitPolicy>) -> Relay {
        Relay {
            id: relay_id(peer),
            keys: vec![key],
            exit,
            views: broadcast::channel(256).0,
            intros: Mutex::default(),
            rendezvous: Mutex::default(),
            circuits: Default::default(),
            rate: Arc::new(RateLimiter::new(0)),
            addrs_of: None,
            overlay: Vec::new(),
            swallow_begins: Default::default(),
            largest_window: Arc::default(),
            flow_heard: Default::default(),
            fixed_window: None,
        }
    }

    /// The largest congestion window (cells) any circuit ending here reached toward its
    /// client ([`crate::congestion`]).
    pub fn largest_window(&self) -> u32 {
        self.largest_window
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// XOFFs and XONs clients sent to streams ending here: a client's reader fell
    /// behind, then caught up ([`crate::stream`]).
    pub fn flow_heard(&self) -> (u64, u64) {
        let [off, on] = &self.flow_heard;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        (get(off), get(on))
    }

    /// The relay opening streams of these overlay protocols for circuits that end here
    /// (names that are no stream protocol, not starting with `/`, are left out).
    pub fn with_overlay(mut self, protocols: Vec<String>) -> Relay {
        self.overlay = protocols
            .into_iter()
            .filter_map(|p| libp2p::StreamProtocol::try_from_owned(p).ok())
            .collect();
        self
    }

    /// Where `peer` said it listens, if it is a listed relay.
    fn published_addrs(&self, peer: &PeerId) -> Vec<libp2p::Multiaddr> {
        self.addrs_of.as_ref().map(|f| f(peer)).unwrap_or_default()
    }

    /// The relay reaching next hops at the addresses `addrs_of` gives too.
    pub fn with_addresses(mut self, addrs_of: AddrsOf) -> Relay {
        self.addrs_of = Some(addrs_of);
        self
    }

    /// The relay passing on at most `bytes_per_sec` for all its circuits (0: no limit).
    pub fn with_rate(mut self, bytes_per_sec: u64) -> Relay {
        self.rate = Arc::new(RateLimiter::new(bytes_per_sec));
        self
    }

    fn saw(&self, circuit: u64, view: View) {
        let _ = self.views.send(Seen { circuit, view });
    }
}

/// Accepts circuits on `/nodus/onion/1` until the overlay stops or `stop` turns true.
pub fn spawn(
    net: NetworkHandle,
    relay: Arc<Relay>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<JoinHandle<()>, OnionError> {
    let mut incoming = net
        .incoming(PROTOCOL)
        .map_err(|e| OnionError::Net(e.to_string()))?;
    // The circuits are this task's own: stopping the relay (aborting the task, as a
    // node stopping or crashing does) ends every one of them.
    Ok(tokio::spawn(async move {
        let mut circuits = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                next = incoming.next() => {
                    let Some((peer, stream)) = next else { break };
                    let (net, relay) = (net.clone(), relay.clone());
                    circuits.spawn(async move {
                        if let Err(e) = circuit(net, relay, peer, stream).await {
                            tracing::debug!(target: "nodus::onion", "circuit ended: {e}");
                        }
                    });
                }
                Some(_) = circuits.join_next() => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
    }))
}

async fn circuit(
    net: NetworkHandle,
    relay: Arc<Relay>,
    prev: PeerId,
    mut stream: Stream,
) -> Result<(), OnionError> {
    let first = tokio::time::timeout(HANDSHAKE_TIMEOUT, read_cell(&mut stream))
        .await
        .map_err(|_| OnionError::Timeout("CREATE"))??
        .ok_or_else(|| OnionError::Malformed("closed before CREATE".into()))?;
    if first.command != Command::Create {
        return Err(OnionError::Malformed(format!(
            "{:?} before CREATE",
            first.command
        )));
    }
    let keys: Vec<&OnionKey> = relay.keys.iter().collect();
    let (created, hop_keys) = ntor::respond(&relay.id, &keys, &first.body[..CREATE_LEN])?;
    write_cell(&mut stream, &Cell::new(Command::Created, &created)).await?;
    let number = relay
        .circuits
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    relay.saw(number, View::Created { prev });
    let binding = ntor::binding(&hop_keys);
    let HopLayers {
        mut forward,
        backward,
    } = HopLayers::new(&hop_keys);
    let (from_prev, to_prev_w) = stream.split();
    let mut from_prev = link::reader(from_prev);
    let vegas = relay.fixed_window.map(Vegas::fixed).unwrap_or_default();
    let shared = Shared::new(Window::with(vegas, Some(relay.largest_window.clone())));
    let (out, rx) = mpsc::channel(QUEUE);
    let (control, control_rx) = stream::control();
    let writer = tokio::spawn(write_toward_client(
        to_prev_w,
        backward,
        (rx, control_rx),
        relay.rate.clone(),
    ));
    let mut c = Circuit {
        net,
        relay,
        prev,
        out: out.clone(),
        next: None,
        upstream: None,
        streams: HashMap::new(),
        binding,
        number,
        joined: Arc::default(),
        introducing: None,
        cookie: None,
        probed: false,
        shared,
        received: Received::default(),
        control,
    };
    let result = loop {
        if from_prev.buffer().is_empty()
            && let Err(e) = c.flush_next().await
        {
            break Err(e);
        }
        let cell = match read_cell(&mut from_prev).await {
            Ok(Some(cell)) => cell,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        match cell.command {
            Command::Relay => {
                let mut body = cell.body;
                let step = match forward.peel(&mut body) {
                    Ok(true) => match RelayMsg::decode(&body) {
                        Ok(m) => c.handle(m).await,
                        Err(e) => Err(e),
                    },
                    Ok(false) => c.pass_on(Cell::relay(body)).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = step {
                    break Err(e);
                }
            }
            Command::Destroy => break Ok(()),
            Command::Padding => {}
            other => {
                break Err(OnionError::Malformed(format!(
                    "{other:?} on an open circuit"
                )));
            }
        }
    };
    c.close().await;
    if result.is_err() {
        let _ = out.send(Out::Destroy).await;
    }
    drop(out);
    drop(c);
    let _ = writer.await;
    result
}

struct Circuit {
    net: NetworkHandle,
    relay: Arc<Relay>,
    prev: PeerId,
    out: mpsc::Sender<Out>,
    next: Option<BufWriter<WriteHalf<Stream>>>,
    upstream: Option<JoinHandle<()>>,
    streams: HashMap<u16, (StreamSlot, JoinHandle<()>)>,
    /// What this hop's handshake binds to (onion services sign it).
    binding: [u8; 32],
    /// This circuit's number in views.
    number: u64,
    /// At a rendezvous point, the other circuit's writer once the two are joined.
    joined: Arc<OnceLock<mpsc::Sender<Out>>>,
    introducing: Option<ServiceId>,
    cookie: Option<Cookie>,
    /// A bandwidth test was answered on this circuit (one is all it gets).
    probed: bool,
    /// The window of what this end sends its client, shared by its streams.
    shared: Shared,
    /// DATA cells from the client, toward its next SENDME.
    received: Received,
    /// Where those SENDMEs go out, ahead of everything else.
    control: Control,
}

impl Circuit {
    /// Sends on what waits in the buffer toward the next hop.
    async fn flush_next(&mut self) -> Result<(), OnionError> {
        if let Some(next) = &mut self.next {
            next.flush().await?;
        }
        Ok(())
    }

    async fn pass_on(&mut self, cell: Cell) -> Result<(), OnionError> {
        if let Some(next) = &mut self.next {
            self.relay.rate.acquire(CELL_LEN).await;
            return write_cell(next, &cell).await;
        }
        match self.joined.get() {
            // A rendezvous point: on along the other circuit.
            Some(other) => other
                .send(Out::Wrap(cell.body))
                .await
                .map_err(|_| OnionError::CircuitClosed),
            // The last hop, and nobody recognized it: changed on the way.
            None => Err(OnionError::Tampered),
        }
    }

    async fn handle(&mut self, m: RelayMsg) -> Result<(), OnionError> {
        if matches!(m.command, RelayCommand::Begin | RelayCommand::BeginOverlay)
            && self
                .relay
                .swallow_begins
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(());
        }
        match m.command {
            RelayCommand::Extend => self.extend(&m.data).await,
            RelayCommand::Begin => self.begin(m.stream, &m.data).await,
            RelayCommand::BeginOverlay => self.begin_overlay(m.stream, &m.data).await,
            RelayCommand::BandwidthTest => self.bandwidth_test(&m.data).await,
            RelayCommand::Data => {
                // Every DATA cell counts toward the window, on whatever stream.
                if self.received.data() && !self.control.sendme() {
                    return Err(OnionError::Malformed("DATA far past the window".into()));
                }
                match self.streams.get(&m.stream) {
                    Some((slot, _)) if !slot.deliver(m.data) => Err(OnionError::Malformed(
                        "DATA past the stream's flow control".into(),
                    )),
                    _ => Ok(()),
                }
            }
            RelayCommand::Sendme if m.stream != 0 || !self.shared.window.sendme() => {
                Err(OnionError::Malformed("SENDME for nothing sent".into()))
            }
            RelayCommand::Sendme => Ok(()),
            RelayCommand::Xon | RelayCommand::Xoff if m.stream == 0 => {
                Err(OnionError::Malformed("XON or XOFF on stream 0".into()))
            }
            RelayCommand::Xon | RelayCommand::Xoff => {
                let go_on = m.command == RelayCommand::Xon;
                self.relay.flow_heard[usize::from(go_on)]
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Some((slot, _)) = self.streams.get(&m.stream) {
                    slot.flow(go_on);
                }
                Ok(())
            }
            RelayCommand::End => {
                // Dropping the slot ends the pump once it has written what came before.
                self.streams.remove(&m.stream);
                Ok(())
            }
            RelayCommand::Drop => Ok(()),
            RelayCommand::EstablishIntro => self.establish_intro(&m.data).await,
            RelayCommand::Introduce1 => self.introduce(m.data).await,
            RelayCommand::EstablishRendezvous => self.establish_rendezvous(&m.data).await,
            RelayCommand::Rendezvous1 => self.rendezvous(&m.data).await,
            RelayCommand::Connected
            | RelayCommand::Extended
            | RelayCommand::IntroEstablished
            | RelayCommand::Introduce2
            | RelayCommand::IntroduceAck
            | RelayCommand::RendezvousEstablished
            | RelayCommand::Rendezvous2 => Err(OnionError::Malformed(format!(
                "{:?} sent toward the exit",
                m.command
            ))),
        }
    }

    /// Onion-service messages go to the last hop only, and one role per circuit.
    fn last_and_unused(&self, what: &str) -> Result<(), OnionError> {
        if self.next.is_some()
            || self.introducing.is_some()
            || self.cookie.is_some()
            || self.joined.get().is_some()
        {
            return Err(OnionError::Malformed(format!("{what} out of turn")));
        }
        Ok(())
    }

    async fn reply(&self, command: RelayCommand, data: Vec<u8>) {
        let _ = self
            .out
            .send(Out::Msg(RelayMsg::new(command, 0, data)))
            .await;
    }

    async fn establish_intro(&mut self, data: &[u8]) -> Result<(), OnionError> {
        self.last_and_unused("ESTABLISH_INTRO")?;
        let service = EstablishIntro::verify(data, &self.binding)?;
        // A newer circuit from the same service replaces the older.
        lock(&self.relay.intros).insert(service, self.out.clone());
        self.introducing = Some(service);
        self.reply(RelayCommand::IntroEstablished, Vec::new()).await;
        Ok(())
    }

    async fn introduce(&mut self, data: Vec<u8>) -> Result<(), OnionError> {
        if self.next.is_some() {
            return Err(OnionError::Malformed("INTRODUCE1 out of turn".into()));
        }
        let service = Introduce::decode(&data)?.service;
        let to = lock(&self.relay.intros).get(&service).cloned();
        // A service slow to read loses the introduction rather than holding this circuit.
        let passed = to.is_some_and(|to| {
            to.try_send(Out::Msg(RelayMsg::new(RelayCommand::Introduce2, 0, data)))
                .is_ok()
        });
        self.reply(RelayCommand::IntroduceAck, vec![u8::from(!passed)])
            .await;
        Ok(())
    }

    async fn establish_rendezvous(&mut self, data: &[u8]) -> Result<(), OnionError> {
        self.last_and_unused("ESTABLISH_RENDEZVOUS")?;
        let cookie: Cookie = data
            .try_into()
            .map_err(|_| OnionError::Malformed("ESTABLISH_RENDEZVOUS length".into()))?;
        {
            let mut waiting = lock(&self.relay.rendezvous);
            if waiting.len() >= MAX_RENDEZVOUS || waiting.contains_key(&cookie) {
                return Err(OnionError::Malformed("rendezvous cookie refused".into()));
            }
            waiting.insert(
                cookie,
                Waiting {
                    out: self.out.clone(),
                    joined: self.joined.clone(),
                },
            );
        }
        self.cookie = Some(cookie);
        self.reply(RelayCommand::RendezvousEstablished, Vec::new())
            .await;
        Ok(())
    }

    async fn rendezvous(&mut self, data: &[u8]) -> Result<(), OnionError> {
        self.last_and_unused("RENDEZVOUS1")?;
        let (cookie, created) = messages::split_rendezvous1(data)?;
        let client = lock(&self.relay.rendezvous)
            .remove(&cookie)
            .ok_or_else(|| OnionError::Malformed("RENDEZVOUS1 with an unknown cookie".into()))?;
        let m = RelayMsg::new(RelayCommand::Rendezvous2, 0, created.to_vec());
        client
            .out
            .send(Out::Msg(m))
            .await
            .map_err(|_| OnionError::CircuitClosed)?;
        let _ = client.joined.set(self.out.clone());
        let _ = self.joined.set(client.out);
        Ok(())
    }

    async fn extend(&mut self, data: &[u8]) -> Result<(), OnionError> {
        if self.next.is_some() {
            return Err(OnionError::Malformed(
                "EXTEND on an extended circuit".into(),
            ));
        }
        let (&len, rest) = data
            .split_first()
            .ok_or_else(|| OnionError::Malformed("empty EXTEND".into()))?;
        let len = len as usize;
        if rest.len() < len + CREATE_LEN {
            return Err(OnionError::Malformed("EXTEND too short".into()));
        }
        let next = PeerId::from_bytes(&rest[..len])
            .map_err(|_| OnionError::Malformed("EXTEND names no peer id".into()))?;
        let create = &rest[len..len + CREATE_LEN];
        let connected = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.connect_next(next, create))
            .await
            .unwrap_or(Err(OnionError::Timeout("the next hop")));
        match connected {
            Ok(created) => {
                self.relay.saw(
                    self.number,
                    View::Extended {
                        prev: self.prev,
                        next,
                    },
                );
                let m = RelayMsg::new(RelayCommand::Extended, 0, created);
                let _ = self.out.send(Out::Msg(m)).await;
                Ok(())
            }
            Err(e) => {
                tracing::debug!(target: "nodus::onion", "extending failed: {e}");
                // EXTENDED with nothing in it: the client learns at once and builds anew.
                let m = RelayMsg::new(RelayCommand::Extended, 0, Vec::new());
                let _ = self.out.send(Out::Msg(m)).await;
                Ok(())
            }
        }
    }

    async fn connect_next(&mut self, next: PeerId, create: &[u8]) -> Result<Vec<u8>, OnionError> {
        if next == self.net.local_peer_id() {
            return Err(OnionError::Malformed("EXTEND to this relay itself".into()));
        }
        let addrs = self.relay.published_addrs(&next);
        // A failure shows as the stream below not opening.
        let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.net.dial_peer_at(next, addrs)).await;
        let mut s = self
            .net
            .open_stream(next, PROTOCOL)
            .await
            .map_err(|e| OnionError::Net(e.to_string()))?;
        write_cell(&mut s, &Cell::new(Command::Create, create)).await?;
        let reply = read_cell(&mut s).await?;
        let created = match reply {
            Some(c) if c.command == Command::Created => c.body[..CREATED_LEN].to_vec(),
            _ => return Err(OnionError::Handshake("the next hop did not answer CREATED")),
        };
        let (r, w) = s.split();
        self.next = Some(link::writer(w));
        self.upstream = Some(tokio::spawn(read_from_next(
            link::reader(r),
            self.out.clone(),
        )));
        Ok(created)
    }

    /// Sends back the DROP cells a client asked for to measure this relay, through the
    /// same writer and limit as all traffic ([`crate::bandwidth`]).
    async fn bandwidth_test(&mut self, data: &[u8]) -> Result<(), OnionError> {
        let cells = <[u8; 4]>::try_from(data)
            .map(u32::from_be_bytes)
            .map_err(|_| OnionError::Malformed("BANDWIDTH_TEST length".into()))?;
        if self.next.is_some() || self.probed || cells > crate::bandwidth::PROBE_CELLS {
            return Err(OnionError::Malformed("BANDWIDTH_TEST out of turn".into()));
        }
        self.probed = true;
        let filler = vec![0u8; crate::cell::RELAY_DATA];
        for _ in 0..cells {
            let m = RelayMsg::new(RelayCommand::Drop, 0, filler.clone());
            if self.out.send(Out::Msg(m)).await.is_err() {
                return Err(OnionError::CircuitClosed);
            }
        }
        Ok(())
    }

    /// A new stream's id, checked: nonzero, not in use, within [`MAX_STREAMS`].
    fn new_stream(&mut self, id: u16) -> Result<(), OnionError> {
        // Streams whose pump ended on its own (the destination closed, END sent).
        self.streams.retain(|_, (_, task)| !task.is_finished());
        if id == 0 || self.streams.contains_key(&id) || self.streams.len() >= MAX_STREAMS {
            return Err(OnionError::Malformed(format!("BEGIN on stream {id}")));
        }
        Ok(())
    }

    async fn refuse(&self, id: u16, reason: EndReason) {
        let _ = self.out.send(Out::Msg(stream::end(id, reason))).await;
    }

    /// Stream `id` to what `connect` reaches, answered CONNECTED or END.
    fn answer<S, F>(&mut self, id: u16, target: String, connect: F)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
        F: std::future::Future<Output = Result<S, EndReason>> + Send + 'static,
    {
        self.relay.saw(
            self.number,
            View::Exit {
                prev: self.prev,
                target,
            },
        );
        let (slot, incoming) = stream::slot(&self.shared);
        let task = tokio::spawn(stream::answer_begin(
            id,
            connect,
            incoming,
            self.out.clone(),
        ));
        self.streams.insert(id, (slot, task));
    }

    async fn begin(&mut self, id: u16, data: &[u8]) -> Result<(), OnionError> {
        self.new_stream(id)?;
        let Some(policy) = self.relay.exit.clone() else {
            self.refuse(id, EndReason::ExitPolicy).await;
            return Ok(());
        };
        let Ok(target) = String::from_utf8(data.to_vec()) else {
            self.refuse(id, EndReason::Misc).await;
            return Ok(());
        };
        let to = target.clone();
        self.answer(id, target, async move { exit::connect(&policy, &to).await });
        Ok(())
    }

    /// A stream to a peer of the overlay, on a protocol this relay opens for circuits:
    /// the peer sees this relay, not the circuit's client.
    async fn begin_overlay(&mut self, id: u16, data: &[u8]) -> Result<(), OnionError> {
        self.new_stream(id)?;
        let Some((peer, protocol)) = crate::client::parse_overlay_target(data) else {
            self.refuse(id, EndReason::Misc).await;
            return Ok(());
        };
        let Some(protocol) = (self.relay.overlay.iter())
            .find(|p| p.as_ref() == protocol)
            .filter(|_| peer != self.net.local_peer_id())
            .cloned()
        else {
            self.refuse(id, EndReason::ExitPolicy).await;
            return Ok(());
        };
        let net = self.net.clone();
        let addrs = self.relay.published_addrs(&peer);
        let target = format!("{peer} {protocol}");
        self.answer(id, target, async move {
            use tokio_util::compat::FuturesAsyncReadCompatExt;
            let open = async {
                // A failure shows as the stream not opening.
                let _ = net.dial_peer_at(peer, addrs).await;
                net.open_stream(peer, protocol).await
            };
            match tokio::time::timeout(OVERLAY_CONNECT_TIMEOUT, open).await {
                Ok(Ok(s)) => Ok(s.compat()),
                _ => Err(EndReason::ConnectFailed),
            }
        });
        Ok(())
    }

    /// Ends the circuit toward both neighbours; the rest is let go in `drop`.
    async fn close(&mut self) {
        self.shared.window.close();
        if let Some(other) = self.joined.get() {
            let _ = other.send(Out::Destroy).await;
        }
        if let Some(mut next) = self.next.take() {
            let _ = write_cell(&mut next, &Cell::new(Command::Destroy, &[0])).await;
            let _ = next.close().await;
        }
    }
}

/// Also when the relay is stopped mid-circuit (its task aborted): nothing of the
/// circuit outlives it, or cells would go on flowing through a relay that is gone.
impl Drop for Circuit {
    fn drop(&mut self) {
        for (_, (_, task)) in self.streams.drain() {
            task.abort();
        }
        if let Some(up) = self.upstream.take() {
            up.abort();
        }
        if let Some(service) = self.introducing.take() {
            let mut intros = lock(&self.relay.intros);
            if intros
                .get(&service)
                .is_some_and(|o| o.same_channel(&self.out))
            {
                intros.remove(&service);
            }
        }
        if let Some(cookie) = self.cookie.take() {
            let mut waiting = lock(&self.relay.rendezvous);
            if waiting
                .get(&cookie)
                .is_some_and(|w| w.out.same_channel(&self.out))
            {
                waiting.remove(&cookie);
            }
        }
        if let Some(other) = self.joined.get() {
            let _ = other.try_send(Out::Destroy);
        }
    }
}

async fn read_from_next(mut r: BufReader<ReadHalf<Stream>>, out: mpsc::Sender<Out>) {
    loop {
        match read_cell(&mut r).await {
            Ok(Some(c)) if c.command == Command::Relay => {
                if out.send(Out::Wrap(c.body)).await.is_err() {
                    return;
                }
            }
            Ok(Some(c)) if c.command == Command::Padding => {}
            _ => {
                let _ = out.send(Out::Destroy).await;
                return;
            }
        }
    }
}

async fn write_toward_client(
    w: WriteHalf<Stream>,
    mut backward: Backward,
    (mut rx, mut control): (mpsc::Receiver<Out>, ControlRx),
    rate: Arc<RateLimiter>,
) {
    let mut w = link::writer(w);
    while let Some(m) = stream::next_out(&mut control, &mut rx, &mut w).await {
        let cell = match m {
            Out::Wrap(mut body) => match backward.wrap(&mut body) {
                Ok(()) => Cell::relay(body),
                Err(_) => break,
            },
            Out::Msg(m) => {
                let Ok(mut body) = m.encode() else { continue };
                match backward.originate(&mut body) {
                    Ok(()) => Cell::relay(body),
                    Err(_) => break,
                }
            }
            Out::Destroy => {
                let _ = write_cell(&mut w, &Cell::new(Command::Destroy, &[0])).await;
                break;
            }
        };
        rate.acquire(CELL_LEN).await;
        if write_cell(&mut w, &cell).await.is_err() {
            break;
        }
    }
    let _ = w.close().await;
}
