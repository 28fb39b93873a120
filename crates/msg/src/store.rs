//! msg.redb: the only file the messaging service writes. One write transaction per
//! batch of work, so that a message, the ratchet state that encrypted or decrypted it
//! and its outbox or inbox entry are on disk together or not at all.
//!
//! Tables (keys are text so that prefix scans read naturally):
//! - `meta`: the Olm account pickle, the seal key, counters.
//! - `contacts`: peer id → [`Contact`].
//! - `sessions`: peer id → the Olm session pickles with that peer (JSON).
//! - `outbox`: `<id hex>:<peer id>` → [`OutItem`], until the recipient acknowledges it.
//! - `messages`: `<conversation>|<sent ms>|<seq>|<id hex>` → [`MessageRow`]; `msg_index`:
//!   `<id hex>` → that key.
//! - `unseen`: the keys of incoming messages not shown yet (what `inbox` reads).
//! - `seen`: `<id hex>` → when it was accepted, for dropping duplicates and replays.
//! - `mailbox`: `<recipient>|<sender>|<sender's order>|<id hex>` → [`MailItem`] held for
//!   others, so a recipient gets each sender's items in the order they were written;
//!   `mailbox_ids`: `<recipient>|<id hex>` → that key.
//! - `files`: a message's key → the [`FileRef`]s it carries; `downloads`: `<hash hex>` →
//!   [`Download`] (a file offered to us: from whom, its key, how far it is);
//!   `grants`: `<hash hex>|<peer id>` → [`Grant`] (a file we offered that peer).
//! - `pieces`: values longer than [`PIECE`] of the other tables, in pieces, their row
//!   holding an empty value (an empty row with no pieces is an empty value).
//! - `groups`, `group_out` (our Megolm session per group), `group_in`
//!   (`<group>|<sender>|<session id>` → inbound Megolm session).
//!
//! A commit is made durable by the write-ahead log beside the file ([`crate::wal`]):
//! the database itself is synced only at checkpoints, and at open the log's records
//! after the last checkpoint are applied again. `meta` keeps `wal_id` (the log's id)
//! and `wal_seq` (the last record a synced commit includes).

use std::cell::RefCell;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, TableHandle,
    WriteTransaction,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::MsgError;
use crate::card::ContactCard;
use crate::error::StoreError;
use crate::types::{FileState, Message, MessageState};
use crate::wal::{self, Op, Ops, Wal};
use crate::wire::{FileHash, MsgId, Plain};

pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub const CONTACTS: TableDefinition<&str, &[u8]> = TableDefinition::new("contacts");
pub const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
pub const OUTBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox");
pub const MESSAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("messages");
pub const MSG_INDEX: TableDefinition<&str, &[u8]> = TableDefinition::new("msg_index");
pub const SEEN: TableDefinition<&str, &[u8]> = TableDefinition::new("seen");
pub const MAILBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("mailbox");
pub const UNSEEN: TableDefinition<&str, &[u8]> = TableDefinition::new("unseen");
pub const MAILBOX_IDS: TableDefinition<&str, &[u8]> = TableDefinition::new("mailbox_ids");
pub const GROUPS: TableDefinition<&str, &[u8]> = TableDefinition::new("groups");
pub const GROUP_OUT: TableDefinition<&str, &[u8]> = TableDefinition::new("group_out");
pub const GROUP_IN: TableDefinition<&str, &[u8]> = TableDefinition::new("group_in");
/// An outgoing message's state, by its `MESSAGES` key: a state change writes a byte here
/// instead of the whole message again (a 64 KiB one was written three times). Messages
/// stored before this table have their state in their row.
pub const MSG_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("msg_state");

/// The way an outgoing message went ([`crate::types::DeliveryPath`]), by its `MESSAGES`
/// key: written when it was acknowledged or stored in mailboxes.
pub const MSG_PATH: TableDefinition<&str, &[u8]> = TableDefinition::new("msg_path");

pub const FILES: TableDefinition<&str, &[u8]> = TableDefinition::new("files");
pub const DOWNLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("downloads");
pub const GRANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("grants");
/// Large values of the other tables, in pieces (see [`PIECE`]); never logged itself.
const PIECES: TableDefinition<&str, &[u8]> = TableDefinition::new("pieces");

/// A value longer than this is stored in pieces of this size in `pieces`, its row holding
/// an empty value. redb gives a value too large for a page a leaf of its own, allocated in
/// a power of two: a row a little over 64 KiB (a 64 KiB text with its fields) took 128
/// KiB, so a 64 KiB message cost twice its bytes in writes at every copy. A piece with
/// its key and the leaf's header fits 16 KiB.
pub const PIECE: usize = 15_872;

/// Every table, in the order the log numbers them: new tables go at the end.
const ALL: [TableDefinition<&str, &[u8]>; 19] = [
    META,
    CONTACTS,
    SESSIONS,
    OUTBOX,
    MESSAGES,
    MSG_INDEX,
    UNSEEN,
    SEEN,
    MAILBOX,
    MAILBOX_IDS,
    GROUPS,
    GROUP_OUT,
    GROUP_IN,
    MSG_STATE,
    FILES,
    DOWNLOADS,
    GRANTS,
    PIECES,
    MSG_PATH,
];

/// The key of piece `n` of `key` in table number `t`: the key's length is part of it, so
/// one key's pieces never share a prefix with another key's.
fn piece_key(t: u8, key: &str, n: usize) -> String {
    format!("{}{n:04}", piece_prefix(t, key))
}

fn piece_prefix(t: u8, key: &str) -> String {
    format!("{t:02}{:05}{key}", key.len())
}

/// Reads back a value stored in pieces (an empty row with pieces), else `value` itself.
fn whole<'v>(
    pieces: &impl ReadableTable<&'static str, &'static [u8]>,
    t: u8,
    key: &str,
    value: &'v [u8],
) -> Result<std::borrow::Cow<'v, [u8]>, MsgError> {
    if !value.is_empty() {
        return Ok(value.into());
    }
    let prefix = piece_prefix(t, key);
    let mut out = Vec::new();
    for row in pieces.range(prefix.as_str()..).map_err(db_err)? {
        let (k, v) = row.map_err(db_err)?;
        if !k.value().starts_with(prefix.as_str()) {
            break;
        }
        out.extend_from_slice(v.value());
    }
    Ok(out.into())
}

/// A message as stored: [`Message`] without what is kept in other tables (its files).
/// Rows are postcard, so this layout is fixed; new fields go in new tables.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageRow {
    pub id: String,
    pub conversation: String,
    pub from: String,
    pub from_name: String,
    pub outgoing: bool,
    pub text: String,
    pub state: MessageState,
    pub seq: u64,
    pub sent_ms: u64,
    pub stored_ms: u64,
    pub seen: bool,
}

impl From<&Message> for MessageRow {
    fn from(m: &Message) -> Self {
        MessageRow {
            id: m.id.clone(),
            conversation: m.conversation.clone(),
            from: m.from.clone(),
            from_name: m.from_name.clone(),
            outgoing: m.outgoing,
            text: m.text.clone(),
            state: m.state,
            seq: m.seq,
            sent_ms: m.sent_ms,
            stored_ms: m.stored_ms,
            seen: m.seen,
        }
    }
}

impl From<MessageRow> for Message {
    fn from(r: MessageRow) -> Self {
        Message {
            id: r.id,
            conversation: r.conversation,
            from: r.from,
            from_name: r.from_name,
            outgoing: r.outgoing,
            text: r.text,
            state: r.state,
            seq: r.seq,
            sent_ms: r.sent_ms,
            stored_ms: r.stored_ms,
            seen: r.seen,
            files: Vec::new(),
            path: None,
        }
    }
}

/// A [`DeliveryPath`](crate::types::DeliveryPath) as `MSG_PATH` stores it: postcard
/// cannot read the API's internally tagged form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PathRow {
    Direct,
    Relay(String),
    Mailboxes(Vec<String>),
    Onion,
}

impl From<&crate::types::DeliveryPath> for PathRow {
    fn from(p: &crate::types::DeliveryPath) -> Self {
        use crate::types::DeliveryPath as P;
        match p {
            P::Direct => PathRow::Direct,
            P::Relay { relay } => PathRow::Relay(relay.clone()),
            P::Mailboxes { holders } => PathRow::Mailboxes(holders.clone()),
            P::Onion => PathRow::Onion,
        }
    }
}

impl From<PathRow> for crate::types::DeliveryPath {
    fn from(p: PathRow) -> Self {
        use crate::types::DeliveryPath as P;
        match p {
            PathRow::Direct => P::Direct,
            PathRow::Relay(relay) => P::Relay { relay },
            PathRow::Mailboxes(holders) => P::Mailboxes { holders },
            PathRow::Onion => P::Onion,
        }
    }
}

/// A file a message carries, as its row in `files` names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRef {
    pub hash: FileHash,
    pub size: u64,
    pub name: String,
    pub mime: String,
}

/// A file offered to this node, fetched from `from`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Download {
    pub from: String,
    pub key: [u8; 32],
    pub size: u64,
    pub name: String,
    pub mime: String,
    /// The key of the message it came with.
    pub message: String,
    /// Bytes synced to the partial file: a restart resumes here.
    pub received: u64,
    pub state: FileState,
    pub error: Option<String>,
}

/// A file offered to a peer: served to that peer only, sealed with `key`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    pub key: [u8; 32],
    pub size: u64,
    pub created_ms: u64,
}

pub fn grant_key(hash: &FileHash, peer: &str) -> String {
    format!("{}|{peer}", hex::encode(hash))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Contact {
    pub card: ContactCard,
    /// The name the user gave, else the card's.
    pub name: String,
    pub added_ms: u64,
    /// Our counter for messages to this contact.
    pub out_seq: u64,
    /// A one-time key from their invite, until a session uses it.
    pub invite_key: Option<[u8; 32]>,
}

/// An outgoing item waiting for the recipient's acknowledgement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutItem {
    pub id: MsgId,
    pub to: String,
    /// Encoded [`Envelope`], once encrypted. Encrypted exactly once: retries resend the
    /// same bytes, so the ratchet never moves for a message the peer may already have.
    #[serde(with = "serde_bytes")]
    pub envelope: Option<Vec<u8>>,
    /// The plaintext, while no session with the recipient exists yet.
    pub pending: Option<Plain>,
    /// The plaintext of a pre-key message, kept until acknowledged: if the recipient
    /// refuses the session (two senders picked the same one-time key), the message is
    /// encrypted again on a new session rather than lost.
    pub prekey_plain: Option<Plain>,
    /// Whether a person wrote it (its state is shown) rather than a receipt or key.
    pub user: bool,
    pub stored: bool,
    /// The mailboxes holding it, told to forget it once the recipient has it.
    pub mailboxes: Vec<String>,
    pub attempts: u32,
    pub created_ms: u64,
    /// Queue position: items to one peer leave in this order.
    pub order: u64,
    /// For a bundle (several texts under one Olm message, `id` being the bundle's): the
    /// ids of the messages in it, whose states follow the bundle's. Empty otherwise.
    pub members: Vec<MsgId>,
}

impl OutItem {
    pub fn key(&self) -> String {
        out_key(&self.id, &self.to)
    }

    /// The ids of the messages this item carries: its members, or itself.
    pub fn message_ids(&self) -> &[MsgId] {
        if self.members.is_empty() {
            std::slice::from_ref(&self.id)
        } else {
            &self.members
        }
    }

    /// Reads an outbox entry, also in the layout written before bundles existed.
    pub fn decode(bytes: &[u8]) -> Result<OutItem, crate::wire::WireError> {
        crate::wire::decode::<OutItem>(bytes).or_else(|e| {
            let v: OutItemV1 = crate::wire::decode(bytes).map_err(|_| e)?;
            Ok(OutItem {
                id: v.id,
                to: v.to,
                envelope: v.envelope,
                pending: v.pending,
                prekey_plain: v.prekey_plain,
                user: v.user,
                stored: v.stored,
                mailboxes: v.mailboxes,
                attempts: v.attempts,
                created_ms: v.created_ms,
                order: v.order,
                members: Vec::new(),
            })
        })
    }
}

/// [`OutItem`] as written before bundles (no `members`).
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct OutItemV1 {
    id: MsgId,
    to: String,
    envelope: Option<Vec<u8>>,
    pending: Option<Plain>,
    prekey_plain: Option<Plain>,
    user: bool,
    stored: bool,
    mailboxes: Vec<String>,
    attempts: u32,
    created_ms: u64,
    order: u64,
}

pub fn out_key(id: &MsgId, to: &str) -> String {
    format!("{}:{to}", hex::encode(id))
}

/// A sealed envelope held for an offline peer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MailItem {
    /// The peer that asked us to keep it (limits are counted per sender).
    pub from: String,
    pub expires_ms: u64,
    #[serde(with = "serde_bytes")]
    pub sealed: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    pub owner: String,
    pub epoch: u64,
    pub members: Vec<ContactCard>,
    pub out_seq: u64,
}

pub struct Store {
    db: Database,
    wal: Arc<Mutex<Wal>>,
}

fn db_err(e: impl Into<redb::Error>) -> MsgError {
    MsgError::Store(StoreError::Db(e.into()))
}

impl Store {
    /// Opens the database at `path` and its log beside it, applying what the log holds
    /// beyond the last checkpoint.
    pub fn open(path: &Path) -> Result<Store, MsgError> {
        let db = redb::Builder::new()
            .set_cache_size(nodus_core::datadir::DB_CACHE_BYTES)
            .create(path)
            .map_err(db_err)?;
        let _ = nodus_core::fsutil::restrict(path);
        let txn = db.begin_write().map_err(db_err)?;
        for t in ALL {
            txn.open_table(t).map_err(db_err)?;
        }
        let (id, after) = {
            let mut meta = txn.open_table(META).map_err(db_err)?;
            let known = meta
                .get("wal_id")
                .map_err(db_err)?
                .map(|v| u64_of(v.value()));
            let id = match known {
                Some(id) => id,
                None => {
                    let id = rand::random::<u64>();
                    meta.insert("wal_id", &id.to_le_bytes()[..])
                        .map_err(db_err)?;
                    id
                }
            };
            let after = meta
                .get("wal_seq")
                .map_err(db_err)?
                .map(|v| u64_of(v.value()));
            (id, after.unwrap_or(0))
        };
        txn.commit().map_err(db_err)?;
        let wal_path = path.with_extension("wal");
        let (wal, records) = Wal::open(&wal_path, id, after).map_err(|source| {
            MsgError::Store(StoreError::Wal {
                path: wal_path.clone(),
                source,
            })
        })?;
        let store = Store {
            db,
            wal: Arc::new(Mutex::new(wal)),
        };
        if !records.is_empty() {
            let w = store.write()?;
            let mut txn = w.txn();
            for payload in &records {
                let ops = wal::decode(payload).map_err(|e| {
                    MsgError::Store(StoreError::Damaged(format!(
                        "{}: a record is malformed: {e}",
                        wal_path.display()
                    )))
                })?;
                for op in ops {
                    apply(&mut txn, op)?;
                }
            }
            drop(txn);
            w.checkpoint()?;
            tracing::info!(target: "nodus::msg", records = records.len(), "applied the write-ahead log");
        }
        Ok(store)
    }

    /// Commits the database durably (synced), recording that it includes every record
    /// of the log, which then starts over. Cheap to call when the log is empty.
    pub fn checkpoint(&self) -> Result<(), MsgError> {
        self.write()?.checkpoint()
    }

    /// Whether commits since the last checkpoint live in the log only.
    pub fn has_unsynced(&self) -> bool {
        self.wal.lock().is_ok_and(|w| w.has_records())
    }

    pub fn write(&self) -> Result<Writer, MsgError> {
        Ok(Writer {
            txn: self.db.begin_write().map_err(db_err)?,
            wal: self.wal.clone(),
            ops: RefCell::new(Ops::default()),
        })
    }

    pub fn get<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<T>, MsgError> {
        match self.get_raw(table, key)? {
            Some(v) => decode_row(table, key, &v).map(Some),
            None => Ok(None),
        }
    }

    pub fn get_raw(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<Vec<u8>>, MsgError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(table).map_err(db_err)?;
        let pieces = txn.open_table(PIECES).map_err(db_err)?;
        let Some(v) = t.get(key).map_err(db_err)? else {
            return Ok(None);
        };
        whole(&pieces, table_index(table)?, key, v.value()).map(|w| Some(w.into_owned()))
    }

    /// Rows whose key starts with `prefix`, in key order.
    pub fn scan<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, MsgError> {
        self.scan_with(table, prefix, |key, bytes| decode_row(table, key, bytes))
    }

    /// Every outbox entry, in either layout it may have been written in.
    pub fn outbox(&self) -> Result<Vec<(String, OutItem)>, MsgError> {
        self.scan_with(OUTBOX, "", |key, bytes| {
            OutItem::decode(bytes).map_err(|e| {
                MsgError::Store(StoreError::Damaged(format!(
                    "outbox row {key:?} is unreadable: {e}"
                )))
            })
        })
    }

    fn scan_with<T>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        prefix: &str,
        decode: impl Fn(&str, &[u8]) -> Result<T, MsgError>,
    ) -> Result<Vec<(String, T)>, MsgError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(table).map_err(db_err)?;
        let pieces = txn.open_table(PIECES).map_err(db_err)?;
        let index = table_index(table)?;
        let mut out = Vec::new();
        for row in t.range(prefix..).map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            let key = k.value();
            if !key.starts_with(prefix) {
                break;
            }
            let value = whole(&pieces, index, key, v.value())?;
            out.push((key.to_string(), decode(key, &value)?));
        }
        Ok(out)
    }
}

fn decode_row<T: DeserializeOwned>(
    table: TableDefinition<&str, &[u8]>,
    key: &str,
    bytes: &[u8],
) -> Result<T, MsgError> {
    postcard::from_bytes(bytes).map_err(|e| {
        MsgError::Store(StoreError::Damaged(format!(
            "row {key} of table {}: {e}",
            table.name()
        )))
    })
}

fn u64_of(b: &[u8]) -> u64 {
    b.try_into().map(u64::from_le_bytes).unwrap_or(0)
}

/// A table's number in the log: its place in [`ALL`], which a table must be in.
fn table_index(def: TableDefinition<&str, &[u8]>) -> Result<u8, MsgError> {
    ALL.iter()
        .position(|t| t.name() == def.name())
        .map(|i| i as u8)
        .ok_or_else(|| {
            MsgError::Store(StoreError::Damaged(format!(
                "table {} is not in ALL",
                def.name()
            )))
        })
}

/// Runs a disk wait so that other tasks of the runtime move off this thread meanwhile:
/// the swarm and the API keep running while the disk works.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// A write transaction, committed whole. Work goes through [`Writer::txn`], which also
/// notes each change for the log.
pub struct Writer {
    txn: WriteTransaction,
    wal: Arc<Mutex<Wal>>,
    ops: RefCell<Ops>,
}

fn lock(wal: &Mutex<Wal>) -> Result<MutexGuard<'_, Wal>, MsgError> {
    wal.lock()
        .map_err(|_| MsgError::Store(StoreError::Damaged("write-ahead log poisoned".into())))
}

impl Writer {
    /// The tables of this transaction, each opened once on first use (opening a table
    /// per row cost a tenth of the service's time).
    pub fn txn(&self) -> Txn<'_> {
        Txn {
            txn: &self.txn,
            ops: &self.ops,
            open: Vec::new(),
        }
    }

    /// Makes the transaction durable: its changes go to the log (one synced append) and
    /// the database commit is left unsynced. A batch larger than [`wal::RECORD_MAX`] or
    /// than what is left of the log is committed synced instead, as a checkpoint.
    pub fn commit(self) -> Result<(), MsgError> {
        let Writer {
            mut txn,
            wal: log,
            ops,
        } = self;
        let ops = ops.into_inner();
        let mut wal = lock(&log)?;
        if ops.is_empty() {
            txn.set_durability(Durability::None).map_err(db_err)?;
            return txn.commit().map_err(db_err);
        }
        if !ops.too_large() && wal.fits(ops.bytes().len()) {
            // The log first: it must always hold at least what the database has.
            blocking(|| wal.append(ops.bytes())).map_err(|source| {
                MsgError::Store(StoreError::Wal {
                    path: wal.path().to_path_buf(),
                    source,
                })
            })?;
            txn.set_durability(Durability::None).map_err(db_err)?;
            return txn.commit().map_err(db_err);
        }
        drop(wal);
        Writer {
            txn,
            wal: log,
            ops: RefCell::new(ops),
        }
        .checkpoint()
    }

    /// Commits synced, as a checkpoint: this transaction takes the log's next sequence
    /// number without a record, and the log starts over.
    fn checkpoint(self) -> Result<(), MsgError> {
        let log = self.wal.clone();
        let mut wal = lock(&log)?;
        let seq = wal.next_seq();
        self.txn
            .open_table(META)
            .map_err(db_err)?
            .insert("wal_seq", &seq.to_le_bytes()[..])
            .map_err(db_err)?;
        let txn = self.txn;
        blocking(|| txn.commit().map_err(db_err))?;
        wal.restart(seq + 1);
        Ok(())
    }
}

/// Applies one change read back from the log.
fn apply(txn: &mut Txn, op: Op) -> Result<(), MsgError> {
    let def = |t: u8| {
        ALL.get(t as usize).copied().ok_or_else(|| {
            MsgError::Store(StoreError::Damaged(format!(
                "the log names table {t}, which does not exist"
            )))
        })
    };
    match op {
        Op::Put { table, key, value } => txn.put_raw(def(table)?, key, value),
        Op::Remove { table, key } => txn.remove(def(table)?, key).map(|_| ()),
    }
}

type Row = &'static str;
type Table<'a> = redb::Table<'a, Row, &'static [u8]>;
type Def = TableDefinition<'static, Row, &'static [u8]>;

pub struct Txn<'a> {
    txn: &'a WriteTransaction,
    ops: &'a RefCell<Ops>,
    open: Vec<(String, Table<'a>)>,
}

impl<'a> Txn<'a> {
    fn table(&mut self, def: Def) -> Result<&mut Table<'a>, MsgError> {
        let i = match self.open.iter().position(|(n, _)| *n == def.name()) {
            Some(i) => i,
            None => {
                let t = self.txn.open_table(def).map_err(db_err)?;
                self.open.push((def.name().to_string(), t));
                self.open.len() - 1
            }
        };
        Ok(&mut self.open[i].1)
    }

    pub fn put<T: Serialize>(&mut self, table: Def, key: &str, value: &T) -> Result<(), MsgError> {
        self.put_raw(table, key, &crate::wire::encode(value))
    }

    /// Writes a row (a long value in pieces) and notes it for the log as one put.
    pub fn put_raw(&mut self, table: Def, key: &str, value: &[u8]) -> Result<(), MsgError> {
        let index = table_index(table)?;
        let t = self.table(table)?;
        let stored: &[u8] = if value.len() > PIECE { &[] } else { value };
        let was_pieces = t
            .insert(key, stored)
            .map_err(db_err)?
            .is_some_and(|old| old.value().is_empty());
        if was_pieces {
            self.drop_pieces(index, key)?;
        }
        if value.len() > PIECE {
            let pieces = self.table(PIECES)?;
            for (n, piece) in value.chunks(PIECE).enumerate() {
                pieces
                    .insert(piece_key(index, key, n).as_str(), piece)
                    .map_err(db_err)?;
            }
        }
        self.ops.borrow_mut().put(index, key, value);
        Ok(())
    }

    fn drop_pieces(&mut self, index: u8, key: &str) -> Result<(), MsgError> {
        let pieces = self.table(PIECES)?;
        let mut n = 0;
        while pieces
            .remove(piece_key(index, key, n).as_str())
            .map_err(db_err)?
            .is_some()
        {
            n += 1;
        }
        Ok(())
    }

    /// A row's whole value (read back from its pieces if it has them).
    fn get_whole(&mut self, table: Def, key: &str) -> Result<Option<Vec<u8>>, MsgError> {
        let index = table_index(table)?;
        let value = {
            let t = self.table(table)?;
            match t.get(key).map_err(db_err)? {
                Some(v) => v.value().to_vec(),
                None => return Ok(None),
            }
        };
        let pieces = self.table(PIECES)?;
        whole(pieces, index, key, &value).map(|w| Some(w.into_owned()))
    }

    pub fn get<T: DeserializeOwned>(
        &mut self,
        table: Def,
        key: &str,
    ) -> Result<Option<T>, MsgError> {
        // Most rows are whole: decoded where they lie, without a copy.
        {
            let t = self.table(table)?;
            match t.get(key).map_err(db_err)? {
                None => return Ok(None),
                Some(v) if !v.value().is_empty() => {
                    return decode_row(table, key, v.value()).map(Some);
                }
                Some(_) => {}
            }
        }
        match self.get_whole(table, key)? {
            Some(v) => decode_row(table, key, &v).map(Some),
            None => Ok(None),
        }
    }

    pub fn get_raw_str(&mut self, table: Def, key: &str) -> Result<Option<String>, MsgError> {
        Ok(self
            .get_whole(table, key)?
            .and_then(|v| String::from_utf8(v).ok()))
    }

    pub fn contains(&mut self, table: Def, key: &str) -> Result<bool, MsgError> {
        let t = self.table(table)?;
        Ok(t.get(key).map_err(db_err)?.is_some())
    }

    pub fn remove(&mut self, table: Def, key: &str) -> Result<bool, MsgError> {
        let index = table_index(table)?;
        let t = self.table(table)?;
        let (removed, was_pieces) = match t.remove(key).map_err(db_err)? {
            Some(old) => (true, old.value().is_empty()),
            None => (false, false),
        };
        if was_pieces {
            self.drop_pieces(index, key)?;
        }
        if removed {
            self.ops.borrow_mut().remove(index, key);
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(s: &Store) -> u64 {
        use redb::ReadableTableMetadata;
        let txn = s.db.begin_read().unwrap();
        ReadableTableMetadata::len(&txn.open_table(PIECES).unwrap()).unwrap()
    }

    fn put(s: &Store, table: Def, key: &str, value: &[u8]) {
        let w = s.write().unwrap();
        let mut t = w.txn();
        t.put_raw(table, key, value).unwrap();
        drop(t);
        w.commit().unwrap();
    }

    /// A long value goes in pieces and reads back whole through every way of reading;
    /// overwriting or removing it leaves no piece behind; an empty value stays empty.
    #[test]
    fn long_values_are_kept_in_pieces_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("msg.redb")).unwrap();
        let big: Vec<u8> = (0..3 * PIECE + 5).map(|i| (i % 251) as u8).collect();
        put(&store, MESSAGES, "a|1", &big);
        // A key that starts like the other's pieces' keys would.
        put(&store, MESSAGES, "a|10", &[1, 2, 3]);
        put(&store, UNSEEN, "a|1", &[]);
        assert_eq!(pieces(&store), 4);
        assert_eq!(store.get_raw(MESSAGES, "a|1").unwrap().unwrap(), big);
        let rows = store
            .scan_with(MESSAGES, "a|", |_, v| Ok(v.to_vec()))
            .unwrap();
        assert_eq!(
            rows,
            [("a|1".into(), big.clone()), ("a|10".into(), vec![1, 2, 3])]
        );
        assert_eq!(
            store.get_raw(UNSEEN, "a|1").unwrap().unwrap(),
            Vec::<u8>::new()
        );
        {
            let w = store.write().unwrap();
            let mut t = w.txn();
            assert_eq!(t.get_whole(MESSAGES, "a|1").unwrap().unwrap(), big);
            t.put_raw(MESSAGES, "a|1", b"short").unwrap();
            drop(t);
            w.commit().unwrap();
        }
        assert_eq!(pieces(&store), 0, "overwritten: no piece left");
        put(&store, MESSAGES, "a|1", &big[..PIECE + 1]);
        assert_eq!(pieces(&store), 2);
        {
            let w = store.write().unwrap();
            let mut t = w.txn();
            assert!(t.remove(MESSAGES, "a|1").unwrap());
            drop(t);
            w.commit().unwrap();
        }
        assert_eq!(pieces(&store), 0, "removed: no piece left");
        assert!(store.get_raw(MESSAGES, "a|1").unwrap().is_none());
        assert_eq!(store.get_raw(MESSAGES, "a|10").unwrap().unwrap(), [1, 2, 3]);
    }

    fn copy_of(dir: &Path, name: &str, files: &[&str]) -> std::path::PathBuf {
        let to = dir.join(name);
        std::fs::create_dir(&to).unwrap();
        for f in files {
            std::fs::copy(dir.join(f), to.join(f)).unwrap();
        }
        to.join("msg.redb")
    }

    fn keys(s: &Store) -> Vec<String> {
        s.scan_with(SEEN, "", |_, _| Ok(()))
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    /// Commits are durable through the log alone: the files as a crash leaves them
    /// (copied while the store is open, its database never synced since the first
    /// commits) open with every change, removals included, also across checkpoints
    /// forced by batches larger than the log.
    #[test]
    fn commits_survive_a_crash_through_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("msg.redb")).unwrap();
        let commit = |i: usize, size: usize| {
            let w = store.write().unwrap();
            let mut t = w.txn();
            t.put_raw(SEEN, &format!("k{i:03}"), &vec![i as u8; size])
                .unwrap();
            if i % 10 == 9 {
                assert!(t.remove(SEEN, &format!("k{:03}", i - 1)).unwrap());
            }
            drop(t);
            w.commit().unwrap();
        };
        let mut want = Vec::new();
        for i in 0..60 {
            // Three batches larger than the log each force a synced commit.
            let size = if i % 20 == 5 { wal::CAP as usize } else { 100 };
            commit(i, size);
            want.push(format!("k{i:03}"));
            if i % 10 == 9 {
                want.retain(|k| *k != format!("k{:03}", i - 1));
            }
        }
        assert!(
            store.has_unsynced(),
            "the last commits live in the log only"
        );
        assert_eq!(keys(&store), want);

        let crashed = copy_of(dir.path(), "crashed", &["msg.redb", "msg.wal"]);
        let no_log = copy_of(dir.path(), "no_log", &["msg.redb"]);
        let last_sync = keys(&Store::open(&no_log).unwrap());
        assert!(
            last_sync.len() < want.len() && !last_sync.contains(&"k059".to_string()),
            "without the log the database alone lost the latest commits: {last_sync:?}"
        );
        let reopened = Store::open(&crashed).unwrap();
        assert_eq!(keys(&reopened), want);
        assert!(!reopened.has_unsynced());

        // After the replay's checkpoint the log starts over and keeps working.
        let w = reopened.write().unwrap();
        w.txn().put_raw(SEEN, "k999", b"x").unwrap();
        w.commit().unwrap();
        let again = copy_of(
            &dir.path().join("crashed"),
            "again",
            &["msg.redb", "msg.wal"],
        );
        want.push("k999".into());
        assert_eq!(keys(&Store::open(&again).unwrap()), want);
    }

    #[test]
    fn outbox_rows_of_the_earlier_layout_still_load() {
        let old = OutItemV1 {
            id: [7; 16],
            to: "peer".into(),
            envelope: Some(vec![1, 2, 3]),
            pending: None,
            prekey_plain: None,
            user: true,
            stored: true,
            mailboxes: vec!["box".into()],
            attempts: 2,
            created_ms: 5,
            order: 9,
        };
        let item = OutItem::decode(&crate::wire::encode(&old)).unwrap();
        assert_eq!((item.id, item.order, item.attempts), ([7; 16], 9, 2));
        assert_eq!(item.envelope, Some(vec![1, 2, 3]));
        assert_eq!(item.message_ids(), &[[7; 16]]);

        let mut bundle = item.clone();
        bundle.members = vec![[1; 16], [2; 16]];
        let back = OutItem::decode(&crate::wire::encode(&bundle)).unwrap();
        assert_eq!(back.message_ids(), &[[1; 16], [2; 16]]);
        assert!(OutItem::decode(&[0xff; 3]).is_err());
    }
}

#[cfg(test)]
mod path_row_tests {
    use super::PathRow;
    use crate::types::DeliveryPath;

    #[test]
    fn every_path_survives_a_postcard_row() {
        for p in [
            DeliveryPath::Direct,
            DeliveryPath::Relay {
                relay: "12D3KooWrelay".into(),
            },
            DeliveryPath::Mailboxes {
                holders: vec!["a".into(), "b".into()],
            },
            DeliveryPath::Onion,
        ] {
            let bytes = postcard::to_allocvec(&PathRow::from(&p)).unwrap();
            let back: PathRow = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(DeliveryPath::from(back), p);
        }
    }
}
