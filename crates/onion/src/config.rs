//! The `[onion]` section of config.toml: its types, defaults and template text.

use nodus_core::Section;
use serde::{Deserialize, Serialize};

/// Onion routing (crates/onion): a SOCKS5 proxy onto three-hop circuits, and, opted in,
/// a relay or exit for others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OnionConfig {
    pub enabled: bool,
    /// The SOCKS5 proxy's address. Port 0: any free (endpoints.json says which).
    pub socks_listen: String,
    /// Carry circuits for others (a relay); published to the network as such.
    pub relay: bool,
    /// Also let circuits out to the Internet from here (an exit), within the policy.
    pub exit: bool,
    /// Bytes a second this relay passes on for all circuits together; 0 for no limit.
    pub relay_bandwidth: u64,
    /// Let circuits reach private and loopback addresses from this exit. Test networks
    /// only: on the Internet it would open this machine's network to everyone.
    pub exit_allow_private: bool,
    /// Ports this exit never connects to.
    pub exit_reject_ports: Vec<u16>,
    /// Relays per circuit.
    pub hops: usize,
    /// No two relays of a circuit in one IPv4 network of this many leading bits.
    pub path_subnet_bits: u8,
    /// A relay publishes its descriptor again this often, in seconds.
    pub publish_secs: u64,
    /// Only relays this node has known this long (seconds) become its guards.
    pub guard_min_age_secs: u64,
    /// A relay's daily admission cost: its ticket's leading zero bits (2^bits scrypt
    /// runs to find one). Relays whose tickets pay less are not listed; the same on
    /// every node of a network.
    pub admission_bits: u8,
    /// Overlay protocols a relay opens for circuits ending at it, so that anonymous
    /// identities reach peers of the overlay (mailboxes) without an exit.
    pub relay_overlay_protocols: Vec<String>,
    /// Seconds between bandwidth probes of relays (one relay each time; those never
    /// measured first); 0 for none, which leaves path choice uniform.
    pub bandwidth_probe_secs: u64,
}

impl Default for OnionConfig {
    fn default() -> Self {
        OnionConfig {
            enabled: true,
            socks_listen: "127.0.0.1:9250".into(),
            relay: false,
            exit: false,
            relay_bandwidth: 0,
            exit_allow_private: false,
            exit_reject_ports: vec![25],
            hops: 3,
            path_subnet_bits: 16,
            publish_secs: 600,
            guard_min_age_secs: 86_400,
            admission_bits: 14,
            relay_overlay_protocols: vec!["/nodus/mailbox/1".into()],
            bandwidth_probe_secs: 60,
        }
    }
}

impl Section for OnionConfig {
    const NAME: &'static str = "onion";
    const TEMPLATE: &'static str = TEMPLATE;
    fn enabled(&self) -> bool {
        self.enabled
    }
}

/// The `[onion]` part of the commented config.toml that `nodus init` writes.
pub const TEMPLATE: &str = r#"[onion]
enabled = true
# SOCKS5 proxy for programs: curl --socks5-hostname 127.0.0.1:9250 https://...
socks_listen = "127.0.0.1:9250"
# Carry circuits for others; exit = also connect out to the Internet for them.
# `nodus onion relay on|off [--exit]` changes this at run time and is kept over it.
relay = false
exit = false
# Bytes a second a relay passes on for others, all circuits together (0: no limit).
relay_bandwidth = 0
# Private and loopback destinations from this exit: test networks only.
exit_allow_private = false
exit_reject_ports = [25]
hops = 3
# No two relays of a circuit in one IPv4 network of this many bits (/16).
path_subnet_bits = 16
publish_secs = 600
# Circuits enter by a few guards kept for weeks, chosen among relays known this long.
guard_min_age_secs = 86400
# A relay pays to be listed, each day: a memory-hard proof of work of this many bits
# (14: about a core-minute a day). Relays paying less are not used; keep it as the
# rest of the network has it.
admission_bits = 14
# What a relay opens on the overlay for circuits that end at it: anonymous messaging
# reaches mailboxes this way, the mailbox seeing the relay, not the sender.
relay_overlay_protocols = ["/nodus/mailbox/1"]
# Relays are chosen by the bandwidth this node measured, not what they claim: every
# this many seconds one relay is asked for 1 MiB through a one-hop circuit (0: never,
# and paths choose relays uniformly).
bandwidth_probe_secs = 60
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_is_the_defaults() {
        assert_eq!(
            nodus_core::config::parse_template::<OnionConfig>().unwrap(),
            OnionConfig::default()
        );
    }
}
