//! The Nostr relay on real nodes: a note published on one node's relay reaches live
//! subscribers on the nodes that follow its author and is stored there, and nowhere
//! else; partitioned or restarted nodes converge by negentropy; NIP-77 and NIP-42 for
//! clients; what a client sends wrong is answered with the reason and the connection
//! stays usable; a client that does not read is disconnected without holding the relay
//! up.

use std::time::Duration;

use nodus_social::client::{Client, ClientError};
use nodus_social::relay::now;
use nodus_social::{Event, Keys, SocialConfig, SocialEvent, SocialHandle, sync, topics};
use nodus_testnet::{Testnet, wait_until};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);

fn url(net: &Testnet, k: usize) -> String {
    social(net, k).relay_url()
}

fn social(net: &Testnet, k: usize) -> SocialHandle {
    net.node(k).service::<SocialHandle>().unwrap().clone()
}

async fn publish(net: &Testnet, k: usize, e: &Event) {
    let mut c = Client::connect(&url(net, k)).await.unwrap();
    assert_eq!(c.publish(e).await.unwrap(), (true, String::new()));
    c.close().await;
}

/// Which of `ids` the relay of node `k` serves.
async fn served(net: &Testnet, k: usize, ids: &[[u8; 32]]) -> Vec<[u8; 32]> {
    let mut c = Client::connect(&url(net, k)).await.unwrap();
    let ids: Vec<String> = ids.iter().map(hex::encode).collect();
    let n = ids.len();
    let got = c
        .subscribe("q", &[json!({ "ids": ids, "limit": n })])
        .await
        .unwrap();
    c.close().await;
    got.iter().map(|e| e.id).collect()
}

/// A connection listens to new events only while it has a subscription: one that closed
/// its last and subscribes again gets what is published next, and one that only
/// publishes gets its OKs and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_opened_again_after_closing_gets_live_events() {
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let net = Testnet::start(1, tmp.path()).await.unwrap();
    let keys = Keys::generate();
    let mut reader = Client::connect(&url(&net, 0)).await.unwrap();
    let mut writer = Client::connect(&url(&net, 0)).await.unwrap();
    let first = keys.sign(now(), 1, vec![], "one");
    reader
        .subscribe("a", &[json!({"kinds": [1]})])
        .await
        .unwrap();
    assert!(writer.publish(&first).await.unwrap().0);
    assert_eq!(reader.next_event("a").await.unwrap(), first);
    reader
        .send_raw(json!(["CLOSE", "a"]).to_string())
        .await
        .unwrap();
    let stored = reader
        .subscribe("b", &[json!({"kinds": [1]})])
        .await
        .unwrap();
    assert_eq!(stored, vec![first.clone()]);
    let second = keys.sign(now(), 1, vec![], "two");
    assert!(writer.publish(&second).await.unwrap().0);
    assert_eq!(reader.next_event("b").await.unwrap(), second);
    writer.patience = Duration::from_millis(300);
    assert!(matches!(writer.next().await, Err(ClientError::Timeout(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_note_published_on_one_relay_reaches_subscribers_and_stores_of_the_others() {
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let net = Testnet::start(4, tmp.path()).await.unwrap();
    let alice = Keys::generate();
    // Nodes 1 and 2 follow Alice; node 3 does not.
    for k in [1, 2] {
        assert!(
            social(&net, k)
                .set_follow(alice.public(), true)
                .await
                .unwrap()
        );
        assert!(
            !social(&net, k)
                .set_follow(alice.public(), true)
                .await
                .unwrap()
        );
        assert_eq!(social(&net, k).follows(), vec![alice.public()]);
    }
    net.wait_topic_known(&topics::author(&alice.public()), 0, &[1, 2], T)
        .await
        .unwrap();

    let mut reader = Client::connect(&url(&net, 2)).await.unwrap();
    let stored = reader
        .subscribe("live", &[json!({"kinds": [1], "since": now() - 60})])
        .await
        .unwrap();
    assert!(stored.is_empty());

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

    // Node 1 stored it too: a new client finds it by tag and by author. (Node 1's own
    // contact list is stored there already, so a count would not tell.)
    let b = net.node(1).service::<SocialHandle>().unwrap().clone();
    let by_id = nodus_social::filter::Filter {
        ids: Some(vec![note.id]),
        ..Default::default()
    };
    wait_until(T, "node 1 to store the note", || async {
        b.query(vec![by_id.clone()])
            .await
            .is_ok_and(|found| found.len() == 1)
    })
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

    // Node 1 unfollows: a later note reaches node 2 and not node 1. Node 3 never
    // followed and holds neither.
    assert!(
        social(&net, 1)
            .set_follow(alice.public(), false)
            .await
            .unwrap()
    );
    assert!(social(&net, 1).follows().is_empty());
    let topic = topics::author(&alice.public());
    let gone = net.node(1).peer_id();
    wait_until(T, "node 0 to see node 1 leave Alice's topic", || async {
        net.node(0)
            .net
            .topic_peers(&topic)
            .await
            .is_ok_and(|p| !p.contains(&gone))
    })
    .await
    .unwrap();
    let later = alice.sign(now(), 1, vec![], "after the unfollow");
    publish(&net, 0, &later).await;
    reader.patience = T;
    assert_eq!(reader.next_event("live").await.unwrap().id, later.id);
    wait_until(T, "node 2 to store the later note", || async {
        served(&net, 2, &[later.id]).await.len() == 1
    })
    .await
    .unwrap();
    assert!(served(&net, 1, &[later.id]).await.is_empty());
    assert!(served(&net, 3, &[note.id, later.id]).await.is_empty());
    net.shutdown().await;
}

/// Node 0 is cut off from the others; it and node 2 each take a post by an author both
/// follow; when node 0 dials node 2 again, each fetches the other's by negentropy (the
/// posts were made with no subscriber reachable, so gossip never carried them).
/// Then node 2 stops, misses a post, and fetches it when it starts again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_and_restarted_nodes_converge_by_negentropy() {
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(3, tmp.path()).await.unwrap();
    let bob = Keys::generate();
    for k in [0, 2] {
        social(&net, k)
            .set_follow(bob.public(), true)
            .await
            .unwrap();
    }
    net.restart_isolated(0).await.unwrap();
    assert_eq!(
        social(&net, 0).follows(),
        vec![bob.public()],
        "kept across the restart"
    );
    let mut events = social(&net, 0).events();
    // Many on each side, to take more than one round of reconciliation.
    let mut on_0 = Vec::new();
    let mut on_2 = Vec::new();
    let (mut c0, mut c2) = (
        Client::connect(&url(&net, 0)).await.unwrap(),
        Client::connect(&url(&net, 2)).await.unwrap(),
    );
    for i in 0..300u64 {
        let e = bob.sign(now() - 1000 + i, 1, vec![], &format!("side A {i}"));
        on_0.push(e);
        let e = bob.sign(now() - 1000 + i, 1, vec![], &format!("side C {i}"));
        on_2.push(e);
    }
    assert_eq!(c0.publish_many(&on_0, 64).await.unwrap(), 300);
    assert_eq!(c2.publish_many(&on_2, 64).await.unwrap(), 300);
    c0.close().await;
    c2.close().await;
    let all: Vec<[u8; 32]> = on_0.iter().chain(&on_2).map(|e| e.id).collect();
    assert_eq!(served(&net, 0, &all).await.len(), 300);

    let addr = net.node(2).p2p_addr("tcp").unwrap();
    net.node(0).net.dial(addr).await.unwrap();
    wait_until(T, "both sides to hold all 600 posts", || async {
        served(&net, 0, &all).await.len() == 600 && served(&net, 2, &all).await.len() == 600
    })
    .await
    .unwrap();
    let mut taken = 0;
    while let Ok(e) = events.try_recv() {
        if let SocialEvent::Synced { taken: t, .. } = e {
            taken += t;
        }
    }
    assert_eq!(taken, 300, "node 0 fetched node 2's posts by sync");

    // A restart: node 2 is down while a post is made on node 0.
    net.stop(2).await.unwrap();
    let missed = bob.sign(now(), 1, vec![], "while node 2 was down");
    publish(&net, 0, &missed).await;
    net.restart(2).await.unwrap();
    wait_until(T, "the restarted node to fetch what it missed", || async {
        served(&net, 2, &[missed.id]).await.len() == 1
    })
    .await
    .unwrap();
    net.shutdown().await;
}

/// NIP-77 for clients: a client's set and the relay's reconcile to exactly the events
/// each lacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reconciles_with_the_relay_by_nip77() {
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let net = Testnet::start(1, tmp.path()).await.unwrap();
    let k = Keys::generate();
    let events: Vec<Event> = (0..1000u64)
        .map(|i| k.sign(1_700_000_000 + i, 1, vec![], &i.to_string()))
        .collect();
    let mut c = Client::connect(&url(&net, 0)).await.unwrap();
    // The relay holds 0..900, the client 100..1000.
    assert_eq!(c.publish_many(&events[..900], 128).await.unwrap(), 900);
    let mine: Vec<(u64, [u8; 32])> = events[100..].iter().map(|e| (e.created_at, e.id)).collect();
    let filter = json!({"authors": [hex::encode(k.public())], "kinds": [1]});
    let (have, need) = c.negentropy("n", filter, &mine).await.unwrap();
    let mut have = have;
    let mut need = need;
    have.sort();
    need.sort();
    let mut want_have: Vec<[u8; 32]> = events[900..].iter().map(|e| e.id).collect();
    let mut want_need: Vec<[u8; 32]> = events[..100].iter().map(|e| e.id).collect();
    want_have.sort();
    want_need.sort();
    assert_eq!(have, want_have);
    assert_eq!(need, want_need);

    // A NEG-MSG for a reconciliation never opened is refused, the connection stays.
    c.send_raw(json!(["NEG-MSG", "nope", "61"]).to_string())
        .await
        .unwrap();
    let m = c.next().await.unwrap();
    assert_eq!(m[0], json!("NEG-ERR"));
    assert!(m[2].as_str().unwrap().starts_with("closed:"), "{m:?}");
    net.shutdown().await;
}

/// NIP-42: on a relay that requires it, a client reads and publishes only after it
/// answered the challenge; a wrong answer is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_requires_auth_serves_only_authenticated_clients() {
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(0, tmp.path()).await.unwrap();
    let mut config = nodus_testnet::node_config(nodus_testnet::node_ip(0), &[]);
    let mut s: SocialConfig = config.section().unwrap();
    s.require_auth = true;
    config.set_section(&s);
    let k0 = net.add_node(config).await.unwrap();
    let info: Value = reqwest_info(&url(&net, k0)).await;
    assert_eq!(info["limitation"]["auth_required"], json!(true));

    let k = Keys::generate();
    let note = k.sign(now(), 1, vec![], "behind auth");
    let mut c = Client::connect(&url(&net, k0)).await.unwrap();
    let (ok, why) = c.publish(&note).await.unwrap();
    assert!(!ok && why.starts_with("auth-required:"), "{why}");
    match c.subscribe("s", &[json!({"kinds": [1]})]).await {
        Err(ClientError::SubscriptionClosed { message, .. }) => {
            assert!(message.starts_with("auth-required:"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // An AUTH event for another challenge is refused.
    let wrong = k.sign(
        now(),
        22242,
        vec![
            vec!["relay".into(), url(&net, k0)],
            vec!["challenge".into(), "not-the-one".into()],
        ],
        "",
    );
    c.send_raw(json!(["AUTH", serde_json::to_value(&wrong).unwrap()]).to_string())
        .await
        .unwrap();
    let m = c.next().await.unwrap();
    assert_eq!(
        (m[0].clone(), m[2].clone()),
        (json!("OK"), json!(false)),
        "{m:?}"
    );
    assert_eq!(c.auth(&k).await.unwrap(), (true, String::new()));
    assert_eq!(c.publish(&note).await.unwrap(), (true, String::new()));
    assert_eq!(
        c.subscribe("s", &[json!({"kinds": [1]})]).await.unwrap(),
        vec![note]
    );
    net.shutdown().await;
}

/// The NIP-11 document, as a client fetches it.
async fn reqwest_info(ws_url: &str) -> Value {
    let addr = ws_url.trim_start_matches("ws://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(
        format!("GET / HTTP/1.1\r\nHost: {addr}\r\nAccept: application/nostr+json\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    let json = &body[body.find("\r\n\r\n").unwrap() + 4..];
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {body}"))
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

/// A node without the social service, speaking the sync protocol by hand.
async fn bare_node(net: &mut Testnet) -> usize {
    let k = net.len();
    let mut config = nodus_testnet::node_config(nodus_testnet::node_ip(k), &net.bootstrap_addrs());
    let mut s: SocialConfig = config.section().unwrap();
    s.enabled = false;
    config.set_section(&s);
    net.add_node(config).await.unwrap()
}

async fn write_frame<S: futures::AsyncWrite + Unpin>(s: &mut S, f: &sync::Frame) {
    use futures::AsyncWriteExt;
    let body = f.encode();
    s.write_all(&(body.len() as u32).to_be_bytes())
        .await
        .unwrap();
    s.write_all(&body).await.unwrap();
}

async fn read_frame<S: futures::AsyncRead + Unpin>(s: &mut S) -> Option<sync::Frame> {
    let b = nodus_net::frame::read(s, sync::MAX_FRAME).await.ok()??;
    sync::Frame::decode(&b).ok()
}

/// A peer that answers a sync with events nobody asked for is cut off and reported;
/// one that sends garbage to a node's sync is banned after enough strikes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_peers_that_lie_or_send_garbage_are_reported() {
    use futures::StreamExt;
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(1, tmp.path()).await.unwrap();
    let liar = bare_node(&mut net).await;
    let bob = Keys::generate();
    let honest = social(&net, 0);
    honest.set_follow(bob.public(), true).await.unwrap();

    // The liar answers: it claims one event of Bob's, and when asked for it sends a
    // (validly signed) event of someone else's.
    let mut incoming = net.node(liar).net.incoming(sync::PROTOCOL).unwrap();
    let claimed = bob.sign(now(), 1, vec![], "claimed");
    let smuggled = Keys::generate().sign(now(), 1, vec![], "smuggled");
    let answer = tokio::spawn(async move {
        let (_, mut s) = incoming.next().await.unwrap();
        let Some(sync::Frame::Open { msg, .. }) = read_frame(&mut s).await else {
            panic!("no Open")
        };
        let mut neg = sync::negentropy_of(&[(claimed.created_at, claimed.id)]).unwrap();
        let mut next = msg;
        loop {
            write_frame(&mut s, &sync::Frame::Neg(neg.reconcile(&next).unwrap())).await;
            match read_frame(&mut s).await {
                Some(sync::Frame::Neg(m)) => next = m,
                Some(sync::Frame::Want(ids)) => {
                    assert_eq!(ids, vec![claimed.id]);
                    write_frame(&mut s, &sync::Frame::Event(smuggled.to_json())).await;
                    write_frame(&mut s, &sync::Frame::Done).await;
                    return incoming;
                }
                other => panic!("{other:?}"),
            }
        }
    });
    let liar_id = net.node(liar).peer_id();
    let err = honest.sync_with(liar_id).await.unwrap_err();
    assert!(matches!(err, sync::SyncError::Unasked), "{err}");
    let _incoming = answer.await.unwrap();
    assert_eq!(
        honest.stored(),
        1,
        "only the contact list: nothing smuggled in"
    );

    // Garbage to the honest node's sync: each session a strike (the lie above was
    // one), until a ban.
    let mut events = net.node(0).net.events();
    let honest_id = net.node(0).peer_id();
    for _ in 1..nodus_net::MAX_STRIKES {
        let mut s = net
            .node(liar)
            .net
            .open_stream(honest_id, sync::PROTOCOL)
            .await
            .unwrap();
        use futures::AsyncWriteExt;
        s.write_all(&[0, 0, 0, 3, 0xee, 0xee, 0xee]).await.unwrap();
        // The node hangs up on it.
        assert!(read_frame(&mut s).await.is_none());
    }
    let banned = tokio::time::timeout(T, async {
        loop {
            if let Ok(nodus_net::NetEvent::PeerBanned { peer, reason }) = events.recv().await {
                return (peer, reason);
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(banned.0, liar_id.to_string());
    assert!(banned.1.contains("social sync"), "{}", banned.1);
    net.shutdown().await;
}
