//! The `[torrent]` section of config.toml: its types, defaults and template text.

use nodus_core::Section;
use serde::{Deserialize, Serialize};

/// The mainline DHT's well-known entry points.
pub const DEFAULT_DHT_BOOTSTRAP: [&str; 3] = [
    "router.bittorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "dht.libtorrent.org:25401",
];

/// File sharing (crates/torrent): a BitTorrent engine on its own TCP port, so that any
/// BitTorrent client can be a peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TorrentConfig {
    pub enabled: bool,
    /// TCP address for BitTorrent peers. Port 0 picks a free port.
    pub listen: String,
    /// Where downloads go; empty: `<data dir>/downloads`.
    pub download_dir: String,
    /// Connected peers per torrent, at most.
    pub max_peers_per_torrent: usize,
    /// Peers uploaded to at once per torrent (one of them the optimistic unchoke).
    pub upload_slots: usize,
    /// Block requests kept in flight to one peer.
    pub pipeline: usize,
    /// Upload and download limits over all torrents, in KiB/s (0: none).
    pub upload_limit_kib: u64,
    pub download_limit_kib: u64,
    /// Mainline DHT (BEP 5): find peers without a tracker. It listens on UDP, on the
    /// listen address and port when that port is free.
    pub dht: bool,
    /// DHT nodes to join through (host:port). Empty: start alone and learn nodes from peers.
    pub dht_bootstrap: Vec<String>,
    /// Message stream encryption (MSE/PE) with other BitTorrent peers.
    pub encryption: Encryption,
    /// uTP (BEP 29): accept peers over UDP on the listen port, and reach over uTP the
    /// peers TCP cannot.
    pub utp: bool,
}

/// `[torrent] encryption`: whether BitTorrent connections are obfuscated (MSE/PE).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encryption {
    /// Plain BitTorrent only, both ways.
    Off,
    /// Connect with MSE offering RC4 and plain, and let the other side choose; accept
    /// both. Falls back to a plain connection to a peer that does not speak MSE.
    #[default]
    Prefer,
    /// RC4 only, both ways: plain connections are refused.
    Require,
}

impl Default for TorrentConfig {
    fn default() -> Self {
        TorrentConfig {
            enabled: true,
            listen: "0.0.0.0:6881".into(),
            download_dir: String::new(),
            max_peers_per_torrent: 50,
            upload_slots: 8,
            pipeline: 128,
            upload_limit_kib: 0,
            download_limit_kib: 0,
            dht: true,
            dht_bootstrap: DEFAULT_DHT_BOOTSTRAP
                .iter()
                .map(|s| s.to_string())
                .collect(),
            encryption: Encryption::Prefer,
            utp: true,
        }
    }
}

impl Section for TorrentConfig {
    const NAME: &'static str = "torrent";
    const TEMPLATE: &'static str = TEMPLATE;
    fn enabled(&self) -> bool {
        self.enabled
    }
}

/// The `[torrent]` part of the commented config.toml that `nodus init` writes.
pub const TEMPLATE: &str = r#"[torrent]
enabled = true
# TCP address BitTorrent peers connect to (any BitTorrent client can). Port 0: any free.
listen = "0.0.0.0:6881"
# Where downloads go; empty: <data dir>/downloads.
download_dir = ""
max_peers_per_torrent = 50
# Peers uploaded to at once per torrent (tit-for-tat, one slot optimistic).
upload_slots = 8
# Block requests (16 KiB each) kept in flight to one peer.
pipeline = 128
# Rate limits over all torrents, in KiB/s; 0 means none.
upload_limit_kib = 0
download_limit_kib = 0
# Mainline DHT (BEP 5): peers found without a tracker. UDP, on the listen address and port.
dht = true
# DHT nodes to join through; [] starts alone and learns nodes from peers.
dht_bootstrap = ["router.bittorrent.com:6881", "dht.transmissionbt.com:6881", "dht.libtorrent.org:25401"]
# Message stream encryption with peers: "prefer" (offer it, accept both), "require"
# (encrypted connections only) or "off".
encryption = "prefer"
# uTP (BEP 29) on UDP at the listen port, beside TCP (the DHT then takes the next port).
utp = true
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_is_the_defaults() {
        assert_eq!(
            nodus_core::config::parse_template::<TorrentConfig>().unwrap(),
            TorrentConfig::default()
        );
    }
}
