//! Eclipse defence: 50 peers from one /24 cannot take over a node's routing table, and
//! honest peers from other networks still get in afterwards.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::kad::KBucketKey;
use libp2p::{Multiaddr, PeerId};
use nodus_net::NetworkHandle;
use nodus_net::diversity::Subnet;
use prometheus_client::registry::Registry;

mod common;
use common::{addr_of, config};

async fn start(ip: &str) -> NetworkHandle {
    let (h, _task) = nodus_net::spawn(
        Keypair::generate_ed25519(),
        config(ip),
        &mut Registry::default(),
    )
    .unwrap();
    h
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

    // Gossipsub's IP-colocation penalty: all 50 arrive over TCP from 127.0.0.1 (loopback
    // dials leave from there), far past the threshold of 10 peers per IP.
    let score = target
        .gossip_score(sybils[0].local_peer_id())
        .await
        .unwrap()
        .expect("sybil is a gossip peer");
    assert!(score < -100.0, "colocated peers penalised: score {score}");

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

/// A peer that keeps sending records no validator accepts is cut off and kept out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_sending_invalid_records_is_banned() {
    let target = start("127.0.60.1").await;
    let target_addr = addr_of(&target).await;
    let mut evil_config = config("127.0.61.1");
    evil_config
        .validators
        .register("evil", std::sync::Arc::new(|_| Ok(())));
    let (evil, _task) = nodus_net::spawn(
        Keypair::generate_ed25519(),
        evil_config,
        &mut Registry::default(),
    )
    .unwrap();
    evil.dial(target_addr.clone()).await.unwrap();
    let evil_id = evil.local_peer_id();
    for _ in 0..200 {
        if target
            .routing_table()
            .await
            .unwrap()
            .iter()
            .any(|(p, _)| *p == evil_id)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..nodus_net::MAX_STRIKES {
        let key = format!("/evil/{i}").into_bytes();
        let _ = evil.put_record(key, b"junk".to_vec()).await;
    }
    for _ in 0..200 {
        if !target
            .peers()
            .await
            .unwrap()
            .iter()
            .any(|p| p.peer_id == evil_id.to_string())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let peers = target.peers().await.unwrap();
    assert!(
        !peers.iter().any(|p| p.peer_id == evil_id.to_string()),
        "evil peer disconnected"
    );
    // A banned peer's new connection is refused by the target as soon as the handshake
    // tells who it is; the dialer may briefly see it open, never for long.
    let _ = evil.dial(target_addr).await;
    let target_id = target.local_peer_id().to_string();
    let mut refused = false;
    for _ in 0..100 {
        let evil_sees = evil
            .peers()
            .await
            .unwrap()
            .iter()
            .any(|p| p.peer_id == target_id);
        let target_sees = target
            .peers()
            .await
            .unwrap()
            .iter()
            .any(|p| p.peer_id == evil_id.to_string());
        if !evil_sees && !target_sees {
            refused = true;
            break;
        }
        assert!(!target_sees, "the target accepted a banned peer");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "a banned peer cannot reconnect");
    let table = target.routing_table().await.unwrap();
    assert!(
        !table.iter().any(|(p, _)| *p == evil_id),
        "and is out of the routing table"
    );
    for k in 0..nodus_net::MAX_STRIKES {
        let key = format!("/evil/{k}").into_bytes();
        assert!(
            target.get_record(key).await.is_err(),
            "nothing of it stored"
        );
    }
}
