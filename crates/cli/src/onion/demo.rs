//! The demo's onion part: three nodes opt in as relays (one an exit), every node hears
//! of them by gossip, and a web page on this machine is fetched from another node through
//! its SOCKS5 proxy and a three-hop circuit, with what each relay saw. Then a node serves
//! a page as an onion service and another reaches it by its `.nodus` address; two
//! anonymous messengers write to each other through their onion services.

use std::time::Instant;

use anyhow::{Result, anyhow, bail};
use nodus_onion::relay::View;
use nodus_testnet::Testnet;
use nodus_msg::MsgHandle;
use nodus_testnet::onion::{
    add_anonymous_messenger, add_relay, handle, http_server, kill_the_middle_mid_download, peers_by_circuit, socks_get, wait_relays, wait_service,
};

use crate::ui::progress::{STEP_TIMEOUT, Steps, ms, step, step_with};

pub async fn steps(net: &mut Testnet, steps: &mut Steps) {
    if net.running().is_empty() {
        return;
    }
    let relays = step_with(
        steps,
        "a web page fetched through a SOCKS5 proxy and three relays; each relay saw only its neighbours",
        through_three_relays(net),
    )
    .await;
    if let Some(relays) = relays {
        step(
            steps,
            "an onion service reached at its .nodus address through introduction and rendezvous; no relay saw both ends",
            onion_service(net, relays),
        )
        .await;
        step(
            steps,
            "alice and bob message anonymously: identities no node has, each other's onion services, mailboxes through circuits",
            anonymous_messages(net),
        )
        .await;
        step(
            steps,
            "a middle relay killed mid-download: the circuit rebuilt without it and the download resumed",
            middle_killed(net, relays),
        )
        .await;
    }
}

async fn middle_killed(net: &mut Testnet, relays: [usize; 3]) -> Result<String> {
    let client = net.running().into_iter().find(|k| !relays.contains(k)).ok_or_else(|| anyhow!("no client node"))?;
    // A fourth relay, so a path of three remains once one is gone.
    add_relay(net, false).await?;
    wait_relays(net, client, 4, 1, STEP_TIMEOUT).await?;
    let size = 8_000_000;
    let r = kill_the_middle_mid_download(net, client, size).await?;
    if !r.whole || r.new_hops.contains(&r.killed.to_string()) {
        bail!("the download did not resume on a circuit without the dead relay: {r:?}");
    }
    let name = |p: &str| net.index_of(p).map_or_else(|| "?".to_string(), |k| format!("node {k}"));
    Ok(format!(
        "{:.1} of {:.0} MB in, the middle relay killed; the rest came over {} from byte {}",
        r.before as f64 / 1e6,
        size as f64 / 1e6,
        r.new_hops.iter().map(|p| name(p)).collect::<Vec<_>>().join(" > "),
        r.broken_at
    ))
}

async fn through_three_relays(net: &mut Testnet) -> Result<([usize; 3], String)> {
    let client = net.running()[0];
    let relays = [add_relay(net, false).await?, add_relay(net, false).await?, add_relay(net, true).await?];
    wait_relays(net, client, 3, 1, STEP_TIMEOUT).await?;
    let mut views: Vec<_> = relays
        .iter()
        .map(|&k| {
            handle(net, k)
                .relay()
                .map(|r| r.views.subscribe())
                .ok_or_else(|| anyhow!("node {k} is no relay"))
        })
        .collect::<Result<_>>()?;
    let page: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
    let port = http_server(page.clone()).await?;
    let proxy = handle(net, client).socks_addr().to_string();
    let t = Instant::now();
    let got = socks_get(&proxy, &format!("localhost:{port}"), "/photo.jpg").await?;
    let took = t.elapsed();
    if got != page {
        bail!("{} bytes came back, not the page's {}", got.len(), page.len());
    }
    let name = |p: &libp2p::PeerId| -> String {
        net.index_of(&p.to_string())
            .map_or_else(|| "?".to_string(), |k| format!("node {k}"))
    };
    let mut saw = Vec::new();
    for (i, rx) in views.iter_mut().enumerate() {
        let mut circuits: std::collections::BTreeMap<u64, Vec<View>> = Default::default();
        while let Ok(v) = rx.try_recv() {
            circuits.entry(v.circuit).or_default().push(v.view);
        }
        // Circuits that carried something: not the one-hop bandwidth probes every node
        // sends every relay, which go no further than CREATE.
        let parts: Vec<String> = circuits
            .into_values()
            .filter(|seen| seen.len() > 1)
            .flatten()
            .map(|v| match v {
                View::Created { prev } => format!("from {}", name(&prev)),
                View::Extended { next, .. } => format!("to {}", name(&next)),
                View::Exit { target, .. } => format!("out to {target}"),
            })
            .collect();
        saw.push(format!("{} saw {}", name(&net.node(relays[i]).peer_id()), parts.join(", ")));
    }
    Ok((
        relays,
        format!(
            "4 MB from node {client} in {} ({:.0} MB/s) via {}",
            ms(took),
            page.len() as f64 / took.as_secs_f64() / 1e6,
            saw.join("; ")
        ),
    ))
}

async fn onion_service(net: &mut Testnet, relays: [usize; 3]) -> Result<String> {
    let plain: Vec<usize> = net.running().into_iter().filter(|k| !relays.contains(k)).collect();
    let [client, server, ..] = plain[..] else {
        bail!("two nodes that are not relays are needed, {} are running", plain.len());
    };
    let mut views: Vec<_> = relays
        .iter()
        .filter_map(|&k| handle(net, k).relay().map(|r| r.views.subscribe()))
        .collect();
    let page: Vec<u8> = (0..1_000_000u32).map(|i| (i % 247) as u8).collect();
    let port = http_server(page.clone()).await?;
    let since = now_ms();
    let address = handle(net, server).serve(port, 80)?.address;
    wait_service(net, client, &address, since, STEP_TIMEOUT).await?;
    let proxy = handle(net, client).socks_addr().to_string();
    let t = Instant::now();
    let got = socks_get(&proxy, &format!("{address}:80"), "/").await?;
    let took = t.elapsed();
    if got != page {
        bail!("{} bytes came back, not the page's {}", got.len(), page.len());
    }
    let (c, s) = (net.node(client).peer_id(), net.node(server).peer_id());
    for rx in &mut views {
        if peers_by_circuit(rx).values().any(|p| p.contains(&c) && p.contains(&s)) {
            bail!("a relay saw both the client and the service on one circuit");
        }
    }
    Ok(format!(
        "node {client} fetched 1 MB from node {server}'s {}…{} in {} (rendezvous included)",
        &address[..8],
        &address[address.len() - 14..],
        ms(took)
    ))
}

/// Two nodes with `[msg] anonymous = true` become contacts and exchange a message each
/// way, through their onion services.
async fn anonymous_messages(net: &mut Testnet) -> Result<String> {
    let alice = add_anonymous_messenger(net).await?;
    let bob = add_anonymous_messenger(net).await?;
    let mut addresses = Vec::new();
    for k in [alice, bob] {
        wait_relays(net, k, 3, 0, STEP_TIMEOUT).await?;
        let hosted = handle(net, k).status().await.services;
        addresses.push(hosted.first().map(|s| s.address.clone()).ok_or_else(|| anyhow!("node {k} runs no onion service"))?);
    }
    wait_service(net, alice, &addresses[1], 0, STEP_TIMEOUT).await?;
    wait_service(net, bob, &addresses[0], 0, STEP_TIMEOUT).await?;
    let msg = |net: &Testnet, k: usize| {
        net.node(k).service::<MsgHandle>().cloned().ok_or_else(|| anyhow!("node {k} runs no messaging"))
    };
    let (a, b) = (&msg(net, alice)?, &msg(net, bob)?);
    let nodes: Vec<libp2p::PeerId> = net.running().into_iter().map(|k| net.node(k).peer_id()).collect();
    if nodes.contains(&a.local_peer_id()) || nodes.contains(&b.local_peer_id()) {
        bail!("an anonymous identity is a node's peer id");
    }
    nodus_testnet::msg::introduce(a, b, "alice", "bob").await?;
    let (a_id, b_id) = (a.local_peer_id().to_string(), b.local_peer_id().to_string());
    let mut took = Vec::new();
    for (from, to, to_id, from_id, text) in
        [(a, b, &b_id, &a_id, "meet at noon?"), (b, a, &a_id, &b_id, "yes, at the fountain")]
    {
        let t = Instant::now();
        from.send(to_id, text).await?;
        nodus_testnet::wait_until(STEP_TIMEOUT, "the anonymous message", || async {
            nodus_testnet::msg::incoming_texts(to, from_id).await.iter().any(|m| m == text)
        })
        .await?;
        took.push(ms(t.elapsed()));
    }
    // Bob goes offline: the next message waits in mailboxes, reached through circuits,
    // and he fetches it, through circuits too, when he is back.
    net.stop(bob).await?;
    let t = Instant::now();
    let later = a.send(&b_id, "running late").await?;
    nodus_testnet::wait_until(STEP_TIMEOUT, "the message stored in mailboxes", || async {
        a.history(&b_id).await.is_ok_and(|h| h.iter().any(|m| m.id == later.id && m.state == nodus_msg::MessageState::Stored))
    })
    .await?;
    let stored = ms(t.elapsed());
    net.restart(bob).await?;
    wait_relays(net, bob, 3, 0, STEP_TIMEOUT).await?;
    let b = &msg(net, bob)?;
    let t = Instant::now();
    b.poll_mailboxes().await?;
    nodus_testnet::wait_until(STEP_TIMEOUT, "the stored message fetched", || async {
        nodus_testnet::msg::incoming_texts(b, &a_id).await.iter().any(|m| m == "running late")
    })
    .await?;
    Ok(format!(
        "node {alice} to node {bob} in {}, the answer in {}, each to the other's {}…; with bob offline, stored in mailboxes in {stored}, fetched on his return in {}",
        took[0],
        took[1],
        &addresses[1][..8],
        ms(t.elapsed())
    ))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
