//! The demo's overlay part (peers find each other, DHT, pubsub, a node reached only
//! through a relay, a node killed), and `nodus testnet up`.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use nodus_testnet::{Testnet, node_config, node_ip, wait_until};

use crate::ui::progress::{STEP_TIMEOUT, Steps, ms, step};
use crate::ui::{self, table};

/// Nodes the demo starts with.
pub const DEMO_NODES: usize = 6;

pub async fn testnet_up(n: usize, dir: &Path, json: bool) -> Result<ExitCode> {
    if n == 0 {
        return Err(anyhow!(
            "a testnet needs at least one node: `nodus testnet up 5 --dir /tmp/tn`"
        ));
    }
    std::fs::create_dir_all(dir)?;
    let net = Testnet::start(n, dir).await?;
    let mut rows = Vec::new();
    let mut list = Vec::new();
    for k in net.running() {
        let node = net.node(k);
        let tcp = node
            .p2p_addr("tcp")
            .map(|a| a.to_string())
            .unwrap_or_default();
        rows.push(vec![
            k.to_string(),
            node.peer_id().to_string(),
            node.api_url(),
            tcp.clone(),
            node.data_dir.root().display().to_string(),
        ]);
        list.push(serde_json::json!({
            "node": k, "peer_id": node.peer_id().to_string(), "api": node.api_url(),
            "p2p": node.endpoints.p2p, "data_dir": node.data_dir.root().display().to_string(),
        }));
    }
    if json {
        ui::json(&serde_json::json!({ "nodes": list }));
    } else {
        table(&["node", "peer id", "api", "p2p (tcp)", "data dir"], &rows);
        println!();
        println!(
            "try: nodus --data-dir {}/node1 peers    (Ctrl-C or SIGTERM stops the testnet)",
            dir.display()
        );
    }
    ui::process::stop_signal().await?;
    net.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Runs the overlay's steps on the demo's network of [`DEMO_NODES`] nodes.
pub async fn steps(net: &mut Testnet, steps: &mut Steps) {
    step(steps, "peers discover each other", async {
        let t = Instant::now();
        wait_until(STEP_TIMEOUT, "routing tables", || async {
            for k in net.running() {
                match net.node(k).net.status().await {
                    Ok(s) if s.routing_table_size >= DEMO_NODES - 2 => {}
                    _ => return false,
                }
            }
            true
        })
        .await?;
        let mut sizes = Vec::new();
        for k in net.running() {
            sizes.push(net.node(k).net.status().await?.routing_table_size);
        }
        let (least, most) = (
            sizes.iter().min().copied().unwrap_or(0),
            sizes.iter().max().copied().unwrap_or(0),
        );
        let known = if least == most {
            format!("{least}")
        } else {
            format!("{least} to {most}")
        };
        Ok(format!(
            "every node joined through node 0 and knows {known} others through the DHT, {} after the last one started",
            ms(t.elapsed())
        ))
    })
    .await;

    step(
        steps,
        "DHT record stored by one node, read by another",
        async {
            let t = Instant::now();
            net.node(1)
                .net
                .put_record(b"/kv/greeting".to_vec(), b"hello from node 1".to_vec())
                .await?;
            let put = t.elapsed();
            let t = Instant::now();
            let v = net.node(5).net.get_record(b"/kv/greeting".to_vec()).await?;
            if v != b"hello from node 1" {
                return Err(anyhow!("node 5 read {:?}", String::from_utf8_lossy(&v)));
            }
            Ok(format!(
                "put on node 1 {}, read on node 5 {}",
                ms(put),
                ms(t.elapsed())
            ))
        },
    )
    .await;

    step(steps, "pubsub message reaches every node", async {
        let mut subs = Vec::new();
        for k in net.running() {
            subs.push((k, net.node(k).net.subscribe("nodus-demo").await?));
        }
        net.wait_topic_mesh("nodus-demo", 1, STEP_TIMEOUT).await?;
        let t = Instant::now();
        net.node(2)
            .net
            .publish("nodus-demo", b"hello, network".to_vec())
            .await?;
        let mut slowest = Duration::ZERO;
        let mut got = 0;
        for (k, rx) in subs.iter_mut() {
            if *k == 2 {
                continue;
            }
            let m = tokio::time::timeout(STEP_TIMEOUT, rx.recv())
                .await
                .map_err(|_| anyhow!("node {k} got nothing"))?
                .ok_or_else(|| anyhow!("node {k}: subscription closed"))?;
            if m.data != b"hello, network" {
                return Err(anyhow!("node {k} got other data"));
            }
            slowest = slowest.max(t.elapsed());
            got += 1;
        }
        Ok(format!(
            "{got}/{} nodes received it, the last after {}",
            DEMO_NODES - 1,
            ms(slowest)
        ))
    })
    .await;

    step(steps, "node without a public address reached through a relay", async {
        let relay = net
            .node(0)
            .p2p_addr("tcp")
            .ok_or_else(|| anyhow!("node 0 has no TCP address"))?
            .to_string();
        let mut config = node_config(node_ip(DEMO_NODES), std::slice::from_ref(&relay));
        config.p2p.listen.clear();
        config.p2p.relays = vec![relay];
        let hidden = net.add_node(config).await?;
        let hidden_id = net.node(hidden).peer_id();
        wait_until(STEP_TIMEOUT, "relay reservation", || async {
            net.node(hidden)
                .net
                .status()
                .await
                .map(|s| s.listen_addrs.iter().any(|a| a.contains("p2p-circuit")))
                .unwrap_or(false)
        })
        .await?;
        let status = net.node(hidden).net.status().await?;
        if status.listen_addrs.iter().any(|a| !a.contains("p2p-circuit")) {
            return Err(anyhow!("hidden node has a direct listen address"));
        }
        // A newcomer that knows nobody dials the one address the hidden node publishes:
        // a circuit through node 0.
        let newcomer = net.add_node(node_config(node_ip(DEMO_NODES + 1), &[])).await?;
        let circuit: libp2p::Multiaddr = status
            .listen_addrs
            .iter()
            .find(|a| a.contains("/p2p-circuit"))
            .ok_or_else(|| anyhow!("no relay address"))?
            .parse()?;
        let t = Instant::now();
        let reached = match net.node(newcomer).net.dial(circuit.clone()).await {
            Ok(p) => p,
            // Refused only because connections to the hidden node exist already (its
            // one address is this circuit): it is reached.
            Err(e)
                if e.to_string().contains("connection limit")
                    && net
                        .node(newcomer)
                        .net
                        .peers()
                        .await?
                        .iter()
                        .any(|p| p.peer_id == hidden_id.to_string()) =>
            {
                hidden_id
            }
            Err(e) => return Err(e.into()),
        };
        let found = t.elapsed();
        if reached != hidden_id {
            return Err(anyhow!("the circuit led to {reached}, not the hidden node"));
        }
        let rtts = net.node(newcomer).net.ping(hidden_id, 3).await?;
        // And a node that only knows its peer id finds it through the DHT.
        net.node(3).net.ping(hidden_id, 1).await?;
        Ok(format!(
            "new node {newcomer} connected to hidden node {hidden} through relay node 0 in {}, ping {}; node 3 reached it by peer id",
            ms(found),
            ms(rtts.iter().copied().min().unwrap_or_default())
        ))
    })
    .await;

    step(
        steps,
        "a node killed while the others keep working",
        async {
            let victim = net.node(4).peer_id().to_string();
            net.kill(4).await?;
            let t = Instant::now();
            wait_until(STEP_TIMEOUT, "peers to notice", || async {
                for k in net.running() {
                    match net.node(k).net.peers().await {
                        Ok(p) if !p.iter().any(|p| p.peer_id == victim) => {}
                        _ => return false,
                    }
                }
                true
            })
            .await?;
            let noticed = t.elapsed();
            net.node(1)
                .net
                .put_record(b"/kv/after-kill".to_vec(), b"still working".to_vec())
                .await?;
            let v = net
                .node(5)
                .net
                .get_record(b"/kv/after-kill".to_vec())
                .await?;
            if v != b"still working" {
                return Err(anyhow!("record after kill not read back"));
            }
            Ok(format!(
                "node 4 killed; all peers dropped it within {}; DHT put/get still works",
                ms(noticed)
            ))
        },
    )
    .await;
}

/// The dashboard step: the watcher node's page in a headless Chromium, logged in by
/// the link `demo --open` prints, live with the peers its API reports and the
/// services' panels, and narrating every step before this one with the outcome it had
/// and what the nodes did meanwhile.
pub async fn dashboard_step(net: &Testnet, steps: &mut Steps) {
    let before: Vec<(String, &'static str)> = steps
        .done
        .iter()
        .map(|s| (s.what.to_string(), if s.ok { "ok" } else { "failed" }))
        .collect();
    step(steps, "dashboard in a browser narrates every step as it happens", async {
        let node = net
            .watcher()
            .ok_or_else(|| anyhow!("the watcher node is not running"))?;
        let api = nodus_node::client::ApiClient::from_data_dir(&node.data_dir)?;
        let peers = node.net.peers().await?.len();
        let t = Instant::now();
        let browser = nodus_testnet::browser::Browser::start().await?;
        let shown = async {
            let view = browser
                .dashboard(&api.dashboard_url(), peers, STEP_TIMEOUT)
                .await?;
            let narrated = browser.narration(before.len(), 1, STEP_TIMEOUT).await?;
            anyhow::Ok((view, narrated))
        }
        .await;
        browser.quit().await;
        let (view, narrated) = shown?;
        if view.url.contains("token") {
            return Err(anyhow!("the token stayed in the address bar: {}", view.url));
        }
        let shown: Vec<(String, &str)> = narrated
            .steps
            .iter()
            .take(before.len())
            .map(|s| (s.what.clone(), s.state.as_str()))
            .collect();
        if shown != before {
            return Err(anyhow!(
                "the page narrated {shown:?}, the demo ran {before:?}"
            ));
        }
        let mut active = narrated.activity_nodes.clone();
        active.sort_unstable();
        active.dedup();
        Ok(format!(
            "the watcher's page live with its {} peers and {} panels; all {} steps narrated as they ran, the last {} things nodes did shown (from {} nodes); {}",
            view.peers,
            view.panels.len(),
            before.len(),
            narrated.activity_nodes.len(),
            active.len(),
            ms(t.elapsed())
        ))
    })
    .await;
}
