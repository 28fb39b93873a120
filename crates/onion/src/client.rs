//! A client's circuit: built hop by hop with one ntor handshake per relay, then carrying
//! streams to the exit. The caller picks the path; each hop is a relay's peer id and
//! the onion key from its signed descriptor.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::io::{ReadHalf, WriteHalf};
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, Stream};
use nodus_net::NetworkHandle;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::cell::{Cell, Command, EndReason, RelayCommand, RelayMsg};
use crate::congestion::{Received, WindowStats};
use crate::layers::{Inbound, Outbound, push_hop, push_hop_reversed};
use crate::link::{self, PROTOCOL, read_cell, write_cell};
use crate::ntor::{ClientHandshake, Keys, binding};
use crate::relay::{HANDSHAKE_TIMEOUT, MAX_STREAMS, relay_id};
use crate::stream::{self, Control, ControlRx, Out, Shared, StreamSlot};
use crate::{OnionError, lock};

/// How long the last hop has to answer BEGIN. An honest one always answers sooner,
/// CONNECTED or END: an exit gives up connecting at [`crate::exit::CONNECT_TIMEOUT`], a
/// relay opening an overlay stream at [`crate::relay::OVERLAY_CONNECT_TIMEOUT`]. So
/// silence past it means a relay of the circuit dropped the BEGIN or the answer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A user's end of a stream buffers this much each way.
const PIPE: usize = 256 << 10;
/// How long a hop asked to extend has to answer: longer than its own wait for the
/// next hop, so that its answer (EXTENDED, empty if it failed) comes first.
pub const EXTEND_WAIT: Duration = Duration::from_secs(2 * HANDSHAKE_TIMEOUT.as_secs());

/// The longest a circuit of `hops` relays can take to build (or fail) on its own.
pub fn longest_build(hops: usize) -> Duration {
    HANDSHAKE_TIMEOUT + EXTEND_WAIT * hops.saturating_sub(1) as u32
}

/// One hop of a path: a relay's peer id and its onion key.
#[derive(Debug, Clone)]
pub struct Hop {
    pub peer: PeerId,
    pub onion_key: [u8; 32],
}

#[derive(Default)]
struct Streams {
    open: HashMap<u16, StreamSlot>,
    waiting: HashMap<u16, oneshot::Sender<Result<(), EndReason>>>,
    probe: Option<Probe>,
}

/// A bandwidth test under way: DROP cells still to come, when the first came, and who
/// waits for the time from the first to the last.
struct Probe {
    left: u32,
    first: Option<Instant>,
    done: Option<oneshot::Sender<Duration>>,
}

/// A built circuit. Dropping it (and every stream on it) ends it.
pub struct Circuit {
    hops: Vec<PeerId>,
    out: mpsc::Sender<Out>,
    streams: Arc<Mutex<Streams>>,
    /// The window this side's DATA goes out within, shared by its streams.
    shared: Shared,
    /// Stream bytes (DATA payload) sent and received.
    traffic: Arc<[AtomicU64; 2]>,
    next_id: AtomicU16,
    closed: Arc<AtomicBool>,
    reader: JoinHandle<()>,
}

impl std::fmt::Debug for Circuit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Circuit")
            .field("hops", &self.hops)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Drop for Circuit {
    fn drop(&mut self) {
        self.reader.abort();
        // Its streams end too (an onion service's connections to its local port would
        // otherwise wait on a circuit nobody reads).
        let mut s = lock(&self.streams);
        s.open.clear();
        s.waiting.clear();
        s.probe = None;
    }
}

/// A circuit before it carries streams: its link to the first hop and the client's
/// layers. Onion services talk to introduction and rendezvous points on one of these
/// before turning it into a [`Circuit`], or never.
pub struct Partial {
    link: Stream,
    out: Outbound,
    inb: Inbound,
    hops: Vec<PeerId>,
    onion_keys: Vec<[u8; 32]>,
    bindings: Vec<[u8; 32]>,
}

impl Partial {
    /// Builds a circuit through `path` (first hop first). A hop that does not answer
    /// within [`HANDSHAKE_TIMEOUT`] is named in [`OnionError::NoAnswer`]: the first hop
    /// for CREATE, else the hop asked to extend, which has [`EXTEND_WAIT`]: an honest
    /// one always answers before that, with an empty EXTENDED if it could not reach the
    /// next hop in its own [`HANDSHAKE_TIMEOUT`]. ([`crate::paths`] stops waiting much
    /// sooner, and judges the build when it ends.)
    pub async fn build(net: &NetworkHandle, path: &[Hop]) -> Result<Partial, OnionError> {
        Partial::build_telling(net, path, |_| {}).await
    }

    /// [`Partial::build`], telling `waiting_on` each relay whose answer it then waits
    /// for (the one [`OnionError::NoAnswer`] would name).
    pub async fn build_telling(
        net: &NetworkHandle,
        path: &[Hop],
        waiting_on: impl Fn(PeerId),
    ) -> Result<Partial, OnionError> {
        let first = path
            .first()
            .ok_or_else(|| OnionError::Malformed("an empty path".into()))?;
        waiting_on(first.peer);
        let mut link = net
            .open_stream(first.peer, PROTOCOL)
            .await
            .map_err(|e| OnionError::Net(e.to_string()))?;
        let (hs, create) = ClientHandshake::start(relay_id(&first.peer), first.onion_key);
        write_cell(&mut link, &Cell::new(Command::Create, &create)).await?;
        let created = expect(&mut link, "CREATED", HANDSHAKE_TIMEOUT)
            .await
            .map_err(|e| no_answer(e, first.peer))?;
        if created.command != Command::Created {
            return Err(OnionError::Handshake(
                "the first hop did not answer CREATED",
            ));
        }
        let keys = hs.finish(&created.body[..])?;
        let mut p = Partial {
            link,
            out: Outbound::default(),
            inb: Inbound::default(),
            hops: vec![first.peer],
            onion_keys: vec![first.onion_key],
            bindings: vec![binding(&keys)],
        };
        push_hop(&mut p.out, &mut p.inb, &keys);
        for hop in &path[1..] {
            let (hs, create) = ClientHandshake::start(relay_id(&hop.peer), hop.onion_key);
            let id = hop.peer.to_bytes();
            let mut data = Vec::with_capacity(1 + id.len() + create.len());
            data.push(id.len() as u8);
            data.extend_from_slice(&id);
            data.extend_from_slice(&create);
            let last = p.last();
            let asked = p.hops[last];
            waiting_on(asked);
            p.send(last, RelayMsg::new(RelayCommand::Extend, 0, data))
                .await?;
            let m = p
                .expect(last, RelayCommand::Extended, EXTEND_WAIT)
                .await
                .map_err(|e| no_answer(e, asked))?;
            if m.data.is_empty() {
                return Err(OnionError::ExtendFailed(hop.peer));
            }
            let keys = hs.finish(&m.data)?;
            push_hop(&mut p.out, &mut p.inb, &keys);
            p.hops.push(hop.peer);
            p.onion_keys.push(hop.onion_key);
            p.bindings.push(binding(&keys));
        }
        Ok(p)
    }

    /// The index of the far end: the last relay, or an onion service joined beyond it.
    pub fn last(&self) -> usize {
        self.out.hops() - 1
    }

    /// The relays, first hop first.
    pub fn hops(&self) -> &[PeerId] {
        &self.hops
    }

    /// Relay `hop`'s onion key, as the path gave it.
    pub fn onion_key(&self, hop: usize) -> [u8; 32] {
        self.onion_keys[hop]
    }

    /// What relay `hop`'s handshake binds to (see [`binding`]).
    pub fn binding(&self, hop: usize) -> Option<[u8; 32]> {
        self.bindings.get(hop).copied()
    }

    /// Sends `m` to hop `to`.
    pub async fn send(&mut self, to: usize, m: RelayMsg) -> Result<(), OnionError> {
        let mut body = m.encode()?;
        self.out.seal(to, &mut body)?;
        write_cell(&mut self.link, &Cell::relay(body)).await
    }

    /// The next message from the circuit and which hop wrote it; within `wait` if given.
    pub async fn recv(&mut self, wait: Option<Duration>) -> Result<(usize, RelayMsg), OnionError> {
        loop {
            let cell = match wait {
                Some(wait) => expect(&mut self.link, "a relay cell", wait).await?,
                None => read_cell(&mut self.link)
                    .await?
                    .ok_or(OnionError::CircuitClosed)?,
            };
            match cell.command {
                Command::Relay => {}
                Command::Padding => continue,
                _ => return Err(OnionError::CircuitClosed),
            }
            let mut body = cell.body;
            let from = self.inb.open(&mut body)?;
            return Ok((from, RelayMsg::decode(&body)?));
        }
    }

    /// The next message, which must be `command` from hop `from`.
    pub async fn expect(
        &mut self,
        from: usize,
        command: RelayCommand,
        wait: Duration,
    ) -> Result<RelayMsg, OnionError> {
        let (hop, m) = self.recv(Some(wait)).await.map_err(|e| match e {
            OnionError::CircuitClosed => OnionError::Handshake("the circuit was destroyed"),
            e => e,
        })?;
        if hop != from || m.command != command {
            return Err(OnionError::Malformed(format!(
                "{:?} from hop {hop} while waiting for {command:?}",
                m.command
            )));
        }
        Ok(m)
    }

    /// A client's side of a rendezvous: the onion service's layer, one beyond the
    /// rendezvous point.
    pub fn join_service(&mut self, keys: &Keys) {
        push_hop(&mut self.out, &mut self.inb, keys);
    }

    /// An onion service's side of a rendezvous: the client's layer, the other way round.
    pub fn join_client(&mut self, keys: &Keys) {
        push_hop_reversed(&mut self.out, &mut self.inb, keys);
    }

    /// A circuit that carries streams: opened by this side ([`Role::Client`]), or by the
    /// far side to a local port ([`Role::Service`]).
    pub fn into_circuit(self, role: Role) -> Circuit {
        let last = self.last();
        let (r, w) = self.link.split();
        let (tx, rx) = mpsc::channel(64);
        let traffic: Arc<[AtomicU64; 2]> = Arc::default();
        let (control, control_rx) = stream::control();
        tokio::spawn(write_into_circuit(
            w,
            self.out,
            last,
            (rx, control_rx),
            traffic.clone(),
        ));
        let streams = Arc::new(Mutex::new(Streams::default()));
        let closed = Arc::new(AtomicBool::new(false));
        let shared = Shared::default();
        let reader = tokio::spawn(read_from_circuit(
            r,
            self.inb,
            last,
            role,
            (streams.clone(), shared.clone(), traffic.clone(), control),
            closed.clone(),
            tx.clone(),
        ));
        Circuit {
            hops: self.hops,
            out: tx,
            streams,
            shared,
            traffic,
            next_id: AtomicU16::new(1),
            closed,
            reader,
        }
    }
}

/// Who opens streams on a circuit.
#[derive(Debug, Clone)]
pub enum Role {
    /// This side; the far end (an exit, an onion service) answers.
    Client,
    /// The far side, an onion service's client: its streams to `port` reach `target`.
    Service { port: u16, target: SocketAddr },
}

impl Circuit {
    /// Builds a circuit through `path` (first hop first) for this side's streams.
    pub async fn build(net: &NetworkHandle, path: &[Hop]) -> Result<Circuit, OnionError> {
        Ok(Partial::build(net, path).await?.into_circuit(Role::Client))
    }

    /// The relays of this circuit, first hop first.
    pub fn hops(&self) -> &[PeerId] {
        &self.hops
    }

    /// The congestion window of what this side sends ([`crate::congestion`]).
    pub fn window(&self) -> WindowStats {
        self.shared.window.stats()
    }

    /// Stream bytes sent and received on this circuit so far.
    pub fn traffic(&self) -> (u64, u64) {
        let [sent, received] = &*self.traffic;
        (
            sent.load(Ordering::Relaxed),
            received.load(Ordering::Relaxed),
        )
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Ends the circuit (DESTROY toward the first hop), streams and all.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        let _ = self.out.try_send(Out::Destroy);
    }

    /// Streams open or being opened on it.
    pub fn open_streams(&self) -> usize {
        let s = lock(&self.streams);
        s.open.len() + s.waiting.len()
    }

    /// Opens a stream to `target` (`host:port`) through the exit: the user's end of it.
    pub async fn connect(&self, target: &str) -> Result<tokio::io::DuplexStream, OnionError> {
        self.open(RelayCommand::Begin, target.as_bytes().to_vec())
            .await
    }

    /// Opens a stream to overlay peer `peer` on `protocol`, from the last hop (which
    /// must open that protocol for circuits): the user's end of it.
    pub async fn connect_peer(
        &self,
        peer: &PeerId,
        protocol: &str,
    ) -> Result<tokio::io::DuplexStream, OnionError> {
        self.open(RelayCommand::BeginOverlay, overlay_target(peer, protocol)?)
            .await
    }

    async fn open(
        &self,
        command: RelayCommand,
        data: Vec<u8>,
    ) -> Result<tokio::io::DuplexStream, OnionError> {
        if self.is_closed() {
            return Err(OnionError::CircuitClosed);
        }
        let id = loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                break id;
            }
        };
        let (slot, incoming) = stream::slot(&self.shared);
        let (told, answer) = oneshot::channel();
        {
            let mut s = lock(&self.streams);
            s.open.insert(id, slot);
            s.waiting.insert(id, told);
        }
        let begin = RelayMsg::new(command, id, data);
        self.out
            .send(Out::Msg(begin))
            .await
            .map_err(|_| OnionError::CircuitClosed)?;
        let answer = tokio::time::timeout(CONNECT_TIMEOUT, answer).await;
        let refused = match answer {
            Ok(Ok(Ok(()))) => None,
            Ok(Ok(Err(reason))) => Some(OnionError::StreamRefused(reason)),
            Ok(Err(_)) => Some(OnionError::CircuitClosed),
            Err(_) => Some(OnionError::StreamUnanswered),
        };
        if let Some(e) = refused {
            lock(&self.streams).open.remove(&id);
            return Err(e);
        }
        let (user, ours) = tokio::io::duplex(PIPE);
        let (out, streams) = (self.out.clone(), self.streams.clone());
        tokio::spawn(async move {
            stream::pump(id, ours, incoming, out).await;
            lock(&streams).open.remove(&id);
        });
        Ok(user)
    }
}

impl Circuit {
    /// Asks the last hop for `cells` DROP cells and times them from the first to the
    /// last ([`crate::bandwidth`]); once per circuit.
    pub async fn probe(&self, cells: u32, wait: Duration) -> Result<Duration, OnionError> {
        let cells = cells.clamp(2, crate::bandwidth::PROBE_CELLS);
        let (done, took) = oneshot::channel();
        {
            let mut s = lock(&self.streams);
            if s.probe.is_some() {
                return Err(OnionError::BadRequest("one probe per circuit".into()));
            }
            s.probe = Some(Probe {
                left: cells,
                first: None,
                done: Some(done),
            });
        }
        let m = RelayMsg::new(RelayCommand::BandwidthTest, 0, cells.to_be_bytes().to_vec());
        self.out
            .send(Out::Msg(m))
            .await
            .map_err(|_| OnionError::CircuitClosed)?;
        match tokio::time::timeout(wait, took).await {
            Ok(Ok(d)) => Ok(d),
            Ok(Err(_)) => Err(OnionError::CircuitClosed),
            Err(_) => Err(OnionError::Timeout("the bandwidth test")),
        }
    }
}

/// BEGIN_OVERLAY's data: `peer` (length u8 | bytes), then `protocol`.
pub fn overlay_target(peer: &PeerId, protocol: &str) -> Result<Vec<u8>, OnionError> {
    let id = peer.to_bytes();
    let mut data = Vec::with_capacity(1 + id.len() + protocol.len());
    data.push(id.len() as u8);
    data.extend_from_slice(&id);
    data.extend_from_slice(protocol.as_bytes());
    if data.len() > crate::cell::RELAY_DATA || !protocol.starts_with('/') {
        return Err(OnionError::BadRequest(format!(
            "{protocol:?} is not a stream protocol to ask a relay for"
        )));
    }
    Ok(data)
}

/// Reads [`overlay_target`]'s data back: the peer and the protocol.
pub fn parse_overlay_target(data: &[u8]) -> Option<(PeerId, &str)> {
    let (&len, rest) = data.split_first()?;
    let id = rest.get(..len as usize)?;
    let protocol = std::str::from_utf8(&rest[len as usize..]).ok()?;
    if !protocol.starts_with('/') {
        return None;
    }
    Some((PeerId::from_bytes(id).ok()?, protocol))
}

/// A timeout while building is the named hop's.
fn no_answer(e: OnionError, hop: PeerId) -> OnionError {
    match e {
        OnionError::Timeout(_) => OnionError::NoAnswer(hop),
        e => e,
    }
}

async fn expect(s: &mut Stream, what: &'static str, wait: Duration) -> Result<Cell, OnionError> {
    tokio::time::timeout(wait, read_cell(s))
        .await
        .map_err(|_| OnionError::Timeout(what))??
        .ok_or(OnionError::CircuitClosed)
}

async fn write_into_circuit(
    w: WriteHalf<Stream>,
    mut layers: Outbound,
    last: usize,
    (mut rx, mut control): (mpsc::Receiver<Out>, ControlRx),
    traffic: Arc<[AtomicU64; 2]>,
) {
    let mut w = link::writer(w);
    while let Some(m) = stream::next_out(&mut control, &mut rx, &mut w).await {
        let cell = match m {
            Out::Msg(m) => {
                if m.command == RelayCommand::Data {
                    traffic[0].fetch_add(m.data.len() as u64, Ordering::Relaxed);
                }
                let Ok(mut body) = m.encode() else { continue };
                if layers.seal(last, &mut body).is_err() {
                    break;
                }
                Cell::relay(body)
            }
            Out::Wrap(_) => continue,
            Out::Destroy => {
                let _ = write_cell(&mut w, &Cell::new(Command::Destroy, &[0])).await;
                break;
            }
        };
        if write_cell(&mut w, &cell).await.is_err() {
            break;
        }
    }
    let _ = w.close().await;
}

async fn read_from_circuit(
    r: ReadHalf<Stream>,
    mut layers: Inbound,
    last: usize,
    role: Role,
    (streams, shared, traffic, control): (
        Arc<Mutex<Streams>>,
        Shared,
        Arc<[AtomicU64; 2]>,
        Control,
    ),
    closed: Arc<AtomicBool>,
    out: mpsc::Sender<Out>,
) {
    let mut received = Received::default();
    let mut r = link::reader(r);
    let why: OnionError = loop {
        let cell = match read_cell(&mut r).await {
            Ok(Some(c)) => c,
            Ok(None) => break OnionError::CircuitClosed,
            Err(e) => break e,
        };
        match cell.command {
            Command::Relay => {}
            Command::Padding => continue,
            _ => break OnionError::CircuitClosed,
        }
        let mut body = cell.body;
        let m = match layers.open(&mut body).and_then(|from| {
            if from == last {
                RelayMsg::decode(&body)
            } else {
                Err(OnionError::Malformed(format!("a message from hop {from}")))
            }
        }) {
            Ok(m) => m,
            Err(e) => break e,
        };
        let mut sendme_due = false;
        let fault = {
            let mut s = lock(&streams);
            match (m.command, &role) {
                (RelayCommand::Connected, Role::Client) => {
                    if let Some(told) = s.waiting.remove(&m.stream) {
                        let _ = told.send(Ok(()));
                    }
                    false
                }
                (RelayCommand::Begin, Role::Service { port, target }) => {
                    let id = m.stream;
                    if id == 0 || s.open.contains_key(&id) || s.open.len() >= MAX_STREAMS {
                        true
                    } else {
                        let (slot, incoming) = stream::slot(&shared);
                        s.open.insert(id, slot);
                        let (port, target) = (*port, *target);
                        let asked = crate::exit::parse_target(&String::from_utf8_lossy(&m.data));
                        let connect = async move {
                            match asked {
                                Some((_, p)) if p == port => TcpStream::connect(target)
                                    .await
                                    .map_err(|_| EndReason::ConnectFailed),
                                _ => Err(EndReason::ExitPolicy),
                            }
                        };
                        let (out, streams) = (out.clone(), streams.clone());
                        tokio::spawn(async move {
                            stream::answer_begin(id, connect, incoming, out).await;
                            lock(&streams).open.remove(&id);
                        });
                        false
                    }
                }
                (RelayCommand::End, _) => {
                    let reason = EndReason::from_byte(m.data.first().copied().unwrap_or(0));
                    if let Some(told) = s.waiting.remove(&m.stream) {
                        let _ = told.send(Err(reason));
                    }
                    s.open.remove(&m.stream);
                    false
                }
                (RelayCommand::Data, _) => {
                    // Every DATA cell counts toward the window, on whatever stream.
                    sendme_due = received.data();
                    traffic[1].fetch_add(m.data.len() as u64, Ordering::Relaxed);
                    s.open
                        .get(&m.stream)
                        .is_some_and(|slot| !slot.deliver(m.data))
                }
                (RelayCommand::Sendme, _) => m.stream != 0 || !shared.window.sendme(),
                (RelayCommand::Xon | RelayCommand::Xoff, _) => {
                    if let Some(slot) = s.open.get(&m.stream) {
                        slot.flow(m.command == RelayCommand::Xon);
                    }
                    m.stream == 0
                }
                (RelayCommand::Drop, _) => {
                    if let Some(p) = s.probe.as_mut().filter(|p| p.left > 0) {
                        let first = *p.first.get_or_insert_with(Instant::now);
                        p.left -= 1;
                        if p.left == 0
                            && let Some(done) = p.done.take()
                        {
                            let _ = done.send(first.elapsed());
                        }
                    }
                    false
                }
                _ => true,
            }
        };
        if fault {
            break OnionError::Malformed(format!("{:?} out of turn from the far end", m.command));
        }
        if sendme_due && !control.sendme() {
            break OnionError::Malformed("DATA far past the window".into());
        }
    };
    shared.window.close();
    tracing::debug!(target: "nodus::onion", "circuit ended: {why}");
    closed.store(true, Ordering::Relaxed);
    {
        let mut s = lock(&streams);
        s.open.clear();
        s.waiting.clear();
        s.probe = None;
    }
    let _ = out.send(Out::Destroy).await;
}
