//! A relay's side of circuits: answers CREATE, peels its layer off cells from the client,
//! passes on what is not for it, extends to the next hop when asked, and, at an exit,
//! opens streams within its policy.
//!
//! Per circuit, one task reads the client's side (this one), one writes to it (it owns
//! the backward layer, so cells from the next hop and this hop's own messages share one
//! keystream in one order), one reads the next hop's side, and one per exit stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::io::{ReadHalf, WriteHalf};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream};
use nodus_net::NetworkHandle;
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::OnionError;
use crate::cell::{Cell, Command, EndReason, RelayCommand, RelayMsg};
use crate::exit::{self, ExitPolicy};
use crate::layers::{Backward, HopLayers};
use crate::link::{PROTOCOL, read_cell, write_cell};
use crate::ntor::{self, CREATE_LEN, CREATED_LEN, OnionKey, RelayId};
use crate::stream::{self, Out, StreamSlot};

/// How long a neighbour has for its half of a handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
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

pub struct Relay {
    pub id: RelayId,
    /// The current onion key first, then older ones still accepted.
    pub keys: Vec<OnionKey>,
    /// Set on an exit.
    pub exit: Option<ExitPolicy>,
    pub views: broadcast::Sender<View>,
}

impl Relay {
    pub fn new(peer: &PeerId, key: OnionKey, exit: Option<ExitPolicy>) -> Relay {
        Relay {
            id: relay_id(peer),
            keys: vec![key],
            exit,
            views: broadcast::channel(256).0,
        }
    }

    fn saw(&self, v: View) {
        let _ = self.views.send(v);
    }
}

/// Accepts circuits on `/nodus/onion/1` until the overlay stops.
pub fn spawn(net: NetworkHandle, relay: Arc<Relay>) -> Result<JoinHandle<()>, OnionError> {
    let mut incoming = net
        .incoming(PROTOCOL)
        .map_err(|e| OnionError::Net(e.to_string()))?;
    Ok(tokio::spawn(async move {
        while let Some((peer, stream)) = incoming.next().await {
            let (net, relay) = (net.clone(), relay.clone());
            tokio::spawn(async move {
                if let Err(e) = circuit(net, relay, peer, stream).await {
                    tracing::debug!(target: "nodus::onion", "circuit ended: {e}");
                }
            });
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
    relay.saw(View::Created { prev });
    let HopLayers {
        mut forward,
        backward,
    } = HopLayers::new(&hop_keys);
    let (mut from_prev, to_prev_w) = stream.split();
    let (out, rx) = mpsc::channel(QUEUE);
    let writer = tokio::spawn(write_toward_client(to_prev_w, backward, rx));
    let mut c = Circuit {
        net,
        relay,
        prev,
        out: out.clone(),
        next: None,
        upstream: None,
        streams: HashMap::new(),
    };
    let result = loop {
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
    next: Option<WriteHalf<Stream>>,
    upstream: Option<JoinHandle<()>>,
    streams: HashMap<u16, (StreamSlot, JoinHandle<()>)>,
}

impl Circuit {
    async fn pass_on(&mut self, cell: Cell) -> Result<(), OnionError> {
        match &mut self.next {
            Some(next) => write_cell(next, &cell).await,
            // The last hop, and nobody recognized it: changed on the way.
            None => Err(OnionError::Tampered),
        }
    }

    async fn handle(&mut self, m: RelayMsg) -> Result<(), OnionError> {
        match m.command {
            RelayCommand::Extend => self.extend(&m.data).await,
            RelayCommand::Begin => self.begin(m.stream, &m.data).await,
            RelayCommand::Data => match self.streams.get(&m.stream) {
                Some((slot, _)) if !slot.deliver(m.data) => Err(OnionError::Malformed(
                    "DATA past the stream's window".into(),
                )),
                _ => Ok(()),
            },
            RelayCommand::Sendme => match self.streams.get(&m.stream) {
                Some((slot, _)) if !slot.sendme() => {
                    Err(OnionError::Malformed("SENDME past the window".into()))
                }
                _ => Ok(()),
            },
            RelayCommand::End => {
                // Dropping the slot ends the pump once it has written what came before.
                self.streams.remove(&m.stream);
                Ok(())
            }
            RelayCommand::Drop => Ok(()),
            RelayCommand::Connected | RelayCommand::Extended => Err(OnionError::Malformed(
                format!("{:?} sent toward the exit", m.command),
            )),
        }
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
                self.relay.saw(View::Extended {
                    prev: self.prev,
                    next,
                });
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
        self.next = Some(w);
        self.upstream = Some(tokio::spawn(read_from_next(r, self.out.clone())));
        Ok(created)
    }

    async fn begin(&mut self, id: u16, data: &[u8]) -> Result<(), OnionError> {
        // Streams whose pump ended on its own (the destination closed, END sent).
        self.streams.retain(|_, (_, task)| !task.is_finished());
        if id == 0 || self.streams.contains_key(&id) || self.streams.len() >= MAX_STREAMS {
            return Err(OnionError::Malformed(format!("BEGIN on stream {id}")));
        }
        let refuse = move |reason: EndReason| {
            Out::Msg(RelayMsg::new(RelayCommand::End, id, vec![reason as u8]))
        };
        let Some(policy) = self.relay.exit.clone() else {
            let _ = self.out.send(refuse(EndReason::ExitPolicy)).await;
            return Ok(());
        };
        let Ok(target) = String::from_utf8(data.to_vec()) else {
            let _ = self.out.send(refuse(EndReason::Misc)).await;
            return Ok(());
        };
        self.relay.saw(View::Exit {
            prev: self.prev,
            target: target.clone(),
        });
        let (slot, incoming) = stream::slot();
        let window = slot.window.clone();
        let out = self.out.clone();
        let task = tokio::spawn(async move {
            match exit::connect(&policy, &target).await {
                Ok(tcp) => {
                    let m = RelayMsg::new(RelayCommand::Connected, id, Vec::new());
                    if out.send(Out::Msg(m)).await.is_ok() {
                        stream::pump(id, tcp, incoming, window, out).await;
                    }
                }
                Err(reason) => {
                    let _ = out.send(refuse(reason)).await;
                }
            }
        });
        self.streams.insert(id, (slot, task));
        Ok(())
    }

    async fn close(&mut self) {
        for (_, (_, task)) in self.streams.drain() {
            task.abort();
        }
        if let Some(mut next) = self.next.take() {
            let _ = write_cell(&mut next, &Cell::new(Command::Destroy, &[0])).await;
            let _ = next.close().await;
        }
        if let Some(up) = self.upstream.take() {
            up.abort();
        }
    }
}

async fn read_from_next(mut r: ReadHalf<Stream>, out: mpsc::Sender<Out>) {
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
    mut w: WriteHalf<Stream>,
    mut backward: Backward,
    mut rx: mpsc::Receiver<Out>,
) {
    while let Some(m) = rx.recv().await {
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
        if write_cell(&mut w, &cell).await.is_err() {
            break;
        }
    }
    let _ = w.close().await;
}
