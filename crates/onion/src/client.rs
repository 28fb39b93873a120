//! A client's circuit: built hop by hop with one ntor handshake per relay, then carrying
//! streams to the exit. The caller picks the path; each hop is a relay's peer id and
//! the onion key from its signed descriptor.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::io::{ReadHalf, WriteHalf};
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, Stream};
use nodus_net::NetworkHandle;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::OnionError;
use crate::cell::{Cell, Command, EndReason, RelayCommand, RelayMsg};
use crate::layers::{Inbound, Outbound, push_hop};
use crate::link::{PROTOCOL, read_cell, write_cell};
use crate::ntor::ClientHandshake;
use crate::relay::{HANDSHAKE_TIMEOUT, relay_id};
use crate::stream::{self, Out, StreamSlot};

/// How long an exit has to answer BEGIN.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A user's end of a stream buffers this much each way.
const PIPE: usize = 256 << 10;

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
}

/// A built circuit. Dropping it (and every stream on it) ends it.
pub struct Circuit {
    hops: Vec<PeerId>,
    out: mpsc::Sender<Out>,
    streams: Arc<Mutex<Streams>>,
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
    }
}

impl Circuit {
    /// Builds a circuit through `path` (first hop first).
    pub async fn build(net: &NetworkHandle, path: &[Hop]) -> Result<Circuit, OnionError> {
        let first = path
            .first()
            .ok_or_else(|| OnionError::Malformed("an empty path".into()))?;
        let mut s = net
            .open_stream(first.peer, PROTOCOL)
            .await
            .map_err(|e| OnionError::Net(e.to_string()))?;
        let (hs, create) = ClientHandshake::start(relay_id(&first.peer), first.onion_key);
        write_cell(&mut s, &Cell::new(Command::Create, &create)).await?;
        let created = expect(&mut s, "CREATED", HANDSHAKE_TIMEOUT).await?;
        if created.command != Command::Created {
            return Err(OnionError::Handshake(
                "the first hop did not answer CREATED",
            ));
        }
        let (mut out, mut inb) = (Outbound::default(), Inbound::default());
        push_hop(&mut out, &mut inb, &hs.finish(&created.body[..])?);
        for (i, hop) in path.iter().enumerate().skip(1) {
            let (hs, create) = ClientHandshake::start(relay_id(&hop.peer), hop.onion_key);
            let id = hop.peer.to_bytes();
            let mut data = Vec::with_capacity(1 + id.len() + create.len());
            data.push(id.len() as u8);
            data.extend_from_slice(&id);
            data.extend_from_slice(&create);
            let mut body = RelayMsg::new(RelayCommand::Extend, 0, data).encode()?;
            out.seal(i - 1, &mut body)?;
            write_cell(&mut s, &Cell::relay(body)).await?;
            // Longer than the hop's own wait for the next one, so that its answer (EXTENDED,
            // empty if it failed) comes first.
            let cell = expect(&mut s, "EXTENDED", 2 * HANDSHAKE_TIMEOUT).await?;
            if cell.command != Command::Relay {
                return Err(OnionError::Handshake(
                    "the circuit was destroyed while extending",
                ));
            }
            let mut body = cell.body;
            let from = inb.open(&mut body)?;
            let m = RelayMsg::decode(&body)?;
            if from != i - 1 || m.command != RelayCommand::Extended {
                return Err(OnionError::Malformed(format!(
                    "{:?} from hop {from} while extending",
                    m.command
                )));
            }
            if m.data.is_empty() {
                return Err(OnionError::ExtendFailed(hop.peer));
            }
            push_hop(&mut out, &mut inb, &hs.finish(&m.data)?);
        }
        let (r, w) = s.split();
        let (tx, rx) = mpsc::channel(64);
        let last = path.len() - 1;
        tokio::spawn(write_into_circuit(w, out, last, rx));
        let streams = Arc::new(Mutex::new(Streams::default()));
        let closed = Arc::new(AtomicBool::new(false));
        let reader = tokio::spawn(read_from_circuit(
            r,
            inb,
            last,
            streams.clone(),
            closed.clone(),
            tx.clone(),
        ));
        Ok(Circuit {
            hops: path.iter().map(|h| h.peer).collect(),
            out: tx,
            streams,
            next_id: AtomicU16::new(1),
            closed,
            reader,
        })
    }

    /// The relays of this circuit, first hop first.
    pub fn hops(&self) -> &[PeerId] {
        &self.hops
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Opens a stream to `target` (`host:port`) through the exit: the user's end of it.
    pub async fn connect(&self, target: &str) -> Result<tokio::io::DuplexStream, OnionError> {
        if self.is_closed() {
            return Err(OnionError::CircuitClosed);
        }
        let id = loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                break id;
            }
        };
        let (slot, incoming) = stream::slot();
        let window = slot.window.clone();
        let (told, answer) = oneshot::channel();
        {
            let mut s = lock(&self.streams);
            s.open.insert(id, slot);
            s.waiting.insert(id, told);
        }
        let begin = RelayMsg::new(RelayCommand::Begin, id, target.as_bytes().to_vec());
        self.out
            .send(Out::Msg(begin))
            .await
            .map_err(|_| OnionError::CircuitClosed)?;
        let answer = tokio::time::timeout(CONNECT_TIMEOUT, answer).await;
        let refused = match answer {
            Ok(Ok(Ok(()))) => None,
            Ok(Ok(Err(reason))) => Some(OnionError::StreamRefused(reason)),
            Ok(Err(_)) => Some(OnionError::CircuitClosed),
            Err(_) => Some(OnionError::Timeout("CONNECTED")),
        };
        if let Some(e) = refused {
            lock(&self.streams).open.remove(&id);
            return Err(e);
        }
        let (user, ours) = tokio::io::duplex(PIPE);
        let (out, streams) = (self.out.clone(), self.streams.clone());
        tokio::spawn(async move {
            stream::pump(id, ours, incoming, window, out).await;
            lock(&streams).open.remove(&id);
        });
        Ok(user)
    }
}

fn lock(s: &Mutex<Streams>) -> std::sync::MutexGuard<'_, Streams> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

async fn expect(s: &mut Stream, what: &'static str, wait: Duration) -> Result<Cell, OnionError> {
    tokio::time::timeout(wait, read_cell(s))
        .await
        .map_err(|_| OnionError::Timeout(what))??
        .ok_or(OnionError::CircuitClosed)
}

async fn write_into_circuit(
    mut w: WriteHalf<Stream>,
    mut layers: Outbound,
    last: usize,
    mut rx: mpsc::Receiver<Out>,
) {
    while let Some(m) = rx.recv().await {
        let cell = match m {
            Out::Msg(m) => {
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
    mut r: ReadHalf<Stream>,
    mut layers: Inbound,
    last: usize,
    streams: Arc<Mutex<Streams>>,
    closed: Arc<AtomicBool>,
    out: mpsc::Sender<Out>,
) {
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
        let mut s = lock(&streams);
        let fault = match m.command {
            RelayCommand::Connected => {
                if let Some(told) = s.waiting.remove(&m.stream) {
                    let _ = told.send(Ok(()));
                }
                false
            }
            RelayCommand::End => {
                let reason = EndReason::from_byte(m.data.first().copied().unwrap_or(0));
                if let Some(told) = s.waiting.remove(&m.stream) {
                    let _ = told.send(Err(reason));
                }
                s.open.remove(&m.stream);
                false
            }
            RelayCommand::Data => s
                .open
                .get(&m.stream)
                .is_some_and(|slot| !slot.deliver(m.data)),
            RelayCommand::Sendme => s.open.get(&m.stream).is_some_and(|slot| !slot.sendme()),
            RelayCommand::Drop => false,
            _ => true,
        };
        if fault {
            break OnionError::Malformed(format!("{:?} out of turn from the exit", m.command));
        }
    };
    tracing::debug!(target: "nodus::onion", "circuit ended: {why}");
    closed.store(true, Ordering::Relaxed);
    {
        let mut s = lock(&streams);
        s.open.clear();
        s.waiting.clear();
    }
    let _ = out.send(Out::Destroy).await;
}
