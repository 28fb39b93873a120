//! The overlay's settings, built from the `[p2p]` section of config.toml.

use std::net::IpAddr;

use libp2p::Multiaddr;
use nodus_core::config::{ConnectionLimits, P2pConfig, RelayLimits, RoutingLimits};

use crate::{NetError, Validators};

#[derive(Clone)]
pub struct NetConfig {
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    pub relays: Vec<Multiaddr>,
    pub external_addresses: Vec<Multiaddr>,
    pub advertise_listen_addrs: bool,
    pub mdns: bool,
    pub autonat_private_addrs: bool,
    pub gossip_ip_whitelist: Vec<IpAddr>,
    /// Not held to `limits.max_inbound_per_ip`.
    pub limit_exempt_ips: Vec<IpAddr>,
    pub relay: RelayLimits,
    pub limits: ConnectionLimits,
    pub routing: RoutingLimits,
    pub validators: Validators,
    /// Sent in identify, e.g. `nodus/0.1.0`.
    pub agent: String,
    /// The redb file DHT records are kept in; `None` keeps them in memory only.
    pub record_store: Option<std::path::PathBuf>,
}

/// Each entry parsed as a `T` (a multiaddr, an IP address), or the first that is not.
fn parse_all<T>(list: &[String]) -> Result<Vec<T>, NetError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    list.iter()
        .map(|s| {
            s.parse().map_err(|e: T::Err| NetError::BadAddr {
                addr: s.clone(),
                reason: e.to_string(),
            })
        })
        .collect()
}

impl NetConfig {
    pub fn from_config(p2p: &P2pConfig) -> Result<Self, NetError> {
        Ok(NetConfig {
            listen: parse_all(&p2p.listen)?,
            bootstrap: parse_all(&p2p.bootstrap)?,
            relays: parse_all(&p2p.relays)?,
            external_addresses: parse_all(&p2p.external_addresses)?,
            advertise_listen_addrs: p2p.advertise_listen_addrs,
            mdns: p2p.mdns,
            autonat_private_addrs: p2p.autonat_private_addrs,
            gossip_ip_whitelist: parse_all(&p2p.gossip_ip_whitelist)?,
            limit_exempt_ips: parse_all(&p2p.limits.exempt_ips)?,
            relay: p2p.relay.clone(),
            limits: p2p.limits.clone(),
            routing: p2p.routing.clone(),
            validators: Validators::default(),
            agent: format!("nodus/{}", env!("CARGO_PKG_VERSION")),
            record_store: None,
        })
    }
}
