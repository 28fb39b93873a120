//! The demo's social part: a note published by a Nostr client on one node reaches a
//! live subscription on another; a node that blocks an author does not serve them while
//! the others still do.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use nodus_social::client::Client;
use nodus_social::relay::{TOPIC, now};
use nodus_social::{Keys, SocialConfig, SocialHandle};
use nodus_testnet::{Testnet, node_config, node_ip, wait_until};
use serde_json::json;

use crate::ui::progress::{STEP_TIMEOUT, Step, ms, step};

pub async fn steps(net: &mut Testnet, steps: &mut Vec<Step>) {
    step(
        steps,
        "a Nostr note posted on one node reaches a live subscription on another",
        across_relays(net),
    )
    .await;
    step(
        steps,
        "a node's block list hides an author there; the other nodes still serve them",
        moderation_is_local(net),
    )
    .await;
}

/// Running nodes with social on.
fn relays(net: &Testnet) -> Vec<usize> {
    net.running()
        .into_iter()
        .filter(|k| net.node(*k).service::<SocialHandle>().is_some())
        .collect()
}

fn url(net: &Testnet, k: usize) -> Result<String> {
    Ok(net
        .node(k)
        .service::<SocialHandle>()
        .ok_or_else(|| anyhow!("node {k} runs no relay"))?
        .relay_url())
}

async fn across_relays(net: &mut Testnet) -> Result<String> {
    let r = relays(net);
    let (Some(&a), Some(&c)) = (r.first(), r.last()) else {
        bail!("two nodes with a relay are needed, {} run one", r.len());
    };
    net.wait_topic_mesh(TOPIC, 1, STEP_TIMEOUT).await?;
    let mut reader = Client::connect(&url(net, c)?).await?;
    reader
        .subscribe("live", &[json!({"kinds": [1], "since": now()})])
        .await?;
    let mut writer = Client::connect(&url(net, a)?).await?;
    let note = Keys::generate().sign(now(), 1, vec![], "hello from a Nostr client, via nodus");
    let t = Instant::now();
    let (ok, why) = writer.publish(&note).await?;
    if !ok {
        bail!("relay of node {a} refused the note: {why}");
    }
    let got = reader.next_event("live").await?;
    let took = t.elapsed();
    if got.id != note.id {
        bail!("node {c}'s subscription got another event");
    }
    writer.close().await;
    reader.close().await;
    Ok(format!("node {a} -> node {c} in {}", ms(took)))
}

async fn moderation_is_local(net: &mut Testnet) -> Result<String> {
    let blocked = Keys::generate();
    let other = Keys::generate();
    let k = net.len();
    let mut config = node_config(node_ip(k), &net.bootstrap_addrs());
    let mut social: SocialConfig = config.section()?;
    social.blocked_authors = vec![hex::encode(blocked.public())];
    config.set_section(&social);
    let d = net.add_node(config).await?;
    net.wait_topic_mesh(TOPIC, 1, STEP_TIMEOUT).await?;
    let r = relays(net);
    let (a, c) = (r[0], *r.iter().rev().find(|&&x| x != d).unwrap_or(&r[0]));
    let mut writer = Client::connect(&url(net, a)?).await?;
    let spam = blocked.sign(now(), 1, vec![], "from an author one node blocks");
    let fine = other.sign(now(), 1, vec![], "from an author everyone carries");
    for e in [&spam, &fine] {
        let (ok, why) = writer.publish(e).await?;
        if !ok {
            bail!("node {a} refused a note: {why}");
        }
    }
    writer.close().await;
    let ids = |ids: &[[u8; 32]]| json!({"ids": ids.iter().map(hex::encode).collect::<Vec<_>>()});
    let both = [spam.id, fine.id];
    // The blocking node has had both once it holds one and refused the other.
    let mut d_client = Client::connect(&url(net, d)?).await?;
    let d_url = url(net, d)?;
    let d_handle = net
        .node(d)
        .service::<SocialHandle>()
        .ok_or_else(|| anyhow!("node {d} runs no relay"))?
        .clone();
    wait_until(STEP_TIMEOUT, "the blocking node to receive both notes", || async {
        d_handle.counts().1 >= 1 && served(&d_url, &[fine.id]).await == 1
    })
    .await?;
    let on_d = d_client.subscribe("d", &[ids(&both)]).await?;
    let mut c_client = Client::connect(&url(net, c)?).await?;
    let c_url = url(net, c)?;
    wait_until(STEP_TIMEOUT, "another node to store both notes", || async {
        served(&c_url, &both).await == 2
    })
    .await?;
    let on_c = c_client.subscribe("c", &[ids(&both)]).await?;
    d_client.close().await;
    c_client.close().await;
    if on_d.len() != 1 || on_d[0].id != fine.id {
        bail!("node {d} served {} of the 2 notes, the blocked author's among them", on_d.len());
    }
    if on_c.len() != 2 {
        bail!("node {c} served {} of the 2 notes", on_c.len());
    }
    Ok(format!("node {d} (blocking) serves 1 of 2 notes, node {c} serves 2"))
}

/// How many of `ids` the relay at `url` serves (a fresh connection each time).
async fn served(url: &str, ids: &[[u8; 32]]) -> usize {
    let Ok(mut c) = Client::connect(url).await else { return 0 };
    c.patience = Duration::from_secs(5);
    let filter = json!({"ids": ids.iter().map(hex::encode).collect::<Vec<_>>()});
    let n = c.subscribe("n", &[filter]).await.map(|v| v.len()).unwrap_or(0);
    c.close().await;
    n
}
