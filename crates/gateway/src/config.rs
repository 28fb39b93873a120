//! The `[gateway]` section of config.toml: its types, defaults and template text.

use nodus_core::Section;
use serde::{Deserialize, Serialize};

/// The content gateway (crates/gateway): torrents' files over HTTP on its own port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    pub enabled: bool,
    /// Address of the HTTP gateway. Port 0: any free.
    pub listen: String,
    /// How long a request waits for a piece that has not arrived, in seconds.
    pub wait_secs: u64,
    /// How long `/content/magnet` waits for a torrent's metadata, in seconds.
    pub metadata_wait_secs: u64,
    /// Disk the torrents the gateway added itself may take, in MiB; beyond it the
    /// least recently watched of them is removed with its files. Torrents added by
    /// hand never count and are never removed.
    pub cache_mb: u64,
    /// Open connections.
    pub max_connections: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            enabled: true,
            listen: "127.0.0.1:8788".into(),
            wait_secs: 60,
            metadata_wait_secs: 60,
            cache_mb: 10 * 1024,
            max_connections: 256,
        }
    }
}

impl Section for GatewayConfig {
    const NAME: &'static str = "gateway";
    const TEMPLATE: &'static str = TEMPLATE;
    fn enabled(&self) -> bool {
        self.enabled
    }
}

/// The `[gateway]` part of the commented config.toml that `nodus init` writes.
pub const TEMPLATE: &str = r#"[gateway]
enabled = true
# Torrents' files over HTTP while they download: http://<listen>/content/<infohash>/<path>,
# or /content/magnet?xt=... to add one. 127.0.0.1 keeps it to this machine (and refuses
# requests other web sites make from your browser); "0.0.0.0:8788" serves everyone.
listen = "127.0.0.1:8788"
# Seconds a request waits for a piece that has not arrived, and for a magnet's metadata.
wait_secs = 60
metadata_wait_secs = 60
# MiB that torrents the gateway added itself may take; beyond it the least recently
# watched is removed with its files. Torrents you added never count.
cache_mb = 10240
max_connections = 256
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_is_the_default() {
        assert_eq!(
            nodus_core::config::parse_template::<GatewayConfig>().unwrap(),
            GatewayConfig::default()
        );
    }
}
