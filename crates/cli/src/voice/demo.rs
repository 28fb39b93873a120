//! The demo's voice part: Alice and Bob, neither dialable, call each other through a
//! voice relay found in the DHT; speech from espeak-ng goes in on Alice's side and is
//! recorded on Bob's; half way the relay in use is killed and the call moves on. The
//! rows print the route, the gap, the speech quality (PESQ) and the mouth-to-ear delay.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use nodus_testnet::{Testnet, hidden_node_config};
use nodus_voice::measure::{mouth_to_ear, percentile};
use nodus_voice::{Media, VoiceEvent, VoiceHandle};
use tokio::sync::broadcast;

use super::speech;
use crate::ui::progress::{STEP_TIMEOUT, Steps, step};

fn voice(net: &Testnet, k: usize) -> Result<VoiceHandle> {
    net.try_node(k)
        .and_then(|n| n.service::<VoiceHandle>().cloned())
        .ok_or_else(|| anyhow!("node {k} runs no voice service"))
}

/// The next event `pick` takes.
pub async fn next_event<R>(
    rx: &mut broadcast::Receiver<VoiceEvent>,
    what: &str,
    mut pick: impl FnMut(&VoiceEvent) -> Option<R>,
) -> Result<R> {
    tokio::time::timeout(STEP_TIMEOUT, async {
        loop {
            match rx.recv().await {
                Ok(e) => {
                    if let Some(r) = pick(&e) {
                        return Ok(r);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(e) => bail!("{what}: {e}"),
            }
        }
    })
    .await
    .map_err(|_| anyhow!("{what}: timed out"))?
}

struct Call {
    alice: usize,
    bob: usize,
    id: String,
    dir: tempfile::TempDir,
    said: Vec<i16>,
    heard: PathBuf,
    route: String,
}

pub async fn steps(net: &mut Testnet, steps: &mut Steps) {
    let mut call = None;
    step(
        steps,
        "Alice and Bob, neither dialable, call through a voice relay: espeak-ng speech in, recorded at Bob's",
        async {
            let c = place(net).await?;
            let text = format!("route {}", c.route);
            call = Some(c);
            Ok(text)
        },
    )
    .await;
    let Some(call) = call else { return };
    step(
        steps,
        "the relay in use is killed mid-call; the call moves on without hanging up",
        relay_dies(net, call),
    )
    .await;
}

async fn place(net: &mut Testnet) -> Result<Call> {
    let public = net.running();
    let relays: Vec<String> = public
        .iter()
        .take(2)
        .filter_map(|k| net.try_node(*k)?.p2p_addr("tcp"))
        .map(|a| a.to_string())
        .collect();
    let k = net.len();
    let alice = net.add_node(hidden_node_config(k, &relays)).await?;
    let bob = net.add_node(hidden_node_config(k + 1, &relays)).await?;
    for n in [alice, bob] {
        net.wait_circuits(n, relays.len(), STEP_TIMEOUT).await?;
    }
    let msg = |k| {
        net.node(k)
            .service::<nodus_msg::MsgHandle>()
            .cloned()
            .ok_or_else(|| anyhow!("node {k} runs no messaging"))
    };
    nodus_testnet::msg::introduce(&msg(alice)?, &msg(bob)?, "alice", "bob").await?;
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("said.wav");
    let said = speech::speak(&input)?;
    let heard = dir.path().join("heard.wav");
    let (a, b) = (voice(net, alice)?, voice(net, bob)?);
    let (mut a_events, mut b_events) = (a.events(), b.events());
    let placed = a
        .call(
            "bob",
            Media {
                input: Some(input),
                ..Media::default()
            },
        )
        .await?;
    let id = placed.id.clone();
    next_event(&mut b_events, "Bob's phone to ring", |e| {
        matches!(e, VoiceEvent::Incoming { call, .. } if *call == id).then_some(())
    })
    .await?;
    b.answer(
        None,
        Media {
            record: Some(heard.clone()),
            ..Media::default()
        },
    )
    .await?;
    let route = next_event(&mut a_events, "the call's first route", |e| match e {
        VoiceEvent::Route { call, route } if *call == id => Some(route.clone()),
        _ => None,
    })
    .await?;
    if !route.starts_with("relay") {
        bail!("two nodes nobody can dial talk on {route}, not through a relay");
    }
    Ok(Call {
        alice,
        bob,
        id,
        dir,
        said,
        heard,
        route,
    })
}

async fn relay_dies(net: &mut Testnet, c: Call) -> Result<String> {
    let (a, b) = (voice(net, c.alice)?, voice(net, c.bob)?);
    let speech = Duration::from_millis(c.said.len() as u64 * 1000 / 16_000);
    tokio::time::sleep(speech / 2).await;
    let in_use = a
        .get(&c.id)?
        .route
        .ok_or_else(|| anyhow!("the call has no route"))?;
    let addr = in_use.trim_start_matches("relay ");
    let dead = net
        .running()
        .into_iter()
        .find(|k| voice(net, *k).is_ok_and(|v| v.relay().addr.as_deref() == Some(addr)))
        .ok_or_else(|| anyhow!("no running node relays {addr}"))?;
    net.kill(dead).await?;
    tokio::time::sleep(speech / 2 + Duration::from_secs(1)).await;
    let now = a.get(&c.id)?.route.unwrap_or_default();
    if now == in_use {
        bail!("the call is still on the dead relay {in_use}");
    }
    let mut b_events = b.events();
    a.hangup(Some(&c.id)).await?;
    let id = c.id.clone();
    next_event(&mut b_events, "Bob's side to end", |e| {
        matches!(e, VoiceEvent::Ended { call, .. } if *call == id).then_some(())
    })
    .await?;
    let (ha, hb) = (a.get(&c.id)?, b.get(&c.id)?);
    let (qa, qb) = (
        ha.quality.ok_or_else(|| anyhow!("no media figures at Alice's"))?,
        hb.quality.ok_or_else(|| anyhow!("no media figures at Bob's"))?,
    );
    if qb.longest_gap_ms >= 1000 {
        bail!(
            "{} ms of silence when the relay died (Bob: {} received, {} lost, {} dropped, {} played, {} concealed, {} underruns, {} late, {} switches; Alice: {} sent, {} switches)",
            qb.longest_gap_ms,
            qb.received,
            qb.lost,
            qb.dropped,
            qb.played,
            qb.concealed,
            qb.underruns,
            qb.late,
            qb.switches,
            qa.sent,
            qa.switches
        );
    }
    let heard = nodus_voice::wav::read(&c.heard)?;
    let delays = mouth_to_ear(&c.said, qa.started_unix_us, &heard, qb.started_unix_us, 500);
    let score = speech::pesq(&c.dir.path().join("said.wav"), &c.heard)?;
    Ok(format!(
        "relay node {dead} killed; moved to {now}, {} ms of silence; {}; mouth-to-ear p50 {}, p99 {}",
        qb.longest_gap_ms,
        speech::pesq_text(score),
        percentile(&delays, 50.0).map_or("-".into(), |d| format!("{d:.0} ms")),
        percentile(&delays, 99.0).map_or("-".into(), |d| format!("{d:.0} ms")),
    ))
}
