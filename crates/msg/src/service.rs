//! The messaging actor. One task owns the Olm account, the sessions and msg.redb; every
//! change (an API call, an envelope from a peer, a delivery result) reaches it as an
//! [`Input`]. It takes inputs in batches and applies each batch in one write
//! transaction, so a message and the ratchet state that goes with it are durable
//! together, and replies (acknowledgements to peers included) leave only after the
//! commit. Network work runs in tasks of [`crate::delivery`] and [`crate::inbound`].

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
use crate::card::{self, ContactCard, Invite, KeyBundle};
use crate::config::{self, MsgConfig};
use crate::delivery::{self, Outgoing};
use crate::handle::{Command, MsgHandle};
use crate::megolm::GroupCrypto;
use crate::olm::{BUNDLE_KEYS, Crypto};
use crate::seal::{self, SealKey};
use crate::store::{self, Contact, Group, MailItem, OutItem, Store, Txn};
use crate::types::{
    ContactInfo, GroupInfo, GroupMember, Message, MessageState, MsgEvent, MsgStats,
};
use crate::wire::{
    self, Body, Content, Envelope, GroupPlain, MAX_FETCH, MAX_FRAME, MAX_TEXT, MailboxItem,
    MailboxReply, MailboxRequest, MsgId, MsgReply, Plain, RejectReason,
};

const INPUT_CAPACITY: usize = 4096;
const BATCH: usize = 512;
const EVENT_CAPACITY: usize = 4096;
/// Total items a mailbox keeps for everyone together.
const MAILBOX_TOTAL: usize = 100_000;
/// Ids of accepted messages are remembered this long, to drop duplicates and replays.
const SEEN_FOR_MS: u64 = 30 * 24 * 3600 * 1000;
const REPUBLISH: Duration = Duration::from_secs(3600);
/// Refusals a group message gets for a key or membership not there yet, before it fails.
const TRANSIENT_ATTEMPTS: u32 = 10;
const PRUNE_EVERY: Duration = Duration::from_secs(600);

pub(crate) enum Input {
    Api(Command),
    /// An envelope from a peer (`from`) or from a mailbox (`from` None).
    Envelope {
        from: Option<PeerId>,
        envelope: Envelope,
        reply: Option<oneshot::Sender<MsgReply>>,
    },
    Replies {
        peer: PeerId,
        replies: Vec<(String, MsgReply)>,
    },
    SendFailed {
        peer: PeerId,
        keys: Vec<String>,
        error: String,
    },
    Stored {
        keys: Vec<String>,
        result: Result<Vec<PeerId>, String>,
    },
    Keys {
        peer: PeerId,
        bundle: Result<KeyBundle, String>,
    },
    Published(Result<(), String>),
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
        error: Option<String>,
    },
    /// An asked-for poll has handed over what its first wave fetched.
    PollAnswered(Answer),
    /// A connection to this peer opened: what waits for it can go now.
    PeerUp(PeerId),
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
    duplicates: Counter,
    rejected: Family<Reason, Counter>,
    rejected_total: Counter,
    garbage: Family<Reason, Counter>,
    mailbox_stored: Counter,
    mailbox_refused: Family<Reason, Counter>,
    outbox: Gauge,
    mailbox_items: Gauge,
}

impl Metrics {
    fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics::default();
        let r = registry.sub_registry_with_prefix("msg");
        r.register(
            "sent",
            "Envelopes acknowledged by their recipient",
            m.sent.clone(),
        );
        r.register(
            "received",
            "Messages accepted from peers",
            m.received.clone(),
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

/// Registers the `msg` DHT namespace with the overlay's validators.
pub fn register_records(validators: &mut nodus_net::Validators) {
    validators.register(
        "msg",
        Arc::new(|r: &libp2p::kad::Record| card::validate_record(r.key.as_ref(), &r.value)),
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
    mut shutdown: watch::Receiver<bool>,
) -> Result<(MsgHandle, Vec<JoinHandle<()>>), MsgError> {
    let store = Store::open(path)?;
    let me = node_key.public().to_peer_id();
    let (tx, rx) = mpsc::channel(INPUT_CAPACITY);
    let (events, _) = broadcast::channel(EVENT_CAPACITY);
    let metrics = Metrics::register(registry);
    let mut tasks = crate::inbound::serve(&net, tx.clone(), metrics.clone(), &shutdown)?;
    tasks.push(tokio::spawn(forward_peer_events(
        net.events(),
        tx.clone(),
        shutdown.clone(),
    )));
    let mut actor = Actor::load(
        config,
        node_key,
        net,
        store,
        tx.clone(),
        events.clone(),
        metrics,
    )?;
    tasks.push(tokio::spawn(async move {
        actor.run(rx, &mut shutdown).await;
    }));
    Ok((
        MsgHandle {
            tx,
            events,
            peer: me,
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

type After = Box<dyn FnOnce() + Send>;

struct Actor {
    cfg: MsgConfig,
    key: Keypair,
    me: PeerId,
    me_str: String,
    card: ContactCard,
    net: NetworkHandle,
    store: Store,
    crypto: Crypto,
    groups: GroupCrypto,
    contacts: HashMap<String, Contact>,
    group_state: HashMap<MsgId, Group>,
    outbox: HashMap<String, OutItem>,
    /// Outbox entries per message id (a group message has one per member).
    outbox_ids: HashMap<MsgId, usize>,
    order: u64,
    inputs: mpsc::Sender<Input>,
    events: broadcast::Sender<MsgEvent>,
    metrics: Metrics,
    workers: HashMap<PeerId, mpsc::Sender<Vec<Outgoing>>>,
    in_flight: HashSet<String>,
    retry_at: HashMap<String, Instant>,
    key_fetches: HashMap<String, Instant>,
    /// Mailbox items to retract, by (mailbox, recipient); sent after each batch.
    retractions: HashMap<(PeerId, PeerId), Vec<MsgId>>,
    /// Peers whose next session is made from their fallback key.
    use_fallback: HashSet<String>,
    /// Mailbox usage per sending peer: (items, bytes), and its rate window.
    usage: HashMap<String, (usize, u64)>,
    rate: HashMap<String, (Instant, u32)>,
    mailbox_total: usize,
    publish: PublishState,
    poll: PollState,
    unseen: usize,
    /// Written once per batch, before the commit: many messages of a batch move the
    /// same ratchet and counter.
    dirty_sessions: HashSet<String>,
    dirty_contacts: HashSet<String>,
    dirty_account: bool,
    last_prune: Instant,
    after: Vec<After>,
    dirty_dispatch: bool,
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
        store: Store,
        inputs: mpsc::Sender<Input>,
        events: broadcast::Sender<MsgEvent>,
        metrics: Metrics,
    ) -> Result<Actor, MsgError> {
        let me = key.public().to_peer_id();
        let account: Option<AccountPickle> = store
            .get_raw(store::META, "account")?
            .map(|b| serde_json::from_slice(&b))
            .transpose()
            .map_err(|e| MsgError::Store(format!("account: {e}")))?;
        let seal_secret = store.get_raw(store::META, "seal")?;
        let crypto = match (account, seal_secret) {
            (Some(a), Some(s)) => {
                let seal = SealKey::from_secret(&s)
                    .ok_or_else(|| MsgError::Store("unreadable seal key".into()))?;
                let mut sessions = HashMap::new();
                for (peer, pickles) in store.scan::<Vec<u8>>(store::SESSIONS, "")? {
                    let list: Vec<SessionPickle> = serde_json::from_slice(&pickles)
                        .map_err(|e| MsgError::Store(format!("sessions of {peer}: {e}")))?;
                    sessions.insert(peer, list.into_iter().map(Session::from_pickle).collect());
                }
                let published: Vec<[u8; 32]> =
                    store.get(store::META, "published")?.unwrap_or_default();
                Crypto::restore(Account::from_pickle(a), seal, sessions, published)
            }
            _ => {
                let c = Crypto::new();
                let mut txn = store.write()?;
                save_account(&mut txn, &c)?;
                txn.put_raw(store::META, "seal", &c.seal.secret_bytes())?;
                txn.commit()?;
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
        let outbox: HashMap<String, OutItem> = store.scan(store::OUTBOX, "")?.into_iter().collect();
        let mut outbox_ids: HashMap<MsgId, usize> = HashMap::new();
        for i in outbox.values() {
            *outbox_ids.entry(i.id).or_default() += 1;
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
        let unseen = store
            .scan::<Message>(store::MESSAGES, "")?
            .iter()
            .filter(|(_, m)| !m.outgoing && !m.seen)
            .count();
        metrics.outbox.set(outbox.len() as i64);
        metrics.mailbox_items.set(mailbox_total as i64);
        let publish = PublishState {
            dirty: true,
            ..Default::default()
        };
        Ok(Actor {
            cfg,
            key,
            me,
            me_str: me.to_string(),
            card,
            net,
            store,
            crypto,
            groups,
            contacts,
            group_state,
            outbox,
            outbox_ids,
            order,
            inputs,
            events,
            metrics,
            workers: HashMap::new(),
            in_flight: HashSet::new(),
            retry_at: HashMap::new(),
            key_fetches: HashMap::new(),
            use_fallback: HashSet::new(),
            retractions: HashMap::new(),
            usage,
            rate: HashMap::new(),
            mailbox_total,
            publish,
            poll: PollState::default(),
            unseen,
            dirty_sessions: HashSet::new(),
            dirty_contacts: HashSet::new(),
            dirty_account: false,
            last_prune: Instant::now() - PRUNE_EVERY,
            after: Vec::new(),
            dirty_dispatch: true,
        })
    }

    async fn run(&mut self, mut rx: mpsc::Receiver<Input>, shutdown: &mut watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
            if let Err(e) = self.apply(batch) {
                // Memory and disk may now disagree; the restart reloads the disk.
                tracing::error!(target: "nodus::msg", "message store failed, stopping the service: {e}");
                break;
            }
            self.housekeeping();
            if self.dirty_dispatch {
                self.dirty_dispatch = false;
                self.dispatch();
            }
        }
        tracing::debug!(target: "nodus::msg", "messaging service stopped");
    }

    fn apply(&mut self, batch: Vec<Input>) -> Result<(), MsgError> {
        let mut txn = self.store.write()?;
        for input in batch {
            self.handle(&mut txn, input)?;
        }
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
        txn.put(store::META, "order", &self.order)?;
        txn.commit()?;
        for ((mailbox, to), ids) in self.retractions.drain() {
            tokio::spawn(delivery::retract(self.net.clone(), mailbox, to, ids));
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
            Input::Replies { peer, replies } => self.on_replies(txn, peer, replies)?,
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
            Input::PeerUp(peer) => self.retry_now(&peer.to_string()),
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

    // ---- API ---------------------------------------------------------------------

    fn command(&mut self, txn: &mut Txn, cmd: Command) -> Result<(), MsgError> {
        match cmd {
            Command::Invite(reply) => {
                let otk = self.crypto.new_one_time_keys(1);
                let r = match otk.first() {
                    Some(k) => {
                        self.dirty_account = true;
                        Invite::new(&self.key, self.card.clone(), *k)
                            .map(|i| i.to_code())
                            .map_err(MsgError::from)
                    }
                    None => Err(MsgError::Store("no one-time key generated".into())),
                };
                self.reply(reply, r);
            }
            Command::AddContact { code, name, reply } => {
                let r = self.add_contact(txn, &code, name);
                self.reply(reply, r);
            }
            Command::Contacts(reply) => {
                let mut list: Vec<ContactInfo> = self
                    .contacts
                    .iter()
                    .map(|(p, c)| self.contact_info(p, c))
                    .collect();
                list.sort_by(|a, b| a.name.cmp(&b.name));
                self.reply(reply, Ok(list));
            }
            Command::Send { to, text, reply } => {
                let r = self.send_text(txn, &to, text);
                self.reply(reply, r);
            }
            Command::Inbox { all, reply } => {
                let r = self.inbox(txn, all);
                self.reply(reply, r);
            }
            Command::History { with, reply } => {
                let r = self.history(txn, &with);
                self.reply(reply, r);
            }
            Command::GroupCreate { name, reply } => {
                let r = self.group_create(txn, name);
                self.reply(reply, r);
            }
            Command::GroupAdd {
                group,
                contact,
                reply,
            } => {
                let r = self.group_change(txn, &group, &contact, true);
                self.reply(reply, r);
            }
            Command::GroupRemove {
                group,
                contact,
                reply,
            } => {
                let r = self.group_change(txn, &group, &contact, false);
                self.reply(reply, r);
            }
            Command::GroupSend { group, text, reply } => {
                let r = self.group_send(txn, &group, text);
                self.reply(reply, r);
            }
            Command::Groups(reply) => {
                let mut list: Vec<GroupInfo> = self
                    .group_state
                    .iter()
                    .map(|(id, g)| self.group_info(id, g))
                    .collect();
                list.sort_by(|a, b| a.name.cmp(&b.name));
                self.reply(reply, Ok(list));
            }
            Command::Stats(reply) => {
                let s = MsgStats {
                    contacts: self.contacts.len(),
                    groups: self.group_state.len(),
                    outbox: self.outbox.len(),
                    mailbox_items: self.mailbox_total,
                    one_time_keys: self.crypto.published.len(),
                    rejected: self.metrics.rejected_total.get(),
                    duplicates: self.metrics.duplicates.get(),
                    received: self.metrics.received.get(),
                };
                self.reply(reply, Ok(s));
            }
            Command::Poll(reply) => {
                // Its own poll, not one already running: that one may have asked before
                // what the caller expects arrived.
                let (net, inputs) = (self.net.clone(), self.inputs.clone());
                let replicas = self.cfg.mailbox_replicas.max(1);
                self.later(move || {
                    tokio::spawn(delivery::poll(net, replicas, inputs, Some(reply), false));
                });
            }
        }
        Ok(())
    }

    fn contact_info(&self, peer: &str, c: &Contact) -> ContactInfo {
        ContactInfo {
            peer_id: peer.to_string(),
            name: c.name.clone(),
            session: self.crypto.has_session(peer),
            added_ms: c.added_ms,
        }
    }

    fn group_info(&self, id: &MsgId, g: &Group) -> GroupInfo {
        GroupInfo {
            id: hex::encode(id),
            name: g.name.clone(),
            owner: g.owner.clone(),
            epoch: g.epoch,
            members: g
                .members
                .iter()
                .filter_map(|c| {
                    let peer = peer_str(&c.peer)?;
                    let name = self
                        .contacts
                        .get(&peer)
                        .map(|k| k.name.clone())
                        .unwrap_or_else(|| {
                            if peer == self.me_str {
                                self.card.name.clone()
                            } else {
                                c.name.clone()
                            }
                        });
                    Some(GroupMember {
                        peer_id: peer,
                        name,
                    })
                })
                .collect(),
        }
    }

    fn add_contact(
        &mut self,
        txn: &mut Txn,
        code: &str,
        name: Option<String>,
    ) -> Result<ContactInfo, MsgError> {
        let (invite, peer) = Invite::from_code(code)?;
        if peer == self.me {
            return Err(MsgError::OwnCode);
        }
        if let Some(n) = &name
            && n.len() > card::MAX_NAME
        {
            return Err(card::CardError::NameTooLong.into());
        }
        let peer = peer.to_string();
        let mut c = self.contacts.remove(&peer).unwrap_or(Contact {
            card: invite.card.clone(),
            name: String::new(),
            added_ms: now_ms(),
            out_seq: 0,
            invite_key: None,
        });
        c.card = invite.card.clone();
        c.name = name.unwrap_or_else(|| invite.card.name.clone());
        if !self.crypto.has_session(&peer) {
            c.invite_key = Some(invite.one_time_key);
        }
        txn.put(store::CONTACTS, &peer, &c)?;
        let info = self.contact_info(&peer, &c);
        self.contacts.insert(peer.clone(), c);
        // Anything waiting for keys to this peer can go now.
        self.encrypt_pending(txn, &peer)?;
        self.emit(MsgEvent::Contact {
            contact: info.clone(),
        });
        Ok(info)
    }

    fn resolve_contact(&self, who: &str) -> Result<String, MsgError> {
        if self.contacts.contains_key(who) {
            return Ok(who.to_string());
        }
        let matches: Vec<&String> = self
            .contacts
            .iter()
            .filter(|(_, c)| c.name.eq_ignore_ascii_case(who))
            .map(|(p, _)| p)
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(MsgError::NoContact(who.to_string())),
            many => Err(MsgError::Ambiguous(
                who.to_string(),
                many.iter().map(|p| short(p)).collect::<Vec<_>>().join(", "),
            )),
        }
    }

    fn resolve_group(&self, which: &str) -> Result<MsgId, MsgError> {
        let which = which.strip_prefix("group:").unwrap_or(which);
        if let Some(id) = parse_id(which)
            && self.group_state.contains_key(&id)
        {
            return Ok(id);
        }
        let matches: Vec<&MsgId> = self
            .group_state
            .iter()
            .filter(|(_, g)| g.name.eq_ignore_ascii_case(which))
            .map(|(id, _)| id)
            .collect();
        match matches.as_slice() {
            [one] => Ok(**one),
            [] => Err(MsgError::NoGroup(which.to_string())),
            many => Err(MsgError::Ambiguous(
                which.to_string(),
                many.iter().map(hex::encode).collect::<Vec<_>>().join(", "),
            )),
        }
    }

    fn check_text(text: &str) -> Result<(), MsgError> {
        if text.trim().is_empty() {
            return Err(MsgError::EmptyText);
        }
        if text.len() > MAX_TEXT {
            return Err(MsgError::TextTooLong(text.len()));
        }
        Ok(())
    }

    fn send_text(&mut self, txn: &mut Txn, to: &str, text: String) -> Result<Message, MsgError> {
        Self::check_text(&text)?;
        let peer = self.resolve_contact(to)?;
        let seq = self.next_seq(&peer)?;
        let plain = Plain {
            id: wire::new_id(),
            seq,
            sent_ms: now_ms(),
            content: Content::Text(text.clone()),
        };
        let msg = Message {
            id: hex::encode(plain.id),
            conversation: peer.clone(),
            from: self.me_str.clone(),
            from_name: self.card.name.clone(),
            outgoing: true,
            text,
            state: MessageState::Queued,
            seq,
            sent_ms: plain.sent_ms,
            stored_ms: plain.sent_ms,
            seen: true,
        };
        self.store_message(txn, &msg, &plain.id)?;
        self.queue_olm(txn, &peer, plain, true)?;
        self.emit(MsgEvent::Message {
            message: msg.clone(),
        });
        Ok(msg)
    }

    fn next_seq(&mut self, peer: &str) -> Result<u64, MsgError> {
        let c = self
            .contacts
            .get_mut(peer)
            .ok_or_else(|| MsgError::NoContact(peer.to_string()))?;
        c.out_seq += 1;
        let seq = c.out_seq;
        self.dirty_contacts.insert(peer.to_string());
        Ok(seq)
    }

    fn store_message(&mut self, txn: &mut Txn, m: &Message, id: &MsgId) -> Result<(), MsgError> {
        let key = message_key(&m.conversation, m.sent_ms, m.seq, id);
        txn.put(store::MESSAGES, &key, m)?;
        txn.put_raw(store::MSG_INDEX, &hex::encode(id), key.as_bytes())?;
        Ok(())
    }

    fn message_by_id(
        &self,
        txn: &mut Txn,
        id: &MsgId,
    ) -> Result<Option<(String, Message)>, MsgError> {
        let Some(key) = txn.get_raw_str(store::MSG_INDEX, &hex::encode(id))? else {
            return Ok(None);
        };
        Ok(txn.get::<Message>(store::MESSAGES, &key)?.map(|m| (key, m)))
    }

    /// Moves an outgoing message forward (never back) and tells the event stream.
    fn set_state(
        &mut self,
        txn: &mut Txn,
        id: &MsgId,
        to: &str,
        state: MessageState,
    ) -> Result<(), MsgError> {
        let Some((key, mut m)) = self.message_by_id(txn, id)? else {
            return Ok(());
        };
        if !m.outgoing || m.state >= state {
            return Ok(());
        }
        m.state = state;
        txn.put(store::MESSAGES, &key, &m)?;
        self.emit(MsgEvent::State {
            id: m.id.clone(),
            conversation: m.conversation.clone(),
            to: to.to_string(),
            state,
        });
        Ok(())
    }

    fn inbox(&mut self, txn: &mut Txn, all: bool) -> Result<Vec<Message>, MsgError> {
        let mut out: Vec<(String, Message)> = self
            .store
            .scan::<Message>(store::MESSAGES, "")?
            .into_iter()
            .filter(|(_, m)| !m.outgoing && (all || !m.seen))
            .collect();
        out.sort_by_key(|(_, m)| (m.stored_ms, m.sent_ms, m.seq));
        if all && out.len() > 200 {
            out.drain(..out.len() - 200);
        }
        self.mark_seen(txn, &out)?;
        Ok(out.into_iter().map(|(_, m)| m).collect())
    }

    fn history(&mut self, txn: &mut Txn, with: &str) -> Result<Vec<Message>, MsgError> {
        let conv = match self.resolve_contact(with) {
            Ok(peer) => peer,
            Err(e) => match self.resolve_group(with) {
                Ok(g) => group_conv(&g),
                Err(_) => return Err(e),
            },
        };
        let rows = self
            .store
            .scan::<Message>(store::MESSAGES, &format!("{conv}|"))?;
        self.mark_seen(txn, &rows)?;
        Ok(rows.into_iter().map(|(_, m)| m).collect())
    }

    /// Marks incoming messages as shown and sends read receipts to their authors.
    fn mark_seen(&mut self, txn: &mut Txn, rows: &[(String, Message)]) -> Result<(), MsgError> {
        let mut receipts: HashMap<String, Vec<MsgId>> = HashMap::new();
        for (key, m) in rows {
            if m.outgoing || m.seen {
                continue;
            }
            let mut m = m.clone();
            m.seen = true;
            txn.put(store::MESSAGES, key, &m)?;
            self.unseen = self.unseen.saturating_sub(1);
            if !m.conversation.starts_with("group:")
                && let Some(id) = parse_id(&m.id)
            {
                receipts.entry(m.from.clone()).or_default().push(id);
            }
        }
        for (peer, ids) in receipts {
            if self.contacts.contains_key(&peer) {
                // Each receipt well inside one frame.
                for chunk in ids.chunks(1000) {
                    self.queue_receipt(txn, &peer, chunk.to_vec(), true)?;
                }
            }
        }
        Ok(())
    }

    fn queue_receipt(
        &mut self,
        txn: &mut Txn,
        peer: &str,
        ids: Vec<MsgId>,
        read: bool,
    ) -> Result<(), MsgError> {
        let plain = Plain {
            id: wire::new_id(),
            seq: 0,
            sent_ms: now_ms(),
            content: Content::Receipt { ids, read },
        };
        self.queue_olm(txn, peer, plain, false)
    }

    // ---- encryption and the outbox ---------------------------------------------

    /// Puts a pairwise message in the outbox, encrypted now if a session exists (or
    /// can be made from an invite key), else kept until the peer's keys are fetched.
    fn queue_olm(
        &mut self,
        txn: &mut Txn,
        peer: &str,
        plain: Plain,
        user: bool,
    ) -> Result<(), MsgError> {
        self.order += 1;
        let mut item = OutItem {
            id: plain.id,
            to: peer.to_string(),
            envelope: None,
            pending: None,
            prekey_plain: None,
            mailboxes: Vec::new(),
            user,
            stored: false,
            attempts: 0,
            created_ms: now_ms(),
            order: self.order,
        };
        if self.ensure_session(txn, peer)? {
            self.encrypt_item(&mut item, plain)?;
        } else {
            item.pending = Some(plain);
            self.want_keys(peer);
        }
        self.outbox_put(txn, item)?;
        self.dirty_dispatch = true;
        Ok(())
    }

    fn ensure_session(&mut self, txn: &mut Txn, peer: &str) -> Result<bool, MsgError> {
        if self.crypto.has_session(peer) {
            return Ok(true);
        }
        let Some(c) = self.contacts.get_mut(peer) else {
            return Ok(false);
        };
        let Some(otk) = c.invite_key.take() else {
            return Ok(false);
        };
        let identity = c.card.curve25519;
        txn.put(store::CONTACTS, peer, c)?;
        match self.crypto.start_session(peer, &identity, &otk) {
            Ok(()) => Ok(true),
            Err(e) => {
                tracing::warn!(target: "nodus::msg", %peer, "invite key unusable: {e}");
                Ok(false)
            }
        }
    }

    fn encrypt_item(&mut self, item: &mut OutItem, plain: Plain) -> Result<(), MsgError> {
        let (bytes, kind) = self.encrypt_envelope(&item.to.clone(), &plain)?;
        item.envelope = Some(bytes);
        item.prekey_plain = (kind == 0).then_some(plain);
        Ok(())
    }

    fn encrypt_envelope(&mut self, peer: &str, plain: &Plain) -> Result<(Vec<u8>, u8), MsgError> {
        let (kind, ciphertext) = self
            .crypto
            .encrypt(peer, &wire::encode(plain))
            .map_err(|e| MsgError::Store(format!("encrypt for {peer}: {e}")))?;
        self.dirty_sessions.insert(peer.to_string());
        let envelope = Envelope {
            id: plain.id,
            sender: self.me.to_bytes(),
            body: Body::Olm {
                card: (kind == 0).then(|| self.card.clone()),
                kind,
                ciphertext,
            },
        };
        Ok((wire::encode(&envelope), kind))
    }

    /// Encrypts, in order, the items that waited for a session with `peer`.
    fn encrypt_pending(&mut self, txn: &mut Txn, peer: &str) -> Result<(), MsgError> {
        let mut waiting: Vec<OutItem> = self
            .outbox
            .values()
            .filter(|i| i.to == peer && i.pending.is_some())
            .cloned()
            .collect();
        if waiting.is_empty() || !self.ensure_session(txn, peer)? {
            return Ok(());
        }
        waiting.sort_by_key(|i| i.order);
        for mut item in waiting {
            let Some(plain) = item.pending.take() else {
                continue;
            };
            self.encrypt_item(&mut item, plain)?;
            self.outbox_put(txn, item)?;
        }
        self.dirty_dispatch = true;
        Ok(())
    }

    fn want_keys(&mut self, peer: &str) {
        if let Some(at) = self.key_fetches.get(peer)
            && at.elapsed() < Duration::from_secs(5)
        {
            return;
        }
        let Ok(p) = peer.parse::<PeerId>() else {
            return;
        };
        self.key_fetches.insert(peer.to_string(), Instant::now());
        let net = self.net.clone();
        let inputs = self.inputs.clone();
        self.later(move || {
            tokio::spawn(async move {
                let bundle = match net.get_record(card::bundle_key(&p)).await {
                    Ok(v) => wire::decode::<KeyBundle>(&v).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                let _ = inputs.send(Input::Keys { peer: p, bundle }).await;
            });
        });
    }

    fn on_keys(
        &mut self,
        txn: &mut Txn,
        peer: PeerId,
        bundle: Result<KeyBundle, String>,
    ) -> Result<(), MsgError> {
        let p = peer.to_string();
        let bundle = match bundle.and_then(|b| match b.verify() {
            Ok(signer) if signer == peer => Ok(b),
            Ok(_) => Err("bundle of another peer".into()),
            Err(e) => Err(e.to_string()),
        }) {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(target: "nodus::msg", peer = %p, "no usable key bundle yet: {e}");
                return Ok(());
            }
        };
        self.key_fetches.remove(&p);
        if self.crypto.has_session(&p) {
            return self.encrypt_pending(txn, &p);
        }
        let Some(c) = self.contacts.get(&p) else {
            return Ok(());
        };
        if c.card.curve25519 != bundle.card.curve25519 {
            tracing::warn!(target: "nodus::msg", peer = %p, "published keys differ from the contact's card; not using them");
            return Ok(());
        }
        let otk = if bundle.one_time_keys.is_empty() || self.use_fallback.remove(&p) {
            bundle.fallback
        } else {
            let i = rand::random_range(0..bundle.one_time_keys.len());
            Some(bundle.one_time_keys[i])
        };
        let Some(otk) = otk else { return Ok(()) };
        let identity = c.card.curve25519;
        if let Err(e) = self.crypto.start_session(&p, &identity, &otk) {
            tracing::warn!(target: "nodus::msg", peer = %p, "cannot open a session: {e}");
            return Ok(());
        }
        self.encrypt_pending(txn, &p)
    }

    fn dispatch(&mut self) {
        let now = Instant::now();
        // Nothing overtakes an earlier item still waiting for keys: a group message
        // must not reach a member before our group key does.
        // Nor one waiting to retry a failed delivery, unless mailboxes hold it already.
        let mut blocked: HashMap<&str, u64> = HashMap::new();
        let waiting = |i: &&OutItem| {
            i.pending.is_some()
                || (!i.stored && self.retry_at.get(&i.key()).is_some_and(|t| *t > now))
        };
        for i in self.outbox.values().filter(waiting) {
            let b = blocked.entry(i.to.as_str()).or_insert(u64::MAX);
            *b = (*b).min(i.order);
        }
        let mut due: Vec<&OutItem> = self
            .outbox
            .values()
            .filter(|i| {
                i.envelope.is_some()
                    && blocked.get(i.to.as_str()).is_none_or(|b| i.order <= *b)
                    && !self.in_flight.contains(&i.key())
                    && self.retry_at.get(&i.key()).is_none_or(|t| *t <= now)
            })
            .collect();
        due.sort_by_key(|i| i.order);
        let mut per_peer: HashMap<String, Vec<Outgoing>> = HashMap::new();
        let mut sent = Vec::new();
        for i in due {
            let Some(bytes) = i.envelope.clone() else {
                continue;
            };
            per_peer.entry(i.to.clone()).or_default().push(Outgoing {
                key: i.key(),
                bytes,
            });
            sent.push((i.key(), i.id, i.to.clone(), i.user && !i.stored));
        }
        for (key, ..) in &sent {
            self.in_flight.insert(key.clone());
        }
        for (peer, batch) in per_peer {
            let Ok(p) = peer.parse::<PeerId>() else {
                continue;
            };
            self.hand_to_worker(p, batch);
        }
        // "sent" is an event only; the stored state stays queued until acknowledged.
        for (_, id, to, user) in sent {
            if user {
                let _ = self.events.send(MsgEvent::State {
                    id: hex::encode(id),
                    conversation: to.clone(),
                    to,
                    state: MessageState::Sent,
                });
            }
        }
    }

    fn hand_to_worker(&mut self, peer: PeerId, batch: Vec<Outgoing>) {
        let tx = match self.workers.get(&peer) {
            Some(tx) if !tx.is_closed() => tx.clone(),
            _ => {
                let (tx, rx) = mpsc::channel(64);
                tokio::spawn(delivery::worker(
                    peer,
                    self.net.clone(),
                    rx,
                    self.inputs.clone(),
                ));
                self.workers.insert(peer, tx.clone());
                tx
            }
        };
        if let Err(e) = tx.try_send(batch) {
            // A full or closed worker: give the items back for the next round.
            let batch = match e {
                mpsc::error::TrySendError::Full(b) | mpsc::error::TrySendError::Closed(b) => b,
            };
            for o in batch {
                self.in_flight.remove(&o.key);
            }
            self.dirty_dispatch = true;
        }
    }

    fn on_replies(
        &mut self,
        txn: &mut Txn,
        peer: PeerId,
        replies: Vec<(String, MsgReply)>,
    ) -> Result<(), MsgError> {
        let to = peer.to_string();
        let mut back_online = false;
        for (key, reply) in replies {
            self.in_flight.remove(&key);
            let Some(item) = self.outbox.get(&key).cloned() else {
                continue;
            };
            // Put back to plaintext by a refused session meanwhile: this reply is stale.
            if item.envelope.is_none() {
                continue;
            }
            self.retry_at.remove(&key);
            match reply {
                MsgReply::Ack(_) => {
                    self.metrics.sent.inc();
                    back_online = true;
                    self.outbox_remove(txn, &key)?;
                    if item.user && !self.outbox_has_id(&item.id) {
                        self.set_state(txn, &item.id, &to, MessageState::Delivered)?;
                    }
                }
                MsgReply::Reject { reason, .. }
                    if reason == RejectReason::Undecryptable && item.prekey_plain.is_some() =>
                {
                    self.restart_session(txn, &to)?;
                }
                // A group message that overtook its key or the membership (they come
                // from other members, in no set order): try again a little later.
                MsgReply::Reject {
                    reason: RejectReason::MissingKey | RejectReason::UnknownGroup,
                    ..
                } if item.attempts < TRANSIENT_ATTEMPTS => {
                    let mut item = item;
                    item.attempts += 1;
                    let wait = config::retry_after(&self.cfg, item.attempts);
                    self.retry_at.insert(key.clone(), Instant::now() + wait);
                    self.outbox_put(txn, item)?;
                }
                MsgReply::Reject { reason, .. } => {
                    tracing::warn!(target: "nodus::msg", peer = %to, ?reason, "recipient refused a message");
                    self.outbox_remove(txn, &key)?;
                    if item.user {
                        self.set_state(txn, &item.id, &to, MessageState::Failed)?;
                    }
                }
            }
        }
        if back_online {
            // The peer answers: what waits for a retry (or sits in mailboxes) goes now.
            self.retry_now(&to);
        }
        self.dirty_dispatch = true;
        Ok(())
    }

    fn retry_now(&mut self, peer: &str) {
        let now = Instant::now();
        for (k, i) in &self.outbox {
            if i.to == peer && i.envelope.is_some() && !self.in_flight.contains(k) {
                self.retry_at.insert(k.clone(), now);
                self.dirty_dispatch = true;
            }
        }
    }

    /// The recipient refused our new session (its one-time key was already taken by
    /// another sender). Every item encrypted on that session goes back to plaintext and
    /// waits for a session made from the recipient's fallback key, which cannot run out.
    fn restart_session(&mut self, txn: &mut Txn, peer: &str) -> Result<(), MsgError> {
        tracing::debug!(target: "nodus::msg", %peer, "session refused; starting a new one from the fallback key");
        self.crypto.forget_sessions(peer);
        self.dirty_sessions.insert(peer.to_string());
        self.use_fallback.insert(peer.to_string());
        let items: Vec<OutItem> = self
            .outbox
            .values()
            .filter(|i| i.to == peer && i.prekey_plain.is_some())
            .cloned()
            .collect();
        for mut item in items {
            item.pending = item.prekey_plain.take();
            item.envelope = None;
            // Copies in mailboxes are on the refused session: useless, forget them.
            if let Ok(to) = peer.parse::<PeerId>() {
                for b in item
                    .mailboxes
                    .drain(..)
                    .filter_map(|b| b.parse::<PeerId>().ok())
                {
                    self.retractions.entry((b, to)).or_default().push(item.id);
                }
            }
            item.stored = false;
            let key = item.key();
            self.in_flight.remove(&key);
            self.retry_at.remove(&key);
            self.outbox_put(txn, item)?;
        }
        self.key_fetches.remove(peer);
        self.want_keys(peer);
        Ok(())
    }

    fn outbox_has_id(&self, id: &MsgId) -> bool {
        self.outbox_ids.get(id).is_some_and(|n| *n > 0)
    }

    /// Adds or replaces an outbox entry, on disk and in memory.
    fn outbox_put(&mut self, txn: &mut Txn, item: OutItem) -> Result<(), MsgError> {
        let key = item.key();
        txn.put(store::OUTBOX, &key, &item)?;
        if self.outbox.insert(key, item.clone()).is_none() {
            *self.outbox_ids.entry(item.id).or_default() += 1;
        }
        Ok(())
    }

    fn outbox_remove(&mut self, txn: &mut Txn, key: &str) -> Result<Option<OutItem>, MsgError> {
        let Some(item) = self.outbox.remove(key) else {
            return Ok(None);
        };
        txn.remove(store::OUTBOX, key)?;
        self.in_flight.remove(key);
        self.retry_at.remove(key);
        if let Some(n) = self.outbox_ids.get_mut(&item.id) {
            *n -= 1;
            if *n == 0 {
                self.outbox_ids.remove(&item.id);
            }
        }
        if let Ok(to) = item.to.parse::<PeerId>() {
            for b in item
                .mailboxes
                .iter()
                .filter_map(|b| b.parse::<PeerId>().ok())
            {
                self.retractions.entry((b, to)).or_default().push(item.id);
            }
        }
        Ok(Some(item))
    }

    fn on_send_failed(
        &mut self,
        txn: &mut Txn,
        peer: PeerId,
        keys: Vec<String>,
        error: String,
    ) -> Result<(), MsgError> {
        tracing::debug!(target: "nodus::msg", %peer, n = keys.len(), "direct delivery failed: {error}");
        let Some(card) = self.card_of(&peer.to_string()) else {
            for k in keys {
                self.in_flight.remove(&k);
            }
            return Ok(());
        };
        let mut to_store = Vec::new();
        for key in keys {
            let Some(item) = self.outbox.get_mut(&key) else {
                self.in_flight.remove(&key);
                continue;
            };
            item.attempts += 1;
            txn.put(store::OUTBOX, &key, item)?;
            let wait = config::retry_after(&self.cfg, item.attempts);
            self.retry_at.insert(key.clone(), Instant::now() + wait);
            if item.stored {
                self.in_flight.remove(&key);
            } else if let Some(bytes) = &item.envelope {
                match seal::seal(&card.seal, bytes, &peer.to_bytes()) {
                    Some(sealed) => to_store.push((key.clone(), item.id, item.order, sealed)),
                    None => {
                        self.in_flight.remove(&key);
                    }
                }
            }
        }
        if to_store.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = to_store.iter().map(|(k, ..)| k.clone()).collect();
        let items: Vec<(MsgId, u64, Vec<u8>)> = to_store
            .into_iter()
            .map(|(_, id, o, s)| (id, o, s))
            .collect();
        let (net, inputs) = (self.net.clone(), self.inputs.clone());
        let replicas = self.cfg.mailbox_replicas.max(1);
        let ttl = self.cfg.mailbox_ttl_secs.min(u32::MAX as u64) as u32;
        self.later(move || {
            tokio::spawn(async move {
                let result = delivery::store(net, peer, items, replicas, ttl).await;
                let _ = inputs.send(Input::Stored { keys, result }).await;
            });
        });
        Ok(())
    }

    fn card_of(&self, peer: &str) -> Option<ContactCard> {
        self.contacts.get(peer).map(|c| c.card.clone())
    }

    fn on_stored(
        &mut self,
        txn: &mut Txn,
        keys: Vec<String>,
        result: Result<Vec<PeerId>, String>,
    ) -> Result<(), MsgError> {
        for key in keys {
            self.in_flight.remove(&key);
            let Some(item) = self.outbox.get_mut(&key) else {
                continue;
            };
            match &result {
                Ok(boxes) => {
                    item.stored = true;
                    item.mailboxes = boxes.iter().map(|b| b.to_string()).collect();
                    txn.put(store::OUTBOX, &key, item)?;
                    let wait = config::retry_after(&self.cfg, item.attempts);
                    self.retry_at.insert(key.clone(), Instant::now() + wait);
                    let (id, to, user) = (item.id, item.to.clone(), item.user);
                    if user {
                        self.set_state(txn, &id, &to, MessageState::Stored)?;
                    }
                }
                Err(e) => {
                    tracing::debug!(target: "nodus::msg", to = %item.to, "mailbox store failed: {e}");
                }
            }
        }
        Ok(())
    }

    // ---- receiving -------------------------------------------------------------

    fn receive(
        &mut self,
        txn: &mut Txn,
        from: Option<PeerId>,
        env: Envelope,
    ) -> Result<MsgReply, MsgError> {
        let id_hex = hex::encode(env.id);
        if txn.contains(store::SEEN, &id_hex)? {
            self.metrics.duplicates.inc();
            return Ok(MsgReply::Ack(env.id));
        }
        let reject = |reason| MsgReply::Reject { id: env.id, reason };
        let Some(sender) = peer_str(&env.sender) else {
            self.metrics.rejected(RejectReason::WrongSender);
            return Ok(reject(RejectReason::WrongSender));
        };
        if let Some(f) = from
            && f.to_string() != sender
        {
            self.metrics.rejected(RejectReason::WrongSender);
            return Ok(reject(RejectReason::WrongSender));
        }
        let via_mailbox = from.is_none();
        let result = match env.body {
            Body::Olm {
                card,
                kind,
                ciphertext,
            } => self.receive_olm(txn, &sender, env.id, card, kind, &ciphertext, via_mailbox)?,
            Body::Group {
                group,
                session,
                ciphertext,
            } => self.receive_group(
                txn,
                &sender,
                env.id,
                group,
                &session,
                &ciphertext,
                via_mailbox,
            )?,
        };
        match result {
            Ok(()) => {
                txn.put(store::SEEN, &id_hex, &now_ms())?;
                self.metrics.received.inc();
                Ok(MsgReply::Ack(env.id))
            }
            Err(reason) => {
                self.metrics.rejected(reason);
                tracing::debug!(target: "nodus::msg", %sender, ?reason, "refusing an envelope");
                Ok(reject(reason))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn receive_olm(
        &mut self,
        txn: &mut Txn,
        sender: &str,
        id: MsgId,
        card: Option<ContactCard>,
        kind: u8,
        ciphertext: &[u8],
        via_mailbox: bool,
    ) -> Result<Result<(), RejectReason>, MsgError> {
        // Who is it? A contact we know, or a card bound to the sender's peer id.
        let new_card = match (&card, self.contacts.get(sender)) {
            (_, Some(_)) => None,
            (Some(c), None) => match c.verify() {
                Ok(p) if p.to_string() == sender => Some(c.clone()),
                _ => return Ok(Err(RejectReason::WrongSender)),
            },
            (None, None) => return Ok(Err(RejectReason::Undecryptable)),
        };
        let identity = match (&new_card, self.contacts.get(sender)) {
            (Some(c), _) => c.curve25519,
            (None, Some(c)) => c.card.curve25519,
            (None, None) => return Ok(Err(RejectReason::Undecryptable)),
        };
        let decrypted = match self.crypto.decrypt(sender, &identity, kind, ciphertext) {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(target: "nodus::msg", %sender, kind, "cannot decrypt: {e}");
                return Ok(Err(RejectReason::Undecryptable));
            }
        };
        let plain: Plain = match wire::decode(&decrypted.plaintext) {
            Ok(p) => p,
            Err(_) => return Ok(Err(RejectReason::Malformed)),
        };
        // A replay under a fresh id: refused, and the ratchet stays where it was.
        if plain.id != id {
            return Ok(Err(RejectReason::Malformed));
        }
        let used_key = decrypted.used_one_time_key.is_some();
        self.crypto.accept(sender, decrypted);
        self.dirty_sessions.insert(sender.to_string());
        if used_key {
            self.dirty_account = true;
            if self.crypto.needs_keys() {
                self.publish.dirty = true;
            }
        }
        if let Some(c) = new_card {
            let contact = Contact {
                name: c.name.clone(),
                card: c,
                added_ms: now_ms(),
                out_seq: 0,
                invite_key: None,
            };
            txn.put(store::CONTACTS, sender, &contact)?;
            let info = self.contact_info(sender, &contact);
            self.contacts.insert(sender.to_string(), contact);
            self.emit(MsgEvent::Contact { contact: info });
            self.encrypt_pending(txn, sender)?;
        }
        match plain.content {
            Content::Text(text) => {
                let name = self
                    .contacts
                    .get(sender)
                    .map(|c| c.name.clone())
                    .unwrap_or_default();
                let m = Message {
                    id: hex::encode(id),
                    conversation: sender.to_string(),
                    from: sender.to_string(),
                    from_name: name,
                    outgoing: false,
                    text,
                    state: MessageState::Received,
                    seq: plain.seq,
                    sent_ms: plain.sent_ms,
                    stored_ms: now_ms(),
                    seen: false,
                };
                self.store_message(txn, &m, &id)?;
                self.unseen += 1;
                self.emit(MsgEvent::Message { message: m });
                if via_mailbox {
                    self.queue_receipt(txn, sender, vec![id], false)?;
                }
            }
            Content::Receipt { ids, read } => {
                let state = if read {
                    MessageState::Read
                } else {
                    MessageState::Delivered
                };
                for mid in ids {
                    self.outbox_remove(txn, &store::out_key(&mid, sender))?;
                    if !self.outbox_has_id(&mid) {
                        self.set_state(txn, &mid, sender, state)?;
                    }
                }
            }
            Content::GroupKey { group, session_key } => {
                if let Ok((k, pickle)) = self.groups.add_inbound(group, sender, &session_key) {
                    txn.put(store::GROUP_IN, &k, &json(&pickle))?;
                }
            }
            Content::GroupState {
                group,
                name,
                epoch,
                members,
            } => self.on_group_state(txn, sender, group, name, epoch, members)?,
        }
        Ok(Ok(()))
    }

    #[allow(clippy::too_many_arguments)]
    fn receive_group(
        &mut self,
        txn: &mut Txn,
        sender: &str,
        id: MsgId,
        group: MsgId,
        session: &str,
        ciphertext: &[u8],
        via_mailbox: bool,
    ) -> Result<Result<(), RejectReason>, MsgError> {
        let Some(g) = self.group_state.get(&group) else {
            return Ok(Err(RejectReason::UnknownGroup));
        };
        let Some(member) = g
            .members
            .iter()
            .find(|c| peer_str(&c.peer).as_deref() == Some(sender))
        else {
            return Ok(Err(RejectReason::UnknownGroup));
        };
        let sender_name = self
            .contacts
            .get(sender)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| member.name.clone());
        let (plaintext, k, pickle) = match self.groups.decrypt(group, sender, session, ciphertext) {
            Ok(r) => r,
            Err(crate::megolm::GroupCryptoError::UnknownSession) => {
                return Ok(Err(RejectReason::MissingKey));
            }
            Err(_) => return Ok(Err(RejectReason::Undecryptable)),
        };
        let plain: GroupPlain = match wire::decode(&plaintext) {
            Ok(p) => p,
            Err(_) => return Ok(Err(RejectReason::Malformed)),
        };
        // Older than the ids we remember: it can only be a replay.
        if plain.id != id || plain.sent_ms + SEEN_FOR_MS < now_ms() {
            return Ok(Err(RejectReason::Malformed));
        }
        txn.put(store::GROUP_IN, &k, &json(&pickle))?;
        let m = Message {
            id: hex::encode(id),
            conversation: group_conv(&group),
            from: sender.to_string(),
            from_name: sender_name,
            outgoing: false,
            text: plain.text,
            state: MessageState::Received,
            seq: plain.seq,
            sent_ms: plain.sent_ms,
            stored_ms: now_ms(),
            seen: false,
        };
        self.store_message(txn, &m, &id)?;
        self.unseen += 1;
        self.emit(MsgEvent::Message { message: m });
        if via_mailbox && self.contacts.contains_key(sender) {
            self.queue_receipt(txn, sender, vec![id], false)?;
        }
        Ok(Ok(()))
    }

    // ---- groups ----------------------------------------------------------------

    fn save_group(&mut self, txn: &mut Txn, id: &MsgId) -> Result<(), MsgError> {
        if let Some(g) = self.group_state.get(id) {
            txn.put(store::GROUPS, &hex::encode(id), g)?;
        }
        if let Some(p) = self.groups.outbound_pickle(id) {
            txn.put(store::GROUP_OUT, &hex::encode(id), &json(&p))?;
        }
        Ok(())
    }

    fn group_create(&mut self, txn: &mut Txn, name: String) -> Result<GroupInfo, MsgError> {
        if name.trim().is_empty() || name.len() > card::MAX_NAME {
            return Err(MsgError::NoGroup(format!(
                "{name} (a group name needs 1 to {} bytes)",
                card::MAX_NAME
            )));
        }
        let id = wire::new_id();
        let g = Group {
            name,
            owner: self.me_str.clone(),
            epoch: 1,
            members: vec![self.card.clone()],
            out_seq: 0,
        };
        self.groups.rotate(id);
        self.group_state.insert(id, g);
        self.save_group(txn, &id)?;
        let g = &self.group_state[&id];
        Ok(self.group_info(&id, g))
    }

    fn group_change(
        &mut self,
        txn: &mut Txn,
        group: &str,
        contact: &str,
        add: bool,
    ) -> Result<GroupInfo, MsgError> {
        let id = self.resolve_group(group)?;
        let peer = self.resolve_contact(contact)?;
        let g = self
            .group_state
            .get(&id)
            .ok_or_else(|| MsgError::NoGroup(group.into()))?;
        if g.owner != self.me_str {
            return Err(MsgError::NotOwner(g.owner.clone()));
        }
        let is_member = g
            .members
            .iter()
            .any(|c| peer_str(&c.peer).as_deref() == Some(&peer));
        let mut members = g.members.clone();
        if add {
            if is_member {
                return Err(MsgError::AlreadyMember(peer));
            }
            let card = self
                .card_of(&peer)
                .ok_or_else(|| MsgError::NoContact(peer.clone()))?;
            members.push(card);
        } else {
            if !is_member {
                return Err(MsgError::NotMember(peer));
            }
            members.retain(|c| peer_str(&c.peer).as_deref() != Some(&peer));
        }
        let (name, epoch) = (g.name.clone(), g.epoch + 1);
        // The removed member is told too, so it knows it is out.
        let mut tell: Vec<String> = members.iter().filter_map(|c| peer_str(&c.peer)).collect();
        if !add {
            tell.push(peer.clone());
        }
        let previous = g.members.clone();
        self.apply_group_state(txn, id, name.clone(), epoch, members.clone(), &previous)?;
        for p in tell {
            if p == self.me_str {
                continue;
            }
            let plain = Plain {
                id: wire::new_id(),
                seq: 0,
                sent_ms: now_ms(),
                content: Content::GroupState {
                    group: id,
                    name: name.clone(),
                    epoch,
                    members: members.clone(),
                },
            };
            self.queue_olm(txn, &p, plain, false)?;
        }
        let g = &self.group_state[&id];
        Ok(self.group_info(&id, g))
    }

    /// Takes a new membership list: members added get our key; if anyone was removed,
    /// our session is replaced and the new key goes to the remaining members only.
    fn apply_group_state(
        &mut self,
        txn: &mut Txn,
        id: MsgId,
        name: String,
        epoch: u64,
        members: Vec<ContactCard>,
        previous: &[ContactCard],
    ) -> Result<(), MsgError> {
        let peers = |list: &[ContactCard]| -> HashSet<String> {
            list.iter().filter_map(|c| peer_str(&c.peer)).collect()
        };
        let now: HashSet<String> = peers(&members);
        let before: HashSet<String> = peers(previous);
        let removed = before.iter().any(|p| !now.contains(p));
        let joined_now = !before.contains(&self.me_str);
        let owner = self
            .group_state
            .get(&id)
            .map(|g| g.owner.clone())
            .unwrap_or_default();
        let out_seq = self.group_state.get(&id).map(|g| g.out_seq).unwrap_or(0);
        // Members we do not know yet become contacts, so keys can reach them.
        for c in &members {
            let Some(p) = peer_str(&c.peer) else { continue };
            if p == self.me_str || self.contacts.contains_key(&p) || c.verify().is_err() {
                continue;
            }
            let contact = Contact {
                card: c.clone(),
                name: c.name.clone(),
                added_ms: now_ms(),
                out_seq: 0,
                invite_key: None,
            };
            txn.put(store::CONTACTS, &p, &contact)?;
            self.contacts.insert(p, contact);
        }
        self.group_state.insert(
            id,
            Group {
                name,
                owner,
                epoch,
                members,
                out_seq,
            },
        );
        let key = if removed {
            self.groups.rotate(id)
        } else {
            self.groups.current_key(id)
        };
        self.save_group(txn, &id)?;
        let recipients: Vec<String> = now
            .iter()
            .filter(|p| **p != self.me_str && (removed || joined_now || !before.contains(*p)))
            .cloned()
            .collect();
        for p in recipients {
            let plain = Plain {
                id: wire::new_id(),
                seq: 0,
                sent_ms: now_ms(),
                content: Content::GroupKey {
                    group: id,
                    session_key: key.clone(),
                },
            };
            self.queue_olm(txn, &p, plain, false)?;
        }
        Ok(())
    }

    fn on_group_state(
        &mut self,
        txn: &mut Txn,
        sender: &str,
        id: MsgId,
        name: String,
        epoch: u64,
        members: Vec<ContactCard>,
    ) -> Result<(), MsgError> {
        let previous = match self.group_state.get(&id) {
            Some(g) if g.owner != sender || epoch <= g.epoch => return Ok(()),
            Some(g) => g.members.clone(),
            None => Vec::new(),
        };
        let in_it = members.iter().any(|c| c.peer == self.me.to_bytes());
        if !in_it {
            // Removed: forget the group and its keys.
            self.group_state.remove(&id);
            self.groups.forget(&id);
            txn.remove(store::GROUPS, &hex::encode(id))?;
            txn.remove(store::GROUP_OUT, &hex::encode(id))?;
            return Ok(());
        }
        if name.len() > card::MAX_NAME || members.iter().any(|c| c.verify().is_err()) {
            return Ok(());
        }
        if previous.is_empty() {
            self.group_state.insert(
                id,
                Group {
                    name: name.clone(),
                    owner: sender.to_string(),
                    epoch: 0,
                    members: Vec::new(),
                    out_seq: 0,
                },
            );
        }
        self.apply_group_state(txn, id, name, epoch, members, &previous)
    }

    fn group_send(
        &mut self,
        txn: &mut Txn,
        group: &str,
        text: String,
    ) -> Result<Message, MsgError> {
        Self::check_text(&text)?;
        let id = self.resolve_group(group)?;
        let g = self
            .group_state
            .get_mut(&id)
            .ok_or_else(|| MsgError::NoGroup(group.into()))?;
        g.out_seq += 1;
        let plain = GroupPlain {
            id: wire::new_id(),
            seq: g.out_seq,
            sent_ms: now_ms(),
            text: text.clone(),
        };
        let recipients: Vec<String> = g
            .members
            .iter()
            .filter_map(|c| peer_str(&c.peer))
            .filter(|p| *p != self.me_str)
            .collect();
        let (session, ciphertext) = self.groups.encrypt(id, &wire::encode(&plain));
        self.save_group(txn, &id)?;
        let envelope = wire::encode(&Envelope {
            id: plain.id,
            sender: self.me.to_bytes(),
            body: Body::Group {
                group: id,
                session,
                ciphertext,
            },
        });
        for p in recipients {
            self.order += 1;
            let item = OutItem {
                id: plain.id,
                to: p,
                envelope: Some(envelope.clone()),
                pending: None,
                prekey_plain: None,
                mailboxes: Vec::new(),
                user: true,
                stored: false,
                attempts: 0,
                created_ms: now_ms(),
                order: self.order,
            };
            self.outbox_put(txn, item)?;
        }
        self.dirty_dispatch = true;
        let m = Message {
            id: hex::encode(plain.id),
            conversation: group_conv(&id),
            from: self.me_str.clone(),
            from_name: self.card.name.clone(),
            outgoing: true,
            text,
            state: MessageState::Queued,
            seq: plain.seq,
            sent_ms: plain.sent_ms,
            stored_ms: plain.sent_ms,
            seen: true,
        };
        self.store_message(txn, &m, &plain.id)?;
        self.emit(MsgEvent::Message { message: m.clone() });
        Ok(m)
    }

    // ---- serving as a mailbox ----------------------------------------------------

    fn mailbox_request(
        &mut self,
        txn: &mut Txn,
        from: PeerId,
        request: MailboxRequest,
    ) -> Result<MailboxReply, MsgError> {
        let from_s = from.to_string();
        Ok(match request {
            MailboxRequest::Store {
                to,
                id,
                order,
                ttl_secs,
                sealed,
            } => match self.mailbox_store(txn, &from_s, &to, id, order, ttl_secs, sealed)? {
                Ok(()) => MailboxReply::Stored,
                Err(why) => {
                    self.metrics.refused(why);
                    MailboxReply::Refused(why.to_string())
                }
            },
            MailboxRequest::Fetch { max } => {
                let now = now_ms();
                let mut items = Vec::new();
                let mut bytes = 0;
                let mut expired = Vec::new();
                for (k, item) in self
                    .store
                    .scan::<MailItem>(store::MAILBOX, &format!("{from_s}|"))?
                {
                    if item.expires_ms <= now {
                        expired.push((k, item));
                        continue;
                    }
                    let Some(id) = k.rsplit('|').next().and_then(parse_id) else {
                        continue;
                    };
                    if items.len() >= (max as usize).min(MAX_FETCH)
                        || bytes + item.sealed.len() + 64 > MAX_FRAME
                    {
                        break;
                    }
                    bytes += item.sealed.len() + 64;
                    items.push(MailboxItem {
                        id,
                        sealed: item.sealed,
                    });
                }
                for (k, item) in expired {
                    self.mailbox_remove(txn, &k, &item)?;
                }
                MailboxReply::Items(items)
            }
            MailboxRequest::Retract { to, ids } => {
                let mut n = 0;
                if let Some(to) = peer_str(&to) {
                    for id in ids.iter().take(MAX_FETCH) {
                        if let Some((k, item)) = self.mailbox_get(txn, &to, id)?
                            && item.from == from_s
                        {
                            self.mailbox_remove(txn, &k, &item)?;
                            n += 1;
                        }
                    }
                }
                MailboxReply::Deleted(n)
            }
            MailboxRequest::Delete { ids } => {
                let mut n = 0;
                for id in ids.iter().take(MAX_FETCH) {
                    if let Some((k, item)) = self.mailbox_get(txn, &from_s, id)? {
                        self.mailbox_remove(txn, &k, &item)?;
                        n += 1;
                    }
                }
                MailboxReply::Deleted(n)
            }
        })
    }

    /// The item held for `to` under this id, with its key.
    fn mailbox_get(
        &mut self,
        txn: &mut Txn,
        to: &str,
        id: &MsgId,
    ) -> Result<Option<(String, MailItem)>, MsgError> {
        let id_key = format!("{to}|{}", hex::encode(id));
        let Some(key) = txn.get_raw_str(store::MAILBOX_IDS, &id_key)? else {
            return Ok(None);
        };
        Ok(txn.get::<MailItem>(store::MAILBOX, &key)?.map(|i| (key, i)))
    }

    fn mailbox_remove(
        &mut self,
        txn: &mut Txn,
        key: &str,
        item: &MailItem,
    ) -> Result<(), MsgError> {
        if let (Some(to), Some(id)) = (key.split('|').next(), key.rsplit('|').next()) {
            txn.remove(store::MAILBOX_IDS, &format!("{to}|{id}"))?;
        }
        if txn.remove(store::MAILBOX, key)? {
            self.mailbox_total = self.mailbox_total.saturating_sub(1);
            if let Some(u) = self.usage.get_mut(&item.from) {
                u.0 = u.0.saturating_sub(1);
                u.1 = u.1.saturating_sub(item.sealed.len() as u64);
                if u.0 == 0 {
                    self.usage.remove(&item.from);
                }
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn mailbox_store(
        &mut self,
        txn: &mut Txn,
        from: &str,
        to: &[u8],
        id: MsgId,
        order: u64,
        ttl_secs: u32,
        sealed: Vec<u8>,
    ) -> Result<Result<(), &'static str>, MsgError> {
        if !self.cfg.mailbox_serve {
            return Ok(Err("not serving as a mailbox"));
        }
        let Some(to) = peer_str(to) else {
            return Ok(Err("bad recipient"));
        };
        let id_key = format!("{to}|{}", hex::encode(id));
        if txn.contains(store::MAILBOX_IDS, &id_key)? {
            return Ok(Ok(()));
        }
        let key = format!("{to}|{from}|{order:020}|{}", hex::encode(id));
        let now = Instant::now();
        let window = self.rate.entry(from.to_string()).or_insert((now, 0));
        if now.duration_since(window.0) >= Duration::from_secs(60) {
            *window = (now, 0);
        }
        if window.1 >= self.cfg.mailbox_max_per_minute {
            return Ok(Err("rate limit"));
        }
        window.1 += 1;
        let (items, bytes) = self.usage.get(from).copied().unwrap_or((0, 0));
        if items >= self.cfg.mailbox_max_items_per_sender {
            return Ok(Err("item limit for this sender"));
        }
        if bytes + sealed.len() as u64 > self.cfg.mailbox_max_bytes_per_sender {
            return Ok(Err("byte limit for this sender"));
        }
        if self.mailbox_total >= MAILBOX_TOTAL {
            return Ok(Err("mailbox full"));
        }
        let ttl = (ttl_secs as u64).min(self.cfg.mailbox_ttl_secs);
        let item = MailItem {
            from: from.to_string(),
            expires_ms: now_ms() + ttl * 1000,
            sealed,
        };
        txn.put(store::MAILBOX, &key, &item)?;
        txn.put_raw(store::MAILBOX_IDS, &id_key, key.as_bytes())?;
        let u = self.usage.entry(from.to_string()).or_default();
        u.0 += 1;
        u.1 += item.sealed.len() as u64;
        self.mailbox_total += 1;
        self.metrics.mailbox_stored.inc();
        Ok(Ok(()))
    }

    // ---- fetching our own mail -----------------------------------------------------

    fn start_poll(&mut self) {
        if self.poll.in_progress {
            return;
        }
        self.poll.in_progress = true;
        let (net, inputs) = (self.net.clone(), self.inputs.clone());
        let replicas = self.cfg.mailbox_replicas.max(1);
        self.later(move || {
            tokio::spawn(delivery::poll(net, replicas, inputs, None, true));
        });
    }

    fn on_fetched(
        &mut self,
        txn: &mut Txn,
        mailbox: PeerId,
        mut items: Vec<MailboxItem>,
    ) -> Result<(), MsgError> {
        let full = items.len() >= MAX_FETCH;
        let routing = self.me.to_bytes();
        let mut done = Vec::new();
        let mut envelopes = Vec::new();
        for item in items.drain(..) {
            let env = self
                .crypto
                .seal
                .open(&item.sealed, &routing)
                .and_then(|b| wire::decode::<Envelope>(&b).ok());
            match env {
                Some(e) if e.id == item.id => envelopes.push(e),
                _ => {
                    // Not for us or damaged: nothing will ever open it.
                    self.metrics.garbage("bad_mailbox_item");
                    done.push(item.id);
                }
            }
        }
        // Keys and membership first, so group messages in the same batch can be read.
        envelopes.sort_by_key(|e| matches!(e.body, Body::Group { .. }));
        for env in envelopes {
            let id = env.id;
            match self.receive(txn, None, env)? {
                MsgReply::Reject {
                    reason: RejectReason::UnknownGroup | RejectReason::MissingKey,
                    ..
                } => {} // its key may still be on the way: keep it for the next poll
                _ => done.push(id),
            }
        }
        if !done.is_empty() {
            let net = self.net.clone();
            self.later(move || {
                tokio::spawn(async move {
                    if let Err(e) = delivery::delete_from(&net, mailbox, done).await {
                        tracing::debug!(target: "nodus::msg", %mailbox, "mailbox delete failed: {e}");
                    }
                });
            });
        }
        if full {
            self.poll.next = Some(Instant::now());
        }
        Ok(())
    }

    // ---- timers ---------------------------------------------------------------------

    fn housekeeping(&mut self) {
        let now = Instant::now();
        // Items whose retry time came.
        if self
            .retry_at
            .iter()
            .any(|(k, t)| *t <= now && !self.in_flight.contains(k))
        {
            self.dirty_dispatch = true;
        }
        // Peers whose keys we still need.
        let waiting: HashSet<String> = self
            .outbox
            .values()
            .filter(|i| i.pending.is_some())
            .map(|i| i.to.clone())
            .collect();
        for p in waiting {
            self.want_keys(&p);
        }
        if !self.poll.in_progress && self.poll.next.is_none_or(|t| t <= now) {
            self.start_poll();
        }
        let republish = self
            .publish
            .last
            .is_none_or(|t| now.duration_since(t) >= REPUBLISH);
        if !self.publish.in_progress
            && (self.publish.dirty || republish)
            && self.publish.next_try.is_none_or(|t| t <= now)
        {
            self.start_publish();
        }
        if now.duration_since(self.last_prune) >= PRUNE_EVERY {
            self.last_prune = now;
            if let Err(e) = self.prune() {
                tracing::warn!(target: "nodus::msg", "pruning the message store: {e}");
            }
        }
        // Spawns queued by the steps above run now.
        for f in self.after.drain(..) {
            f();
        }
    }

    /// Forgets ids accepted long ago and mailbox items past their time to live.
    fn prune(&mut self) -> Result<(), MsgError> {
        let now = now_ms();
        let old: Vec<String> = self
            .store
            .scan::<u64>(store::SEEN, "")?
            .into_iter()
            .filter(|(_, at)| at + SEEN_FOR_MS < now)
            .map(|(k, _)| k)
            .collect();
        let expired: Vec<(String, MailItem)> = self
            .store
            .scan::<MailItem>(store::MAILBOX, "")?
            .into_iter()
            .filter(|(_, i)| i.expires_ms <= now)
            .collect();
        if old.is_empty() && expired.is_empty() {
            return Ok(());
        }
        let mut txn = self.store.write()?;
        for k in old {
            txn.remove(store::SEEN, &k)?;
        }
        for (k, item) in expired {
            self.mailbox_remove(&mut txn, &k, &item)?;
        }
        txn.commit()
    }

    fn start_publish(&mut self) {
        let missing = BUNDLE_KEYS.saturating_sub(self.crypto.published.len());
        let mut fresh = Vec::new();
        if missing > 0 {
            fresh = self.crypto.new_one_time_keys(missing);
        }
        let mut published = self.crypto.published.clone();
        published.extend(fresh.iter().copied());
        // The account must be on disk before its keys are public.
        let saved = (|| -> Result<(), MsgError> {
            let mut txn = self.store.write()?;
            self.crypto.published = published.clone();
            save_account(&mut txn, &self.crypto)?;
            txn.commit()
        })();
        if let Err(e) = saved {
            tracing::warn!(target: "nodus::msg", "cannot save new one-time keys: {e}");
            return;
        }
        let bundle = match KeyBundle::new(
            &self.key,
            self.card.clone(),
            published,
            self.crypto.fallback_key(),
            now_ms(),
        ) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(target: "nodus::msg", "cannot sign key bundle: {e}");
                return;
            }
        };
        self.publish.in_progress = true;
        self.publish.dirty = false;
        let (net, inputs) = (self.net.clone(), self.inputs.clone());
        let key = card::bundle_key(&self.me);
        tokio::spawn(async move {
            let r = match net.put_record(key, wire::encode(&bundle)).await {
                Ok(true) => Ok(()),
                Ok(false) => Err("no peer took the record yet".to_string()),
                Err(e) => Err(e.to_string()),
            };
            let _ = inputs.send(Input::Published(r)).await;
        });
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
