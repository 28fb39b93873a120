//! The relay's listener: Nostr clients over WebSocket, and the NIP-11 information
//! document over plain HTTP on the same address.
//!
//! Each connection has a queue to its socket bounded in bytes ([`QUEUE_BYTES`]) and in
//! frames ([`SEND_QUEUE`]). Live events that find it full close the connection (a reader
//! that does not read is not waited for); answers to its own queries wait for room, up
//! to [`STALL`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{
    Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, broadcast, mpsc, watch};

use crate::event::Event;
use crate::event::MAX_TAGS;
use crate::filter::{Filter, MAX_LIMIT, MAX_VALUES};
use crate::message::{ClientMessage, MAX_FILTERS, MAX_SUB_ID, relay as out};
use crate::relay::{Origin, Relay, now};
use crate::store::Stored;
use crate::sync::negentropy_of;

/// How far an AUTH event's time may be from the relay's clock (NIP-42 suggests ~10 min).
pub const AUTH_WINDOW: u64 = 600;
/// The kind of a NIP-42 authentication event.
pub const AUTH_KIND: u16 = 22_242;

type NegSession = negentropy::Negentropy<'static, negentropy::NegentropyStorageVector>;

/// Frames queued to one connection's socket, at most.
pub const SEND_QUEUE: usize = 1024;
/// Bytes queued to one connection's socket, at most.
pub const QUEUE_BYTES: usize = 2 * 1024 * 1024;
/// How long an answer waits for room in a connection's queue before it is closed.
pub const STALL: Duration = Duration::from_secs(30);

pub fn router(relay: Arc<Relay>) -> Router {
    Router::new().route("/", get(root)).with_state(relay)
}

async fn root(
    State(relay): State<Arc<Relay>>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if let Ok(ws) = ws {
        let max = relay.config.max_message_bytes;
        return ws
            .max_message_size(max)
            .max_frame_size(max)
            .on_upgrade(move |socket| serve(socket, relay))
            .into_response();
    }
    let wants_info = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/nostr+json"));
    if wants_info {
        return (
            [
                (header::CONTENT_TYPE, "application/nostr+json"),
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            ],
            info(&relay).to_string(),
        )
            .into_response();
    }
    (
        StatusCode::OK,
        "This is a Nostr relay (nodus). Connect with a Nostr client over WebSocket.\n",
    )
        .into_response()
}

/// The NIP-11 relay information document.
pub fn info(relay: &Relay) -> serde_json::Value {
    let c = &relay.config;
    json!({
        "name": "nodus",
        "description": "A Nostr relay on a nodus node; nodus relays replicate events among themselves.",
        "software": "https://example.invalid/nodus",
        "version": env!("CARGO_PKG_VERSION"),
        "supported_nips": [1, 9, 11, 40, 42, 45, 50, 77],
        "limitation": {
            "max_message_length": c.max_message_bytes,
            "max_subscriptions": c.max_subscriptions,
            "max_filters": MAX_FILTERS,
            "max_limit": MAX_LIMIT,
            "max_subid_length": MAX_SUB_ID,
            "max_event_tags": MAX_TAGS,
            "max_filter_values": MAX_VALUES,
            "created_at_upper_limit": c.max_future_secs,
            "auth_required": c.require_auth,
            "payment_required": false,
        },
    })
}

/// Why a connection ends early.
enum Closed {
    SlowReader,
    Gone,
}

/// A frame on its way to the socket, holding its bytes of the queue's room.
type Queued = (Message, OwnedSemaphorePermit);

/// The way to one connection's socket; cloned into the tasks that answer its EVENTs.
#[derive(Clone)]
struct Outbox {
    tx: mpsc::Sender<Queued>,
    room: Arc<Semaphore>,
    /// Told when an answer found no room within [`STALL`]: the connection is closed.
    stalled: Arc<Notify>,
}

/// The room a frame takes (a frame larger than the whole queue takes all of it).
fn cost(frame: &str) -> u32 {
    frame.len().clamp(1, QUEUE_BYTES) as u32
}

impl Outbox {
    /// Queues a live frame; a full queue means the client is not reading.
    fn push(&self, frame: String) -> Result<(), Closed> {
        let permit = self
            .room
            .clone()
            .try_acquire_many_owned(cost(&frame))
            .map_err(|_| Closed::SlowReader)?;
        self.tx
            .try_send((Message::Text(frame.into()), permit))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => Closed::SlowReader,
                mpsc::error::TrySendError::Closed(_) => Closed::Gone,
            })
    }

    /// Queues an answer, waiting (up to [`STALL`]) for room.
    async fn answer(&self, frame: String) -> Result<(), Closed> {
        let queued = async {
            let permit = self
                .room
                .clone()
                .acquire_many_owned(cost(&frame))
                .await
                .map_err(|_| Closed::Gone)?;
            self.tx
                .send((Message::Text(frame.into()), permit))
                .await
                .map_err(|_| Closed::Gone)
        };
        let r = tokio::time::timeout(STALL, queued)
            .await
            .unwrap_or(Err(Closed::SlowReader));
        if let Err(Closed::SlowReader) = r {
            self.stalled.notify_one();
        }
        r
    }
}

/// Frames written to the socket before one flush, at most.
const WRITE_BATCH: usize = 64;

/// EVENTs of one connection being checked and stored at once, at most, and their bytes.
/// Further EVENTs wait to be read: a client that publishes faster than the relay stores
/// is slowed by TCP, not queued in memory. Many in flight make the store's batches large,
/// and a batch costs a commit whatever its size (pages written and synced).
pub const IN_FLIGHT: usize = 1024;
pub const IN_FLIGHT_BYTES: usize = 4 << 20;

/// The share of [`IN_FLIGHT_BYTES`] an EVENT frame of `len` bytes holds while in flight.
fn in_flight_cost(len: usize) -> u32 {
    len.clamp(IN_FLIGHT_BYTES / IN_FLIGHT, IN_FLIGHT_BYTES) as u32
}

struct Conn {
    relay: Arc<Relay>,
    out: Outbox,
    in_flight: Arc<Semaphore>,
    subs: HashMap<String, Vec<Filter>>,
    /// NIP-77 reconciliations open on this connection (they count as subscriptions).
    negs: HashMap<String, NegSession>,
    /// The NIP-42 challenge sent on connect, and the key that answered it.
    challenge: String,
    authed: Option<[u8; 32]>,
    /// Events the relay takes, while this connection has a subscription: a connection
    /// that only publishes is not woken for every event anyone publishes.
    live: Option<broadcast::Receiver<Arc<crate::event::Event>>>,
}

/// Why an AUTH event does not authenticate.
fn auth_problem(e: &Event, challenge: &str) -> Option<&'static str> {
    if e.kind != AUTH_KIND {
        return Some("invalid: an AUTH event is of kind 22242");
    }
    if e.verify().is_err() {
        return Some("invalid: bad id or signature");
    }
    if e.tag("challenge") != Some(challenge) {
        return Some("invalid: not this connection's challenge");
    }
    if e.tag("relay").is_none() {
        return Some("invalid: the relay tag is missing");
    }
    if e.created_at.abs_diff(now()) > AUTH_WINDOW {
        return Some("invalid: created_at is too far from now");
    }
    None
}

const AUTH_REQUIRED: &str = "auth-required: this relay needs NIP-42 authentication first";

impl Conn {
    /// A client that must authenticate first and has not.
    fn locked(&self) -> bool {
        self.relay.config.require_auth && self.authed.is_none()
    }

    fn open_subs(&self) -> usize {
        self.subs.len() + self.negs.len()
    }

    async fn answer(&self, frame: String) -> Result<(), Closed> {
        self.out.answer(frame).await
    }

    async fn on_text(&mut self, text: &str) -> Result<(), Closed> {
        let cost = in_flight_cost(text.len());
        let msg = match ClientMessage::decode(text) {
            Ok(m) => m,
            Err(e) => return self.answer(out::notice(&format!("error: {e}"))).await,
        };
        match msg {
            ClientMessage::Event(e) if self.locked() => {
                self.answer(out::ok(&e.id, false, AUTH_REQUIRED)).await
            }
            ClientMessage::Req { id, .. } | ClientMessage::Count { id, .. } if self.locked() => {
                self.answer(out::closed(&id, AUTH_REQUIRED)).await
            }
            ClientMessage::NegOpen { id, .. } if self.locked() => {
                self.answer(out::neg_err(&id, AUTH_REQUIRED)).await
            }
            ClientMessage::Auth(e) => {
                let frame = match auth_problem(&e, &self.challenge) {
                    Some(why) => out::ok(&e.id, false, why),
                    None => {
                        self.authed = Some(e.pubkey);
                        out::ok(&e.id, true, "")
                    }
                };
                self.answer(frame).await
            }
            ClientMessage::NegOpen { id, filter, msg } => {
                if !self.negs.contains_key(&id)
                    && self.open_subs() >= self.relay.config.max_subscriptions
                {
                    let limit = self.relay.config.max_subscriptions;
                    return self
                        .answer(out::neg_err(
                            &id,
                            &format!("blocked: at most {limit} subscriptions per connection"),
                        ))
                        .await;
                }
                self.negs.remove(&id);
                let items = match self.relay.sync_items(*filter).await {
                    Ok(items) => items,
                    Err(e) => return self.answer(out::neg_err(&id, &e.to_string())).await,
                };
                let reply = negentropy_of(&items)
                    .map_err(|e| e.to_string())
                    .and_then(|mut n| {
                        let r = n.reconcile(&msg).map_err(|e| e.to_string())?;
                        Ok((n, r))
                    });
                match reply {
                    Ok((n, r)) => {
                        self.negs.insert(id.clone(), n);
                        self.answer(out::neg_msg(&id, &r)).await
                    }
                    Err(e) => self.answer(out::neg_err(&id, &format!("error: {e}"))).await,
                }
            }
            ClientMessage::NegMsg { id, msg } => {
                let Some(n) = self.negs.get_mut(&id) else {
                    return self
                        .answer(out::neg_err(
                            &id,
                            "closed: no such reconciliation; send NEG-OPEN",
                        ))
                        .await;
                };
                match n.reconcile(&msg) {
                    Ok(r) => self.answer(out::neg_msg(&id, &r)).await,
                    Err(e) => {
                        self.negs.remove(&id);
                        self.answer(out::neg_err(&id, &format!("error: {e}"))).await
                    }
                }
            }
            ClientMessage::NegClose(id) => {
                self.negs.remove(&id);
                Ok(())
            }
            ClientMessage::Event(e) => {
                // Checked and stored beside the connection's other EVENTs, so that
                // one client's events share the store's batches; OKs come in the order
                // events are stored, which NIP-01 allows.
                let slot = self
                    .in_flight
                    .clone()
                    .acquire_many_owned(cost)
                    .await
                    .map_err(|_| Closed::Gone)?;
                let (relay, outbox) = (self.relay.clone(), self.out.clone());
                tokio::spawn(async move {
                    let id = e.id;
                    let frame = match relay.accept(*e, Origin::Client).await {
                        Ok(Stored::Duplicate) => {
                            out::ok(&id, true, "duplicate: already have this event")
                        }
                        Ok(_) => out::ok(&id, true, ""),
                        Err(r) => out::ok(&id, false, &r.to_string()),
                    };
                    let _ = outbox.answer(frame).await;
                    drop(slot);
                });
                Ok(())
            }
            ClientMessage::Req { id, filters } => {
                if !self.subs.contains_key(&id)
                    && self.open_subs() >= self.relay.config.max_subscriptions
                {
                    let limit = self.relay.config.max_subscriptions;
                    return self
                        .answer(out::closed(
                            &id,
                            &format!("error: at most {limit} subscriptions per connection"),
                        ))
                        .await;
                }
                // Listening before the stored events are read: none falls in between.
                if self.live.is_none() {
                    self.live = Some(self.relay.live());
                }
                match self.relay.query(filters.clone()).await {
                    Ok(events) => {
                        for json in events {
                            self.answer(out::event(&id, &json)).await?;
                        }
                        self.answer(out::eose(&id)).await?;
                        if self.subs.insert(id, filters).is_none() {
                            self.relay.metrics.subscriptions.inc();
                        }
                        Ok(())
                    }
                    Err(e) => self.answer(out::closed(&id, &e.to_string())).await,
                }
            }
            ClientMessage::Count { id, filters } => {
                let frame = match self.relay.count(filters).await {
                    Ok(n) => out::count(&id, n),
                    Err(e) => out::closed(&id, &e.to_string()),
                };
                self.answer(frame).await
            }
            ClientMessage::Close(id) => {
                if self.subs.remove(&id).is_some() {
                    self.relay.metrics.subscriptions.dec();
                }
                if self.subs.is_empty() {
                    self.live = None;
                }
                Ok(())
            }
        }
    }

    /// An event the relay took (what moderation blocks never gets here).
    fn on_live(&self, e: &crate::event::Event) -> Result<(), Closed> {
        let mut json = None;
        for (id, filters) in &self.subs {
            if filters.iter().any(|f| f.matches(e)) {
                let json = json.get_or_insert_with(|| e.to_json());
                self.out.push(out::event(id, json))?;
            }
        }
        Ok(())
    }
}

async fn serve(socket: WebSocket, relay: Arc<Relay>) {
    relay.metrics.connections.inc();
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Queued>(SEND_QUEUE);
    let (gone_tx, mut gone) = watch::channel(false);
    let writer = tokio::spawn(async move {
        // Frames queued meanwhile go out in one flush (one write for many OKs); their
        // room in the queue is held until then.
        let mut room = Vec::with_capacity(WRITE_BATCH);
        'frames: while let Some((m, r)) = rx.recv().await {
            room.push(r);
            if sink.feed(m).await.is_err() {
                break;
            }
            while room.len() < WRITE_BATCH {
                let Ok((m, r)) = rx.try_recv() else {
                    break;
                };
                room.push(r);
                if sink.feed(m).await.is_err() {
                    break 'frames;
                }
            }
            if sink.flush().await.is_err() {
                break;
            }
            room.clear();
        }
        let _ = sink.close().await;
        let _ = gone_tx.send(true);
    });
    let stalled = Arc::new(Notify::new());
    let mut conn = Conn {
        relay: relay.clone(),
        out: Outbox {
            tx,
            room: Arc::new(Semaphore::new(QUEUE_BYTES)),
            stalled: stalled.clone(),
        },
        in_flight: Arc::new(Semaphore::new(IN_FLIGHT_BYTES)),
        subs: HashMap::new(),
        negs: HashMap::new(),
        challenge: hex::encode(rand::random::<[u8; 16]>()),
        authed: None,
        live: None,
    };
    if conn.answer(out::auth(&conn.challenge)).await.is_err() {
        relay.metrics.connections.dec();
        writer.abort();
        return;
    }
    let end = loop {
        let step = tokio::select! {
            m = stream.next() => match m {
                Some(Ok(Message::Text(t))) => conn.on_text(t.as_str()).await,
                Some(Ok(Message::Binary(_))) => conn.answer(out::notice("error: Nostr messages are text frames")).await,
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => Err(Closed::Gone),
                Some(Ok(_)) => Ok(()),
            },
            e = async {
                match conn.live.as_mut() {
                    Some(l) => l.recv().await,
                    None => std::future::pending().await,
                }
            } => match e {
                Ok(e) => conn.on_live(&e),
                // Behind on live events: a subscriber would miss some, so it is cut
                // off (its client subscribes again); a connection that only publishes
                // missed nothing it wanted.
                Err(broadcast::error::RecvError::Lagged(_)) if conn.open_subs() > 0 => Err(Closed::SlowReader),
                Err(broadcast::error::RecvError::Lagged(_)) => Ok(()),
                Err(broadcast::error::RecvError::Closed) => Err(Closed::Gone),
            },
            _ = gone.changed() => Err(Closed::Gone),
            _ = stalled.notified() => Err(Closed::SlowReader),
        };
        if let Err(c) = step {
            break c;
        }
    };
    if let Closed::SlowReader = end {
        relay.metrics.slow_readers.inc();
        tracing::debug!(target: "nodus::social", "closed a connection that did not read");
    }
    relay.metrics.subscriptions.dec_by(conn.subs.len() as i64);
    relay.metrics.connections.dec();
    drop(conn);
    writer.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_in_flight_are_bounded_in_count_and_bytes() {
        let budget = IN_FLIGHT_BYTES as u32;
        assert_eq!(budget / in_flight_cost(300), IN_FLIGHT as u32);
        assert_eq!(budget / in_flight_cost(128 << 10), 32);
        assert_eq!(in_flight_cost(usize::MAX), budget);
        assert_eq!(in_flight_cost(0), in_flight_cost(1));
    }
}
