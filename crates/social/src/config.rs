//! The `[social]` section of config.toml: its types, defaults and template text.

use nodus_core::Section;
use serde::{Deserialize, Serialize};

/// Social (crates/social): a Nostr relay on its own port, replicating with other nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SocialConfig {
    pub enabled: bool,
    /// Address of the Nostr relay (WebSocket, and NIP-11 over HTTP). Port 0: any free.
    pub listen: String,
    /// Largest message a client may send, in bytes.
    pub max_message_bytes: usize,
    /// Subscriptions one connection may hold open.
    pub max_subscriptions: usize,
    /// Open client connections; at the cap a new one replaces the oldest that has not
    /// yet sent a request, or is closed when all have.
    pub max_connections: usize,
    /// Events further ahead of this node's clock than this are refused, in seconds.
    pub max_future_secs: u64,
    /// Disk the relay's events may take, in MiB. Beyond it, the oldest events other
    /// nodes sent make room; what this node's clients published is never pushed out
    /// (new events are refused instead).
    pub max_store_mb: u64,
    /// Clients must authenticate (NIP-42) before they publish or read.
    pub require_auth: bool,
    /// Authors (hex public keys) this node neither stores nor serves. Other nodes decide
    /// for themselves.
    pub blocked_authors: Vec<String>,
    /// Kinds this node neither stores nor serves.
    pub blocked_kinds: Vec<u16>,
    /// Words: an event whose content holds one (case-insensitive) is neither stored nor
    /// served here.
    pub blocked_words: Vec<String>,
}

impl Default for SocialConfig {
    fn default() -> Self {
        SocialConfig {
            enabled: true,
            listen: "127.0.0.1:7447".into(),
            max_message_bytes: 128 * 1024,
            max_subscriptions: 20,
            max_connections: 1024,
            max_future_secs: 900,
            max_store_mb: 2048,
            require_auth: false,
            blocked_authors: vec![],
            blocked_kinds: vec![],
            blocked_words: vec![],
        }
    }
}

impl Section for SocialConfig {
    const NAME: &'static str = "social";
    const TEMPLATE: &'static str = TEMPLATE;
    fn enabled(&self) -> bool {
        self.enabled
    }
}

/// The `[social]` part of the commented config.toml that `nodus init` writes.
pub const TEMPLATE: &str = r#"[social]
enabled = true
# The Nostr relay: any Nostr client connects to ws://<listen>. 127.0.0.1 keeps it to
# this machine; "0.0.0.0:7447" serves everyone. Port 0: any free.
listen = "127.0.0.1:7447"
# Largest message a client may send, in bytes; subscriptions per connection; open
# connections (at the cap a new one replaces the oldest still silent one).
max_message_bytes = 131072
max_subscriptions = 20
max_connections = 1024
# Events dated further ahead of this clock than this many seconds are refused.
max_future_secs = 900
# Disk for events, in MiB: beyond it the oldest events other nodes sent make room;
# what this node's own clients published is kept (new events are refused instead).
max_store_mb = 2048
# Ask every client to authenticate (NIP-42) before it may publish or read.
require_auth = false
# Moderation for this node only: what it neither stores nor serves. Authors as hex keys.
blocked_authors = []
blocked_kinds = []
blocked_words = []
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_is_the_defaults() {
        assert_eq!(
            nodus_core::config::parse_template::<SocialConfig>().unwrap(),
            SocialConfig::default()
        );
    }
}
