use std::time::Duration;

use crate::card::CardError;
use crate::wire::{MAX_TEXT, WireError};

/// Errors of the messaging service. Those a person causes say what to do next.
#[derive(Debug, thiserror::Error)]
pub enum MsgError {
    #[error("a signal's service name is 1 to 32 bytes and its body at most 16 KiB")]
    SignalTooLarge,
    #[error("message store: {0}")]
    Store(#[from] StoreError),
    #[error("encryption: {0}")]
    Olm(#[from] crate::olm::OlmError),
    #[error(transparent)]
    Card(#[from] CardError),
    #[error(
        "no contact {0:?}: add one with `nodus msg add <code>`; `nodus msg contacts` lists them"
    )]
    NoContact(String),
    #[error("{0:?} names several contacts ({1}); use the peer id")]
    Ambiguous(String, String),
    #[error(
        "no group {0:?}: `nodus msg group create <name>` makes one; `nodus msg groups` lists them"
    )]
    NoGroup(String),
    #[error("only the group's owner ({0}) can change its members")]
    NotOwner(String),
    #[error("{0} is not a member of this group")]
    NotMember(String),
    #[error("{0} is already a member of this group")]
    AlreadyMember(String),
    #[error("the message is empty: say something")]
    EmptyText,
    #[error("the message is {0} bytes; the limit is {MAX_TEXT}")]
    TextTooLong(usize),
    #[error("that is this node's own contact code; give it to someone else to add")]
    OwnCode,
    #[error(
        "no file {0} in this node's file store: upload it first (`nodus msg send --file`, or POST /api/v1/msg/files)"
    )]
    NoFile(String),
    #[error("{0}")]
    BadFile(String),
    #[error(transparent)]
    Import(#[from] crate::files::ImportError),
    #[error("the messaging service has stopped")]
    Stopped,
    #[error("messaging identity {0}")]
    Key(String),
    #[error(
        "[msg] anonymous = true needs the onion service: set [onion] enabled = true, or anonymous = false"
    )]
    NeedsOnion,
    #[error("the onion service did not take messaging's: {0}")]
    Onion(#[from] crate::anonymous::AnonymityError),
    #[error("anonymous messaging's listener on 127.0.0.1: {0}")]
    Listen(#[source] std::io::Error),
    #[error(
        "{0} is not done anonymously yet ([msg] anonymous = true); set anonymous = false to use it"
    )]
    NotAnonymousYet(&'static str),
    #[error(transparent)]
    Net(#[from] nodus_net::NetError),
}

/// What went wrong with msg.redb or its log: the database, the log file, or data in
/// them that does not read back.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Db(#[from] redb::Error),
    #[error("write-ahead log {path}: {source}")]
    Wal {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("damaged data: {0}")]
    Damaged(String),
    #[error("file store {path}: {source}")]
    Files {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why an exchange with another peer failed: a delivery, a mailbox request, a key
/// lookup. Logged and retried by the service; never shown as a person's mistake.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("the overlay: {0}")]
    Net(#[from] nodus_net::NetError),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("through the onion network: {0}")]
    Onion(#[from] crate::anonymous::AnonymityError),
    #[error("the peer closed the stream")]
    Closed,
    #[error("a reply for nothing sent")]
    ReplyForNothing,
    #[error("an answer of the wrong kind: {0}")]
    Unexpected(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error("no mailbox peers known")]
    NoMailboxes,
    #[error("no mailbox took it: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    NoMailboxTook(Vec<DeliveryError>),
    #[error("no mailbox answered")]
    NoMailboxAnswered,
    #[error("no peer took the record yet")]
    NotReplicated,
    #[error("a key bundle signed by another peer")]
    ForeignBundle,
    #[error(transparent)]
    Card(#[from] CardError),
}

impl DeliveryError {
    /// Whether the peer sent something no honest peer sends (as opposed to a broken
    /// link, a timeout or a full mailbox).
    pub fn peer_at_fault(&self) -> bool {
        matches!(
            self,
            DeliveryError::Wire(WireError::Decode(_) | WireError::TooLarge(_))
                | DeliveryError::ReplyForNothing
                | DeliveryError::Unexpected(_)
                | DeliveryError::ForeignBundle
                | DeliveryError::Card(_)
        )
    }
}
