//! The relay's core: what it takes, from clients and from other nodes, and who hears of
//! it. Connections ([`crate::ws`]) and the overlay ([`crate::gossip`]) both come here.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use nodus_net::NetworkHandle;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::config::SocialConfig;
use crate::error::SocialError;
use crate::event::{Event, EventError, Retention};
use crate::filter::Filter;
use crate::store::{Store, StoreError, Stored};

/// The overlay topic events travel between nodus relays on.
pub const TOPIC: &str = "nodus/social/events/1";

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// A Nostr client of this relay (or this node's own CLI): passed on to other nodes.
    Client,
    /// Another nodus node, over the overlay.
    Overlay,
}

/// Why the relay did not take an event; the text follows NIP-01's prefixes.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Invalid(#[from] EventError),
    #[error("invalid: created_at is more than {0} s in the future")]
    Future(u64),
    #[error("invalid: the event has expired")]
    Expired,
    #[error("blocked: this relay does not carry it")]
    Blocked,
    #[error("blocked: the event was deleted by its author")]
    Deleted,
    #[error("error: {0}")]
    Store(#[source] Arc<crate::store::StoreError>),
    #[error("error: the relay's worker stopped; try again")]
    Internal,
}

impl Refusal {
    /// A refusal only a peer's fault explains (not a policy of ours).
    pub fn is_peer_fault(&self) -> bool {
        matches!(self, Refusal::Invalid(_) | Refusal::Future(_))
    }
}

/// What the node's event stream shows of this service.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SocialEvent {
    Stored {
        id: String,
        author: String,
        kind: u16,
        origin: Origin,
    },
}

pub struct Metrics {
    pub accepted: Counter,
    pub refused: Counter,
    pub from_overlay: Counter,
    pub connections: Gauge,
    pub subscriptions: Gauge,
    pub slow_readers: Counter,
}

impl Metrics {
    fn register(r: &mut Registry) -> Metrics {
        let m = Metrics {
            accepted: Counter::default(),
            refused: Counter::default(),
            from_overlay: Counter::default(),
            connections: Gauge::default(),
            subscriptions: Gauge::default(),
            slow_readers: Counter::default(),
        };
        r.register(
            "events_accepted",
            "Events taken (stored or relayed)",
            m.accepted.clone(),
        );
        r.register(
            "events_refused",
            "Events refused (invalid, blocked, deleted)",
            m.refused.clone(),
        );
        r.register(
            "events_from_overlay",
            "Events other nodes replicated to this one",
            m.from_overlay.clone(),
        );
        r.register(
            "connections",
            "Open Nostr client connections",
            m.connections.clone(),
        );
        r.register(
            "subscriptions",
            "Open REQ subscriptions",
            m.subscriptions.clone(),
        );
        r.register(
            "slow_readers",
            "Connections closed because they did not read",
            m.slow_readers.clone(),
        );
        m
    }
}

struct Moderation {
    authors: HashSet<[u8; 32]>,
    kinds: HashSet<u16>,
    words: Vec<String>,
}

impl Moderation {
    fn from_config(c: &SocialConfig) -> Result<Moderation, SocialError> {
        let authors = c
            .blocked_authors
            .iter()
            .map(|a| {
                let mut k = [0u8; 32];
                hex::decode_to_slice(a, &mut k)
                    .map_err(|_| SocialError::BadBlockedAuthor(a.clone()))?;
                Ok(k)
            })
            .collect::<Result<_, SocialError>>()?;
        Ok(Moderation {
            authors,
            kinds: c.blocked_kinds.iter().copied().collect(),
            words: c.blocked_words.iter().map(|w| w.to_lowercase()).collect(),
        })
    }

    fn blocks(&self, e: &Event) -> bool {
        if self.authors.contains(&e.pubkey) || self.kinds.contains(&e.kind) {
            return true;
        }
        if self.words.is_empty() {
            return false;
        }
        let content = e.content.to_lowercase();
        self.words.iter().any(|w| content.contains(w))
    }
}

/// An event on its way to the store, and where to say what became of it.
type Pending = (Arc<Event>, oneshot::Sender<Result<Stored, Arc<StoreError>>>);

/// Events written at once, at most.
const MAX_BATCH: usize = 1024;

/// Stores events in batches: whatever arrived while the last batch was committed goes
/// in the next transaction, so concurrent publishers share an fsync and none is
/// answered before its event is on disk.
pub struct Writer {
    store: Arc<Store>,
    rx: mpsc::Receiver<Pending>,
}

impl Writer {
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let first = tokio::select! {
                m = self.rx.recv() => match m {
                    Some(m) => m,
                    None => return,
                },
                _ = shutdown.wait_for(|s| *s) => return,
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let events: Vec<Arc<Event>> = batch.iter().map(|(e, _)| e.clone()).collect();
            let store = self.store.clone();
            let written = tokio::task::spawn_blocking(move || store.insert_batch(&events)).await;
            match written {
                Ok(Ok(outcomes)) => {
                    for ((_, reply), outcome) in batch.into_iter().zip(outcomes) {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(target: "nodus::social", "events not stored: {e}");
                    let e = Arc::new(e);
                    for (_, reply) in batch {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
                // The blocking task panicked: the replies are dropped, each publisher
                // is told its event was not taken.
                Err(_) => {}
            }
        }
    }
}

pub struct Relay {
    pub config: SocialConfig,
    store: Arc<Store>,
    writer: mpsc::Sender<Pending>,
    moderation: Arc<Moderation>,
    /// Every event taken, for live subscriptions.
    live: broadcast::Sender<Arc<Event>>,
    pub(crate) events: broadcast::Sender<SocialEvent>,
    pub metrics: Metrics,
    net: NetworkHandle,
}

impl Relay {
    pub fn new(
        config: SocialConfig,
        store: Store,
        net: NetworkHandle,
        registry: &mut Registry,
    ) -> Result<(Relay, Writer), SocialError> {
        let store = Arc::new(store);
        let (writer, rx) = mpsc::channel(MAX_BATCH);
        let relay = Relay {
            moderation: Arc::new(Moderation::from_config(&config)?),
            config,
            store: store.clone(),
            writer,
            live: broadcast::channel(4096).0,
            events: broadcast::channel(1024).0,
            metrics: Metrics::register(registry),
            net,
        };
        Ok((relay, Writer { store, rx }))
    }

    pub fn live(&self) -> broadcast::Receiver<Arc<Event>> {
        self.live.subscribe()
    }

    /// Checks and takes an event: stored (unless ephemeral), told to live subscribers,
    /// and, from a client, passed on to other nodes. A duplicate is accepted again
    /// without being told twice (NIP-01 answers it OK).
    pub async fn accept(&self, e: Event, origin: Origin) -> Result<Stored, Refusal> {
        let r = self.take(e, origin).await;
        match &r {
            Ok(Stored::New) => {
                self.metrics.accepted.inc();
            }
            Ok(_) => {}
            Err(_) => {
                self.metrics.refused.inc();
            }
        }
        r
    }

    async fn take(&self, e: Event, origin: Origin) -> Result<Stored, Refusal> {
        let now = now();
        if e.created_at > now + self.config.max_future_secs {
            return Err(Refusal::Future(self.config.max_future_secs));
        }
        let e = Arc::new(e);
        let checked = e.clone();
        tokio::task::spawn_blocking(move || checked.verify())
            .await
            .map_err(|_| Refusal::Internal)??;
        if e.expires_at().is_some_and(|t| t <= now) {
            return Err(Refusal::Expired);
        }
        if self.moderation.blocks(&e) {
            return Err(Refusal::Blocked);
        }
        let stored = if e.retention() == Retention::Ephemeral {
            Stored::New
        } else {
            let (reply, stored) = oneshot::channel();
            self.writer
                .send((e.clone(), reply))
                .await
                .map_err(|_| Refusal::Internal)?;
            stored
                .await
                .map_err(|_| Refusal::Internal)?
                .map_err(Refusal::Store)?
        };
        match stored {
            Stored::Deleted => return Err(Refusal::Deleted),
            Stored::Duplicate | Stored::Superseded => return Ok(stored),
            Stored::New => {}
        }
        if origin == Origin::Overlay {
            self.metrics.from_overlay.inc();
        }
        let _ = self.events.send(SocialEvent::Stored {
            id: hex::encode(e.id),
            author: hex::encode(e.pubkey),
            kind: e.kind,
            origin,
        });
        if origin == Origin::Client {
            // No other node subscribed yet is not an error: this node still holds it.
            if let Err(err) = self.net.publish(TOPIC, e.to_json().into_bytes()).await {
                tracing::debug!(target: "nodus::social", "event not passed on: {err}");
            }
        }
        let _ = self.live.send(e);
        Ok(stored)
    }

    /// Stored events matching any filter, newest first, as JSON. What this node's
    /// moderation blocks is left out (also what was stored before the block was set),
    /// and does not use up a filter's limit.
    pub async fn query(&self, filters: Vec<Filter>) -> Result<Vec<String>, Refusal> {
        let (store, moderation) = (self.store.clone(), self.moderation.clone());
        let rows = tokio::task::spawn_blocking(move || {
            store.query(&filters, now(), &|e| !moderation.blocks(e))
        })
        .await
        .map_err(|_| Refusal::Internal)?
        .map_err(|e| Refusal::Store(Arc::new(e)))?;
        Ok(rows.into_iter().map(|(_, json)| json).collect())
    }

    pub async fn count(&self, filters: Vec<Filter>) -> Result<usize, Refusal> {
        let (store, moderation) = (self.store.clone(), self.moderation.clone());
        tokio::task::spawn_blocking(move || {
            store.count(&filters, now(), &|e| !moderation.blocks(e))
        })
        .await
        .map_err(|_| Refusal::Internal)?
        .map_err(|e| Refusal::Store(Arc::new(e)))
    }

    pub fn stored(&self) -> u64 {
        self.store.len().unwrap_or(0)
    }
}
