//! Messaging between real nodes on loopback: direct, through a relay, to an offline
//! recipient, around a dead relay, in a group, under churn, and against a hostile
//! mailbox that tampers, replays, reorders and duplicates.

use std::time::{Duration, Instant};

use nodus_msg::{DeliveryPath, Message, MessageState, MsgHandle};
use nodus_testnet::{Testnet, hidden_node_config, wait_until};

/// Node `k`'s messaging service.
fn msg(net: &Testnet, k: usize) -> &MsgHandle {
    net.node(k).service::<MsgHandle>().expect("msg runs")
}

const T: Duration = Duration::from_secs(30);

/// `n` nodes on loopback, each connected to at least three others (the data dirs live
/// as long as the returned guard).
async fn network(n: usize) -> (tempfile::TempDir, Testnet) {
    nodus_testnet::test_logs();
    let dir = tempfile::tempdir().unwrap();
    let net = Testnet::start(n, dir.path()).await.unwrap();
    net.wait_connected(3.min(n - 1), T).await.unwrap();
    (dir, net)
}

/// A network of `n` nodes where node 1 (alice) and node 2 (bob) know each other:
/// the network, their indexes and alice's peer id.
async fn alice_and_bob(n: usize) -> (tempfile::TempDir, Testnet, (usize, usize), String) {
    let (dir, net) = network(n).await;
    let (a, b) = (1, 2);
    introduce(msg(&net, a), msg(&net, b), "alice", "bob").await;
    let alice_id = net.node(a).peer_id().to_string();
    (dir, net, (a, b), alice_id)
}

async fn introduce(a: &MsgHandle, b: &MsgHandle, a_name: &str, b_name: &str) {
    nodus_testnet::msg::introduce(a, b, a_name, b_name)
        .await
        .unwrap();
}

async fn texts(h: &MsgHandle, with: &str) -> Vec<String> {
    nodus_testnet::msg::incoming_texts(h, with).await
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

/// The way each outgoing message to `with` went, by text.
async fn paths(h: &MsgHandle, with: &str) -> Vec<(String, Option<DeliveryPath>)> {
    h.history(with)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.outgoing)
        .map(|m| (m.text, m.path))
        .collect()
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
    let (_dir, net) = network(3).await;
    let (alice, bob) = (msg(&net, 1), msg(&net, 2));
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
    assert!(
        inbox.is_empty(),
        "history marked everything seen: {inbox:?}"
    );
    net.shutdown().await;
}

/// Waits until each of `sent` is delivered and the sender's outbox is empty.
async fn all_delivered(from: &MsgHandle, to: &str, sent: &[Message]) {
    for m in sent {
        wait_state(from, to, m, MessageState::Delivered).await;
    }
    wait_until(T, "the sender's outbox to empty", || async {
        from.stats().await.unwrap().outbox == 0
    })
    .await
    .unwrap();
}

async fn send_all(from: &MsgHandle, to: &str, texts: &[String]) -> Vec<Message> {
    let mut out = Vec::new();
    for t in texts {
        out.push(from.send(to, t).await.unwrap());
    }
    out
}

/// Sends `texts` all at once: they reach the messaging actor together and leave as
/// bundles. Returned in the order the sender numbered them.
async fn send_together(from: &MsgHandle, to: &str, texts: &[String]) -> Vec<Message> {
    let mut out: Vec<Message> = futures::future::join_all(texts.iter().map(|t| from.send(to, t)))
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    out.sort_by_key(|m| m.seq);
    out
}

fn texts_of(ms: &[Message]) -> Vec<String> {
    ms.iter().map(|m| m.text.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn texts_sent_together_travel_as_bundles_online_and_through_mailboxes() {
    let (_dir, mut net, (a, b), alice_id) = alice_and_bob(6).await;
    let before = msg(&net, b).stats().await.unwrap();

    let first = send_together(msg(&net, a), "bob", &numbered("together", 200)).await;
    wait_texts(msg(&net, b), &alice_id, &texts_of(&first), "bundled texts").await;
    for m in &first {
        wait_state(msg(&net, a), "bob", m, MessageState::Delivered).await;
    }
    let after = msg(&net, b).stats().await.unwrap();
    assert_eq!(after.messages_received - before.messages_received, 200);
    let envelopes = after.received - before.received;
    assert!(
        envelopes <= 50,
        "200 texts took {envelopes} envelopes: not bundled"
    );

    // Offline: bundles are stored in mailboxes whole, and each text in them is marked.
    net.kill(b).await.unwrap();
    let later = send_together(msg(&net, a), "bob", &numbered("away", 100)).await;
    for m in &later {
        wait_state(msg(&net, a), "bob", m, MessageState::Stored).await;
    }
    net.restart(b).await.unwrap();
    let want: Vec<String> = texts_of(&first)
        .into_iter()
        .chain(texts_of(&later))
        .collect();
    wait_texts(msg(&net, b), &alice_id, &want, "bundles from mailboxes").await;
    // One receipt per bundle closes the sender's outbox entry and marks each text.
    all_delivered(msg(&net, a), "bob", &later).await;
    net.shutdown().await;
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix} {i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_recipient_receives_everything_in_order_when_back() {
    let (_dir, mut net, (a, b), alice_id) = alice_and_bob(6).await;
    let hello = vec!["before you left".to_string()];
    send_all(msg(&net, a), "bob", &hello).await;
    wait_texts(msg(&net, b), &alice_id, &hello, "first message").await;

    net.kill(b).await.unwrap();
    let later = numbered("while you were away", 5);
    let sent = send_all(msg(&net, a), "bob", &later).await;
    for m in &sent {
        wait_state(msg(&net, a), "bob", m, MessageState::Stored).await;
    }
    // The first went straight to Bob; the rest are held by mailbox peers, named.
    let went = paths(msg(&net, a), "bob").await;
    assert_eq!(went[0], (hello[0].clone(), Some(DeliveryPath::Direct)));
    let running: Vec<String> = net
        .running()
        .into_iter()
        .map(|k| net.node(k).peer_id().to_string())
        .collect();
    for (text, path) in &went[1..] {
        match path {
            Some(DeliveryPath::Mailboxes { holders }) => assert!(
                !holders.is_empty() && holders.iter().all(|h| running.contains(h)),
                "{text}: {holders:?}"
            ),
            other => panic!("{text} went {other:?}, not to mailboxes"),
        }
    }

    let back = Instant::now();
    net.restart(b).await.unwrap();
    let want: Vec<String> = hello.iter().chain(later.iter()).cloned().collect();
    wait_texts(
        msg(&net, b),
        &alice_id,
        &want,
        "stored messages after coming back",
    )
    .await;
    println!(
        "stored messages arrived {:?} after the restart",
        back.elapsed()
    );
    // The receipts travel back and close the outbox.
    all_delivered(msg(&net, a), "bob", &sent).await;
    // Bob deleted what he took from the mailboxes.
    wait_until(T, "mailboxes to be emptied", || async {
        let mut held = 0;
        for k in net.running() {
            held += msg(&net, k).stats().await.unwrap().mailbox_items;
        }
        held == 0
    })
    .await
    .unwrap();
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_relay_and_around_it_when_it_dies() {
    let (_dir, mut net) = network(4).await;
    let relays: Vec<String> = [0, 3]
        .iter()
        .map(|k| net.node(*k).p2p_addr("tcp").unwrap().to_string())
        .collect();
    // Neither can be dialed, so no hole punch can replace the circuit between them.
    let a = net.add_node(hidden_node_config(5, &relays)).await.unwrap();
    let bob = net.add_node(hidden_node_config(4, &relays)).await.unwrap();
    net.wait_circuits(bob, 2, T).await.unwrap();
    introduce(msg(&net, a), msg(&net, bob), "alice", "bob").await;
    let (alice_id, bob_id) = (
        net.node(a).peer_id().to_string(),
        net.node(bob).peer_id().to_string(),
    );

    let first = numbered("via relay", 5);
    send_all(msg(&net, a), "bob", &first).await;
    wait_texts(
        msg(&net, bob),
        &alice_id,
        &first,
        "messages through the relay",
    )
    .await;
    let relay = net
        .relay_in_use(a, &bob_id)
        .await
        .expect("alice reaches bob through a relay circuit");
    let relay_k = net.index_of(&relay).expect("the relay is a testnet node");
    assert!([0, 3].contains(&relay_k), "the relay is one of bob's");
    // Each message says which relay carried it.
    let through = Some(DeliveryPath::Relay {
        relay: relay.clone(),
    });
    let went = paths(msg(&net, a), "bob").await;
    assert_eq!(went.len(), first.len());
    assert!(went.iter().all(|(_, p)| *p == through), "{went:?}");
    // Bob answers the same way.
    let answer = vec!["got them".to_string()];
    send_all(msg(&net, bob), "alice", &answer).await;
    wait_texts(msg(&net, a), &bob_id, &answer, "answer through the relay").await;

    let mut states = msg(&net, a).events();
    net.kill(relay_k).await.unwrap();
    let killed = Instant::now();
    let more = numbered("after the relay died", 5);
    send_all(msg(&net, a), "bob", &more).await;
    let want: Vec<String> = first.iter().chain(more.iter()).cloned().collect();
    wait_texts(
        msg(&net, bob),
        &alice_id,
        &want,
        "messages after the relay died",
    )
    .await;
    println!("rerouted around the dead relay in {:?}", killed.elapsed());
    // Rerouted, not held by mailboxes: a redial offered only bob's stale observed
    // addresses, or waited on a hole punch to them, failed and left them to mailboxes.
    while let Ok(ev) = states.try_recv() {
        if let nodus_msg::MsgEvent::State { state, .. } = ev {
            assert_ne!(
                state,
                MessageState::Stored,
                "a message went to the mailboxes"
            );
        }
    }
    let now = net.relay_in_use(a, &bob_id).await;
    assert!(
        now.is_some() && now != Some(relay.clone()),
        "now through the other relay: {now:?}"
    );
    // And the messages after say so: rerouted through the relay still up.
    all_delivered(msg(&net, a), "bob", &[]).await;
    let went = paths(msg(&net, a), "bob").await;
    let rerouted = Some(DeliveryPath::Relay {
        relay: now.clone().unwrap(),
    });
    for (text, path) in &went[first.len()..] {
        assert_eq!(*path, rerouted, "{text}");
    }
    net.shutdown().await;
}

async fn wait_group_text(h: &MsgHandle, group: &str, text: &str, who: usize) {
    let r = wait_until(T, &format!("member {who} to read {text:?}"), || async {
        texts(h, group).await.iter().any(|t| t == text)
    })
    .await;
    let got = texts(h, group).await;
    r.unwrap_or_else(|e| panic!("{e}: it has {got:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_of_five_and_a_removed_member_reads_nothing_after() {
    let (_dir, net) = network(6).await;
    let owner = 1;
    let members = [2, 3, 4, 5];
    for k in members {
        let name = format!("member{k}");
        introduce(msg(&net, owner), msg(&net, k), "owner", &name).await;
    }
    let o = msg(&net, owner);
    let g = o.group_create("five").await.unwrap();
    for k in members {
        o.group_add(&g.id, &format!("member{k}")).await.unwrap();
    }
    assert_eq!(o.groups().await.unwrap()[0].members.len(), 5);
    for k in members {
        wait_until(T, "membership to reach every member", || async {
            msg(&net, k)
                .groups()
                .await
                .unwrap()
                .first()
                .is_some_and(|g| g.members.len() == 5)
        })
        .await
        .unwrap();
    }
    o.group_send(&g.id, "hello group").await.unwrap();
    for k in members {
        wait_group_text(msg(&net, k), &g.id, "hello group", k).await;
    }
    // A member who knew nobody but the owner writes to all (keys reach members it
    // learnt from the membership list).
    msg(&net, 3)
        .group_send(&g.id, "from member 3")
        .await
        .unwrap();
    wait_group_text(o, &g.id, "from member 3", owner).await;
    for k in [2, 4, 5] {
        wait_group_text(msg(&net, k), &g.id, "from member 3", k).await;
    }

    // Member 5 is removed; everyone rotates their session.
    o.group_remove(&g.id, "member5").await.unwrap();
    wait_until(T, "member 5 to learn it is out", || async {
        msg(&net, 5).groups().await.unwrap().is_empty()
    })
    .await
    .unwrap();
    for k in [2, 3, 4] {
        wait_until(T, "the new membership", || async {
            msg(&net, k)
                .groups()
                .await
                .unwrap()
                .first()
                .is_some_and(|g| g.members.len() == 4)
        })
        .await
        .unwrap();
    }
    o.group_send(&g.id, "without five").await.unwrap();
    msg(&net, 2)
        .group_send(&g.id, "member 2 without five")
        .await
        .unwrap();
    for k in [3, 4] {
        wait_group_text(msg(&net, k), &g.id, "without five", k).await;
        wait_group_text(msg(&net, k), &g.id, "member 2 without five", k).await;
    }
    wait_group_text(o, &g.id, "member 2 without five", owner).await;
    // Member 5 got neither, and holds no group to read them with.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let five = msg(&net, 5).inbox(true).await.unwrap();
    assert!(
        five.iter().all(|m| !m.text.contains("without five")),
        "a removed member read a later message: {five:?}"
    );
    assert!(msg(&net, 5).group_send(&g.id, "still here?").await.is_err());
    net.shutdown().await;
}

/// A mailbox is only a peer: it may hand back anything. Here one hands Bob a tampered
/// copy, a replay under a fresh id, a duplicate, and Alice's messages out of order; Bob
/// must end up with each genuine message once, in Alice's order, and the sender's
/// retries after restart must change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_mailbox_tampers_replays_reorders_and_duplicates() {
    use futures::AsyncWriteExt;
    use nodus_msg::store::{OUTBOX, OutItem, Store};
    use nodus_msg::wire::{self, Body, Envelope, MAILBOX_PROTOCOL, MailboxReply, MailboxRequest};

    let (_dir, mut net) = network(7).await;
    let (a, b) = (1, 2);
    introduce(msg(&net, a), msg(&net, b), "alice", "bob").await;
    let (alice_id, bob_peer) = (net.node(a).peer_id().to_string(), net.node(b).peer_id());
    let m0 = vec!["m0".to_string()];
    send_all(msg(&net, a), "bob", &m0).await;
    wait_texts(msg(&net, b), &alice_id, &m0, "m0").await;
    let bob_seal = {
        let code = msg(&net, b).invite().await.unwrap();
        nodus_msg::card::Invite::from_code(&code)
            .unwrap()
            .0
            .card
            .seal
    };

    net.kill(b).await.unwrap();
    let later = vec!["m1".to_string(), "m2".to_string(), "m3".to_string()];
    for m in send_all(msg(&net, a), "bob", &later).await {
        wait_state(msg(&net, a), "bob", &m, MessageState::Stored).await;
    }
    net.kill(a).await.unwrap();
    let mut items: Vec<OutItem> = {
        let store = Store::open(&net.data_dir(a).service_dir("msg").join("msg.redb")).unwrap();
        store
            .scan::<OutItem>(OUTBOX, "")
            .unwrap()
            .into_iter()
            .map(|(_, i)| i)
            .filter(|i| i.user)
            .collect()
    };
    items.sort_by_key(|i| i.order);
    assert_eq!(items.len(), 3);
    // The mailboxes Alice used hold genuine copies: take them away.
    for k in net.running() {
        let id = net.node(k).peer_id().to_string();
        if items.iter().any(|i| i.mailboxes.contains(&id)) {
            net.kill(k).await.unwrap();
        }
    }
    let left = net.running();
    assert!(left.len() >= 2, "two nodes remain: {left:?}");
    let (mallory, mailbox) = (left[0], left[1]);
    let t = Instant::now();
    net.restart(b).await.unwrap();
    println!("killing and restarting took {:?}", t.elapsed());
    let bob = msg(&net, b).clone();
    let mailbox_peer = net.node(mailbox).peer_id();
    // Bob asks the mailboxes it knows; let it learn this one first.
    wait_until(T, "bob to know the mailbox", || async {
        let table = net.node(b).net.routing_table().await.unwrap();
        table.iter().any(|(p, _)| *p == mailbox_peer)
    })
    .await
    .unwrap();

    let genuine: Vec<Envelope> = items
        .iter()
        .map(|i| wire::decode(i.envelope.as_ref().unwrap()).unwrap())
        .collect();
    let store_at_mailbox = |envs: Vec<Envelope>| {
        let handle = net.node(mallory).net.clone();
        async move {
            for e in envs {
                let sealed =
                    nodus_msg::seal::seal(&bob_seal, &wire::encode(&e), &bob_peer.to_bytes())
                        .unwrap();
                let req = MailboxRequest::Store {
                    to: bob_peer.to_bytes(),
                    id: e.id,
                    order: 0,
                    ttl_secs: 600,
                    sealed,
                };
                // Connections between the survivors are still settling after the
                // kills; a stream cut under us is tried again on a new one.
                let mut stored = None;
                for _ in 0..3 {
                    let Ok(mut s) = handle.open_stream(mailbox_peer, MAILBOX_PROTOCOL).await else {
                        continue;
                    };
                    if wire::write_frame(&mut s, &req).await.is_err() {
                        continue;
                    }
                    if let Ok(r) = wire::read_frame::<_, MailboxReply>(&mut s).await {
                        let _ = s.close().await;
                        stored = r;
                        break;
                    }
                }
                assert_eq!(stored, Some(MailboxReply::Stored));
            }
        }
    };
    let t0 = Instant::now();
    let history = || async {
        bob.history(&alice_id)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.text)
            .collect::<Vec<_>>()
    };

    // m3 first.
    let held = msg(&net, mailbox).stats().await.unwrap().mailbox_items;
    store_at_mailbox(vec![genuine[2].clone()]).await;
    bob.poll_mailboxes().await.unwrap();
    assert_eq!(history().await, ["m0", "m3"]);
    // Bob's delete of what he took has landed, so m3 can be stored there again.
    wait_until(T, "the mailbox to forget m3", || async {
        msg(&net, mailbox).stats().await.unwrap().mailbox_items == held
    })
    .await
    .unwrap();

    // A tampered m1, m2 replayed under a fresh id, m3 again.
    let mut tampered = genuine[0].clone();
    if let Body::Olm { ciphertext, .. } = &mut tampered.body {
        let n = ciphertext.len();
        ciphertext[n / 2] ^= 0x01;
    }
    let mut replay = genuine[1].clone();
    replay.id = wire::new_id();
    let before = bob.stats().await.unwrap();
    store_at_mailbox(vec![tampered, replay, genuine[2].clone()]).await;
    bob.poll_mailboxes().await.unwrap();
    let after = bob.stats().await.unwrap();
    assert_eq!(history().await, ["m0", "m3"], "nothing forged got in");
    assert_eq!(
        after.rejected - before.rejected,
        2,
        "tampered and replayed refused"
    );
    assert_eq!(after.duplicates - before.duplicates, 1, "m3 again dropped");
    // Bob deletes what he took, the tampered m1 too, under its id: the genuine m1 has
    // that id, so it must not be stored before the delete has landed (it would delete it).
    wait_until(T, "the mailbox to forget what bob took", || async {
        msg(&net, mailbox).stats().await.unwrap().mailbox_items == held
    })
    .await
    .unwrap();

    // The genuine m1 and m2, late: each is taken once, in Alice's order.
    store_at_mailbox(vec![genuine[1].clone(), genuine[0].clone()]).await;
    bob.poll_mailboxes().await.unwrap();
    assert_eq!(
        history().await,
        ["m0", "m1", "m2", "m3"],
        "bob {:?}, the mailbox holds {}",
        bob.stats().await,
        msg(&net, mailbox).stats().await.unwrap().mailbox_items
    );

    println!("attack phases took {:?}", t0.elapsed());
    // Alice comes back and retries everything directly: duplicates, dropped.
    let t1 = Instant::now();
    net.restart(a).await.unwrap();
    wait_until(T, "alice's outbox to empty", || async {
        msg(&net, a).stats().await.unwrap().outbox == 0
    })
    .await
    .unwrap();
    println!("alice's retries closed her outbox in {:?}", t1.elapsed());
    assert_eq!(history().await, ["m0", "m1", "m2", "m3"]);
    net.shutdown().await;
}

/// Ten nodes; three of the eight that are neither Alice nor Bob leave and come back
/// while the two talk. Nothing is lost and each side reads the other in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_survives_thirty_percent_churn() {
    let (_dir, mut net) = network(10).await;
    let (a, b) = (1, 2);
    introduce(msg(&net, a), msg(&net, b), "alice", "bob").await;
    let (alice_id, bob_id) = (
        net.node(a).peer_id().to_string(),
        net.node(b).peer_id().to_string(),
    );
    let churners = [3, 5, 7];
    let mut to_bob = Vec::new();
    let mut to_alice = Vec::new();
    for round in 0..6 {
        // Odd rounds: the churners are gone; even rounds: back.
        for k in churners {
            if round % 2 == 1 {
                net.kill(k).await.unwrap();
            } else if net.try_node(k).is_none() {
                net.restart(k).await.unwrap();
            }
        }
        for i in 0..5 {
            let t = format!("a{round}.{i}");
            msg(&net, a).send("bob", &t).await.unwrap();
            to_bob.push(t);
            let t = format!("b{round}.{i}");
            msg(&net, b).send("alice", &t).await.unwrap();
            to_alice.push(t);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_texts(msg(&net, b), &alice_id, &to_bob, "bob reads all of alice's").await;
    wait_texts(msg(&net, a), &bob_id, &to_alice, "alice reads all of bob's").await;
    net.shutdown().await;
}

/// A mailbox keeps at most so many items from one sender; past that it refuses, says
/// why, and keeps serving others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailbox_limits_per_sender() {
    use nodus_msg::wire::{self, MAILBOX_PROTOCOL, MailboxReply, MailboxRequest};
    nodus_testnet::test_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(1, dir.path()).await.unwrap();
    let boot = net.bootstrap_addrs();
    let mut config = nodus_testnet::node_config(nodus_testnet::node_ip(1), &boot);
    config
        .edit::<nodus_msg::MsgConfig>(|m| {
            m.mailbox_max_items_per_sender = 20;
            m.mailbox_max_bytes_per_sender = 4096;
        })
        .unwrap();
    let mailbox = net.add_node(config).await.unwrap();
    let flooder = net
        .add_node(nodus_testnet::node_config(nodus_testnet::node_ip(2), &boot))
        .await
        .unwrap();
    let other = net
        .add_node(nodus_testnet::node_config(nodus_testnet::node_ip(3), &boot))
        .await
        .unwrap();
    let target = net.node(0).peer_id();
    let mailbox_peer = net.node(mailbox).peer_id();
    let store = |k: usize, n: usize, size: usize| {
        let h = net.node(k).net.clone();
        async move {
            let mut s = h.open_stream(mailbox_peer, MAILBOX_PROTOCOL).await.unwrap();
            let mut replies = Vec::new();
            for _ in 0..n {
                let req = MailboxRequest::Store {
                    to: target.to_bytes(),
                    id: wire::new_id(),
                    order: 0,
                    ttl_secs: 60,
                    sealed: vec![0u8; size],
                };
                wire::write_frame(&mut s, &req).await.unwrap();
                replies.push(
                    wire::read_frame::<_, MailboxReply>(&mut s)
                        .await
                        .unwrap()
                        .unwrap(),
                );
            }
            replies
        }
    };
    let r = store(flooder, 30, 10).await;
    let stored = r.iter().filter(|r| **r == MailboxReply::Stored).count();
    assert_eq!(stored, 20, "item limit");
    assert!(matches!(&r[25], MailboxReply::Refused(why) if why.contains("item limit")));
    // Another sender is still served, within its own byte limit.
    let r = store(other, 3, 1500).await;
    assert_eq!(&r[..2], &[MailboxReply::Stored, MailboxReply::Stored]);
    assert!(matches!(&r[2], MailboxReply::Refused(why) if why.contains("byte limit")));
    assert_eq!(msg(&net, mailbox).stats().await.unwrap().mailbox_items, 22);
    // Garbage on the mailbox stream: that stream ends, the mailbox carries on.
    {
        use futures::AsyncWriteExt;
        let mut s = net
            .node(other)
            .net
            .open_stream(mailbox_peer, MAILBOX_PROTOCOL)
            .await
            .unwrap();
        s.write_all(&[0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff])
            .await
            .unwrap();
        s.flush().await.unwrap();
        let r = wire::read_frame::<_, MailboxReply>(&mut s).await;
        assert!(!matches!(r, Ok(Some(_))), "garbage gets no answer: {r:?}");
    }
    assert_eq!(msg(&net, mailbox).stats().await.unwrap().mailbox_items, 22);
    net.shutdown().await;
}

/// Both sides have written (so both ratchets turned) before the recipient crashes;
/// after its restart it still reads what the sender writes next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ratchet_state_survives_a_crash_after_a_busy_exchange() {
    let (_dir, mut net) = network(4).await;
    let (a, b) = (1, 2);
    introduce(msg(&net, a), msg(&net, b), "alice", "bob").await;
    let alice_id = net.node(a).peer_id().to_string();
    let mut want = Vec::new();
    let sends = (0..50).map(|i| {
        let h = msg(&net, a).clone();
        want.push(format!("burst {i}"));
        async move { h.send("bob", &format!("burst {i}")).await.unwrap() }
    });
    futures::future::join_all(sends).await;
    wait_until(T, "the burst", || async {
        msg(&net, b).stats().await.unwrap().messages_received >= 50
    })
    .await
    .unwrap();
    // Bob reads (read receipts go back), both write a few more.
    let _ = msg(&net, b).inbox(false).await.unwrap();
    for i in 0..5 {
        msg(&net, b)
            .send("alice", &format!("answer {i}"))
            .await
            .unwrap();
        msg(&net, a)
            .send("bob", &format!("more {i}"))
            .await
            .unwrap();
    }
    wait_until(T, "the answers", || async {
        msg(&net, b).stats().await.unwrap().messages_received >= 55
            && msg(&net, a).stats().await.unwrap().messages_received >= 5
    })
    .await
    .unwrap();
    let _ = msg(&net, b).inbox(false).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    net.kill(b).await.unwrap();
    msg(&net, a).send("bob", "after the crash").await.unwrap();
    net.restart(b).await.unwrap();
    wait_until(T, "the message after the crash", || async {
        texts(msg(&net, b), &alice_id)
            .await
            .last()
            .map(String::as_str)
            == Some("after the crash")
    })
    .await
    .unwrap();
    assert_eq!(msg(&net, b).stats().await.unwrap().rejected, 0);
    net.shutdown().await;
}

/// More messages for an offline recipient than a ratchet keeps keys for out of order:
/// mailboxes hand them back in the order they were written, so every one is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_stored_messages_come_back_in_order() {
    let (_dir, mut net) = network(5).await;
    let (a, b) = (1, 2);
    introduce(msg(&net, a), msg(&net, b), "alice", "bob").await;
    let alice_id = net.node(a).peer_id().to_string();
    let first = vec!["hello".to_string()];
    send_all(msg(&net, a), "bob", &first).await;
    wait_texts(msg(&net, b), &alice_id, &first, "first").await;
    // Bob answers, so Alice's next messages are on a fresh chain.
    msg(&net, b).send("alice", "hi").await.unwrap();
    wait_until(T, "the answer", || async {
        msg(&net, a).stats().await.unwrap().messages_received >= 1
    })
    .await
    .unwrap();
    net.kill(b).await.unwrap();
    let later = numbered("stored", 120);
    let sent = send_all(msg(&net, a), "bob", &later).await;
    wait_state(
        msg(&net, a),
        "bob",
        sent.last().unwrap(),
        MessageState::Stored,
    )
    .await;
    // Alice goes too, so the mailboxes are the only way.
    net.kill(a).await.unwrap();
    net.restart(b).await.unwrap();
    let want: Vec<String> = first.iter().chain(later.iter()).cloned().collect();
    wait_texts(msg(&net, b), &alice_id, &want, "all stored messages").await;
    assert_eq!(msg(&net, b).stats().await.unwrap().rejected, 0);
    net.shutdown().await;
}

/// Frames that do not decode end their stream and count against the peer that sent
/// them: after the overlay's strike limit it is banned; an honest peer is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_undecodable_frames_is_banned() {
    use futures::AsyncWriteExt;
    use nodus_msg::wire::{self, MSG_PROTOCOL, MsgReply};
    let (_dir, net) = network(3).await;
    let (victim, honest, attacker) = (0, 1, 2);
    let victim_id = net.node(victim).peer_id();
    let attacker_id = net.node(attacker).peer_id().to_string();
    for _ in 0..nodus_net::MAX_STRIKES {
        let Ok(mut s) = net
            .node(attacker)
            .net
            .open_stream(victim_id, MSG_PROTOCOL)
            .await
        else {
            break;
        };
        // A length within bounds, and a body that is no envelope.
        let _ = s
            .write_all(&[0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff])
            .await;
        let _ = s.flush().await;
        let r = wire::read_frame::<_, MsgReply>(&mut s).await;
        assert!(!matches!(r, Ok(Some(_))), "garbage gets no answer: {r:?}");
    }
    wait_until(T, "the victim to ban the attacker", || async {
        let peers = net.node(victim).net.peers().await.unwrap();
        !peers.iter().any(|p| p.peer_id == attacker_id)
    })
    .await
    .unwrap();
    let peers = net.node(victim).net.peers().await.unwrap();
    let honest_id = net.node(honest).peer_id().to_string();
    assert!(
        peers.iter().any(|p| p.peer_id == honest_id),
        "the honest peer stays"
    );
    net.shutdown().await;
}

/// A service's signal (a call's ring, say) goes to a contact end to end, arrives on its
/// signals stream and not as a message; a stranger cannot be signalled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_reaches_a_contact_and_is_not_a_message() {
    let (_dir, net, (a, b), alice_id) = alice_and_bob(3).await;
    let (alice, bob) = (msg(&net, a), msg(&net, b));
    let mut incoming = bob.signals();
    alice
        .send_signal("bob", "call", b"ring ring".to_vec())
        .await
        .unwrap();
    let got = tokio::time::timeout(T, incoming.recv())
        .await
        .expect("the signal in time")
        .unwrap();
    assert_eq!(
        (
            got.from.as_str(),
            got.from_name.as_str(),
            got.app.as_str(),
            got.body.as_slice()
        ),
        (alice_id.as_str(), "alice", "call", &b"ring ring"[..])
    );
    assert!(bob.history(&alice_id).await.unwrap().is_empty());
    // Node 0 is nobody's contact.
    let stranger = net.node(0).peer_id().to_string();
    assert!(matches!(
        alice.send_signal(&stranger, "call", vec![]).await,
        Err(nodus_msg::MsgError::NoContact(_))
    ));
    assert!(matches!(
        alice.send_signal("bob", "call", vec![0; 17 * 1024]).await,
        Err(nodus_msg::MsgError::SignalTooLarge)
    ));
    net.shutdown().await;
}
