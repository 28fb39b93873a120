//! The relay's core: what it takes, from clients and from other nodes, and who hears of
//! it. Connections ([`crate::ws`]) and the overlay ([`crate::gossip`]) both come here.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use nodus_net::NetworkHandle;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::config::SocialConfig;
use crate::error::SocialError;
use crate::event::{Event, EventError, Keys, Retention};
use crate::filter::Filter;
use crate::store::{Incoming, Store, StoreError, Stored};
use crate::topics;

/// People one operator's contact list (kind 3) may make this node follow, at most.
pub const MAX_FOLLOWS: usize = 5_000;
/// Authors a node announces in the DHT as publishing through it, at most per run.
const MAX_HOME_AUTHORS: usize = 10_000;
/// Client events waiting to be passed on to other nodes, at most. Beyond it one is not
/// gossiped (followers fetch it by sync later) rather than slowing the client.
const OUTBOUND_QUEUE: usize = 8192;

/// Whose events this node asks the overlay for: its operator's, and those of the
/// people the operator's latest contact list (kind 3) names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interest {
    pub operator: [u8; 32],
    pub follows: BTreeSet<[u8; 32]>,
}

impl Interest {
    /// Whether this node keeps `author`'s events.
    pub fn wants(&self, author: &[u8; 32]) -> bool {
        *author == self.operator || self.follows.contains(author)
    }

    /// The operator and the people followed.
    pub fn authors(&self) -> Vec<[u8; 32]> {
        let mut a: Vec<[u8; 32]> = self.follows.iter().copied().collect();
        if !self.follows.contains(&self.operator) {
            a.push(self.operator);
        }
        a
    }
}

/// The people a contact list names (`p` tags with a valid key), at most [`MAX_FOLLOWS`].
pub fn follows_of(contact_list: &Event) -> BTreeSet<[u8; 32]> {
    let mut out = BTreeSet::new();
    for k in contact_list.p_keys() {
        if out.len() == MAX_FOLLOWS {
            break;
        }
        out.insert(k);
    }
    out
}

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
    #[error("error: this relay's storage is full (its [social] max_store_mb)")]
    Full,
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
    /// A sync with another node finished; `taken` events were new here.
    Synced { peer: String, taken: usize },
}

pub struct Metrics {
    pub accepted: Counter,
    pub refused: Counter,
    pub from_overlay: Counter,
    pub connections: Gauge,
    pub subscriptions: Gauge,
    pub slow_readers: Counter,
    pub synced: Counter,
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
            synced: Counter::default(),
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
        r.register(
            "events_synced",
            "Events fetched from other nodes by negentropy sync",
            m.synced.clone(),
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

/// An event on its way to the store, whether the budget may push it out later, and
/// where to say what became of it.
type Pending = (
    Arc<Event>,
    bool,
    oneshot::Sender<Result<Stored, Arc<StoreError>>>,
);

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
            let events: Vec<Incoming<Arc<Event>>> = batch
                .iter()
                .map(|(e, evictable, _)| Incoming {
                    event: e.clone(),
                    evictable: *evictable,
                })
                .collect();
            let store = self.store.clone();
            let written = tokio::task::spawn_blocking(move || store.insert_batch(&events)).await;
            match written {
                Ok(Ok(outcomes)) => {
                    for ((_, _, reply), outcome) in batch.into_iter().zip(outcomes) {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(target: "nodus::social", "events not stored: {e}");
                    let e = Arc::new(e);
                    for (_, _, reply) in batch {
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
    /// The service's directory, where the operator's key lives.
    dir: PathBuf,
    identity: RwLock<Arc<Keys>>,
    interest: watch::Sender<Interest>,
    /// Held while the operator's own replaceable events (contact list, profile) are
    /// read, changed and signed, so two edits at once do not lose one.
    pub(crate) own_edits: tokio::sync::Mutex<()>,
    /// Client events on their way to the overlay ([`Outbound`]).
    outbound: mpsc::Sender<Arc<Event>>,
    pub(crate) outbound_dropped: Counter,
}

/// Passes client events on to other nodes: each on its topics, and its author
/// announced in the DHT the first time. Apart from the relay, so a publishing client
/// never waits for the overlay.
pub struct Outbound {
    net: NetworkHandle,
    rx: mpsc::Receiver<Arc<Event>>,
    /// Authors this node's clients published as, announced in the DHT.
    home: HashSet<[u8; 32]>,
}

impl Outbound {
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let e = tokio::select! {
                e = self.rx.recv() => match e {
                    Some(e) => e,
                    None => return,
                },
                _ = shutdown.wait_for(|s| *s) => return,
            };
            let json = e.to_json().into_bytes();
            for topic in topics::of(&e) {
                // No node subscribed yet is not an error: this node holds it, and a
                // follower's sync fetches it later.
                if let Err(err) = self.net.publish(&topic, json.clone()).await {
                    tracing::debug!(target: "nodus::social", "event not passed on {topic}: {err}");
                }
            }
            if self.home.len() < MAX_HOME_AUTHORS && self.home.insert(e.pubkey) {
                let (net, key) = (self.net.clone(), topics::provider_key(&e.pubkey));
                tokio::spawn(async move {
                    if let Err(err) = net.provide(key).await {
                        tracing::debug!(target: "nodus::social", "author not announced: {err}");
                    }
                });
            }
        }
    }
}

impl Relay {
    pub fn new(
        config: SocialConfig,
        store: Store,
        net: NetworkHandle,
        registry: &mut Registry,
        dir: PathBuf,
    ) -> Result<(Relay, Writer, Outbound), SocialError> {
        let keys = Arc::new(crate::keys::load(&dir)?);
        let store = Arc::new(store);
        let interest = Interest {
            operator: keys.public(),
            follows: newest(&store, &keys.public(), 3)?
                .map(|e| follows_of(&e))
                .unwrap_or_default(),
        };
        let (writer, rx) = mpsc::channel(MAX_BATCH);
        let (outbound, outbound_rx) = mpsc::channel(OUTBOUND_QUEUE);
        let outbound_dropped = Counter::default();
        registry.register(
            "events_not_gossiped",
            "Client events not passed on live because the queue to the overlay was full",
            outbound_dropped.clone(),
        );
        let relay = Relay {
            dir,
            identity: RwLock::new(keys),
            interest: watch::channel(interest).0,
            own_edits: tokio::sync::Mutex::new(()),
            outbound,
            outbound_dropped,
            moderation: Arc::new(Moderation::from_config(&config)?),
            config,
            store: store.clone(),
            writer,
            live: broadcast::channel(4096).0,
            events: broadcast::channel(1024).0,
            metrics: Metrics::register(registry),
            net,
        };
        let outbound = Outbound {
            net: relay.net.clone(),
            rx: outbound_rx,
            home: HashSet::new(),
        };
        Ok((relay, Writer { store, rx }, outbound))
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
        // ~40 µs of CPU: checked on the connection's own task, not handed to the
        // blocking pool (the hop cost as much as the check).
        e.verify()?;
        let e = Arc::new(e);
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
                .send((e.clone(), origin == Origin::Overlay, reply))
                .await
                .map_err(|_| Refusal::Internal)?;
            stored
                .await
                .map_err(|_| Refusal::Internal)?
                .map_err(Refusal::Store)?
        };
        match stored {
            Stored::Deleted => return Err(Refusal::Deleted),
            Stored::Full => return Err(Refusal::Full),
            Stored::Duplicate | Stored::Superseded => return Ok(stored),
            Stored::New => {}
        }
        if e.kind == 3 {
            self.interest.send_if_modified(|i| {
                if e.pubkey != i.operator {
                    return false;
                }
                let follows = follows_of(&e);
                let changed = follows != i.follows;
                i.follows = follows;
                changed
            });
        }
        if origin == Origin::Overlay {
            self.metrics.from_overlay.inc();
        }
        // Only built when someone follows the event stream: ingest is per event.
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(SocialEvent::Stored {
                id: hex::encode(e.id),
                author: hex::encode(e.pubkey),
                kind: e.kind,
                origin,
            });
        }
        if origin == Origin::Client && self.outbound.try_send(e.clone()).is_err() {
            self.outbound_dropped.inc();
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

    pub fn stored_bytes(&self) -> u64 {
        self.store.bytes().unwrap_or(0)
    }

    /// `(created_at, id)` of the events matching `filter` this node serves: the set a
    /// negentropy sync reconciles.
    pub async fn sync_items(&self, filter: Filter) -> Result<Vec<(u64, [u8; 32])>, Refusal> {
        let (store, moderation) = (self.store.clone(), self.moderation.clone());
        tokio::task::spawn_blocking(move || {
            store.sync_items(&filter, now(), &|e| !moderation.blocks(e))
        })
        .await
        .map_err(|_| Refusal::Internal)?
        .map_err(|e| Refusal::Store(Arc::new(e)))
    }

    /// The JSON of each of `ids` this node holds and serves.
    pub async fn get_many(&self, ids: Vec<[u8; 32]>) -> Result<Vec<String>, Refusal> {
        let (store, moderation) = (self.store.clone(), self.moderation.clone());
        tokio::task::spawn_blocking(move || store.get_many(&ids, now(), &|e| !moderation.blocks(e)))
            .await
            .map_err(|_| Refusal::Internal)?
            .map_err(|e| Refusal::Store(Arc::new(e)))
    }

    /// The operator's key.
    pub fn keys(&self) -> Arc<Keys> {
        self.identity
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn interest(&self) -> watch::Receiver<Interest> {
        self.interest.subscribe()
    }

    /// Makes `keys` the operator's key (the old one is kept beside it); the follows
    /// become those of the new key's contact list held here.
    pub async fn set_keys(&self, keys: Keys) -> Result<Option<PathBuf>, SocialError> {
        let kept = crate::keys::replace(&self.dir, &keys, now())?;
        let public = keys.public();
        let store = self.store.clone();
        let follows = tokio::task::spawn_blocking(move || newest(&store, &public, 3))
            .await
            .map_err(|_| SocialError::Stopped)??
            .map(|e| follows_of(&e))
            .unwrap_or_default();
        *self.identity.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
        self.interest.send_replace(Interest {
            operator: public,
            follows,
        });
        Ok(kept)
    }

    /// The newest event of `kind` by the operator held here (a profile, a contact list).
    pub async fn own_latest(&self, kind: u16) -> Result<Option<Event>, Refusal> {
        let (store, author) = (self.store.clone(), self.keys().public());
        tokio::task::spawn_blocking(move || newest(&store, &author, kind))
            .await
            .map_err(|_| Refusal::Internal)?
            .map_err(|e| Refusal::Store(Arc::new(e)))
    }

    /// Whether this node keeps `author`'s events (its operator, or someone followed).
    pub fn wants(&self, author: &[u8; 32]) -> bool {
        self.interest.borrow().wants(author)
    }

    /// Signs `tags` and `content` as the operator and takes it as a client's event. Its
    /// time is after the newest event of the same kind held, so a replaceable one wins.
    pub async fn sign_and_take(
        &self,
        kind: u16,
        tags: Vec<Vec<String>>,
        content: &str,
        after: Option<u64>,
    ) -> Result<Event, Refusal> {
        let at = after.map_or(now(), |t| now().max(t + 1));
        let e = self.keys().sign(at, kind, tags, content);
        self.accept(e.clone(), Origin::Client).await?;
        Ok(e)
    }

    /// Adds or removes `who` in the operator's contact list (a new kind 3 event with
    /// the other tags and the content of the last one kept). Whether it changed.
    pub async fn set_follow(&self, who: [u8; 32], follow: bool) -> Result<bool, Refusal> {
        let _edit = self.own_edits.lock().await;
        let last = self.own_latest(3).await?;
        let (mut tags, content, at) = match &last {
            Some(e) => (e.tags.clone(), e.content.clone(), Some(e.created_at)),
            None => (vec![], String::new(), None),
        };
        let hex = hex::encode(who);
        let named = |t: &Vec<String>| {
            t.first().is_some_and(|n| n == "p") && t.get(1).is_some_and(|v| *v == hex)
        };
        let had = tags.iter().any(named);
        if had == follow {
            return Ok(false);
        }
        if follow {
            tags.push(vec!["p".into(), hex.clone()]);
        } else {
            tags.retain(|t| !named(t));
        }
        self.sign_and_take(3, tags, &content, at).await?;
        Ok(true)
    }
}

/// The newest event of `kind` by `author` in `store` (a contact list, a profile).
fn newest(store: &Store, author: &[u8; 32], kind: u16) -> Result<Option<Event>, StoreError> {
    let f = Filter {
        authors: Some(vec![*author]),
        kinds: Some(vec![kind]),
        limit: Some(1),
        ..Filter::default()
    };
    Ok(store
        .query(&[f], now(), &|_| true)?
        .first()
        .and_then(|(_, j)| serde_json::from_str(j).ok()))
}
