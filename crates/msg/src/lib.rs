//! nodus-msg: end-to-end encrypted messaging between nodes, with no server in between.
//!
//! - **Identity.** Each node has an Olm account (vodozemac) whose keys its libp2p
//!   identity signs ([`card::ContactCard`]); contacts are added from invite codes.
//! - **Encryption.** Olm sessions for pairs (forward secrecy and recovery after
//!   compromise), Megolm for groups (one outbound session per member, rotated when
//!   someone is removed). One-time keys are published signed in the DHT under
//!   `/msg/keys/<peer id>` and replenished as they are used.
//! - **Delivery** ([`delivery`]): an envelope goes to its recipient over
//!   `/nodus/msg/1`, by whatever path libp2p has to it (a direct connection, or a circuit
//!   through a relay the recipient holds a reservation on; both are end-to-end Noise,
//!   so a relay sees ciphertext only). If the recipient cannot be reached, the envelope
//!   is sealed (HPKE) to the recipient and stored on the `mailbox_replicas` peers
//!   closest to its key over `/nodus/mailbox/1`; the recipient polls them, and deletes
//!   what it took.
//!
//! - **Anonymous** ([`anonymous`], `[msg] anonymous = true`): under an identity of its
//!   own, envelopes go through onion circuits to the contact's onion service instead.
//!
//! Invariants:
//! - A message is encrypted exactly once; retries resend the same bytes.
//! - The outbox keeps an item until the recipient acknowledges it (on its stream, or
//!   by a receipt after a mailbox fetch); the item, the message and the ratchet state
//!   are committed in one transaction, so a crash loses nothing and repeats nothing.
//! - A recipient acknowledges only after its own commit, and drops by id what it has
//!   already accepted, so duplicates (retries, several mailboxes) are harmless; a replay
//!   under a fresh id fails because the id is also inside the ciphertext.
//! - A mailbox keeps at most `mailbox_max_items_per_sender` items and
//!   `mailbox_max_bytes_per_sender` bytes from one sending peer, at most
//!   `mailbox_max_per_minute` per minute, each for at most `mailbox_ttl_secs`.

pub mod anonymous;
pub mod card;
pub mod config;
mod delivery;
mod error;
pub mod files;
mod handle;
pub mod http;
mod inbound;
pub mod megolm;
pub mod olm;
pub mod seal;
mod service;
pub mod store;
pub mod types;
mod wal;
pub mod wire;

pub use config::MsgConfig;
pub use error::{DeliveryError, MsgError};
pub use handle::MsgHandle;
pub use service::{Metrics, MsgService, NewFile, register_records, spawn};
pub use types::{
    ContactInfo, DeliveryPath, FileInfo, FileState, GroupInfo, GroupMember, Message, MessageState,
    MsgEvent, MsgStats, Signal,
};
