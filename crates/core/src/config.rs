//! `config.toml`: every section a node reads, with its defaults. The template written by
//! `nodus init` ([`TEMPLATE`]) is commented and parses to exactly [`Config::default`].

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::CoreError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub p2p: P2pConfig,
    pub api: ApiConfig,
    pub msg: MsgConfig,
    pub chain: ChainConfig,
    pub torrent: TorrentConfig,
}

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

/// The chain service (crates/chain): proof-of-work blocks in Ethereum's formats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChainConfig {
    pub enabled: bool,
    /// Ethereum JSON-RPC over HTTP. Empty: no JSON-RPC server.
    pub rpc_listen: String,
    /// Pending transactions kept, in all and per sender.
    pub mempool_max: usize,
    pub mempool_max_per_sender: usize,
    pub genesis: GenesisConfig,
    pub mining: MiningConfig,
}

impl Default for ChainConfig {
    fn default() -> Self {
        ChainConfig {
            enabled: true,
            rpc_listen: "127.0.0.1:8545".into(),
            mempool_max: 4096,
            mempool_max_per_sender: 64,
            genesis: GenesisConfig::default(),
            mining: MiningConfig::default(),
        }
    }
}

/// What every node of one chain must agree on; any change makes a different chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenesisConfig {
    pub chain_id: u64,
    /// Fund the ten development accounts of the mnemonic
    /// `test test test test test test test test test test test junk` with 10,000 ether each.
    pub dev_accounts: bool,
    /// Target seconds between blocks.
    pub block_time_secs: u64,
    /// Seconds ahead of or behind schedule that halve or double the difficulty (ASERT).
    pub half_life_secs: u64,
    /// Expected hashes for the first block.
    pub initial_difficulty: u64,
    pub gas_limit: u64,
    /// Block reward in wei (decimal), paid to the miner besides the priority fees.
    pub block_reward_wei: String,
    /// Further balances: address (0x...) to wei (decimal).
    pub alloc: std::collections::BTreeMap<String, String>,
}

impl Default for GenesisConfig {
    fn default() -> Self {
        GenesisConfig {
            chain_id: 31337,
            dev_accounts: true,
            block_time_secs: 2,
            half_life_secs: 120,
            initial_difficulty: 400_000,
            gas_limit: 30_000_000,
            block_reward_wei: "2000000000000000000".into(),
            alloc: Default::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MiningConfig {
    /// Mine from start (`nodus mine` turns it on at run time).
    pub enabled: bool,
    pub threads: usize,
    /// Address that receives rewards; empty: the first development account.
    pub coinbase: String,
    /// Cap on hashes per second per node (0: as fast as the threads go), so a testnet of
    /// several miners on one machine leaves CPU for everything else.
    pub max_hashes_per_sec: u64,
}

impl Default for MiningConfig {
    fn default() -> Self {
        MiningConfig {
            enabled: false,
            threads: 1,
            coinbase: String::new(),
            max_hashes_per_sec: 0,
        }
    }
}

/// The messaging service (crates/msg). Limits on what this node keeps for others are
/// per sending peer, so no one peer can fill a mailbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MsgConfig {
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
}

impl Default for MsgConfig {
    fn default() -> Self {
        MsgConfig {
            name: String::new(),
            mailbox_replicas: 3,
            mailbox_ttl_secs: 7 * 24 * 3600,
            mailbox_serve: true,
            mailbox_max_items_per_sender: 1000,
            mailbox_max_bytes_per_sender: 16 * 1024 * 1024,
            mailbox_max_per_minute: 600,
            mailbox_poll_secs: 30,
            retry_secs: 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct P2pConfig {
    /// Multiaddrs to listen on. Empty: the node listens only through `relays`.
    pub listen: Vec<String>,
    /// Peers to join the network through (multiaddrs ending in /p2p/<peer id>).
    pub bootstrap: Vec<String>,
    /// Relay peers to take a reservation on, so peers that cannot dial us reach us.
    pub relays: Vec<String>,
    /// Addresses to advertise as reachable, besides those confirmed by AutoNAT.
    pub external_addresses: Vec<String>,
    /// Treat every address the node listens on as reachable, without waiting for AutoNAT
    /// (right for a server with a public IP, and for loopback testnets).
    pub advertise_listen_addrs: bool,
    /// Discover peers on the local network by mDNS.
    pub mdns: bool,
    /// Let AutoNAT dial back loopback and private addresses when a peer asks (right for a
    /// testnet or a LAN; off by default so peers cannot use us to probe private networks).
    pub autonat_private_addrs: bool,
    /// IPs exempt from gossipsub's IP-colocation penalty (for example 127.0.0.1 in a
    /// loopback testnet, where every outbound TCP connection comes from that address).
    pub gossip_ip_whitelist: Vec<String>,
    pub relay: RelayLimits,
    pub limits: ConnectionLimits,
    pub routing: RoutingLimits,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayLimits {
    /// Serve as a circuit relay v2 for other peers.
    pub enabled: bool,
    pub max_reservations: usize,
    pub max_circuits: usize,
    pub max_circuits_per_peer: usize,
    pub max_circuit_duration_secs: u64,
    pub max_circuit_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionLimits {
    pub max_established: u32,
    pub max_established_per_peer: u32,
    pub max_pending: u32,
    /// At most this many inbound connections from one IP address (one /64 for IPv6),
    /// handshakes included.
    pub max_inbound_per_ip: u32,
    /// IPs not held to `max_inbound_per_ip` (127.0.0.1 in a loopback testnet, where
    /// every node dials from that address).
    pub exempt_ips: Vec<String>,
    pub idle_timeout_secs: u64,
    /// Refuse new connections when the process uses more than this many MiB.
    pub max_memory_mib: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingLimits {
    /// At most this many routing-table entries from one /24 (IPv4) or /64 (IPv6) per bucket.
    pub max_per_subnet_per_bucket: usize,
    /// At most this many routing-table entries from one /24 or /64 in the whole table.
    pub max_per_subnet_per_table: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Where the HTTP API listens. Port 0 picks a free port; endpoints.json tells which.
    pub listen: String,
}

impl Default for P2pConfig {
    fn default() -> Self {
        P2pConfig {
            listen: vec![
                "/ip4/0.0.0.0/tcp/4001".into(),
                "/ip4/0.0.0.0/udp/4001/quic-v1".into(),
            ],
            bootstrap: vec![],
            relays: vec![],
            external_addresses: vec![],
            advertise_listen_addrs: false,
            mdns: true,
            autonat_private_addrs: false,
            gossip_ip_whitelist: vec![],
            relay: RelayLimits::default(),
            limits: ConnectionLimits::default(),
            routing: RoutingLimits::default(),
        }
    }
}

impl Default for RelayLimits {
    fn default() -> Self {
        RelayLimits {
            enabled: true,
            max_reservations: 128,
            max_circuits: 64,
            max_circuits_per_peer: 8,
            max_circuit_duration_secs: 3600,
            max_circuit_bytes: 64 * 1024 * 1024,
        }
    }
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_established: 400,
            max_established_per_peer: 2,
            max_pending: 128,
            max_inbound_per_ip: 8,
            exempt_ips: vec![],
            idle_timeout_secs: 120,
            max_memory_mib: 2048,
        }
    }
}

impl Default for RoutingLimits {
    fn default() -> Self {
        RoutingLimits {
            max_per_subnet_per_bucket: 2,
            max_per_subnet_per_table: 10,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: "127.0.0.1:0".into(),
        }
    }
}

/// The commented config written by `nodus init`. Parses to `Config::default()`.
pub const TEMPLATE: &str = r#"# nodus configuration. Every key is optional; the values shown are the defaults.

[p2p]
# Multiaddrs to listen on for peers (TCP and QUIC). An empty list means the node is
# reachable only through the relays below.
listen = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
# Peers to join the network through, e.g. "/ip4/203.0.113.7/tcp/4001/p2p/12D3Koo...".
bootstrap = []
# Relay peers to hold a reservation on, so that peers which cannot dial us still reach us.
relays = []
# Addresses to advertise as reachable, besides those AutoNAT confirms.
external_addresses = []
# Treat every listen address as reachable without waiting for AutoNAT to confirm it
# (right for a server on a public IP). Relay service needs a reachable address.
advertise_listen_addrs = false
# Find peers on the local network by mDNS.
mdns = true
# Let AutoNAT dial back loopback and private addresses (testnets, LANs only).
autonat_private_addrs = false
# IPs exempt from gossipsub's penalty for many peers behind one IP.
gossip_ip_whitelist = []

[p2p.relay]
# Serve as a circuit relay (v2) for other peers, within these limits.
enabled = true
max_reservations = 128
max_circuits = 64
max_circuits_per_peer = 8
max_circuit_duration_secs = 3600
max_circuit_bytes = 67108864

[p2p.limits]
max_established = 400
max_established_per_peer = 2
max_pending = 128
# Inbound connections from one IP (one /64 for IPv6), handshakes included, and the
# IPs exempt from that.
max_inbound_per_ip = 8
exempt_ips = []
idle_timeout_secs = 120
# Refuse new connections while the process uses more memory than this.
max_memory_mib = 2048

[p2p.routing]
# Eclipse defence: DHT routing-table entries allowed from one /24 (IPv4) or /64 (IPv6).
max_per_subnet_per_bucket = 2
max_per_subnet_per_table = 10

[api]
# The HTTP API. It requires the bearer token in api.cookie. Port 0 picks a free port;
# endpoints.json says which one was taken.
listen = "127.0.0.1:0"

[msg]
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

[torrent]
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

[chain]
enabled = true
# Ethereum JSON-RPC (web3.py, ethers, wallets). No token: it holds no keys, so it offers
# only what a public node does. Keep it on 127.0.0.1. Empty: no JSON-RPC server.
rpc_listen = "127.0.0.1:8545"
# Pending transactions kept, in all and per sender.
mempool_max = 4096
mempool_max_per_sender = 64

[chain.genesis]
# Every node of a chain must have the same values here.
chain_id = 31337
# Fund the ten accounts of the mnemonic "test test ... test junk" (as Hardhat and anvil).
dev_accounts = true
block_time_secs = 2
# ASERT difficulty: being this many seconds ahead of schedule doubles the difficulty.
half_life_secs = 120
initial_difficulty = 400000
gas_limit = 30000000
block_reward_wei = "2000000000000000000"
# Further balances, e.g. "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266" = "1000000000000000000"
[chain.genesis.alloc]

[chain.mining]
enabled = false
threads = 1
# Address paid for mined blocks; empty: the first development account.
coinbase = ""
# Hashes per second at most (0: no cap).
max_hashes_per_sec = 0
"#;

impl Config {
    /// Parses TOML text; errors carry the line and column of the mistake.
    pub fn parse(text: &str, path: &Path) -> Result<Config, CoreError> {
        toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            CoreError::Config {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().to_string(),
            }
        })
    }

    /// The config as TOML text (without the template's comments).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// Reads `path`; a missing file means all defaults.
    pub fn load(path: &Path) -> Result<Config, CoreError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(CoreError::io(path, e)),
        }
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_is_the_defaults() {
        let c = Config::parse(TEMPLATE, Path::new("config.toml")).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn round_trips_through_toml() {
        let mut c = Config::default();
        c.p2p.bootstrap.push("/ip4/127.0.0.1/tcp/1".into());
        assert_eq!(Config::parse(&c.to_toml(), Path::new("c")).unwrap(), c);
    }

    #[test]
    fn error_names_the_line() {
        let text = "[p2p]\nmdns = true\nlisten = 7\n";
        let err = Config::parse(text, Path::new("c.toml")).unwrap_err();
        let CoreError::Config { line, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(*line, 3, "{err}");
        assert!(err.to_string().contains("line 3"), "{err}");
    }

    #[test]
    fn unknown_key_is_an_error() {
        let err = Config::parse(
            "[api]\nlisten = \"127.0.0.1:1\"\nlissen = 1\n",
            Path::new("c"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
        assert!(err.to_string().contains("lissen"), "{err}");
    }
}
