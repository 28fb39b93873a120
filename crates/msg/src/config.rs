//! The `[msg]` section of config.toml: its types, defaults and template text, and the
//! durations the service works in.

use std::time::Duration;

use nodus_core::Section;
use serde::{Deserialize, Serialize};

/// The messaging service (crates/msg). Limits on what this node keeps for others are
/// per sending peer, so no one peer can fill a mailbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MsgConfig {
    pub enabled: bool,
    /// Display name put in invites; empty means the short peer id.
    pub name: String,
    /// Mailbox replicas: a message for an offline contact is stored on this many of the
    /// peers closest to the contact's key.
    pub mailbox_replicas: usize,
    /// How long a mailbox keeps a message that nobody fetched.
    pub mailbox_ttl_secs: u64,
    /// Serve as a mailbox for others.
    pub mailbox_serve: bool,
    /// Messages and bytes a mailbox keeps from one sending peer.
    pub mailbox_max_items_per_sender: usize,
    pub mailbox_max_bytes_per_sender: u64,
    /// Messages a mailbox accepts from one sending peer per minute.
    pub mailbox_max_per_minute: u32,
    /// How often a node asks its mailboxes for stored messages.
    pub mailbox_poll_secs: u64,
    /// Seconds between delivery attempts of an undelivered message (doubles up to 60).
    pub retry_secs: u64,
    /// Largest file this node takes in to send, or fetches when one is sent to it.
    pub max_file_mib: u64,
    /// Total size of the files this node keeps or is fetching from others; an offer
    /// that would go past it is not fetched.
    pub max_received_files_mib: u64,
    /// Bytes per second (in KiB) this node serves each file download at; 0 for no limit.
    pub file_upload_limit_kib: u64,
    /// Message contacts through onion services only, under an identity of its own that
    /// is never this node's peer id (see [`crate::anonymous`]).
    pub anonymous: bool,
}

impl Default for MsgConfig {
    fn default() -> Self {
        MsgConfig {
            enabled: true,
            name: String::new(),
            mailbox_replicas: 3,
            mailbox_ttl_secs: 7 * 24 * 3600,
            mailbox_serve: true,
            mailbox_max_items_per_sender: 1000,
            mailbox_max_bytes_per_sender: 16 * 1024 * 1024,
            mailbox_max_per_minute: 600,
            mailbox_poll_secs: 30,
            retry_secs: 2,
            max_file_mib: 4096,
            max_received_files_mib: 16384,
            file_upload_limit_kib: 0,
            anonymous: false,
        }
    }
}

impl Section for MsgConfig {
    const NAME: &'static str = "msg";
    const TEMPLATE: &'static str = TEMPLATE;
    fn enabled(&self) -> bool {
        self.enabled
    }
}

/// The `[msg]` part of the commented config.toml that `nodus init` writes.
pub const TEMPLATE: &str = r#"[msg]
enabled = true
# Display name put in invites; empty means the short peer id.
name = ""
# A message for an offline contact is stored on this many peers closest to its key.
mailbox_replicas = 3
mailbox_ttl_secs = 604800
# Keep messages for offline peers of others, within these limits per sending peer.
mailbox_serve = true
mailbox_max_items_per_sender = 1000
mailbox_max_bytes_per_sender = 16777216
mailbox_max_per_minute = 600
# How often to ask the mailboxes for messages stored while this node was away.
mailbox_poll_secs = 30
# Seconds between delivery attempts of an undelivered message (doubling up to 60).
retry_secs = 2
# Largest file this node sends or fetches (files sent with messages).
max_file_mib = 4096
# Total of the files fetched from others (kept or on their way); past it, offers wait
# as failed until files are removed from msg/files or this is raised.
max_received_files_mib = 16384
# KiB per second each file download from this node may take; 0 for no limit.
file_upload_limit_kib = 0
# Message through onion services ([onion] must be enabled), under an identity of its
# own: contacts, relays and mailboxes learn neither this node's peer id nor its IP.
# Its contacts and history are apart from the other identity's; switching back and
# forth keeps both. Contacts must be anonymous too; mailboxes are reached through
# circuits; files and calls are not done this way yet.
anonymous = false
"#;

/// Retry delay after `attempts` failures: doubling from `retry_secs`, at most 60 s.
pub(crate) fn retry_after(c: &MsgConfig, attempts: u32) -> Duration {
    let base = Duration::from_secs(c.retry_secs.max(1));
    let factor = 1u32 << attempts.min(6);
    (base * factor).min(Duration::from_secs(60))
}

pub(crate) fn poll_interval(c: &MsgConfig) -> Duration {
    Duration::from_secs(c.mailbox_poll_secs.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_is_the_defaults() {
        assert_eq!(
            nodus_core::config::parse_template::<MsgConfig>().unwrap(),
            MsgConfig::default()
        );
    }
}
