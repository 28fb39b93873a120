//! The `[voice]` section of config.toml: its types, defaults and template text.

use nodus_core::Section;
use serde::{Deserialize, Serialize};

/// Voice (crates/voice): calls between contacts, and a relay for other people's calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VoiceConfig {
    pub enabled: bool,
    /// The IP each call's UDP socket binds (a port is picked per call).
    pub media_ip: String,
    /// Opus bitrate a call starts at (bits per second); it backs off under loss.
    pub bitrate: i32,
    /// The rate this side codes, plays and records at: 8000, 12000, 16000 (wideband,
    /// the default), 24000 or 48000 (fullband). The other side's may differ.
    pub sample_rate: u32,
    /// An unanswered call stops ringing after this many seconds.
    pub ring_secs: u64,
    /// Relay legs a call asks for (more survive more relay deaths).
    pub relays_per_call: usize,
    /// Peer ids of voice relays to use before those found in the DHT.
    pub relays: Vec<String>,
    pub relay: RelayConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// Carry other people's calls (only while this node has addresses of its own).
    pub enabled: bool,
    /// The relay's UDP socket.
    pub listen: String,
    /// The address allocations name, when callers reach the relay at another (a port
    /// forward); empty: the socket's.
    pub public: String,
    /// Calls carried at once.
    pub max_calls: usize,
    /// Allocations one peer may hold at once.
    pub max_per_peer: usize,
}

impl Default for VoiceConfig {
    fn default() -> Self {
        VoiceConfig {
            enabled: true,
            media_ip: "0.0.0.0".into(),
            bitrate: crate::codec::DEFAULT_BITRATE,
            sample_rate: crate::codec::RATE,
            ring_secs: 45,
            relays_per_call: 2,
            relays: Vec::new(),
            relay: RelayConfig::default(),
        }
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            enabled: true,
            listen: "0.0.0.0:0".into(),
            public: String::new(),
            max_calls: 1000,
            max_per_peer: 8,
        }
    }
}

impl Section for VoiceConfig {
    const NAME: &'static str = "voice";
    const TEMPLATE: &'static str = TEMPLATE;
    fn enabled(&self) -> bool {
        self.enabled
    }
}

/// The `[voice]` part of the commented config.toml that `nodus init` writes.
pub const TEMPLATE: &str = r#"[voice]
enabled = true
# The IP each call's UDP socket binds; a port is picked per call.
media_ip = "0.0.0.0"
# Opus bitrate a call starts at, in bits per second (it backs off when the other side
# reports loss).
bitrate = 48000
# The rate this side codes, plays and records at, in Hz: 8000, 12000, 16000 (wideband),
# 24000 or 48000 (fullband). Each side picks its own; the two need not agree.
sample_rate = 16000
# An unanswered call stops ringing after this many seconds.
ring_secs = 45
# Relay legs each call asks for, so that it survives a relay's death.
relays_per_call = 2
# Peer ids of voice relays to try before those found in the DHT.
relays = []

[voice.relay]
# Carry other people's calls when this node has addresses of its own. A relay forwards
# sealed datagrams: it sees who calls whom and how much, never what is said.
enabled = true
# The relay's UDP socket (port 0: any free port; allocations say which).
listen = "0.0.0.0:0"
# The address callers reach it at, when that is not the socket's (a port forward to a
# fixed listen port). Empty: the socket's, with this node's IP if it listens on all.
public = ""
# Calls carried at once, and allocations one peer may hold.
max_calls = 1000
max_per_peer = 8
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_is_the_defaults() {
        assert_eq!(
            nodus_core::config::parse_template::<VoiceConfig>().unwrap(),
            VoiceConfig::default()
        );
    }
}
