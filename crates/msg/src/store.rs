//! msg.redb: the only file the messaging service writes. One write transaction per
//! batch of work, so that a message, the ratchet state that encrypted or decrypted it
//! and its outbox or inbox entry are on disk together or not at all.
//!
//! Tables (keys are text so that prefix scans read naturally):
//! - `meta`: the Olm account pickle, the seal key, counters.
//! - `contacts`: peer id → [`Contact`].
//! - `sessions`: peer id → the Olm session pickles with that peer (JSON).
//! - `outbox`: `<id hex>:<peer id>` → [`OutItem`], until the recipient acknowledges it.
//! - `messages`: `<conversation>|<sent ms>|<seq>|<id hex>` → [`Message`]; `msg_index`:
//!   `<id hex>` → that key.
//! - `unseen`: the keys of incoming messages not shown yet (what `inbox` reads).
//! - `seen`: `<id hex>` → when it was accepted, for dropping duplicates and replays.
//! - `mailbox`: `<recipient>|<sender>|<sender's order>|<id hex>` → [`MailItem`] held for
//!   others, so a recipient gets each sender's items in the order they were written;
//!   `mailbox_ids`: `<recipient>|<id hex>` → that key.
//! - `groups`, `group_out` (our Megolm session per group), `group_in`
//!   (`<group>|<sender>|<session id>` → inbound Megolm session).

use std::path::Path;

use redb::{
    Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle, WriteTransaction,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::MsgError;
use crate::card::ContactCard;
use crate::wire::{MsgId, Plain};

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

const ALL: [TableDefinition<&str, &[u8]>; 13] = [
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
];

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
}

impl OutItem {
    pub fn key(&self) -> String {
        out_key(&self.id, &self.to)
    }
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
}

fn db_err(e: impl std::fmt::Display) -> MsgError {
    MsgError::Store(e.to_string())
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, MsgError> {
        let db = Database::create(path).map_err(db_err)?;
        let _ = nodus_core::fsutil::restrict(path);
        let txn = db.begin_write().map_err(db_err)?;
        for t in ALL {
            txn.open_table(t).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        Ok(Store { db })
    }

    pub fn write(&self) -> Result<Txn, MsgError> {
        Ok(Txn {
            txn: self.db.begin_write().map_err(db_err)?,
        })
    }

    pub fn get<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<T>, MsgError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(table).map_err(db_err)?;
        let Some(v) = t.get(key).map_err(db_err)? else {
            return Ok(None);
        };
        decode_row(table, key, v.value()).map(Some)
    }

    pub fn get_raw(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<Vec<u8>>, MsgError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(table).map_err(db_err)?;
        Ok(t.get(key).map_err(db_err)?.map(|v| v.value().to_vec()))
    }

    /// Rows whose key starts with `prefix`, in key order.
    pub fn scan<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, MsgError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(table).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.range(prefix..).map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            let key = k.value();
            if !key.starts_with(prefix) {
                break;
            }
            out.push((key.to_string(), decode_row(table, key, v.value())?));
        }
        Ok(out)
    }
}

fn decode_row<T: DeserializeOwned>(
    table: TableDefinition<&str, &[u8]>,
    key: &str,
    bytes: &[u8],
) -> Result<T, MsgError> {
    postcard::from_bytes(bytes)
        .map_err(|e| MsgError::Store(format!("row {key} of table {}: {e}", table.name())))
}

pub struct Txn {
    txn: WriteTransaction,
}

impl Txn {
    pub fn put<T: Serialize>(
        &mut self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
        value: &T,
    ) -> Result<(), MsgError> {
        self.put_raw(table, key, &crate::wire::encode(value))
    }

    pub fn put_raw(
        &mut self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
        value: &[u8],
    ) -> Result<(), MsgError> {
        let mut t = self.txn.open_table(table).map_err(db_err)?;
        t.insert(key, value).map_err(db_err)?;
        Ok(())
    }

    pub fn get<T: DeserializeOwned>(
        &mut self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<T>, MsgError> {
        let t = self.txn.open_table(table).map_err(db_err)?;
        let Some(v) = t.get(key).map_err(db_err)? else {
            return Ok(None);
        };
        decode_row(table, key, v.value()).map(Some)
    }

    pub fn get_raw_str(
        &mut self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<String>, MsgError> {
        let t = self.txn.open_table(table).map_err(db_err)?;
        Ok(t.get(key)
            .map_err(db_err)?
            .and_then(|v| String::from_utf8(v.value().to_vec()).ok()))
    }

    pub fn contains(
        &mut self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<bool, MsgError> {
        let t = self.txn.open_table(table).map_err(db_err)?;
        Ok(t.get(key).map_err(db_err)?.is_some())
    }

    pub fn remove(
        &mut self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<bool, MsgError> {
        let mut t = self.txn.open_table(table).map_err(db_err)?;
        Ok(t.remove(key).map_err(db_err)?.is_some())
    }

    /// Commits (an fsync). Other tasks of the runtime move off this thread meanwhile,
    /// so the swarm and the API keep running while the disk works.
    pub fn commit(self) -> Result<(), MsgError> {
        let commit = || self.txn.commit().map_err(db_err);
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(commit),
            _ => commit(),
        }
    }
}
