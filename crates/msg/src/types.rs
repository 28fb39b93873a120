//! What the messaging API shows: messages, their states, contacts, groups and events.

use serde::{Deserialize, Serialize};

/// Where a message is. Outgoing ones move queued → sent → delivered → read, or
/// queued → stored (held by mailboxes for an offline recipient) → delivered → read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    /// Written to the outbox; not yet handed to the network.
    Queued,
    /// Sent on a connection to the recipient, awaiting its acknowledgement.
    Sent,
    /// Held by mailbox peers until the recipient comes online.
    Stored,
    /// The recipient's node has it.
    Delivered,
    /// The recipient has read it.
    Read,
    /// An incoming message.
    Received,
    /// Refused by the recipient (it could not decrypt it).
    Failed,
}

impl MessageState {
    pub fn as_str(&self) -> &'static str {
        match self {
            MessageState::Queued => "queued",
            MessageState::Sent => "sent",
            MessageState::Stored => "stored for later",
            MessageState::Delivered => "delivered",
            MessageState::Read => "read",
            MessageState::Received => "received",
            MessageState::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Hex of the 16-byte message id.
    pub id: String,
    /// The contact's peer id, or `group:<hex id>`.
    pub conversation: String,
    /// Peer id of the author.
    pub from: String,
    pub from_name: String,
    pub outgoing: bool,
    pub text: String,
    pub state: MessageState,
    /// The author's counter in this conversation; history is ordered by it per author.
    pub seq: u64,
    /// The author's clock when it was written (ms since the Unix epoch).
    pub sent_ms: u64,
    /// This node's clock when it was stored here.
    pub stored_ms: u64,
    /// For incoming messages: shown to the user already.
    pub seen: bool,
    /// Files the message carries, with how far each has come.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileInfo>,
    /// For outgoing messages: the way it went, once acknowledged or stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<DeliveryPath>,
}

/// The way an outgoing message went: on a direct connection to its recipient, through
/// a relay's circuit, held by mailbox peers while the recipient was offline, or
/// through onion circuits (the anonymous mode: no relay on them is named).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "via", rename_all = "snake_case")]
pub enum DeliveryPath {
    Direct,
    Relay { relay: String },
    Mailboxes { holders: Vec<String> },
    Onion,
}

/// Where a file of a message is. Incoming ones move downloading → done, or to failed
/// (refused for good: too large, or not what the sender said); outgoing ones are
/// offered (the sender serves them to the recipient).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    Offered,
    Downloading,
    Done,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileInfo {
    /// Hex of the SHA-256 of its bytes: `GET /api/v1/msg/files/<hash>` reads it.
    pub hash: String,
    pub name: String,
    pub mime: String,
    pub size: u64,
    /// Bytes received and synced to disk (what a restart resumes from).
    pub received: u64,
    pub state: FileState,
    /// Why it failed, or (while downloading) why it waits: the sender away, no room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactInfo {
    pub peer_id: String,
    pub name: String,
    /// An Olm session exists, so messages are encrypted without a key lookup.
    pub session: bool,
    pub added_ms: u64,
    /// In the answer to adding a contact: the name it had when it was one already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// Hex of the 16-byte group id.
    pub id: String,
    pub name: String,
    pub owner: String,
    pub epoch: u64,
    pub members: Vec<GroupMember>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupMember {
    pub peer_id: String,
    pub name: String,
}

/// A signal from a contact to a service of this node (see `MsgHandle::signals`). Not an
/// event of the node's stream: a call's signal carries its keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// The contact's peer id.
    pub from: String,
    pub from_name: String,
    pub app: String,
    pub body: Vec<u8>,
    pub sent_ms: u64,
}

/// Events on the node's event stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MsgEvent {
    /// A message arrived (or one of ours was queued).
    Message { message: Message },
    /// An outgoing message changed state.
    State {
        id: String,
        conversation: String,
        to: String,
        state: MessageState,
        /// The way it went, once known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<DeliveryPath>,
    },
    /// Someone became a contact (by invite, or by writing to us first).
    Contact { contact: ContactInfo },
    /// A file of an incoming message moved: synced progress, done or failed.
    File {
        /// The message it came with (hex id) and its conversation.
        message: String,
        conversation: String,
        file: FileInfo,
    },
}

/// Totals kept for metrics and `nodus msg status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MsgStats {
    pub contacts: usize,
    pub groups: usize,
    pub outbox: usize,
    pub mailbox_items: usize,
    pub one_time_keys: usize,
    /// Envelopes refused since start (tampered, replayed, forged, malformed).
    pub rejected: u64,
    /// Envelopes that arrived again and were dropped, since start.
    pub duplicates: u64,
    /// Envelopes accepted since start.
    pub received: u64,
    /// Messages accepted since start: a bundle of texts is one envelope, many messages.
    pub messages_received: u64,
    /// The identity messages go out under: the node's peer id, or the anonymous one.
    #[serde(default)]
    pub identity: String,
    /// `[msg] anonymous`: messages go through onion services only.
    #[serde(default)]
    pub anonymous: bool,
}
