//! `nodus bench chain`, block propagation: one miner in a network of N local nodes (one
//! process, loopback); for every block it mines, the time until each other node has
//! imported it (checked and executed), from the miner's own import.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use nodus_chain::ChainEvent;
use nodus_testnet::Testnet;
use tokio::sync::{broadcast, mpsc};

use crate::ui::stats::percentile;

pub struct Propagation {
    pub nodes: usize,
    pub blocks: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

pub async fn run(nodes: usize, blocks: usize, dir: &std::path::Path) -> Result<Propagation> {
    let net = Testnet::start(nodes, dir).await?;
    net.wait_connected(3.min(nodes - 1), Duration::from_secs(60))
        .await?;
    let topic = net
        .node(0)
        .service::<nodus_chain::ChainHandle>()
        .as_ref()
        .ok_or_else(|| anyhow!("chain off"))?
        .block_topic()
        .to_string();
    net.wait_topic_mesh(&topic, 2.min(nodes - 1), Duration::from_secs(60))
        .await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    for k in net.running() {
        let mut events = net
            .node(k)
            .service::<nodus_chain::ChainHandle>()
            .as_ref()
            .ok_or_else(|| anyhow!("chain off"))?
            .events();
        let tx = tx.clone();
        tokio::spawn(async move {
            loop {
                let e = match events.recv().await {
                    Ok(e) => e,
                    // Heads dropped while lagging show up as blocks not seen everywhere.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if let ChainEvent::NewHead { hash, .. } = e
                    && tx.send((k, hash, Instant::now())).is_err()
                {
                    return;
                }
            }
        });
    }
    drop(tx);
    let miner = net
        .node(0)
        .service::<nodus_chain::ChainHandle>()
        .cloned()
        .ok_or_else(|| anyhow!("chain off"))?;
    miner.set_mining(true, None, None);
    let mut seen: HashMap<String, (Option<Instant>, Vec<Instant>)> = HashMap::new();
    let mut mined = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let complete = mined
            .iter()
            .filter(|h| seen.get(*h).is_some_and(|(_, o)| o.len() == nodes - 1))
            .count();
        if complete >= blocks || Instant::now() > deadline {
            break;
        }
        let Ok(Some((k, hash, at))) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await
        else {
            continue;
        };
        let entry = seen.entry(hash.clone()).or_insert((None, Vec::new()));
        if k == 0 {
            entry.0 = Some(at);
            if mined.len() < blocks {
                mined.push(hash);
            }
        } else {
            entry.1.push(at);
        }
    }
    miner.set_mining(false, None, None);
    let mut delays = Vec::new();
    for h in &mined {
        if let Some((Some(t0), others)) = seen.get(h) {
            delays.extend(others.iter().map(|t| t.saturating_duration_since(*t0)));
        }
    }
    net.shutdown().await;
    if delays.is_empty() {
        return Err(anyhow!("no block reached the other nodes"));
    }
    delays.sort();
    Ok(Propagation {
        nodes,
        blocks: mined.len(),
        p50_ms: percentile(&delays, 0.5) / 1000.0,
        p99_ms: percentile(&delays, 0.99) / 1000.0,
        max_ms: delays
            .last()
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or_default(),
    })
}
