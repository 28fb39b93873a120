//! The demo's social part: a note published by a Nostr client on one node reaches a
//! live subscription on a node that follows its author; two partitioned nodes both take
//! posts and converge by negentropy sync when they rejoin; a node that blocks an author
//! does not serve them while the others still do.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use nodus_social::client::Client;
use nodus_social::relay::now;
use nodus_social::{Event, Keys, SocialConfig, SocialEvent, SocialHandle, topics};
use nodus_testnet::{Testnet, node_config, node_ip, wait_until};
use serde_json::json;

use crate::ui::progress::{STEP_TIMEOUT, Steps, ms, step};

pub async fn steps(net: &mut Testnet, steps: &mut Steps) {
    step(
        steps,
        "a Nostr note posted on one node reaches a live subscription on a follower's node",
        across_relays(net),
    )
    .await;
    step(
        steps,
        "two partitioned nodes both take posts and converge by negentropy when they rejoin",
        partition_converges(net),
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

fn social(net: &Testnet, k: usize) -> Result<SocialHandle> {
    Ok(net
        .node(k)
        .service::<SocialHandle>()
        .ok_or_else(|| anyhow!("node {k} runs no relay"))?
        .clone())
}

fn url(net: &Testnet, k: usize) -> Result<String> {
    Ok(social(net, k)?.relay_url())
}

/// Makes the operators of `followers` follow `author`, and waits until `publisher`
/// knows they listen on the author's topic.
async fn follow(net: &Testnet, followers: &[usize], author: &Keys, publisher: usize) -> Result<()> {
    for &k in followers {
        social(net, k)?.set_follow(author.public(), true).await?;
    }
    let others: Vec<usize> = followers.iter().copied().filter(|&k| k != publisher).collect();
    net.wait_topic_known(&topics::author(&author.public()), publisher, &others, STEP_TIMEOUT)
        .await?;
    Ok(())
}

async fn publish(net: &Testnet, k: usize, e: &Event) -> Result<()> {
    let mut c = Client::connect(&url(net, k)?).await?;
    let (ok, why) = c.publish(e).await?;
    c.close().await;
    if !ok {
        bail!("node {k}'s relay refused a note: {why}");
    }
    Ok(())
}

async fn across_relays(net: &mut Testnet) -> Result<String> {
    let r = relays(net);
    let (Some(&a), Some(&c)) = (r.first(), r.last()) else {
        bail!("two nodes with a relay are needed, {} run one", r.len());
    };
    let author = Keys::generate();
    follow(net, &[c], &author, a).await?;
    let mut reader = Client::connect(&url(net, c)?).await?;
    reader
        .subscribe(
            "live",
            &[json!({"kinds": [1], "authors": [hex::encode(author.public())], "since": now()})],
        )
        .await?;
    let content = "hello from a Nostr client, via nodus";
    let (t, by) = (Instant::now(), nostr_tools());
    let id = match &by {
        Some(dir) => publish_with_nostr_tools(dir, &url(net, a)?, &author, content).await?,
        None => {
            let note = author.sign(now(), 1, vec![], content);
            publish(net, a, &note).await?;
            note.id
        }
    };
    let got = reader.next_event("live").await?;
    let took = t.elapsed();
    if got.id != id {
        bail!("node {c}'s subscription got another event");
    }
    reader.close().await;
    Ok(match by {
        Some(_) => format!("nostr-tools published on node {a}; node {c}'s subscription had it {} after the command started (Node's start-up included)", ms(took)),
        None => format!("node {a} -> node {c} in {} (nodus's own client: `npm ci` in interop/nostr makes it nostr-tools)", ms(took)),
    })
}

/// interop/nostr, if nostr-tools is installed there and Node runs.
fn nostr_tools() -> Option<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop/nostr");
    let node = std::process::Command::new("node")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    (dir.join("node_modules/nostr-tools").is_dir() && node.is_ok_and(|s| s.success())).then_some(dir)
}

/// Publishes a note as `author` through nostr-tools; its id.
async fn publish_with_nostr_tools(dir: &std::path::Path, url: &str, author: &Keys, content: &str) -> Result<[u8; 32]> {
    let out = tokio::process::Command::new("node")
        .current_dir(dir)
        .arg("publish.mjs")
        .args([url, &hex::encode(author.secret()), content])
        .output()
        .await?;
    if !out.status.success() {
        bail!("nostr-tools could not publish: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let mut id = [0u8; 32];
    hex::decode_to_slice(String::from_utf8_lossy(&out.stdout).trim(), &mut id)
        .map_err(|_| anyhow!("nostr-tools printed no event id"))?;
    Ok(id)
}

/// Node `a` is cut off (restarted with nobody to dial); `a` and `c` each take a post
/// from the same author; `a` dials `c` again and both end with both posts.
async fn partition_converges(net: &mut Testnet) -> Result<String> {
    // Two nodes of their own: a restart here is a crash, and the demo's other nodes
    // hold torrents whose tasks would keep their files open.
    let mut pair = Vec::new();
    for _ in 0..2 {
        let k = net.len();
        pair.push(net.add_node(node_config(node_ip(k), &net.bootstrap_addrs())).await?);
    }
    let (a, c) = (pair[0], pair[1]);
    let author = Keys::generate();
    for k in [a, c] {
        social(net, k)?.set_follow(author.public(), true).await?;
    }
    net.restart_isolated(a).await?;
    let c_addr = net
        .node(c)
        .p2p_addr("tcp")
        .ok_or_else(|| anyhow!("node {c} has no TCP address"))?;
    let on_a = author.sign(now(), 1, vec![], "posted on one side of a partition");
    let on_c = author.sign(now(), 1, vec![], "posted on the other side");
    publish(net, a, &on_a).await?;
    publish(net, c, &on_c).await?;
    let mut a_events = social(net, a)?.events();
    let both = [on_a.id, on_c.id];
    let t = Instant::now();
    net.node(a).net.dial(c_addr).await?;
    let (a_url, c_url) = (url(net, a)?, url(net, c)?);
    wait_until(STEP_TIMEOUT, "both sides to hold both posts", || async {
        served(&a_url, &both).await == 2 && served(&c_url, &both).await == 2
    })
    .await?;
    let took = t.elapsed();
    let mut synced = 0;
    while let Ok(e) = a_events.try_recv() {
        if let SocialEvent::Synced { taken, .. } = e {
            synced += taken;
        }
    }
    if synced == 0 {
        bail!("node {a} converged, but not by a sync (no event fetched by negentropy)");
    }
    Ok(format!("converged {} after rejoining", ms(took)))
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
    let r = relays(net);
    let (a, c) = (r[0], *r.iter().rev().find(|&&x| x != d && x != r[0]).unwrap_or(&r[0]));
    for author in [&blocked, &other] {
        follow(net, &[c, d], author, a).await?;
    }
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
