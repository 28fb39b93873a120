//! `config.toml`: the node-wide sections (`[p2p]`, `[api]`) and, kept as they were
//! written, the sections of the services, which each service crate defines as a
//! [`Section`]. Core knows no service's settings: it parses the file, keeps the line and
//! column of every mistake, and hands each service its own section.
//!
//! The template `nodus init` writes is [`TEMPLATE`] followed by each service's
//! [`Section::TEMPLATE`]; each part parses to exactly its defaults.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::{DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::CoreError;

/// A service's section of config.toml: `[<NAME>]`, with its defaults and its commented
/// template text.
pub trait Section:
    Serialize + DeserializeOwned + Default + Clone + PartialEq + fmt::Debug + Send + Sync + 'static
{
    /// The section's name: also the service's name, its directory in the data dir, its
    /// route prefix (`/api/v1/<NAME>`) and its metric prefix (`nodus_<NAME>_`).
    const NAME: &'static str;
    /// Commented TOML that `nodus init` writes; must parse to `Self::default()`.
    const TEMPLATE: &'static str;
    /// Disabled means not started.
    fn enabled(&self) -> bool;
}

/// The whole file: the node-wide sections typed, the services' sections as written.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub p2p: P2pConfig,
    pub api: ApiConfig,
    /// Every other top-level table, by name.
    sections: BTreeMap<String, toml::Value>,
    /// The text the sections were parsed from, so that a service's section is decoded
    /// from it with line and column in its errors. Dropped by the first edit.
    source: Option<Source>,
}

/// Two configs are equal when they say the same, whatever text they came from.
impl PartialEq for Config {
    fn eq(&self, other: &Self) -> bool {
        self.p2p == other.p2p && self.api == other.api && self.sections == other.sections
    }
}

/// Parses a service's template on its own: it must hold only that service's section
/// (each service's tests compare the result with its defaults).
pub fn parse_template<S: Section>() -> Result<S, CoreError> {
    let c = Config::parse(S::TEMPLATE, Path::new(S::NAME))?;
    c.check_sections(&[S::NAME])?;
    if c.p2p != P2pConfig::default() || c.api != ApiConfig::default() {
        return Err(CoreError::Config {
            path: PathBuf::from(S::NAME),
            line: 0,
            column: 0,
            message: "a service's template must not set [p2p] or [api]".into(),
        });
    }
    c.section::<S>()
}

/// The template `nodus init` writes: the node-wide part, then each service's.
pub fn full_template(service_templates: &[&str]) -> String {
    let mut t = TEMPLATE.to_string();
    for s in service_templates {
        t.push('\n');
        t.push_str(s.trim_start_matches('\n'));
    }
    t
}

#[derive(Debug, Clone, PartialEq)]
struct Source {
    text: Arc<str>,
    path: PathBuf,
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
    /// Connections in their handshake; at the cap a new inbound one pushes out the
    /// oldest, except those from peers already known (routing table, bootstrap, relays).
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
# Connections in their handshake; at the cap a new inbound one pushes out the oldest
# (connections from peers already known are not counted).
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
"#;

impl Config {
    /// Parses TOML text; errors carry the line and column of the mistake. Services'
    /// sections are checked when they are read ([`Config::section`]).
    pub fn parse(text: &str, path: &Path) -> Result<Config, CoreError> {
        let table: toml::Table = from_text(text, path, |d| toml::Table::deserialize(d))?;
        let p2p = from_text(text, path, |d| Pick::<P2pConfig>::new("p2p").deserialize(d))?;
        let api = from_text(text, path, |d| Pick::<ApiConfig>::new("api").deserialize(d))?;
        let sections = table
            .into_iter()
            .filter(|(k, _)| k != "p2p" && k != "api")
            .collect();
        Ok(Config {
            p2p,
            api,
            sections,
            source: Some(Source {
                text: text.into(),
                path: path.to_path_buf(),
            }),
        })
    }

    /// The config as TOML text (without the template's comments).
    pub fn to_toml(&self) -> String {
        let mut table = toml::Table::new();
        if let Ok(v) = toml::Value::try_from(&self.p2p) {
            table.insert("p2p".into(), v);
        }
        if let Ok(v) = toml::Value::try_from(&self.api) {
            table.insert("api".into(), v);
        }
        for (k, v) in &self.sections {
            table.insert(k.clone(), v.clone());
        }
        toml::to_string(&table).unwrap_or_default()
    }

    /// Reads `path`; a missing file means all defaults.
    pub fn load(path: &Path) -> Result<Config, CoreError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(CoreError::io(path, e)),
        }
    }

    /// A service's section, its defaults where the file says nothing. A mistake in it is
    /// reported with the line and column where it was written.
    pub fn section<S: Section>(&self) -> Result<S, CoreError> {
        match (&self.source, self.sections.get(S::NAME)) {
            (_, None) => Ok(S::default()),
            (Some(src), Some(_)) => from_text(&src.text, &src.path, |d| {
                Pick::<S>::new(S::NAME).deserialize(d)
            }),
            (None, Some(v)) => S::deserialize(v.clone()).map_err(|e| CoreError::Config {
                path: PathBuf::from(format!("[{}]", S::NAME)),
                line: 0,
                column: 0,
                message: e.message().to_string(),
            }),
        }
    }

    /// Replaces a service's section (configs built in code: tests, testnets).
    pub fn set_section<S: Section>(&mut self, section: &S) {
        let value = toml::Value::try_from(section)
            .unwrap_or_else(|_| toml::Value::Table(toml::Table::new()));
        self.sections.insert(S::NAME.to_string(), value);
        self.source = None;
    }

    /// Changes a service's section in place.
    pub fn edit<S: Section>(&mut self, f: impl FnOnce(&mut S)) -> Result<(), CoreError> {
        let mut s = self.section::<S>()?;
        f(&mut s);
        self.set_section(&s);
        Ok(())
    }

    /// Refuses a top-level section that is neither node-wide nor a known service's,
    /// naming where it was written and which sections exist.
    pub fn check_sections(&self, known: &[&str]) -> Result<(), CoreError> {
        let Some(unknown) = self.sections.keys().find(|k| !known.contains(&k.as_str())) else {
            return Ok(());
        };
        let (path, line) = match &self.source {
            Some(src) => (src.path.clone(), header_line(&src.text, unknown)),
            None => (PathBuf::from("config"), 0),
        };
        let mut names = vec!["p2p", "api"];
        names.extend(known);
        Err(CoreError::Config {
            path,
            line,
            column: 1,
            message: format!(
                "unknown section `{unknown}`; the sections are {}",
                names
                    .iter()
                    .map(|n| format!("[{n}]"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }
}

/// Runs a deserializer over `text`, turning its error into one that names the line.
fn from_text<T>(
    text: &str,
    path: &Path,
    f: impl FnOnce(toml::de::Deserializer<'_>) -> Result<T, toml::de::Error>,
) -> Result<T, CoreError> {
    let err = |e: toml::de::Error| {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
        CoreError::Config {
            path: path.to_path_buf(),
            line,
            column,
            message: e.message().to_string(),
        }
    };
    let d = toml::de::Deserializer::parse(text).map_err(err)?;
    f(d).map_err(err)
}

/// Deserializes one top-level key of a document and skips the others, so that errors
/// inside it keep their place in the text.
struct Pick<T> {
    key: &'static str,
    _t: PhantomData<T>,
}

impl<T> Pick<T> {
    fn new(key: &'static str) -> Self {
        Pick {
            key,
            _t: PhantomData,
        }
    }
}

impl<'de, T: Deserialize<'de> + Default> DeserializeSeed<'de> for Pick<T> {
    type Value = T;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, T: Deserialize<'de> + Default> Visitor<'de> for Pick<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a TOML document")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let mut out = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == self.key {
                out = Some(map.next_value::<T>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(out.unwrap_or_default())
    }
}

/// The line of `[name]` or `[name.` in the text (1-based), or 0.
fn header_line(text: &str, name: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.starts_with(&format!("[{name}]")) || l.starts_with(&format!("[{name}."))
        })
        .map(|i| i + 1)
        .unwrap_or(0)
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

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Demo {
        enabled: bool,
        size: u32,
        inner: DemoInner,
    }
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
    #[serde(default, deny_unknown_fields)]
    struct DemoInner {
        names: Vec<String>,
    }
    impl Default for Demo {
        fn default() -> Self {
            Demo {
                enabled: true,
                size: 7,
                inner: DemoInner::default(),
            }
        }
    }
    impl Section for Demo {
        const NAME: &'static str = "demo";
        const TEMPLATE: &'static str =
            "[demo]\n# on or off\nenabled = true\nsize = 7\n[demo.inner]\nnames = []\n";
        fn enabled(&self) -> bool {
            self.enabled
        }
    }

    #[test]
    fn a_service_template_parses_to_its_defaults() {
        assert_eq!(parse_template::<Demo>().unwrap(), Demo::default());
        let full = full_template(&[Demo::TEMPLATE]);
        let c = Config::parse(&full, Path::new("c")).unwrap();
        assert_eq!(c.section::<Demo>().unwrap(), Demo::default());
        c.check_sections(&["demo"]).unwrap();
    }

    #[test]
    fn a_section_error_names_its_line_in_the_file() {
        let text = "[p2p]\nmdns = true\n\n[demo]\nsize = 3\n\n[demo.inner]\nnames = [1]\n";
        let c = Config::parse(text, Path::new("c.toml")).unwrap();
        let err = c.section::<Demo>().unwrap_err();
        let CoreError::Config { line, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(*line, 8, "{err}");
        let text = "[demo]\nsise = 3\n";
        let err = Config::parse(text, Path::new("c.toml"))
            .unwrap()
            .section::<Demo>()
            .unwrap_err();
        assert!(
            err.to_string().contains("line 2") && err.to_string().contains("sise"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_section_is_the_defaults_and_an_edit_sticks() {
        let mut c = Config::parse("[p2p]\nmdns = false\n", Path::new("c")).unwrap();
        assert_eq!(c.section::<Demo>().unwrap(), Demo::default());
        c.edit::<Demo>(|d| d.size = 99).unwrap();
        assert_eq!(c.section::<Demo>().unwrap().size, 99);
        let again = Config::parse(&c.to_toml(), Path::new("c")).unwrap();
        assert_eq!(again, c);
        assert_eq!(again.section::<Demo>().unwrap().size, 99);
        assert!(!again.p2p.mdns);
    }

    #[test]
    fn an_unknown_section_is_refused_with_its_line_and_the_known_ones() {
        let text = "[p2p]\nmdns = true\n\n[chian]\nenabled = true\n";
        let c = Config::parse(text, Path::new("c.toml")).unwrap();
        let err = c.check_sections(&["chain", "msg"]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("line 4") && msg.contains("chian"), "{msg}");
        assert!(msg.contains("[chain]") && msg.contains("[p2p]"), "{msg}");
        c.check_sections(&["chian"]).unwrap();
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
