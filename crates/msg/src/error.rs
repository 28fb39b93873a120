use crate::card::CardError;
use crate::wire::MAX_TEXT;

/// Errors of the messaging service. Those a person causes say what to do next.
#[derive(Debug, thiserror::Error)]
pub enum MsgError {
    #[error("message store: {0}")]
    Store(String),
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
    #[error("the messaging service has stopped")]
    Stopped,
    #[error(transparent)]
    Net(#[from] nodus_net::NetError),
}
