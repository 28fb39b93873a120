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

async fn wait_state(h: &MsgHandle, with: &str, m: &Message, state: MessageState) {
    let r = wait_until(T, &format!("message to reach {state:?}"), || async {
        state_of(h, with, &m.id).await == Some(state)
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
