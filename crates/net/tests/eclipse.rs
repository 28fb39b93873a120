//! Eclipse defence: 50 peers from one /24 cannot take over a node's routing table, and
//! honest peers from other networks still get in afterwards.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::kad::KBucketKey;
use libp2p::{Multiaddr, PeerId};
use nodus_core::config::P2pConfig;
use nodus_net::diversity::Subnet;
use nodus_net::{NetConfig, NetworkHandle};
use prometheus_client::registry::Registry;

fn config(ip: &str) -> NetConfig {
    let p2p = P2pConfig {
        listen: vec![format!("/ip4/{ip}/tcp/0")],
        mdns: false,
        ..P2pConfig::default()
    };
    NetConfig::from_config(&p2p).unwrap()
}

async fn start(ip: &str) -> NetworkHandle {
    let (h, _task) = nodus_net::spawn(
        Keypair::generate_ed25519(),
        config(ip),
        &mut Registry::default(),
    )
    .unwrap();
    h
}

async fn addr_of(h: &NetworkHandle) -> Multiaddr {
    for _ in 0..200 {
        if let Some(a) = h.status().await.unwrap().listen_addrs.first() {
            let a: Multiaddr = a.parse().unwrap();
            return a.with_p2p(h.local_peer_id()).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no listen address");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_peers_from_one_slash24_cannot_eclipse_a_node() {
    let target = start("127.0.50.1").await;
    let target_addr = addr_of(&target).await;
    let sybil_net = Subnet::of_addr(&"/ip4/127.0.200.1".parse().unwrap()).unwrap();

    let mut sybils = Vec::new();
    for i in 1..=50 {
        let s = start(&format!("127.0.200.{i}")).await;
        s.dial(target_addr.clone()).await.unwrap();
        sybils.push(s);
    }
    // Wait until the target has identified every Sybil (each then asked for a table slot).
    for _ in 0..200 {
        let identified = target
            .peers()
            .await
            .unwrap()
            .iter()
            .filter(|p| p.agent.is_some())
            .count();
        if identified >= 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let table = target.routing_table().await.unwrap();
    let from_sybil_net = |t: &[(PeerId, Vec<Multiaddr>)]| {
        t.iter()
            .filter(|(_, addrs)| addrs.iter().any(|a| Subnet::of_addr(a) == Some(sybil_net)))
            .map(|(p, _)| *p)
            .collect::<Vec<_>>()
    };
    let sybil_entries = from_sybil_net(&table);
    assert!(
        target.peers().await.unwrap().len() >= 50,
        "all 50 sybils connected"
    );
    assert!(
        sybil_entries.len() <= 10,
        "{} sybil entries in the routing table",
        sybil_entries.len()
    );
    assert!(!sybil_entries.is_empty(), "the limit admits some, not none");
    let local = KBucketKey::from(target.local_peer_id());
    let mut per_bucket: HashMap<u32, usize> = HashMap::new();
    for p in &sybil_entries {
        let d = KBucketKey::from(*p).distance(&local).ilog2().unwrap();
        *per_bucket.entry(d).or_default() += 1;
    }
    assert!(
        per_bucket.values().all(|n| *n <= 2),
        "per-bucket limit: {per_bucket:?}"
    );

    // Honest peers from three other networks still get in.
    let mut honest = Vec::new();
    for net in 201..=203 {
        let h = start(&format!("127.0.{net}.1")).await;
        h.dial(target_addr.clone()).await.unwrap();
        honest.push(h);
    }
    let mut missing: Vec<PeerId> = honest.iter().map(|h| h.local_peer_id()).collect();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let table = target.routing_table().await.unwrap();
        missing.retain(|p| !table.iter().any(|(q, _)| q == p));
        if missing.is_empty() {
            break;
        }
    }
    assert!(missing.is_empty(), "honest peers kept out: {missing:?}");
}
