//! The messaging actor. One task owns the Olm account, the sessions and msg.redb; every
//! change (an API call, an envelope from a peer, a delivery result) reaches it as an
//! [`Input`]. It takes inputs in batches and applies each batch in one write
//! transaction, so a message and the ratchet state that goes with it are durable
//! together, and replies (acknowledgements to peers included) leave only after the
//! commit. Only the event of an arriving message leaves at once (shown before it is on
//! disk; acknowledged after). Network work runs in tasks of [`crate::delivery`] and
//! [`crate::inbound`].

mod api;
mod fetch;
mod files;

pub use files::NewFile;
mod groups;
mod mailbox;
mod outbox;
mod receive;
mod timers;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libp2p::PeerId;
use libp2p::identity::Keypair;
use nodus_net::NetworkHandle;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use vodozemac::olm::{Account, AccountPickle, Session, SessionPickle};

use crate::MsgError;
use crate::anonymous::SharedAnonymity;
use crate::card::{self, ContactCard, Invite, KeyBundle};
use crate::config::{self, MsgConfig};
use crate::delivery::{self, Outgoing};
use crate::error::{DeliveryError, StoreError};
use crate::handle::{Command, MsgHandle};
use crate::megolm::GroupCrypto;
use crate::olm::{BUNDLE_KEYS, Crypto};
use crate::seal::{self, SealKey};
use crate::store::{self, Contact, Group, MailItem, OutItem, Store, Txn};
use crate::types::{
    ContactInfo, DeliveryPath, GroupInfo, GroupMember, Message, MessageState, MsgEvent, MsgStats,
};
use crate::wire::{
    self, Body, Content, Envelope, GroupPlain, MAX_FETCH, MAX_FRAME, MAX_TEXT, MailboxItem,
    MailboxReply, MailboxRequest, MsgId, MsgReply, Plain, RejectReason,
};

const INPUT_CAPACITY: usize = 4096;
const BATCH: usize = 512;
/// With no work for this long, the database is synced and the write-ahead log emptied.
const CHECKPOINT_IDLE: Duration = Duration::from_secs(1);
const EVENT_CAPACITY: usize = 4096;
/// A signal older than this when it arrives is dropped (a call rings for less).
pub(super) const SIGNAL_FRESH_MS: u64 = 60_000;
/// Total items a mailbox keeps for everyone together.
const MAILBOX_TOTAL: usize = 100_000;
/// Ids of accepted messages are remembered this long, to drop duplicates and replays.
const SEEN_FOR_MS: u64 = 30 * 24 * 3600 * 1000;
const REPUBLISH: Duration = Duration::from_secs(3600);
/// Refusals a group message gets for a key or membership not there yet, before it fails.
const TRANSIENT_ATTEMPTS: u32 = 10;
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// How long an item taken from a mailbox counts as being deleted there.
const DELETE_PENDING: Duration = Duration::from_secs(60);
const MAX_DELETE_PENDING: usize = 10_000;
/// Texts to one peer in one batch go as bundles of at most this many,
const BUNDLE_MAX: usize = 64;
/// holding at most this much text (a bundle must fit a frame).
const BUNDLE_BYTES: usize = 96 * 1024;

pub(crate) enum Input {
    Api(Command),
    /// An envelope from a peer, a mailbox or this node's onion service.
    Envelope {
        from: Origin,
        envelope: Envelope,
        reply: Option<oneshot::Sender<MsgReply>>,
    },
    Replies {
        peer: PeerId,
        replies: Vec<(String, MsgReply)>,
        /// The way the stream they came back on went.
        path: Option<DeliveryPath>,
    },
    SendFailed {
        peer: PeerId,
        keys: Vec<String>,
        error: DeliveryError,
    },
    Stored {
        keys: Vec<String>,
        result: Result<Vec<PeerId>, DeliveryError>,
    },
    Keys {
        peer: PeerId,
        bundle: Result<KeyBundle, DeliveryError>,
    },
    Published(Result<(), DeliveryError>),
    Mailbox {
        from: PeerId,
        request: MailboxRequest,
        reply: oneshot::Sender<MailboxReply>,
    },
    Fetched {
        mailbox: PeerId,
        items: Vec<MailboxItem>,
    },
    PollDone {
        mailboxes: usize,
        error: Option<DeliveryError>,
    },
    /// An asked-for poll has handed over what its first wave fetched.
    PollAnswered(Answer),
    /// A connection to this peer opened: what waits for it can go now.
    PeerUp(PeerId),
    /// A peer asks for a file: was it offered to it?
    FileGrant {
        peer: PeerId,
        hash: wire::FileHash,
        reply: oneshot::Sender<Option<store::Grant>>,
    },
    /// A download synced this many bytes of its file.
    FileProgress {
        hash: wire::FileHash,
        received: u64,
    },
    FileEnded {
        hash: wire::FileHash,
        result: Result<(), crate::files::transfer::Failure>,
    },
}

pub(crate) type Answer = oneshot::Sender<Result<(), MsgError>>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

/// Counters on /metrics.
#[derive(Clone, Default)]
pub struct Metrics {
    sent: Counter,
    received: Counter,
    messages_received: Counter,
    duplicates: Counter,
    rejected: Family<Reason, Counter>,
    rejected_total: Counter,
    garbage: Family<Reason, Counter>,
    mailbox_stored: Counter,
    mailbox_refused: Family<Reason, Counter>,
    outbox: Gauge,
    mailbox_items: Gauge,
    pub(crate) file_bytes_served: Counter,
    pub(crate) file_bytes_received: Counter,
    pub(crate) files_resumed: Counter,
    files_received: Counter,
}

impl Metrics {
    fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics::default();
        let r = registry;
        r.register(
            "sent",
            "Envelopes acknowledged by their recipient",
            m.sent.clone(),
        );
        r.register(
            "received",
            "Envelopes accepted from peers",
            m.received.clone(),
        );
        r.register(
            "messages_received",
            "Messages accepted from peers (each text of a bundle counted)",
            m.messages_received.clone(),
        );
        r.register(
            "duplicates",
            "Envelopes received again and dropped",
            m.duplicates.clone(),
        );
        r.register(
            "rejected",
            "Envelopes refused, by reason",
            m.rejected.clone(),
        );
        r.register(
            "garbage",
            "Undecodable frames and refused streams",
            m.garbage.clone(),
        );
        r.register(
            "mailbox_stored",
            "Items stored for offline peers",
            m.mailbox_stored.clone(),
        );
        r.register(
            "mailbox_refused",
            "Mailbox requests refused, by reason",
            m.mailbox_refused.clone(),
        );
        r.register(
            "outbox",
            "Items waiting for acknowledgement",
            m.outbox.clone(),
        );
        r.register(
            "mailbox_items",
            "Items held for offline peers",
            m.mailbox_items.clone(),
        );
        r.register(
            "file_bytes_served",
            "Sealed file bytes sent to peers",
            m.file_bytes_served.clone(),
        );
        r.register(
            "file_bytes_received",
            "Sealed file bytes received from peers",
            m.file_bytes_received.clone(),
        );
        r.register(
            "files_resumed",
            "File requests served from a chunk past the first (a download resumed)",
            m.files_resumed.clone(),
        );
        r.register(
            "files_received",
            "Files downloaded whole and checked",
            m.files_received.clone(),
        );
        m
    }

    pub(crate) fn garbage(&self, reason: &str) {
        self.garbage
            .get_or_create(&Reason {
                reason: reason.into(),
            })
            .inc();
    }

    fn rejected(&self, reason: RejectReason) {
        self.rejected_total.inc();
        self.rejected
            .get_or_create(&Reason {
                reason: format!("{reason:?}").to_lowercase(),
            })
            .inc();
    }

    fn refused(&self, reason: &str) {
        self.mailbox_refused
            .get_or_create(&Reason {
                reason: reason.into(),
            })
            .inc();
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// The messaging service, as the node's service list names it.
pub struct MsgService;

impl nodus_service::Service for MsgService {
    type Config = MsgConfig;
    type Handle = MsgHandle;
    type Error = MsgError;

    const PANEL: Option<nodus_service::Panel> = Some(nodus_service::Panel {
        title: "Messages",
        script: include_str!("../../ui/panel.js"),
    });

    const LEGACY_FILES: &'static [(&'static str, &'static str)] =
        &[("msg.redb", "msg.redb"), ("msg.wal", "msg.wal")];

    fn register_records(_config: &MsgConfig, validators: &mut nodus_net::Validators) {
        register_records(validators);
    }

    fn watcher(config: &mut MsgConfig) {
        config.mailbox_serve = false;
    }

    async fn start(
        ctx: nodus_service::ServiceContext<'_>,
        config: MsgConfig,
    ) -> Result<nodus_service::Started<MsgHandle>, MsgError> {
        let (key, db, anonymity) = if config.anonymous {
            let onion = ctx
                .provided
                .get::<SharedAnonymity>()
                .ok_or(MsgError::NeedsOnion)?;
            let key = crate::anonymous::identity(&ctx.dir.join("anonymous.key"))?;
            (key, ctx.dir.join("anonymous.redb"), Some(onion))
        } else {
            (ctx.key, ctx.dir.join("msg.redb"), None)
        };
        let (handle, tasks) = spawn_with(
            config,
            key,
            ctx.net,
            &db,
            ctx.metrics,
            ctx.shutdown,
            anonymity,
        )
        .await?;
        Ok(nodus_service::Started {
            root: vec![],
            routes: crate::http::routes(handle.clone()),
            events: Some(nodus_service::EventFeed::broadcast(handle.events.clone())),
            endpoints: Vec::new(),
            tasks,
            handle,
        })
    }
}

/// Registers the `msg` DHT namespace with the overlay's validators.
pub fn register_records(validators: &mut nodus_net::Validators) {
    validators.register(
        "msg",
        Arc::new(|r: &libp2p::kad::Record| {
            card::validate_record(r.key.as_ref(), &r.value).map_err(Into::into)
        }),
    );
}

/// Starts the service. `node_key` is the node's identity, which signs the messaging
/// keys; `path` is msg.redb.
pub fn spawn(
    config: MsgConfig,
    node_key: Keypair,
    net: NetworkHandle,
    path: &Path,
    registry: &mut Registry,
    shutdown: watch::Receiver<bool>,
) -> Result<(MsgHandle, Vec<JoinHandle<()>>), MsgError> {
    let config = MsgConfig {
        anonymous: false,
        ..config
    };
    spawn_inner(config, node_key, net, path, registry, shutdown, None)
}

/// [`spawn`], and with `anonymity` the identity `key` (never the node's) takes
/// messages on its onion service and sends through circuits ([`crate::anonymous`]).
async fn spawn_with(
    config: MsgConfig,
    key: Keypair,
    net: NetworkHandle,
    path: &Path,
    registry: &mut Registry,
    shutdown: watch::Receiver<bool>,
    anonymity: Option<SharedAnonymity>,
) -> Result<(MsgHandle, Vec<JoinHandle<()>>), MsgError> {
    let circuits = match &anonymity {
        Some(onion) => {
            let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
                .await
                .map_err(MsgError::Listen)?;
            let port = listener.local_addr().map_err(MsgError::Listen)?.port();
            let address = onion.serve(key.clone(), port)?;
            tracing::info!(target: "nodus::msg", "anonymous messaging at {address} as {}", key.public().to_peer_id());
            Some((onion.clone(), listener))
        }
        None => None,
    };
    spawn_inner(config, key, net, path, registry, shutdown, circuits)
}

fn spawn_inner(
    config: MsgConfig,
    node_key: Keypair,
    net: NetworkHandle,
    path: &Path,
    registry: &mut Registry,
    mut shutdown: watch::Receiver<bool>,
    circuits: Option<(SharedAnonymity, tokio::net::TcpListener)>,
) -> Result<(MsgHandle, Vec<JoinHandle<()>>), MsgError> {
    let store = Store::open(path)?;
    let files_dir = path.with_file_name("files");
    let blobs = Arc::new(crate::files::Blobs::open(&files_dir).map_err(|source| {
        MsgError::Store(StoreError::Files {
            path: files_dir.clone(),
            source,
        })
    })?);
    let me = node_key.public().to_peer_id();
    let (tx, rx) = mpsc::channel(INPUT_CAPACITY);
    let (events, _) = broadcast::channel(EVENT_CAPACITY);
    let (signals, _) = broadcast::channel(EVENT_CAPACITY);
    let metrics = Metrics::register(registry);
    let max_file_bytes = config.max_file_mib.saturating_mul(1 << 20);
    let upload_rate =
        (config.file_upload_limit_kib > 0).then(|| config.file_upload_limit_kib * 1024);
    let mut tasks = crate::inbound::serve(
        &net,
        tx.clone(),
        metrics.clone(),
        &shutdown,
        blobs.clone(),
        upload_rate,
        circuits.is_some(),
    )?;
    tasks.push(tokio::spawn(forward_peer_events(
        net.events(),
        tx.clone(),
        shutdown.clone(),
    )));
    let mut actor = Actor::load(
        config,
        node_key,
        net,
        (store, blobs.clone()),
        tx.clone(),
        (events.clone(), signals.clone()),
        metrics,
    )?;
    if let Some((onion, listener)) = circuits {
        actor.mailboxes =
            delivery::Mailboxes::anonymous(actor.net.clone(), onion.clone(), actor.key.clone());
        actor.route = delivery::Route::Onion(onion);
        tasks.push(tokio::spawn(crate::inbound::serve_circuits(
            listener,
            tx.clone(),
            crate::inbound::Peers::new(actor.metrics.clone(), actor.net.clone()),
            shutdown.clone(),
        )));
    }
    tasks.push(tokio::spawn(async move {
        actor.run(rx, &mut shutdown).await;
    }));
    Ok((
        MsgHandle {
            tx,
            events,
            signals,
            peer: me,
            blobs,
            max_file_bytes,
        },
        tasks,
    ))
}

/// Turns the overlay's connection events into [`Input::PeerUp`], so delivery retries
/// the moment a peer is back instead of at its next timer.
async fn forward_peer_events(
    mut events: broadcast::Receiver<nodus_net::NetEvent>,
    inputs: mpsc::Sender<Input>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let ev = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            ev = events.recv() => ev,
        };
        match ev {
            Ok(nodus_net::NetEvent::PeerConnected { peer, .. }) => {
                if let Ok(p) = peer.parse()
                    && inputs.send(Input::PeerUp(p)).await.is_err()
                {
                    return;
                }
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Where an envelope came from, which says who may have sent it.
#[derive(Debug, Clone, Copy)]
pub enum Origin {
    /// A stream from this peer: the envelope's sender must be it.
    Peer(PeerId),
    /// A mailbox: the sender is the one authenticated inside the envelope, and as no
    /// stream acknowledges it to them, a receipt goes back.
    Mailbox,
    /// This node's anonymous onion service: the sender is the one authenticated inside,
    /// and the stream acknowledges it.
    Circuit,
}

type After = Box<dyn FnOnce() + Send>;

struct Actor {
    cfg: MsgConfig,
    key: Keypair,
    me: PeerId,
    me_str: String,
    card: ContactCard,
    net: NetworkHandle,
    /// How envelopes reach contacts: the overlay, or circuits when anonymous.
    route: delivery::Route,
    /// How mailboxes are reached, and as whom.
    mailboxes: delivery::Mailboxes,
    store: Store,
    crypto: Crypto,
    groups: GroupCrypto,
    contacts: HashMap<String, Contact>,
    group_state: HashMap<MsgId, Group>,
    outbox: HashMap<String, OutItem>,
    /// Outbox entries per message id (a group message has one per member).
    outbox_ids: HashMap<MsgId, usize>,
    order: u64,
    /// The `order` last written, so an idle batch writes nothing.
    saved_order: u64,
    inputs: mpsc::Sender<Input>,
    events: broadcast::Sender<MsgEvent>,
    signals: broadcast::Sender<crate::Signal>,
    metrics: Metrics,
    workers: HashMap<PeerId, mpsc::Sender<Vec<Outgoing>>>,
    in_flight: HashSet<String>,
    retry_at: HashMap<String, Instant>,
    key_fetches: HashMap<String, Instant>,
    /// Mailbox items to retract, by (mailbox, recipient); sent after each batch.
    retractions: HashMap<(PeerId, PeerId), Vec<MsgId>>,
    /// Peers a delivery to failed since they last answered.
    unreachable: HashSet<String>,
    /// Peers whose next session is made from their fallback key.
    use_fallback: HashSet<String>,
    /// Mailbox usage per sending peer: (items, bytes), and its rate window.
    usage: HashMap<String, (usize, u64)>,
    rate: HashMap<String, (Instant, u32)>,
    mailbox_total: usize,
    publish: PublishState,
    poll: PollState,
    /// Written once per batch, before the commit: many messages of a batch move the
    /// same ratchet and counter.
    dirty_sessions: HashSet<String>,
    dirty_contacts: HashSet<String>,
    dirty_account: bool,
    last_prune: Instant,
    after: Vec<After>,
    dirty_dispatch: bool,
    /// Texts written during the current batch, per recipient, queued at its end.
    bundling: HashMap<String, Vec<Plain>>,
    /// Mailbox items we took and asked to delete, and when: a poll racing ours may
    /// fetch them again before the delete lands.
    deleting: HashMap<(PeerId, MsgId, [u8; 32]), Instant>,
    blobs: Arc<crate::files::Blobs>,
    /// Files being fetched (their rows are in `downloads`).
    downloads: HashMap<wire::FileHash, files::DownloadRun>,
}

#[derive(Default)]
struct PublishState {
    in_progress: bool,
    dirty: bool,
    last: Option<Instant>,
    next_try: Option<Instant>,
}

#[derive(Default)]
struct PollState {
    in_progress: bool,
    /// Polls since start that reached at least one mailbox.
    reached: u32,
    next: Option<Instant>,
}

fn peer_str(bytes: &[u8]) -> Option<String> {
    PeerId::from_bytes(bytes).ok().map(|p| p.to_string())
}

fn message_key(conv: &str, sent_ms: u64, seq: u64, id: &MsgId) -> String {
    format!("{conv}|{sent_ms:016}|{seq:016}|{}", hex::encode(id))
}

fn group_conv(g: &MsgId) -> String {
    format!("group:{}", hex::encode(g))
}

impl Actor {
    fn load(
        cfg: MsgConfig,
        key: Keypair,
        net: NetworkHandle,
        (store, blobs): (Store, Arc<crate::files::Blobs>),
        inputs: mpsc::Sender<Input>,
        (events, signals): (
            broadcast::Sender<MsgEvent>,
            broadcast::Sender<crate::Signal>,
        ),
        metrics: Metrics,
    ) -> Result<Actor, MsgError> {
        let me = key.public().to_peer_id();
        let account: Option<AccountPickle> = store
            .get_raw(store::META, "account")?
            .map(|b| serde_json::from_slice(&b))
            .transpose()
            .map_err(|e| MsgError::Store(StoreError::Damaged(format!("account: {e}"))))?;
        let seal_secret = store.get_raw(store::META, "seal")?;
        let crypto = match (account, seal_secret) {
            (Some(a), Some(s)) => {
                let seal = SealKey::from_secret(&s).ok_or_else(|| {
                    MsgError::Store(StoreError::Damaged("unreadable seal key".into()))
                })?;
                let mut sessions = HashMap::new();
                for (peer, pickles) in store.scan::<Vec<u8>>(store::SESSIONS, "")? {
                    let list: Vec<SessionPickle> =
                        serde_json::from_slice(&pickles).map_err(|e| {
                            MsgError::Store(StoreError::Damaged(format!("sessions of {peer}: {e}")))
                        })?;
                    sessions.insert(peer, list.into_iter().map(Session::from_pickle).collect());
                }
                let published: Vec<[u8; 32]> =
                    store.get(store::META, "published")?.unwrap_or_default();
                Crypto::restore(Account::from_pickle(a), seal, sessions, published)
            }
            _ => {
                let c = Crypto::new();
                let w = store.write()?;
                let mut txn = w.txn();
                save_account(&mut txn, &c)?;
                txn.put_raw(store::META, "seal", &c.seal.secret_bytes())?;
                drop(txn);
                w.commit()?;
                c
            }
        };
        let name = if cfg.name.is_empty() {
            short(&me.to_string())
        } else {
            cfg.name.clone()
        };
        let card = ContactCard::new(
            &key,
            &name,
            crypto.curve25519(),
            crypto.ed25519(),
            crypto.seal.public(),
        )?;
        let contacts: HashMap<String, Contact> =
            store.scan(store::CONTACTS, "")?.into_iter().collect();
        let mut groups = GroupCrypto::default();
        let mut group_state = HashMap::new();
        for (gid, g) in store.scan::<Group>(store::GROUPS, "")? {
            let Some(id) = parse_id(&gid) else { continue };
            group_state.insert(id, g);
        }
        for (gid, pickle) in store.scan::<Vec<u8>>(store::GROUP_OUT, "")? {
            let (Some(id), Ok(p)) = (parse_id(&gid), serde_json::from_slice(&pickle)) else {
                continue;
            };
            groups.restore_outbound(id, p);
        }
        for (k, pickle) in store.scan::<Vec<u8>>(store::GROUP_IN, "")? {
            let mut parts = k.splitn(3, '|');
            let (Some(g), Some(sender)) = (parts.next().and_then(parse_id), parts.next()) else {
                continue;
            };
            if let Ok(p) = serde_json::from_slice(&pickle) {
                groups.restore_inbound(g, sender.to_string(), p);
            }
        }
        let outbox: HashMap<String, OutItem> = store.outbox()?.into_iter().collect();
        let mut outbox_ids: HashMap<MsgId, usize> = HashMap::new();
        for i in outbox.values() {
            for id in i.message_ids() {
                *outbox_ids.entry(*id).or_default() += 1;
            }
        }
        let order = store.get::<u64>(store::META, "order")?.unwrap_or(0);
        let mut usage: HashMap<String, (usize, u64)> = HashMap::new();
        let mut mailbox_total = 0;
        for (_, item) in store.scan::<MailItem>(store::MAILBOX, "")? {
            let u = usage.entry(item.from.clone()).or_default();
            u.0 += 1;
            u.1 += item.sealed.len() as u64;
            mailbox_total += 1;
        }
        metrics.outbox.set(outbox.len() as i64);
        metrics.mailbox_items.set(mailbox_total as i64);
        let publish = PublishState {
            dirty: true,
            ..Default::default()
        };
        let mut actor = Actor {
            cfg,
            key,
            me,
            me_str: me.to_string(),
            card,
            route: delivery::Route::Overlay(net.clone()),
            mailboxes: delivery::Mailboxes::overlay(net.clone()),
            net,
            store,
            crypto,
            groups,
            contacts,
            group_state,
            outbox,
            outbox_ids,
            order,
            saved_order: order,
            inputs,
            events,
            signals,
            metrics,
            workers: HashMap::new(),
            in_flight: HashSet::new(),
            retry_at: HashMap::new(),
            key_fetches: HashMap::new(),
            use_fallback: HashSet::new(),
            unreachable: HashSet::new(),
            retractions: HashMap::new(),
            usage,
            rate: HashMap::new(),
            mailbox_total,
            publish,
            poll: PollState::default(),
            dirty_sessions: HashSet::new(),
            dirty_contacts: HashSet::new(),
            dirty_account: false,
            last_prune: Instant::now() - PRUNE_EVERY,
            after: Vec::new(),
            dirty_dispatch: true,
            bundling: HashMap::new(),
            deleting: HashMap::new(),
            blobs,
            downloads: HashMap::new(),
        };
        actor.load_downloads()?;
        Ok(actor)
    }

    async fn run(&mut self, mut rx: mpsc::Receiver<Input>, shutdown: &mut watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_input = Instant::now();
        loop {
            let mut batch = Vec::new();
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                first = rx.recv() => match first {
                    Some(i) => batch.push(i),
                    None => break,
                },
                _ = tick.tick() => {}
            }
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(i) => batch.push(i),
                    Err(_) => break,
                }
            }
            let idle = batch.is_empty() && last_input.elapsed() >= CHECKPOINT_IDLE;
            if !batch.is_empty() {
                last_input = Instant::now();
            }
            if let Err(e) = self.apply(batch) {
                // Memory and disk may now disagree; the restart reloads the disk (and
                // replays the log, so no checkpoint here: it could skip a record).
                tracing::error!(target: "nodus::msg", "message store failed, stopping the service: {e}");
                return;
            }
            self.housekeeping();
            if self.dirty_dispatch {
                self.dirty_dispatch = false;
                self.dispatch();
            }
            self.start_downloads();
            if idle
                && self.store.has_unsynced()
                && let Err(e) = self.store.checkpoint()
            {
                tracing::error!(target: "nodus::msg", "message store failed, stopping the service: {e}");
                return;
            }
        }
        if self.store.has_unsynced()
            && let Err(e) = self.store.checkpoint()
        {
            tracing::warn!(target: "nodus::msg", "checkpoint at shutdown: {e}");
        }
        tracing::debug!(target: "nodus::msg", "messaging service stopped");
    }

    fn apply(&mut self, batch: Vec<Input>) -> Result<(), MsgError> {
        let w = self.store.write()?;
        let mut txn = w.txn();
        for input in batch {
            self.handle(&mut txn, input)?;
        }
        self.flush_bundles(&mut txn)?;
        for peer in std::mem::take(&mut self.dirty_sessions) {
            save_sessions(&mut txn, &self.crypto, &peer)?;
        }
        for peer in std::mem::take(&mut self.dirty_contacts) {
            if let Some(c) = self.contacts.get(&peer) {
                txn.put(store::CONTACTS, &peer, c)?;
            }
        }
        if std::mem::take(&mut self.dirty_account) {
            save_account(&mut txn, &self.crypto)?;
        }
        if self.order != self.saved_order {
            txn.put(store::META, "order", &self.order)?;
            self.saved_order = self.order;
        }
        drop(txn);
        w.commit()?;
        for ((mailbox, to), ids) in self.retractions.drain() {
            tokio::spawn(delivery::retract(self.mailboxes.clone(), mailbox, to, ids));
        }
        for f in self.after.drain(..) {
            f();
        }
        self.metrics.outbox.set(self.outbox.len() as i64);
        self.metrics.mailbox_items.set(self.mailbox_total as i64);
        Ok(())
    }

    fn later(&mut self, f: impl FnOnce() + Send + 'static) {
        self.after.push(Box::new(f));
    }

    fn reply<T: Send + 'static>(
        &mut self,
        tx: oneshot::Sender<Result<T, MsgError>>,
        value: Result<T, MsgError>,
    ) {
        match value {
            // Errors leave at once: they changed nothing worth waiting for.
            Err(e) => {
                let _ = tx.send(Err(e));
            }
            Ok(v) => self.later(move || {
                let _ = tx.send(Ok(v));
            }),
        }
    }

    fn emit(&mut self, ev: MsgEvent) {
        let events = self.events.clone();
        self.later(move || {
            let _ = events.send(ev);
        });
    }

    fn handle(&mut self, txn: &mut Txn, input: Input) -> Result<(), MsgError> {
        match input {
            Input::Api(cmd) => self.command(txn, cmd)?,
            Input::Envelope {
                from,
                envelope,
                reply,
            } => {
                let r = self.receive(txn, from, envelope)?;
                if let Some(tx) = reply {
                    self.later(move || {
                        let _ = tx.send(r);
                    });
                }
            }
            Input::Replies {
                peer,
                replies,
                path,
            } => self.on_replies(txn, peer, replies, path)?,
            Input::SendFailed { peer, keys, error } => {
                self.on_send_failed(txn, peer, keys, error)?
            }
            Input::Stored { keys, result } => self.on_stored(txn, keys, result)?,
            Input::Keys { peer, bundle } => self.on_keys(txn, peer, bundle)?,
            Input::Published(r) => {
                self.publish.in_progress = false;
                match r {
                    Ok(()) => self.publish.last = Some(Instant::now()),
                    Err(e) => {
                        tracing::debug!(target: "nodus::msg", "publishing one-time keys failed: {e}");
                        self.publish.dirty = true;
                        self.publish.next_try = Some(Instant::now() + Duration::from_secs(2));
                    }
                }
            }
            Input::Mailbox {
                from,
                request,
                reply,
            } => {
                let r = self.mailbox_request(txn, from, request)?;
                self.later(move || {
                    let _ = reply.send(r);
                });
            }
            Input::Fetched { mailbox, items } => self.on_fetched(txn, mailbox, items)?,
            Input::PollAnswered(reply) => self.reply(reply, Ok(())),
            Input::PeerUp(peer) => {
                self.retry_now(&peer.to_string());
                self.downloads_peer_up(&peer);
            }
            Input::FileGrant { peer, hash, reply } => {
                let grant = self.file_grant(txn, &peer, &hash)?;
                // Read only: nothing to wait for.
                let _ = reply.send(grant);
            }
            Input::FileProgress { hash, received } => self.on_file_progress(txn, hash, received)?,
            Input::FileEnded { hash, result } => self.on_file_ended(txn, hash, result)?,
            Input::PollDone { mailboxes, error } => {
                self.poll.in_progress = false;
                if mailboxes > 0 {
                    self.poll.reached += 1;
                }
                // Soon after start the routing table is still filling and the first
                // polls may miss mailboxes: 1, 2, 4, ... seconds apart, then the interval.
                let wait = Duration::from_secs(1 << self.poll.reached.min(5))
                    .min(config::poll_interval(&self.cfg));
                self.poll.next = Some(Instant::now() + wait);
                if let Some(e) = &error {
                    tracing::debug!(target: "nodus::msg", "mailbox poll: {e}");
                }
            }
        }
        Ok(())
    }
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

fn save_account(txn: &mut Txn, c: &Crypto) -> Result<(), MsgError> {
    txn.put_raw(store::META, "account", &json(&c.account.pickle()))?;
    txn.put(store::META, "published", &c.published)
}

fn save_sessions(txn: &mut Txn, c: &Crypto, peer: &str) -> Result<(), MsgError> {
    let pickles = c.session_pickles(peer);
    if pickles.is_empty() {
        txn.remove(store::SESSIONS, peer)?;
        return Ok(());
    }
    txn.put(store::SESSIONS, peer, &json(&pickles))
}

fn parse_id(s: &str) -> Option<MsgId> {
    let mut id = [0u8; 16];
    hex::decode_to_slice(s, &mut id).ok()?;
    Some(id)
}

pub(crate) fn short(peer: &str) -> String {
    let n = peer.len();
    if n > 8 {
        format!("…{}", &peer[n - 6..])
    } else {
        peer.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_keys_sort_by_time_then_seq() {
        let id = [0u8; 16];
        let a = message_key("c", 5, 2, &id);
        let b = message_key("c", 5, 10, &id);
        let c = message_key("c", 40, 1, &id);
        assert!(a < b && b < c);
    }
}
