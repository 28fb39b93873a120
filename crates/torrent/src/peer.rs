//! One connection to a BitTorrent peer, in three tasks: the reader (this module's main
//! loop: decodes messages, picks blocks, talks to the torrent), the writer (the only one
//! that writes to the socket: control messages first, then piece data), and the
//! uploader (reads requested blocks from disk). The reader never waits on the socket
//! being written, so two peers uploading to each other cannot deadlock; a peer that
//! does not read what we send fills a bounded queue and is disconnected.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

use crate::bitfield::Bitfield;
use crate::mse::{MseStream, Policy};
use crate::picker::{BlockRef, PeerKey};
use crate::torrent::{PeerCmd, Torrent};
use crate::wire::{self, ExtHandshake, Handshake, Message, MetadataMsg, Pex, reserved};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A peer silent for this long is dropped.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Requests without an answer for this long are given to other peers.
const SNUB_TIMEOUT: Duration = Duration::from_secs(30);
const KEEPALIVE: Duration = Duration::from_secs(60);
/// Control messages queued for the writer; a peer that lets this fill is not reading.
const CONTROL_QUEUE: usize = 4096;
/// Requests from a peer we queue at most (we advertise this as `reqq`).
const MAX_QUEUED_REQUESTS: usize = 500;

/// How a connection came about and what it runs over.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Link {
    pub incoming: bool,
    /// RC4 (MSE) rather than plain.
    pub encrypted: bool,
    /// uTP rather than TCP.
    pub utp: bool,
}

/// Dials `addr` and runs the connection until it ends: over TCP, then over uTP when
/// TCP gets nowhere; each through MSE unless `[torrent] encryption = "off"`, and plain
/// after an MSE attempt the peer refused when the policy is "prefer".
pub(crate) async fn connect(t: Arc<Torrent>, addr: SocketAddr) {
    if let Some((stream, theirs)) = attempts(&t, addr, || dial_tcp(&t, addr)).await {
        let link = Link {
            incoming: false,
            encrypted: stream.is_encrypted(),
            utp: false,
        };
        return run(t, stream, addr, theirs, link).await;
    }
    let Some(utp) = t.shared.utp.get().cloned() else {
        return;
    };
    let dial_utp = || {
        let utp = utp.clone();
        async move {
            tokio::time::timeout(CONNECT_TIMEOUT, utp.connect(addr))
                .await
                .ok()?
                .ok()
        }
    };
    if let Some((stream, theirs)) = attempts(&t, addr, dial_utp).await {
        let link = Link {
            incoming: false,
            encrypted: stream.is_encrypted(),
            utp: true,
        };
        run(t, stream, addr, theirs, link).await;
    }
}

/// Handshakes over connections `dial` opens: MSE first (unless off), plain second
/// (in "prefer"). None if no attempt gives a handshake for this torrent.
async fn attempts<S, D, F>(
    t: &Arc<Torrent>,
    addr: SocketAddr,
    dial: D,
) -> Option<(MseStream<S>, Handshake)>
where
    S: AsyncRead + AsyncWrite + Unpin,
    D: Fn() -> F,
    F: std::future::Future<Output = Option<S>>,
{
    let policy = t.shared.config.encryption;
    let tries: &[bool] = match policy {
        Policy::Off => &[false],
        Policy::Prefer => &[true, false],
        Policy::Require => &[true],
    };
    let mut opened = None;
    for &encrypted in tries {
        let stream = dial().await?;
        match handshake(t, stream, encrypted).await {
            Ok(o) => {
                opened = Some(o);
                break;
            }
            // Only a peer that turned MSE down is worth a plain try. One that completed
            // MSE and then closed (a second link to a peer we already have, say) would
            // otherwise be redialed in the clear.
            Err(Failed::Mse) => continue,
            Err(Failed::After) => return None,
        }
    }
    let (stream, theirs) = opened?;
    if !t.hashes.matches(&theirs.info_hash) || theirs.peer_id == t.shared.peer_id {
        tracing::trace!(target: "nodus::torrent", %addr, "handshake for another torrent or ourselves");
        return None;
    }
    Some((stream, theirs))
}

async fn dial_tcp(t: &Arc<Torrent>, addr: SocketAddr) -> Option<TcpStream> {
    let dial = async {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = t.shared.bind_ip.filter(|ip| ip.is_ipv4() == addr.is_ipv4()) {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        socket.connect(addr).await
    };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, dial)
        .await
        .ok()?
        .ok()?;
    let _ = stream.set_nodelay(true);
    Some(stream)
}

/// Why an outgoing handshake failed: during MSE (the peer may not speak it), or after.
enum Failed {
    Mse,
    After,
}

/// Exchanges handshakes over `stream`, inside MSE when `encrypted`.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    t: &Arc<Torrent>,
    stream: S,
    encrypted: bool,
) -> Result<(MseStream<S>, Handshake), Failed> {
    let ours = Handshake {
        reserved: reserved::ours(t.shared.dht.get().is_some()),
        info_hash: t.hashes.wire_id(),
        peer_id: t.shared.peer_id,
    };
    let exchange = async {
        let mut stream = if encrypted {
            let policy = t.shared.config.encryption;
            crate::mse::initiate(stream, t.hashes.wire_id(), &ours.encode(), policy)
                .await
                .map_err(|e| {
                    tracing::debug!(target: "nodus::torrent", "MSE handshake failed: {e}");
                    Failed::Mse
                })?
        } else {
            let mut s = MseStream::plain(stream, Vec::new());
            s.write_all(&ours.encode())
                .await
                .map_err(|_| Failed::After)?;
            s.flush().await.map_err(|_| Failed::After)?;
            s
        };
        let theirs = read_handshake(&mut stream)
            .await
            .map_err(|_| Failed::After)?;
        Ok((stream, theirs))
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange)
        .await
        .unwrap_or(Err(if encrypted {
            Failed::Mse
        } else {
            Failed::After
        }))
}

pub(crate) async fn read_handshake<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<Handshake> {
    let mut buf = [0u8; wire::HANDSHAKE_LEN];
    s.read_exact(&mut buf).await?;
    Handshake::decode(&buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

enum Out {
    Msg(Message),
}

struct Conn {
    t: Arc<Torrent>,
    key: PeerKey,
    fast: bool,
    ext: bool,
    /// The peer runs a DHT node (reserved bit); we tell it ours with a PORT message.
    dht_peer: bool,
    /// Its DHT node was pinged already: one ping per connection, however many PORTs.
    port_taken: bool,
    addr: SocketAddr,
    ctrl: mpsc::Sender<Out>,
    uploads: mpsc::Sender<BlockRef>,
    their_bits: Option<Bitfield>,
    /// A bitfield (or have-all) that came before we knew the torrent's size; `Have`s
    /// before then set bits in it in place.
    pending_bits: Option<Vec<u8>>,
    pending_have_all: bool,
    their_ext: ExtHandshake,
    peer_choking: bool,
    am_interested: bool,
    /// Blocks asked for and not yet received, with when they were asked for.
    inflight: HashMap<(u32, u32), (BlockRef, Instant)>,
    last_block: Instant,
    pipeline: usize,
}

impl Conn {
    fn send(&self, m: Message) -> Result<(), ()> {
        self.ctrl.try_send(Out::Msg(m)).map_err(|_| ())
    }

    /// Asks this peer for piece-layer hashes the torrent still lacks (BEP 52), a few
    /// requests at a time; the torrent keeps any one request with one peer.
    fn ask_hashes(&self) -> Result<(), ()> {
        for _ in 0..4 {
            let Some(r) = self.t.next_hash_request() else {
                break;
            };
            self.send(Message::HashRequest(r))?;
        }
        Ok(())
    }

    /// Sets the peer's pieces once the torrent's size is known (a second bitfield is
    /// ignored).
    fn apply_bits(&mut self) -> Result<(), ()> {
        if self.their_bits.is_some() {
            return Ok(());
        }
        let Some(n) = self.t.metadata().map(|m| m.info.num_pieces) else {
            return Ok(());
        };
        let bits = if self.pending_have_all {
            Bitfield::full(n)
        } else if let Some(raw) = self.pending_bits.take() {
            Bitfield::from_bytes(&raw, n).ok_or(())?
        } else {
            Bitfield::new(n)
        };
        self.pending_have_all = false;
        self.t.mark_seed(self.key, bits.is_full());
        self.t.on_bitfield(&bits);
        self.their_bits = Some(bits);
        self.update_interest()
    }

    fn update_interest(&mut self) -> Result<(), ()> {
        let Some(bits) = &self.their_bits else {
            return Ok(());
        };
        let want = self.t.interesting(bits);
        if want != self.am_interested {
            self.am_interested = want;
            self.send(if want {
                Message::Interested
            } else {
                Message::NotInterested
            })?;
        }
        self.refill()
    }

    fn refill(&mut self) -> Result<(), ()> {
        if self.peer_choking || !self.am_interested {
            return Ok(());
        }
        let Some(bits) = &self.their_bits else {
            return Ok(());
        };
        let cap = self
            .their_ext
            .reqq
            .map_or(self.pipeline, |q| (q as usize).min(self.pipeline));
        if self.inflight.len() * 4 > cap * 3 {
            return Ok(());
        }
        let want = cap - self.inflight.len();
        let blocks = self.t.pick(self.key, bits, want);
        if blocks.is_empty() && self.inflight.is_empty() {
            return self.update_interest_only();
        }
        if self.inflight.is_empty() {
            self.last_block = Instant::now();
        }
        let now = Instant::now();
        for b in blocks {
            self.inflight.insert((b.index, b.begin), (b, now));
            self.send(Message::Request {
                index: b.index,
                begin: b.begin,
                length: b.length,
            })?;
        }
        Ok(())
    }

    fn update_interest_only(&mut self) -> Result<(), ()> {
        if let Some(bits) = &self.their_bits
            && self.am_interested
            && !self.t.interesting(bits)
        {
            self.am_interested = false;
            self.send(Message::NotInterested)?;
        }
        Ok(())
    }

    fn release_all(&mut self) {
        let blocks: Vec<BlockRef> = self.inflight.drain().map(|(_, (b, _))| b).collect();
        self.t.release(self.key, blocks);
    }

    /// Handles one message; Err closes the connection.
    fn on_message(&mut self, m: Message) -> Result<(), ()> {
        match m {
            Message::KeepAlive | Message::Unknown(_) | Message::Suggest(_) => {}
            Message::HashRequest(r) => match self.t.answer_hashes(&r) {
                Some(hashes) => self.send(Message::Hashes(r, hashes))?,
                None => self.send(Message::HashReject(r))?,
            },
            Message::Hashes(r, hashes) => {
                if !self.t.on_hashes(&r, &hashes) {
                    tracing::debug!(target: "nodus::torrent", addr = %self.addr, "hashes that do not prove out");
                    return Err(());
                }
                self.ask_hashes()?;
            }
            Message::HashReject(r) => self.t.hashes_rejected(&r),
            // BEP 5: the peer's DHT node; it joins our routing table if it answers a ping.
            Message::Port(port) => {
                if let (Some(dht), IpAddr::V4(ip), false) =
                    (self.t.shared.dht.get(), self.addr.ip(), self.port_taken)
                {
                    self.port_taken = true;
                    dht.add_node(SocketAddrV4::new(ip, port));
                }
            }
            Message::AllowedFast(_) => {}
            Message::Choke => {
                self.peer_choking = true;
                self.release_all();
            }
            Message::Unchoke => {
                self.peer_choking = false;
                self.refill()?;
            }
            Message::Interested => {
                if self.t.set_interested(self.key, true) {
                    self.send(Message::Unchoke)?;
                }
            }
            Message::NotInterested => {
                self.t.set_interested(self.key, false);
            }
            Message::Have(i) => match &mut self.their_bits {
                Some(bits) => {
                    if i >= bits.len() {
                        return Err(());
                    }
                    let new = bits.set(i);
                    let full = bits.is_full();
                    if full {
                        self.t.mark_seed(self.key, true);
                    }
                    if new && self.t.on_have(i) && !self.am_interested {
                        self.am_interested = true;
                        self.send(Message::Interested)?;
                    }
                    self.refill()?;
                }
                None => note_early_have(&mut self.pending_bits, i)?,
            },
            Message::Bitfield(raw) => {
                self.pending_bits = Some(raw.to_vec());
                self.apply_bits()?;
            }
            Message::HaveAll if self.fast => {
                self.pending_have_all = true;
                self.apply_bits()?;
            }
            Message::HaveNone if self.fast => {
                self.pending_bits = None;
                self.apply_bits()?;
            }
            Message::HaveAll | Message::HaveNone => return Err(()),
            Message::Request {
                index,
                begin,
                length,
            } => {
                let r = BlockRef {
                    index,
                    begin,
                    length,
                };
                let valid = length > 0
                    && length <= wire::MAX_REQUEST
                    && self.t.metadata().is_some_and(|m| {
                        index < m.info.num_pieces
                            && begin as u64 + length as u64 <= m.info.piece_len(index)
                    });
                if !valid {
                    return Err(());
                }
                let refused = self.t.am_choking(self.key)
                    || !self.t.have_piece(index)
                    || self.uploads.try_send(r).is_err();
                if refused && self.fast {
                    self.send(Message::Reject {
                        index,
                        begin,
                        length,
                    })?;
                }
            }
            Message::Piece { index, begin, data } => {
                let asked = self.inflight.remove(&(index, begin)).map(|(_, at)| at);
                if asked.is_some() {
                    self.last_block = Instant::now();
                }
                let latency = asked.map(|at| at.elapsed());
                if let Some(piece) = self.t.on_block(self.key, index, begin, &data, latency) {
                    let t = self.t.clone();
                    tokio::spawn(async move { t.verify_and_store(piece).await });
                }
                self.refill()?;
            }
            Message::Cancel { .. } => {}
            Message::Reject { index, begin, .. } => {
                if let Some((b, _)) = self.inflight.remove(&(index, begin)) {
                    self.t.release(self.key, vec![b]);
                }
            }
            Message::Extended { id, payload } => self.on_extended(id, payload)?,
        }
        Ok(())
    }

    fn on_extended(&mut self, id: u8, payload: Bytes) -> Result<(), ()> {
        match id {
            0 => {
                let h = ExtHandshake::decode(&payload).map_err(|_| ())?;
                self.t
                    .set_peer_info(self.key, h.client.clone(), h.listen_port);
                self.their_ext = h;
                self.request_metadata()?;
            }
            wire::UT_METADATA => match MetadataMsg::decode(&payload).map_err(|_| ())? {
                MetadataMsg::Request(piece) => {
                    let Some(theirs) = self.their_ext.ut_metadata else {
                        return Ok(());
                    };
                    let reply = match self.t.metadata_piece(piece) {
                        Some((total_size, data)) => MetadataMsg::Data {
                            piece,
                            total_size,
                            data,
                        },
                        None => MetadataMsg::Reject(piece),
                    };
                    self.send(Message::Extended {
                        id: theirs,
                        payload: reply.encode(),
                    })?;
                }
                MetadataMsg::Data {
                    piece,
                    total_size,
                    data,
                } => match self.t.on_metadata_piece(piece, total_size, data) {
                    Some(false) => return Err(()),
                    Some(true) => self.apply_bits()?,
                    None => {}
                },
                MetadataMsg::Reject(_) => {}
            },
            wire::UT_PEX => {
                if let Ok(p) = Pex::decode(&payload) {
                    self.t.add_peers(&p.added);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn request_metadata(&mut self) -> Result<(), ()> {
        let (Some(theirs), Some(size)) = (self.their_ext.ut_metadata, self.their_ext.metadata_size)
        else {
            return Ok(());
        };
        for piece in self.t.metadata_wanted(size) {
            self.send(Message::Extended {
                id: theirs,
                payload: MetadataMsg::Request(piece).encode(),
            })?;
        }
        Ok(())
    }

    fn on_cmd(&mut self, cmd: PeerCmd) -> Result<(), ()> {
        match cmd {
            PeerCmd::Have(i) => {
                self.send(Message::Have(i))?;
                self.update_interest_only()?;
            }
            PeerCmd::Choke => self.send(Message::Choke)?,
            PeerCmd::Unchoke => self.send(Message::Unchoke)?,
            PeerCmd::Refill => self.update_interest()?,
            PeerCmd::MetadataReady => {
                self.apply_bits()?;
                self.ask_hashes()?;
            }
            PeerCmd::Cancel(b) => {
                if self.inflight.remove(&(b.index, b.begin)).is_some() {
                    self.send(Message::Cancel {
                        index: b.index,
                        begin: b.begin,
                        length: b.length,
                    })?;
                }
            }
            PeerCmd::Pex(addrs) => {
                if let Some(id) = self.their_ext.ut_pex {
                    let payload = Pex {
                        added: addrs,
                        dropped: Vec::new(),
                    }
                    .encode();
                    self.send(Message::Extended { id, payload })?;
                }
            }
            PeerCmd::Close => return Err(()),
        }
        Ok(())
    }
}

/// Runs an established connection (handshakes done) until it ends.
pub(crate) async fn run<S>(
    t: Arc<Torrent>,
    stream: S,
    addr: SocketAddr,
    theirs: Handshake,
    link: Link,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (cmd_tx, mut cmd_rx) = mpsc::channel::<PeerCmd>(1024);
    let Some(key) = t.register(addr, link, cmd_tx) else {
        return;
    };
    t.shared.metrics.peers_connected.inc();
    let (mut rd, wr) = tokio::io::split(stream);
    let (ctrl_tx, ctrl_rx) = mpsc::channel::<Out>(CONTROL_QUEUE);
    let (data_tx, data_rx) = mpsc::channel::<Message>(64);
    let (up_tx, up_rx) = mpsc::channel::<BlockRef>(MAX_QUEUED_REQUESTS);
    let writer = tokio::spawn(write_loop(wr, ctrl_rx, data_rx));
    let fast = reserved::has(&theirs.reserved, reserved::FAST);
    let uploader = tokio::spawn(upload_loop(
        t.clone(),
        key,
        fast,
        up_rx,
        data_tx,
        ctrl_tx.clone(),
    ));

    let mut c = Conn {
        t: t.clone(),
        key,
        fast,
        ext: reserved::has(&theirs.reserved, reserved::EXTENSION),
        dht_peer: reserved::has(&theirs.reserved, reserved::DHT),
        port_taken: false,
        addr,
        ctrl: ctrl_tx,
        uploads: up_tx,
        their_bits: None,
        pending_bits: None,
        pending_have_all: false,
        their_ext: ExtHandshake::default(),
        peer_choking: true,
        am_interested: false,
        inflight: HashMap::new(),
        last_block: Instant::now(),
        pipeline: t.shared.config.pipeline.max(4),
    };
    let _ = greet(&c);
    let mut rbuf = BytesMut::with_capacity(64 * 1024);
    let mut last_recv = Instant::now();
    let mut last_keepalive = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let reason: &str = loop {
        tokio::select! {
            n = rd.read_buf(&mut rbuf) => {
                match n {
                    Ok(0) | Err(_) => break "closed",
                    Ok(n) => t.shared.down_limit.acquire(n).await,
                }
                last_recv = Instant::now();
                let mut failed = false;
                loop {
                    match Message::decode(&mut rbuf) {
                        Ok(Some(m)) => {
                            if c.on_message(m).is_err() {
                                failed = true;
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::debug!(target: "nodus::torrent", %addr, "bad message: {e}");
                            t.shared.metrics.bad_messages.inc();
                            failed = true;
                            break;
                        }
                    }
                }
                if failed {
                    break "protocol error";
                }
            }
            cmd = cmd_rx.recv() => {
                let Some(cmd) = cmd else { break "dropped" };
                if c.on_cmd(cmd).is_err() {
                    break "closed by us";
                }
            }
            _ = tick.tick() => {
                if last_recv.elapsed() > IDLE_TIMEOUT {
                    break "idle";
                }
                if !c.inflight.is_empty() && c.last_block.elapsed() > SNUB_TIMEOUT {
                    c.release_all();
                }
                if last_keepalive.elapsed() > KEEPALIVE {
                    last_keepalive = Instant::now();
                    if c.send(Message::KeepAlive).is_err() {
                        break "not reading";
                    }
                }
                if c.refill().is_err() || c.ask_hashes().is_err() {
                    break "not reading";
                }
            }
        }
    };
    tracing::debug!(target: "nodus::torrent", %addr, reason, "peer disconnected");
    let inflight: Vec<BlockRef> = c.inflight.drain().map(|(_, (b, _))| b).collect();
    t.unregister(key, c.their_bits.as_ref(), inflight);
    t.shared.metrics.peers_connected.dec();
    uploader.abort();
    drop(c);
    let _ = writer.await;
}

/// The first messages: extension handshake, then what we have.
fn greet(c: &Conn) -> Result<(), ()> {
    if c.ext {
        let h = ExtHandshake {
            ut_metadata: Some(wire::UT_METADATA),
            ut_pex: Some(wire::UT_PEX),
            metadata_size: c.t.metadata_size(),
            listen_port: c.t.shared.listen_addr().map(|a| a.port()),
            client: Some(concat!("nodus ", env!("CARGO_PKG_VERSION")).to_string()),
            reqq: Some(MAX_QUEUED_REQUESTS as u32),
        };
        c.send(Message::Extended {
            id: 0,
            payload: h.encode(),
        })?;
    }
    if let Some(dht) = c.t.shared.dht.get().filter(|_| c.dht_peer) {
        c.send(Message::Port(dht.local_addr().port()))?;
    }
    match c.t.have_bits() {
        Some(bits) if c.fast && bits.is_full() => c.send(Message::HaveAll),
        Some(bits) if c.fast && bits.count() == 0 => c.send(Message::HaveNone),
        Some(bits) => c.send(Message::Bitfield(Bytes::copy_from_slice(bits.as_bytes()))),
        None if c.fast => c.send(Message::HaveNone),
        None => Ok(()),
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut ctrl: mpsc::Receiver<Out>,
    mut data: mpsc::Receiver<Message>,
) {
    let mut buf = BytesMut::with_capacity(256 * 1024);
    loop {
        let first = tokio::select! {
            biased;
            m = ctrl.recv() => match m { Some(Out::Msg(m)) => m, None => break },
            m = data.recv() => match m { Some(m) => m, None => break },
        };
        first.encode(&mut buf);
        while buf.len() < 256 * 1024 {
            match ctrl.try_recv() {
                Ok(Out::Msg(m)) => m.encode(&mut buf),
                Err(_) => match data.try_recv() {
                    Ok(m) => m.encode(&mut buf),
                    Err(_) => break,
                },
            }
        }
        // Flushed too: an encrypting stream may hold the tail of what it took.
        if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
            break;
        }
        buf.clear();
    }
    let _ = wr.shutdown().await;
}

/// Serves a peer's requests from disk, one piece read at a time (a peer asks for the
/// blocks of a piece in a row, so one read serves many requests).
async fn upload_loop(
    t: Arc<Torrent>,
    key: PeerKey,
    fast: bool,
    mut requests: mpsc::Receiver<BlockRef>,
    data: mpsc::Sender<Message>,
    ctrl: mpsc::Sender<Out>,
) {
    let mut cache: VecDeque<(u32, Arc<Vec<u8>>)> = VecDeque::new();
    while let Some(r) = requests.recv().await {
        if t.am_choking(key) {
            if !fast {
                continue;
            }
            let _ = ctrl.try_send(Out::Msg(Message::Reject {
                index: r.index,
                begin: r.begin,
                length: r.length,
            }));
            continue;
        }
        let piece = match cache.iter().find(|(i, _)| *i == r.index) {
            Some((_, p)) => p.clone(),
            None => {
                let (Some(storage), Some(meta)) = (t.storage(), t.metadata()) else {
                    break;
                };
                let index = r.index;
                // Checked before it leaves: a file changed under a running node must not
                // be served (peers would strike us), and the piece is then ours no more.
                let read = tokio::task::spawn_blocking(move || {
                    storage.read_piece(index).ok().filter(|p| {
                        meta.expected_piece_hash(index)
                            .is_some_and(|h| h.verify(p, meta.info.piece_length))
                    })
                })
                .await;
                let Ok(Some(p)) = read else {
                    tracing::warn!(target: "nodus::torrent", id = %t.id, "piece {index} on disk is unreadable or no longer matches its hash: marked missing");
                    t.lose_piece(index);
                    break;
                };
                let p = Arc::new(p);
                cache.push_back((index, p.clone()));
                if cache.len() > 2 {
                    cache.pop_front();
                }
                p
            }
        };
        let (b, e) = (r.begin as usize, r.begin as usize + r.length as usize);
        if e > piece.len() {
            break;
        }
        t.shared.up_limit.acquire(r.length as usize).await;
        let msg = Message::Piece {
            index: r.index,
            begin: r.begin,
            data: Bytes::copy_from_slice(&piece[b..e]),
        };
        if data.send(msg).await.is_err() {
            break;
        }
        t.add_uploaded(key, r.length as u64);
    }
}

/// A `Have` that came before the metadata: its bit set in the raw bitfield kept until
/// the torrent's size is known, in place (a copy per 9-byte message would cost up to
/// [`wire::MAX_MESSAGE`] each). Err for an index no bitfield message could hold.
fn note_early_have(pending: &mut Option<Vec<u8>>, i: u32) -> Result<(), ()> {
    let byte = (i / 8) as usize;
    if byte >= wire::MAX_MESSAGE {
        return Err(());
    }
    let raw = pending.get_or_insert_with(Vec::new);
    if raw.len() <= byte {
        raw.resize(byte + 1, 0);
    }
    raw[byte] |= 0x80 >> (i % 8);
    Ok(())
}

#[cfg(test)]
mod early_have_tests {
    use super::*;

    /// Issue 17 point 7: early `Have`s set bits in one buffer, never copied per message.
    #[test]
    fn early_haves_are_set_in_place() {
        let mut pending = None;
        note_early_have(&mut pending, 100_000).unwrap();
        let at = pending.as_ref().unwrap().as_ptr();
        for i in 0..100_000 {
            note_early_have(&mut pending, i).unwrap();
        }
        let raw = pending.unwrap();
        assert_eq!(raw.as_ptr(), at, "the bitfield was copied");
        assert!(raw[..12_500].iter().all(|b| *b == 0xff));
        assert_eq!(raw[12_500], 0x80);
        assert!(note_early_have(&mut None, (wire::MAX_MESSAGE as u32) * 8).is_err());
    }
}
