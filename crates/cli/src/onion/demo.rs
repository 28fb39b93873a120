//! The demo's onion part: three nodes opt in as relays (one an exit), every node hears
//! of them by gossip, and a web page on this machine is fetched from another node through
//! its SOCKS5 proxy and a three-hop circuit, with what each relay saw.

use std::time::Instant;

use anyhow::{Result, anyhow, bail};
use nodus_onion::relay::View;
use nodus_testnet::Testnet;
use nodus_testnet::onion::{add_relay, handle, http_server, socks_get, wait_relays};

use crate::ui::progress::{STEP_TIMEOUT, Step, ms, step};

pub async fn steps(net: &mut Testnet, steps: &mut Vec<Step>) {
    if net.running().is_empty() {
        return;
    }
    step(
        steps,
        "a web page fetched through a SOCKS5 proxy and three relays; each relay saw only its neighbours",
        through_three_relays(net),
    )
    .await;
}

async fn through_three_relays(net: &mut Testnet) -> Result<String> {
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
        let mut parts = Vec::new();
        while let Ok(v) = rx.try_recv() {
            parts.push(match v {
                View::Created { prev } => format!("from {}", name(&prev)),
                View::Extended { next, .. } => format!("to {}", name(&next)),
                View::Exit { target, .. } => format!("out to {target}"),
            });
        }
        saw.push(format!("{} saw {}", name(&net.node(relays[i]).peer_id()), parts.join(", ")));
    }
    Ok(format!(
        "4 MB from node {client} in {} ({:.0} MB/s) via {}",
        ms(took),
        page.len() as f64 / took.as_secs_f64() / 1e6,
        saw.join("; ")
    ))
}
