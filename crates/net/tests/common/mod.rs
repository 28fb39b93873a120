//! Helpers shared by the nodus-net integration tests: a node config on one loopback
//! address, and a node's dialable address once it listens.

use std::time::Duration;

use libp2p::Multiaddr;
use nodus_core::config::P2pConfig;
use nodus_net::{NetConfig, NetworkHandle};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

/// TCP on `ip` (a free port), no mDNS, 127.0.0.1 exempt from the per-IP limit (nodes
/// on one machine all dial from it, whatever address they listen on), everything else
/// default.
pub fn config(ip: &str) -> NetConfig {
    let mut p2p = P2pConfig {
        listen: vec![format!("/ip4/{ip}/tcp/0")],
        mdns: false,
        ..P2pConfig::default()
    };
    p2p.limits.exempt_ips = vec!["127.0.0.1".into()];
    NetConfig::from_config(&p2p).unwrap()
}

/// The node's first listen address with its peer id, waiting up to 2 s for it.
pub async fn addr_of(h: &NetworkHandle) -> Multiaddr {
    for _ in 0..200 {
        if let Some(a) = h.status().await.unwrap().listen_addrs.first() {
            let a: Multiaddr = a.parse().unwrap();
            return a.with_p2p(h.local_peer_id()).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no listen address");
}

/// The counter `name` in `registry`, summed over its labels (0 if never counted).
#[allow(dead_code)] // not every test binary reads metrics
pub fn counter(registry: &Registry, name: &str) -> u64 {
    let mut text = String::new();
    encode(&mut text, registry).unwrap();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
