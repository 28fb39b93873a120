//! Messaging between real nodes on loopback: direct, through a relay, to an offline
//! recipient, around a dead relay, in a group, under churn, and against a hostile
//! mailbox that tampers, replays, reorders and duplicates.

use std::time::{Duration, Instant};

use nodus_msg::{Message, MessageState, MsgHandle};
use nodus_testnet::{Testnet, node_config, node_ip, wait_until};

const T: Duration = Duration::from_secs(30);

fn logs() {
    if let Ok(filter) = std::env::var("NODUS_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// Makes `a` and `b` contacts: `b` adds `a`'s code (so `a` learns `b` from b's first
/// message, as a real user would), and `a` adds `b`'s.
async fn introduce(a: &MsgHandle, b: &MsgHandle, a_name: &str, b_name: &str) {
    let code_a = a.invite().await.unwrap();
    let code_b = b.invite().await.unwrap();
    b.add_contact(&code_a, Some(a_name)).await.unwrap();
    a.add_contact(&code_b, Some(b_name)).await.unwrap();
}

async fn texts(h: &MsgHandle, with: &str) -> Vec<String> {
    // Before the first message the sender is not a contact yet: nothing to show.
    h.history(with)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|m| !m.outgoing)
        .map(|m| m.text)
        .collect()
}

async fn wait_texts(h: &MsgHandle, with: &str, want: &[String], what: &str) {
    let r = wait_until(T, what, || async {
        texts(h, with).await.len() >= want.len()
    })
    .await;
    let got = texts(h, with).await;
    r.unwrap_or_else(|e| panic!("{e}: got {got:?}"));
    assert_eq!(got, want, "{what}: order and content");
}

async fn state_of(h: &MsgHandle, with: &str, id: &str) -> Option<MessageState> {
    h.history(with)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.id == id)
        .map(|m| m.state)
}

/// Waits until `m` is at least at `state` (delivered may become read at any moment).
async fn wait_state(h: &MsgHandle, with: &str, m: &Message, state: MessageState) {
    let r = wait_until(T, &format!("message to reach {state:?}"), || async {
        state_of(h, with, &m.id)
            .await
            .is_some_and(|s| s >= state && s != MessageState::Failed)
    })
    .await;
    let now = state_of(h, with, &m.id).await;
    r.unwrap_or_else(|e| panic!("{e}: it is {now:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_conversation_with_delivery_and_read_receipts() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let net = Testnet::start(3, dir.path()).await.unwrap();
    net.wait_connected(2, T).await.unwrap();
    let (alice, bob) = (&net.node(1).msg, &net.node(2).msg);
    let code = alice.invite().await.unwrap();
    bob.add_contact(&code, Some("alice")).await.unwrap();

    // Bob writes first; Alice learns Bob from the message itself.
    let m = bob.send("alice", "hi alice").await.unwrap();
    assert_eq!(m.state, MessageState::Queued);
    let bob_id = net.node(2).peer_id().to_string();
    wait_texts(alice, &bob_id, &["hi alice".to_string()], "alice receives").await;
    wait_state(bob, "alice", &m, MessageState::Delivered).await;
    let contacts = alice.contacts().await.unwrap();
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].peer_id, bob_id);

    // Alice has read it now (history marks it): Bob sees "read".
    wait_state(bob, "alice", &m, MessageState::Read).await;

    // Alice answers on the session Bob opened; several in a row arrive in order.
    let mut want = Vec::new();
    for i in 0..20 {
        let t = format!("reply {i}");
        alice.send(&bob_id, &t).await.unwrap();
        want.push(t);
    }
    let alice_id = net.node(1).peer_id().to_string();
    wait_texts(bob, &alice_id, &want, "bob receives the replies").await;
    let inbox = bob.inbox(false).await.unwrap();
    assert!(inbox.is_empty(), "history marked everything seen: {inbox:?}");
    net.shutdown().await;
}

async fn send_all(from: &MsgHandle, to: &str, texts: &[String]) -> Vec<Message> {
    let mut out = Vec::new();
    for t in texts {
        out.push(from.send(to, t).await.unwrap());
    }
    out
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix} {i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_recipient_receives_everything_in_order_when_back() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(6, dir.path()).await.unwrap();
    net.wait_connected(3, T).await.unwrap();
    let (a, b) = (1, 2);
    introduce(&net.node(a).msg, &net.node(b).msg, "alice", "bob").await;
    let alice_id = net.node(a).peer_id().to_string();
    let hello = vec!["before you left".to_string()];
    send_all(&net.node(a).msg, "bob", &hello).await;
    wait_texts(&net.node(b).msg, &alice_id, &hello, "first message").await;

    net.kill(b).await.unwrap();
    let later = numbered("while you were away", 5);
    let sent = send_all(&net.node(a).msg, "bob", &later).await;
    for m in &sent {
        wait_state(&net.node(a).msg, "bob", m, MessageState::Stored).await;
    }

    let back = Instant::now();
    net.restart(b).await.unwrap();
    let want: Vec<String> = hello.iter().chain(later.iter()).cloned().collect();
    wait_texts(&net.node(b).msg, &alice_id, &want, "stored messages after coming back").await;
    println!("stored messages arrived {:?} after the restart", back.elapsed());
    // The receipts travel back and close the outbox.
    for m in &sent {
        wait_state(&net.node(a).msg, "bob", m, MessageState::Delivered).await;
    }
    wait_until(T, "alice's outbox to empty", || async {
        net.node(a).msg.stats().await.unwrap().outbox == 0
    })
    .await
    .unwrap();
    // Bob deleted what he took from the mailboxes.
    wait_until(T, "mailboxes to be emptied", || async {
        let mut held = 0;
        for k in net.running() {
            held += net.node(k).msg.stats().await.unwrap().mailbox_items;
        }
        held == 0
    })
    .await
    .unwrap();
    net.shutdown().await;
}

/// A node with no listener of its own, reachable only through relays.
fn hidden_config(k: usize, relays: &[String]) -> nodus_core::Config {
    let mut c = node_config(node_ip(k), &relays[..1]);
    c.p2p.listen.clear();
    c.p2p.relays = relays.to_vec();
    c
}

async fn wait_circuits(net: &Testnet, k: usize, n: usize) {
    wait_until(T, "relay reservations", || async {
        let s = net.node(k).net.status().await.unwrap();
        s.listen_addrs.iter().filter(|a| a.contains("p2p-circuit")).count() >= n
    })
    .await
    .unwrap();
}

/// The relay a relayed connection from `k` to `peer` runs through.
async fn relay_in_use(net: &Testnet, k: usize, peer: &str) -> Option<String> {
    let peers = net.node(k).net.peers().await.unwrap();
    let p = peers.iter().find(|p| p.peer_id == peer)?;
    p.addresses.iter().find_map(|a| {
        let (before, _) = a.split_once("/p2p-circuit")?;
        before.rsplit("/p2p/").next().map(str::to_string)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_relay_and_around_it_when_it_dies() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(4, dir.path()).await.unwrap();
    net.wait_connected(3, T).await.unwrap();
    let relays: Vec<String> = [0, 3]
        .iter()
        .map(|k| net.node(*k).p2p_addr("tcp").unwrap().to_string())
        .collect();
    // Neither can be dialed, so no hole punch can replace the circuit between them.
    let a = net.add_node(hidden_config(5, &relays)).await.unwrap();
    let bob = net.add_node(hidden_config(4, &relays)).await.unwrap();
    wait_circuits(&net, bob, 2).await;
    introduce(&net.node(a).msg, &net.node(bob).msg, "alice", "bob").await;
    let (alice_id, bob_id) = (net.node(a).peer_id().to_string(), net.node(bob).peer_id().to_string());

    let first = numbered("via relay", 5);
    send_all(&net.node(a).msg, "bob", &first).await;
    wait_texts(&net.node(bob).msg, &alice_id, &first, "messages through the relay").await;
    let relay = relay_in_use(&net, a, &bob_id)
        .await
        .expect("alice reaches bob through a relay circuit");
    let relay_k = [0, 3]
        .into_iter()
        .find(|k| net.node(*k).peer_id().to_string() == relay)
        .expect("the relay is one of bob's");
    // Bob answers the same way.
    let answer = vec!["got them".to_string()];
    send_all(&net.node(bob).msg, "alice", &answer).await;
    wait_texts(&net.node(a).msg, &bob_id, &answer, "answer through the relay").await;

    net.kill(relay_k).await.unwrap();
    let killed = Instant::now();
    let more = numbered("after the relay died", 5);
    send_all(&net.node(a).msg, "bob", &more).await;
    let want: Vec<String> = first.iter().chain(more.iter()).cloned().collect();
    wait_texts(&net.node(bob).msg, &alice_id, &want, "messages after the relay died").await;
    println!("rerouted around the dead relay in {:?}", killed.elapsed());
    let now = relay_in_use(&net, a, &bob_id).await;
    assert!(now.is_some() && now != Some(relay), "now through the other relay: {now:?}");
    net.shutdown().await;
}

async fn group_texts(h: &MsgHandle, group: &str) -> Vec<String> {
    h.history(group)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|m| !m.outgoing)
        .map(|m| m.text)
        .collect()
}

async fn wait_group_text(h: &MsgHandle, group: &str, text: &str, who: usize) {
    let r = wait_until(T, &format!("member {who} to read {text:?}"), || async {
        group_texts(h, group).await.iter().any(|t| t == text)
    })
    .await;
    let got = group_texts(h, group).await;
    r.unwrap_or_else(|e| panic!("{e}: it has {got:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_of_five_and_a_removed_member_reads_nothing_after() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let net = Testnet::start(6, dir.path()).await.unwrap();
    net.wait_connected(3, T).await.unwrap();
    let owner = 1;
    let members = [2, 3, 4, 5];
    for k in members {
        let name = format!("member{k}");
        introduce(&net.node(owner).msg, &net.node(k).msg, "owner", &name).await;
    }
    let o = &net.node(owner).msg;
    let g = o.group_create("five").await.unwrap();
    for k in members {
        o.group_add(&g.id, &format!("member{k}")).await.unwrap();
    }
    assert_eq!(o.groups().await.unwrap()[0].members.len(), 5);
    for k in members {
        wait_until(T, "membership to reach every member", || async {
            net.node(k).msg.groups().await.unwrap().first().is_some_and(|g| g.members.len() == 5)
        })
        .await
        .unwrap();
    }
    o.group_send(&g.id, "hello group").await.unwrap();
    for k in members {
        wait_group_text(&net.node(k).msg, &g.id, "hello group", k).await;
    }
    // A member who knew nobody but the owner writes to all (keys reach members it
    // learnt from the membership list).
    net.node(3).msg.group_send(&g.id, "from member 3").await.unwrap();
    wait_group_text(o, &g.id, "from member 3", owner).await;
    for k in [2, 4, 5] {
        wait_group_text(&net.node(k).msg, &g.id, "from member 3", k).await;
    }

    // Member 5 is removed; everyone rotates their session.
    o.group_remove(&g.id, "member5").await.unwrap();
    wait_until(T, "member 5 to learn it is out", || async {
        net.node(5).msg.groups().await.unwrap().is_empty()
    })
    .await
    .unwrap();
    for k in [2, 3, 4] {
        wait_until(T, "the new membership", || async {
            net.node(k).msg.groups().await.unwrap().first().is_some_and(|g| g.members.len() == 4)
        })
        .await
        .unwrap();
    }
    o.group_send(&g.id, "without five").await.unwrap();
    net.node(2).msg.group_send(&g.id, "member 2 without five").await.unwrap();
    for k in [3, 4] {
        wait_group_text(&net.node(k).msg, &g.id, "without five", k).await;
        wait_group_text(&net.node(k).msg, &g.id, "member 2 without five", k).await;
    }
    wait_group_text(o, &g.id, "member 2 without five", owner).await;
    // Member 5 got neither, and holds no group to read them with.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let five = net.node(5).msg.inbox(true).await.unwrap();
    assert!(
        five.iter().all(|m| !m.text.contains("without five")),
        "a removed member read a later message: {five:?}"
    );
    assert!(net.node(5).msg.group_send(&g.id, "still here?").await.is_err());
    net.shutdown().await;
}
