//! The cloneable way into the overlay. Every call is a bounded command with a oneshot
//! reply; streams go straight through libp2p-stream's `Control`, without the actor.

use std::time::Duration;

use libp2p::{Multiaddr, PeerId, Stream, StreamProtocol};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::{GossipMessage, NetError, NetEvent, PeerInfo, Status, Verdict};

pub(crate) type Reply<T> = oneshot::Sender<Result<T, NetError>>;

pub(crate) enum Command {
    Status(Reply<Status>),
    Peers(Reply<Vec<PeerInfo>>),
    Dial {
        addr: Multiaddr,
        reply: Reply<PeerId>,
    },
    DialPeer {
        peer: PeerId,
        /// Addresses to try besides those the overlay knows (a signed descriptor's).
        addrs: Vec<Multiaddr>,
        reply: Reply<PeerId>,
    },
    Disconnect {
        peer: PeerId,
        reply: Reply<()>,
    },
    /// A service saw `peer` misbehave (sent garbage, an invalid block, ...).
    Misbehaved {
        peer: PeerId,
        reason: String,
    },
    ListenViaRelay {
        relay: Multiaddr,
        reply: Reply<()>,
    },
    Unsubscribe {
        topic: String,
    },
    Subscribe {
        topic: String,
        /// The subscriber judges every message ([`NetworkHandle::validate`]) before
        /// it is forwarded; otherwise messages are forwarded on arrival.
        validated: bool,
        reply: Reply<mpsc::Receiver<GossipMessage>>,
    },
    Validate {
        raw_id: Vec<u8>,
        via: PeerId,
        verdict: Verdict,
    },
    Publish {
        topic: String,
        data: Vec<u8>,
        reply: Reply<String>,
    },
    TopicPeers {
        topic: String,
        reply: Reply<Vec<PeerId>>,
    },
    PutRecord {
        key: Vec<u8>,
        value: Vec<u8>,
        reply: Reply<bool>,
    },
    GetRecord {
        key: Vec<u8>,
        reply: Reply<Vec<u8>>,
    },
    Provide {
        key: Vec<u8>,
        reply: Reply<()>,
    },
    Providers {
        key: Vec<u8>,
        reply: Reply<Vec<PeerId>>,
    },
    ClosestPeers {
        key: Vec<u8>,
        reply: Reply<Vec<PeerId>>,
    },
    Bootstrap(Reply<usize>),
    LocalClosest {
        key: Vec<u8>,
        count: usize,
        reply: Reply<Vec<PeerId>>,
    },
    RoutingTable {
        reply: Reply<Vec<(PeerId, Vec<Multiaddr>)>>,
    },
    GossipScore {
        peer: PeerId,
        reply: Reply<Option<f64>>,
    },
    Shutdown,
}

/// Capacity of a local gossip subscription; beyond it messages are dropped and counted.
pub const SUBSCRIPTION_CAPACITY: usize = 1024;

#[derive(Clone)]
pub struct NetworkHandle {
    pub(crate) tx: mpsc::Sender<Command>,
    pub(crate) events: broadcast::Sender<NetEvent>,
    pub(crate) streams: libp2p_stream::Control,
    pub(crate) local_peer_id: PeerId,
}

/// How long one attempt to open a stream (a dial included) may take.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

impl NetworkHandle {
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, NetError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// Live overlay events. A receiver that lags skips events.
    pub fn events(&self) -> broadcast::Receiver<NetEvent> {
        self.events.subscribe()
    }

    pub async fn status(&self) -> Result<Status, NetError> {
        self.call(Command::Status).await
    }

    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NetError> {
        self.call(Command::Peers).await
    }

    /// Dials an address; resolves when a connection is established, with the peer's id.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, NetError> {
        self.call(|reply| Command::Dial { addr, reply }).await
    }

    /// Connects to a peer by id: at once if connected, else by known addresses, else after
    /// looking the peer up in the DHT.
    pub async fn dial_peer(&self, peer: PeerId) -> Result<PeerId, NetError> {
        self.dial_peer_at(peer, Vec::new()).await
    }

    /// [`NetworkHandle::dial_peer`], trying `addrs` too (addresses a peer published
    /// itself, say, when neither this node nor the DHT may know them yet).
    pub async fn dial_peer_at(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
    ) -> Result<PeerId, NetError> {
        self.call(|reply| Command::DialPeer { peer, addrs, reply })
            .await
    }

    pub async fn disconnect(&self, peer: PeerId) -> Result<(), NetError> {
        self.call(|reply| Command::Disconnect { peer, reply }).await
    }

    /// Counts a misbehaviour of `peer` seen by a service; repeated ones get it banned
    /// for a while, as the overlay's own strikes do.
    pub fn report_misbehaviour(&self, peer: PeerId, reason: impl Into<String>) {
        let _ = self.tx.try_send(Command::Misbehaved {
            peer,
            reason: reason.into(),
        });
    }

    /// Takes a reservation on `relay` (an address ending in `/p2p/<relay id>`) and listens
    /// through it. Resolves once the relay has accepted.
    pub async fn listen_via_relay(&self, relay: Multiaddr) -> Result<(), NetError> {
        self.call(|reply| Command::ListenViaRelay { relay, reply })
            .await
    }

    pub async fn subscribe(&self, topic: &str) -> Result<mpsc::Receiver<GossipMessage>, NetError> {
        let topic = topic.to_string();
        self.call(|reply| Command::Subscribe {
            topic,
            validated: false,
            reply,
        })
        .await
    }

    /// Subscribes to a topic whose messages this subscriber checks: none is forwarded to
    /// other peers until [`NetworkHandle::validate`] accepts it, and a rejected one
    /// counts against the peer that sent it in gossipsub's score. One validating
    /// subscriber per topic.
    pub async fn subscribe_validated(
        &self,
        topic: &str,
    ) -> Result<mpsc::Receiver<GossipMessage>, NetError> {
        let topic = topic.to_string();
        self.call(|reply| Command::Subscribe {
            topic,
            validated: true,
            reply,
        })
        .await
    }

    /// Leaves a topic: every receiver of it gets no more messages, and peers are told.
    pub async fn unsubscribe(&self, topic: &str) {
        let _ = self
            .tx
            .send(Command::Unsubscribe {
                topic: topic.to_string(),
            })
            .await;
    }

    /// The verdict on a message of a validated topic.
    pub fn validate(&self, message: &GossipMessage, verdict: Verdict) {
        let Ok(via) = message.via.parse::<PeerId>() else {
            return;
        };
        let _ = self.tx.try_send(Command::Validate {
            raw_id: message.raw_id.clone(),
            via,
            verdict,
        });
    }

    /// Publishes to a topic; returns the message id.
    pub async fn publish(&self, topic: &str, data: Vec<u8>) -> Result<String, NetError> {
        let topic = topic.to_string();
        self.call(|reply| Command::Publish { topic, data, reply })
            .await
    }

    /// Peers known to be subscribed to `topic`.
    pub async fn topic_peers(&self, topic: &str) -> Result<Vec<PeerId>, NetError> {
        let topic = topic.to_string();
        self.call(|reply| Command::TopicPeers { topic, reply })
            .await
    }

    /// Stores a record in the DHT: in the local store (persisted), then on the closest
    /// peers. Returns whether at least one other peer took a copy; a record kept only
    /// locally is offered again at Kademlia's hourly replication. The key must be
    /// `/<namespace>/<name>` with a registered namespace.
    pub async fn put_record(&self, key: Vec<u8>, value: Vec<u8>) -> Result<bool, NetError> {
        self.call(|reply| Command::PutRecord { key, value, reply })
            .await
    }

    pub async fn get_record(&self, key: Vec<u8>) -> Result<Vec<u8>, NetError> {
        self.call(|reply| Command::GetRecord { key, reply }).await
    }

    pub async fn provide(&self, key: Vec<u8>) -> Result<(), NetError> {
        self.call(|reply| Command::Provide { key, reply }).await
    }

    pub async fn providers(&self, key: Vec<u8>) -> Result<Vec<PeerId>, NetError> {
        self.call(|reply| Command::Providers { key, reply }).await
    }

    pub async fn closest_peers(&self, key: Vec<u8>) -> Result<Vec<PeerId>, NetError> {
        self.call(|reply| Command::ClosestPeers { key, reply })
            .await
    }

    /// Refreshes the routing table now: a Kademlia bootstrap (a lookup of our own id,
    /// then of a random id in each bucket further out), answered when it is done with
    /// the table's size. It also takes the place of an automatic bootstrap that
    /// libp2p-kad had scheduled (it schedules one 500 ms after each new peer while the
    /// table holds fewer than 20).
    pub async fn bootstrap(&self) -> Result<usize, NetError> {
        self.call(Command::Bootstrap).await
    }

    /// The `count` peers of our own routing table closest to `key`, nearest first: no
    /// network round trip, so an answer at once even while lookups wait on dead peers.
    pub async fn local_closest_peers(
        &self,
        key: Vec<u8>,
        count: usize,
    ) -> Result<Vec<PeerId>, NetError> {
        self.call(|reply| Command::LocalClosest { key, count, reply })
            .await
    }

    /// Every peer in the Kademlia routing table with its addresses.
    pub async fn routing_table(&self) -> Result<Vec<(PeerId, Vec<Multiaddr>)>, NetError> {
        self.call(|reply| Command::RoutingTable { reply }).await
    }

    /// The gossipsub score this node gives `peer` (None if it is not a gossip peer).
    pub async fn gossip_score(&self, peer: PeerId) -> Result<Option<f64>, NetError> {
        self.call(|reply| Command::GossipScore { peer, reply })
            .await
    }

    /// Opens a stream of a service protocol to `peer`, dialing it if needed.
    ///
    /// libp2p-stream picks one of the peer's connections at random and hands the request
    /// to it; when that connection closes before the stream is negotiated (one of two
    /// connections to the same peer being dropped, a relayed connection replaced), the
    /// request fails with `ConnectionReset` (TCP, Yamux) or `NotConnected` (a QUIC
    /// connection lost) although the peer is reachable. Such a failure is tried again
    /// (twice, 20 ms apart) on whatever connection is left, or a new one.
    ///
    /// It also drops a request to dial when its one-slot dial queue is full (two opens
    /// to unconnected peers at once, as a node restarting and reporting to several), and
    /// that open then waits forever, even after a connection to the peer is made
    /// (rust-libp2p#6157): an open not resolved within [`OPEN_TIMEOUT`] is asked again,
    /// and the third such is a [`NetError::Timeout`].
    pub async fn open_stream(
        &self,
        peer: PeerId,
        protocol: StreamProtocol,
    ) -> Result<Stream, NetError> {
        const ATTEMPTS: usize = 3;
        let mut attempt = 1;
        loop {
            let mut control = self.streams.clone();
            let open = control.open_stream(peer, protocol.clone());
            match tokio::time::timeout(OPEN_TIMEOUT, open).await {
                Ok(Ok(s)) => return Ok(s),
                Ok(Err(libp2p_stream::OpenStreamError::Io(e)))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::NotConnected
                    ) && attempt < ATTEMPTS =>
                {
                    tracing::debug!(target: "nodus::net", %peer, %protocol, "connection lost while opening a stream ({e}), retrying");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(Err(e)) => return Err(e.into()),
                Err(_) if attempt < ATTEMPTS => {
                    tracing::debug!(target: "nodus::net", %peer, %protocol, "no stream within {OPEN_TIMEOUT:?}; asking again");
                    attempt += 1;
                }
                Err(_) => return Err(NetError::Timeout(OPEN_TIMEOUT)),
            }
        }
    }

    /// Inbound streams of a service protocol. One acceptor per protocol.
    pub fn incoming(
        &self,
        protocol: StreamProtocol,
    ) -> Result<libp2p_stream::IncomingStreams, NetError> {
        self.streams
            .clone()
            .accept(protocol)
            .map_err(NetError::from)
    }

    /// Measures round trips to `peer` with the standard `/ipfs/ping/1.0.0` protocol.
    ///
    /// A libp2p ping responder keeps one inbound ping stream per connection and drops the
    /// older one when another arrives, so a periodic ping of the ping behaviour can cut
    /// ours off. A round trip that loses its stream that way is retried on a new stream.
    pub async fn ping(&self, peer: PeerId, count: usize) -> Result<Vec<Duration>, NetError> {
        const ATTEMPTS: usize = 3;
        self.dial_peer(peer).await?;
        let mut stream = self.open_stream(peer, crate::ping::PROTOCOL).await?;
        let mut rtts = Vec::with_capacity(count);
        while rtts.len() < count {
            let mut attempt = 1;
            let rtt = loop {
                match crate::ping::round_trip(&mut stream).await {
                    Ok(rtt) => break rtt,
                    Err(NetError::Io(e)) if attempt < ATTEMPTS => {
                        tracing::debug!(target: "nodus::net", %peer, "ping stream lost ({e}), retrying");
                        attempt += 1;
                        stream = self.open_stream(peer, crate::ping::PROTOCOL).await?;
                    }
                    Err(e) => return Err(e),
                }
            };
            rtts.push(rtt);
        }
        Ok(rtts)
    }

    /// Stops the actor; pending calls fail with [`NetError::Stopped`].
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown).await;
    }
}
