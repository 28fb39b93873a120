//! The Nostr relay on real nodes: a note published on one node's relay reaches live
//! subscribers on another and is stored there; what a client sends wrong is answered
//! with the reason and the connection stays usable; a client that does not read is
//! disconnected without holding the relay up.

use std::time::Duration;

use nodus_social::client::{Client, ClientError};
use nodus_social::relay::{TOPIC, now};
use nodus_social::{Keys, SocialHandle};
use nodus_testnet::{Testnet, wait_until};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);

fn url(net: &Testnet, k: usize) -> String {
    net.node(k).service::<SocialHandle>().unwrap().relay_url()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_note_published_on_one_relay_reaches_subscribers_and_stores_of_the_others() {
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let net = Testnet::start(3, tmp.path()).await.unwrap();
    net.wait_topic_mesh(TOPIC, 1, T).await.unwrap();

    let mut reader = Client::connect(&url(&net, 2)).await.unwrap();
    let stored = reader
        .subscribe("live", &[json!({"kinds": [1], "since": now() - 60})])
        .await
        .unwrap();
    assert!(stored.is_empty());

    let alice = Keys::generate();
    let note = alice.sign(
        now(),
        1,
        vec![vec!["t".into(), "nodus".into()]],
        "hello, relays",
    );
    let mut writer = Client::connect(&url(&net, 0)).await.unwrap();
    assert_eq!(writer.publish(&note).await.unwrap(), (true, String::new()));
    // The same event again: accepted, said to be a duplicate, not told twice.
    let (ok, why) = writer.publish(&note).await.unwrap();
    assert!(ok && why.starts_with("duplicate:"), "{why}");

    let got = reader.next_event("live").await.unwrap();
    assert_eq!(got, note);

    // Node 1 stored it too: a new client finds it by tag and by author.
    let b = net.node(1).service::<SocialHandle>().unwrap().clone();
    wait_until(T, "node 1 to store the note", || async { b.stored() >= 1 })
        .await
        .unwrap();
    let mut late = Client::connect(&url(&net, 1)).await.unwrap();
    let found = late
        .subscribe(
            "q",
            &[
                json!({"#t": ["nodus"]}),
                json!({"authors": [hex::encode(alice.public())]}),
            ],
        )
        .await
        .unwrap();
    assert_eq!(found, vec![note.clone()]);
    late.send_raw(json!(["COUNT", "c", {"kinds": [1]}]).to_string())
        .await
        .unwrap();
    assert_eq!(
        late.next().await.unwrap(),
        vec![json!("COUNT"), json!("c"), json!({"count": 1})]
    );
    // Node 2 did not count it as its own: node 2's reader saw it exactly once.
    reader.patience = Duration::from_millis(300);
    assert!(matches!(
        reader.next_event("live").await,
        Err(ClientError::Timeout(_))
    ));
    net.shutdown().await;
}

/// What a person's client gets wrong is answered with NIP-01's reasons.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_events_and_frames_are_refused_with_the_reason_and_the_connection_stays() {
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let net = Testnet::start(1, tmp.path()).await.unwrap();
    let mut c = Client::connect(&url(&net, 0)).await.unwrap();
    let k = Keys::generate();

    let mut forged = k.sign(now(), 1, vec![], "forged");
    forged.sig[10] ^= 0x40;
    let (ok, why) = c.publish(&forged).await.unwrap();
    assert!(!ok && why.starts_with("invalid:"), "{why}");

    let mut altered = k.sign(now(), 1, vec![], "altered");
    altered.content.push('!');
    let (ok, why) = c.publish(&altered).await.unwrap();
    assert!(!ok && why.contains("id"), "{why}");

    let future = k.sign(now() + 3600, 1, vec![], "from the future");
    let (ok, why) = c.publish(&future).await.unwrap();
    assert!(!ok && why.contains("future"), "{why}");

    let expired = k.sign(
        now(),
        1,
        vec![vec!["expiration".into(), (now() - 1).to_string()]],
        "gone",
    );
    let (ok, why) = c.publish(&expired).await.unwrap();
    assert!(!ok && why.contains("expired"), "{why}");

    // Deleted by its author: not served, and not taken back.
    let post = k.sign(now(), 1, vec![], "regret");
    assert!(c.publish(&post).await.unwrap().0);
    let deletion = k.sign(now(), 5, vec![vec!["e".into(), hex::encode(post.id)]], "");
    assert!(c.publish(&deletion).await.unwrap().0);
    let (ok, why) = c.publish(&post).await.unwrap();
    assert!(!ok && why.starts_with("blocked:"), "{why}");
    let left = c
        .subscribe("d", &[json!({"ids": [hex::encode(post.id)]})])
        .await
        .unwrap();
    assert!(left.is_empty());
    c.send_raw(json!(["CLOSE", "d"]).to_string()).await.unwrap();

    for garbage in [
        "not json",
        "{}",
        "[\"HELLO\"]",
        "[\"REQ\",\"\",{}]",
        "[\"REQ\",\"s\",{\"authors\":[\"xyz\"]}]",
    ] {
        c.send_raw(garbage.to_string()).await.unwrap();
        let m = c.next().await.unwrap();
        assert_eq!(m[0], json!("NOTICE"), "{garbage}: {m:?}");
        assert!(m[1].as_str().unwrap().starts_with("error:"), "{m:?}");
    }

    // More subscriptions than allowed: the extra one is CLOSED with the limit.
    for i in 0..20 {
        c.subscribe(&format!("s{i}"), &[json!({"kinds": [7]})])
            .await
            .unwrap();
    }
    match c.subscribe("one-too-many", &[json!({"kinds": [7]})]).await {
        Err(ClientError::SubscriptionClosed { message, .. }) => {
            assert!(message.contains("at most 20"), "{message}")
        }
        other => panic!("expected CLOSED, got {other:?}"),
    }

    // An oversized message ends that connection, not the relay.
    let huge = k.sign(now(), 1, vec![], &"x".repeat(200 * 1024));
    let _ = c.send_raw(format!("[\"EVENT\",{}]", huge.to_json())).await;
    assert!(c.next().await.is_err());
    let mut again = Client::connect(&url(&net, 0)).await.unwrap();
    let fine = k.sign(now(), 1, vec![], "still here");
    assert_eq!(again.publish(&fine).await.unwrap(), (true, String::new()));

    // NIP-11 on the same address.
    let info: Value = reqwest::Client::new()
        .get(url(&net, 0).replace("ws://", "http://"))
        .header("accept", "application/nostr+json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["limitation"]["max_subscriptions"], json!(20));
    assert!(
        info["supported_nips"]
            .as_array()
            .unwrap()
            .contains(&json!(11))
    );
    net.shutdown().await;
}

/// A subscriber that never reads is cut off once its queue is full, and publishing goes
/// on for everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_disconnected() {
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let net = Testnet::start(1, tmp.path()).await.unwrap();
    let mut idle = Client::connect(&url(&net, 0)).await.unwrap();
    idle.subscribe("all", &[json!({"kinds": [20001]})])
        .await
        .unwrap();

    // Ephemeral events (relayed, not stored) of 64 KiB until the idle reader's queue
    // and socket buffers overflow.
    let k = Keys::generate();
    let body = "y".repeat(64 * 1024);
    let mut writer = Client::connect(&url(&net, 0)).await.unwrap();
    let handle = net.node(0).service::<SocialHandle>().unwrap().clone();
    let mut sent = 0;
    while sent < 20_000 {
        let e = k.sign(
            now(),
            20001,
            vec![vec!["n".into(), sent.to_string()]],
            &body,
        );
        assert!(writer.publish(&e).await.unwrap().0);
        sent += 1;
        if sent % 100 == 0 && handle.slow_readers() > 0 {
            break;
        }
    }
    assert_eq!(handle.slow_readers(), 1, "after {sent} events");
    // What it had queued drains, then the connection ends.
    idle.patience = Duration::from_secs(30);
    let mut received = 0;
    let end = loop {
        match idle.next_event("all").await {
            Ok(_) => received += 1,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(end, ClientError::Closed | ClientError::Ws(_)),
        "{end}"
    );
    assert!(received < sent, "{received} of {sent}");
    let fine = k.sign(now(), 1, vec![], "others go on");
    assert!(writer.publish(&fine).await.unwrap().0);
    net.shutdown().await;
}
