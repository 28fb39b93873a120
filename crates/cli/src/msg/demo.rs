//! The demo's messaging part: Alice and Bob, neither of whom can be dialed, talk through
//! a relay; Bob goes offline and gets everything when back; the relay in use dies and
//! the conversation carries on through another; Alice sends Bob a photo, which his node
//! fetches from hers with its progress shown.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use nodus_msg::{MessageState, MsgHandle};
use nodus_testnet::msg::{incoming_texts, introduce};
use nodus_testnet::{Testnet, hidden_node_config, wait_until};

use crate::ui::progress::{STEP_TIMEOUT, Steps, ms, step};

/// Relay nodes for Alice and Bob (node 4 is the one the demo killed before).
const RELAYS: [usize; 2] = [0, 2];

async fn wait_received(bob: &MsgHandle, alice: &str, want: &[String]) -> Result<Duration> {
    let t = Instant::now();
    wait_until(STEP_TIMEOUT, "messages to arrive", || async {
        incoming_texts(bob, alice).await.len() >= want.len()
    })
    .await?;
    let got = incoming_texts(bob, alice).await;
    if got != want {
        return Err(anyhow!("received {got:?}, expected {want:?}"));
    }
    Ok(t.elapsed())
}

async fn send(from: &MsgHandle, to: &str, texts: &[String]) -> Result<Vec<nodus_msg::Message>> {
    let mut sent = Vec::new();
    for t in texts {
        sent.push(from.send(to, t).await?);
    }
    Ok(sent)
}

/// Alice's and Bob's messaging handles and Bob's peer id, while both run.
fn pair(net: &Testnet, alice: usize, bob: usize) -> Result<(MsgHandle, MsgHandle, String)> {
    let (Some(na), Some(nb)) = (net.try_node(alice), net.try_node(bob)) else {
        return Err(anyhow!("Alice or Bob is not running"));
    };
    Ok((
        na.service::<MsgHandle>().expect("msg runs").clone(),
        nb.service::<MsgHandle>().expect("msg runs").clone(),
        nb.peer_id().to_string(),
    ))
}

/// The testnet node relaying between `alice` and the peer `bob`, if they use one.
async fn relay_node(net: &Testnet, alice: usize, bob: &str) -> Option<usize> {
    net.relay_in_use(alice, bob)
        .await
        .and_then(|r| net.index_of(&r))
}

fn lines(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix} #{i}")).collect()
}

pub async fn steps(net: &mut Testnet, steps: &mut Steps) {
    let relays: Vec<String> = RELAYS
        .iter()
        .filter_map(|k| net.try_node(*k)?.p2p_addr("tcp"))
        .map(|a| a.to_string())
        .collect();
    let mut ids = None;
    step(
        steps,
        "Alice and Bob, neither dialable, message end to end through a relay",
        async {
            let k = net.len();
            let alice = net.add_node(hidden_node_config(k, &relays)).await?;
            let bob = net.add_node(hidden_node_config(k + 1, &relays)).await?;
            net.wait_circuits(alice, 2, STEP_TIMEOUT).await?;
            net.wait_circuits(bob, 2, STEP_TIMEOUT).await?;
            let (a, b) = (net.node(alice).service::<nodus_msg::MsgHandle>().expect("msg runs").clone(), net.node(bob).service::<nodus_msg::MsgHandle>().expect("msg runs").clone());
            introduce(&a, &b, "alice", "bob").await?;
            let alice_id = net.node(alice).peer_id().to_string();
            let bob_id = net.node(bob).peer_id().to_string();
            let first = lines("hello Bob", 0..3);
            send(&a, "bob", &first).await?;
            let took = wait_received(&b, &alice_id, &first).await?;
            send(&b, "alice", &["hi Alice".to_string()]).await?;
            let back = wait_received(&a, &bob_id, &["hi Alice".to_string()]).await?;
            let relay = relay_node(net, alice, &bob_id)
                .await
                .ok_or_else(|| anyhow!("Alice and Bob are not connected through a relay"))?;
            ids = Some((alice, bob, alice_id));
            Ok(format!(
                "through relay node {relay}: 3 messages (with the session set-up) in {}, the answer in {}",
                ms(took),
                ms(back)
            ))
        },
    )
    .await;
    let Some((alice, bob, alice_id)) = ids else {
        return;
    };

    let mut sent_offline = 0;
    step(
        steps,
        "Bob offline: Alice keeps writing, Bob gets it all in order when back",
        async {
            net.kill(bob).await?;
            let a = net.node(alice).service::<nodus_msg::MsgHandle>().expect("msg runs").clone();
            let later = lines("while you were away", 0..4);
            let sent = send(&a, "bob", &later).await?;
            wait_until(STEP_TIMEOUT, "mailboxes to take the messages", || async {
                let mut stored = 0;
                for m in &sent {
                    let h = a.history("bob").await.unwrap_or_default();
                    if h.iter().any(|x| x.id == m.id && x.state == MessageState::Stored) {
                        stored += 1;
                    }
                }
                stored == sent.len()
            })
            .await?;
            sent_offline = sent.len();
            let t = Instant::now();
            net.restart(bob).await?;
            let mut want = lines("hello Bob", 0..3);
            want.extend(later);
            wait_received(&net.node(bob).service::<nodus_msg::MsgHandle>().expect("msg runs").clone(), &alice_id, &want).await?;
            Ok(format!(
                "{sent_offline} messages held by mailbox peers (sealed: they see a routing key only), all in order {} after Bob came back",
                ms(t.elapsed())
            ))
        },
    )
    .await;

    step(
        steps,
        "the relay in use dies mid-conversation; messages route around it",
        async {
            let (a, b, bob_id) = pair(net, alice, bob)?;
            let mut want = lines("hello Bob", 0..3);
            want.extend(lines("while you were away", 0..4));
            let warm = lines("still there?", 0..1);
            send(&a, "bob", &warm).await?;
            want.extend(warm);
            wait_received(&b, &alice_id, &want).await?;
            let relay = relay_node(net, alice, &bob_id)
                .await
                .ok_or_else(|| anyhow!("no relay circuit between Alice and Bob"))?;
            net.kill(relay).await?;
            let more = lines("after the relay died", 0..3);
            send(&a, "bob", &more).await?;
            want.extend(more);
            let took = wait_received(&b, &alice_id, &want).await?;
            let now = relay_node(net, alice, &bob_id)
                .await
                .map(|k| format!("node {k}"))
                .unwrap_or_else(|| "another path".into());
            Ok(format!(
                "relay node {relay} killed; the next messages arrived through {now} in {}",
                ms(took)
            ))
        },
    )
    .await;

    step(
        steps,
        "Alice sends Bob a 10 MiB photo: his node fetches it from hers with progress, bytes checked",
        async {
            let (a, b, bob_id) = pair(net, alice, bob)?;
            let mut photo = vec![0u8; 10 << 20];
            rand::fill(&mut photo[..]);
            let arrival =
                nodus_testnet::msg::send_file(&a, &b, "bob", (&photo, "beach.jpg"), STEP_TIMEOUT)
                    .await?;
            let (m, took) = (arrival.message, arrival.took);
            let shown: Vec<String> = arrival
                .progress
                .iter()
                .map(|p| format!("{:.0}%", *p as f64 * 100.0 / photo.len() as f64))
                .collect();
            let path = b
                .file_path(&m.files[0].hash)
                .ok_or_else(|| anyhow!("Bob's node says the photo is done but has no file"))?;
            if std::fs::read(path)? != photo {
                return Err(anyhow!("the photo's bytes differ from Alice's"));
            }
            let via = relay_node(net, alice, &bob_id)
                .await
                .map(|k| format!("through relay node {k}"))
                .unwrap_or_else(|| "directly".into());
            Ok(format!(
                "{via} in {} ({:.0} MB/s), progress shown at {}; sealed per chunk, SHA-256 checked",
                ms(took),
                photo.len() as f64 / took.as_secs_f64() / 1e6,
                if shown.is_empty() { "-".to_string() } else { shown.join(", ") }
            ))
        },
    )
    .await;
}
