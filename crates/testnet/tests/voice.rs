//! Calls between real nodes on loopback: a direct call between contacts that carries
//! speech and lands in both histories; a stranger cannot ring; rejected, busy and
//! missed calls; two nodes that cannot be dialed talk through a relay, through voice
//! relays found in the DHT, and the call survives the death of the relay it uses (two
//! legs: a standby; one leg: a new one asked for); the media path under latency, 5% loss
//! and 30 ms jitter (the harness's user-space impairment proxy), directly and through a
//! relay, between sessions and between nodes; a direct path cut mid-call.

#[path = "../../voice/tests/common/mod.rs"]
mod speech;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nodus_testnet::{Testnet, hidden_node_config, impair};
use nodus_voice::codec::DEFAULT_BITRATE;
use nodus_voice::pair::talk;
use nodus_voice::relay::{Limits, Relay};
use nodus_voice::session::{Route, Session};
use nodus_voice::{CallRecord, Media, Outcome, VoiceEvent, VoiceHandle, wav};
use tokio::sync::broadcast;

const T: Duration = Duration::from_secs(30);

fn voice(net: &Testnet, k: usize) -> &VoiceHandle {
    net.node(k).service::<VoiceHandle>().expect("voice runs")
}

fn msg(net: &Testnet, k: usize) -> &nodus_msg::MsgHandle {
    net.node(k)
        .service::<nodus_msg::MsgHandle>()
        .expect("msg runs")
}

async fn introduce(net: &Testnet, a: usize, b: usize) {
    nodus_testnet::msg::introduce(msg(net, a), msg(net, b), "alice", "bob")
        .await
        .unwrap();
}

/// The next event that `pick` takes, within T.
async fn next_event<R>(
    rx: &mut broadcast::Receiver<VoiceEvent>,
    what: &str,
    mut pick: impl FnMut(&VoiceEvent) -> Option<R>,
) -> R {
    tokio::time::timeout(T, async {
        loop {
            match rx.recv().await {
                Ok(e) => {
                    if let Some(r) = pick(&e) {
                        return r;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(e) => panic!("{what}: events closed: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} within {T:?}"))
}

async fn ended(rx: &mut broadcast::Receiver<VoiceEvent>, call: &str, what: &str) -> Outcome {
    next_event(rx, what, |e| match e {
        VoiceEvent::Ended {
            call: c, outcome, ..
        } if c == call => Some(*outcome),
        _ => None,
    })
    .await
}

fn seconds_of(pcm_len: usize) -> Duration {
    Duration::from_millis(pcm_len as u64 * 1000 / 16_000)
}

/// Alice (`a`) calls Bob (`b`) speaking `input`; Bob answers and records. Returns the
/// call id once Bob's media runs, with both event receivers.
async fn call_and_answer(
    net: &Testnet,
    (a, b): (usize, usize),
    input: &Path,
    record: &Path,
) -> (
    String,
    broadcast::Receiver<VoiceEvent>,
    broadcast::Receiver<VoiceEvent>,
) {
    let (mut alice_events, mut bob_events) = (voice(net, a).events(), voice(net, b).events());
    let placed = voice(net, a)
        .call(
            "bob",
            Media {
                input: Some(input.to_path_buf()),
                ..Media::default()
            },
        )
        .await
        .unwrap();
    let from = next_event(&mut bob_events, "the call rings at bob", |e| match e {
        VoiceEvent::Incoming { call, from, name } if *call == placed.id => {
            Some((from.clone(), name.clone()))
        }
        _ => None,
    })
    .await;
    assert_eq!(
        from,
        (net.node(a).peer_id().to_string(), "alice".to_string())
    );
    next_event(&mut alice_events, "alice hears it ring", |e| {
        matches!(e, VoiceEvent::Ringing { call } if *call == placed.id).then_some(())
    })
    .await;
    voice(net, b)
        .answer(
            None,
            Media {
                record: Some(record.to_path_buf()),
                ..Media::default()
            },
        )
        .await
        .unwrap();
    next_event(&mut alice_events, "alice's call is answered", |e| {
        matches!(e, VoiceEvent::Answered { call } if *call == placed.id).then_some(())
    })
    .await;
    (placed.id, alice_events, bob_events)
}

fn last_call(h: &VoiceHandle) -> CallRecord {
    h.history(1).unwrap().pop().expect("a call in the history")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_call_between_contacts_carries_speech_and_is_in_both_histories() {
    nodus_testnet::test_logs();
    let dir = tempfile::tempdir().unwrap();
    let net = Testnet::start(3, dir.path()).await.unwrap();
    net.wait_connected(2, T).await.unwrap();
    let (a, b) = (1, 2);
    introduce(&net, a, b).await;
    let input = speech::speech(dir.path());
    let pcm = wav::read(&input).unwrap();
    let record = dir.path().join("bob-heard.wav");

    // A stranger (node 0 is nobody's contact) cannot ring anyone.
    let mut bob_events = voice(&net, b).events();
    let refused = voice(&net, 0)
        .call(&net.node(b).peer_id().to_string(), Media::default())
        .await;
    assert!(
        matches!(
            refused,
            Err(nodus_voice::VoiceError::Signaling(
                nodus_voice::SignalingError::NotAContact(_)
            ))
        ),
        "{refused:?}"
    );

    let (id, mut alice_events, _) = call_and_answer(&net, (a, b), &input, &record).await;
    let stranger = net.node(0).peer_id().to_string();
    while let Ok(e) = bob_events.try_recv() {
        if let VoiceEvent::Incoming { from, .. } = e {
            assert_ne!(from, stranger, "the stranger's call rang");
        }
    }
    tokio::time::sleep(seconds_of(pcm.len()) + Duration::from_secs(1)).await;
    let on = voice(&net, a).get(&id).unwrap();
    assert!(
        on.route.as_deref().is_some_and(|r| r.starts_with("direct")),
        "two dialable nodes talk directly: {:?}",
        on.route
    );
    let mut bob_events = voice(&net, b).events();
    voice(&net, a).hangup(None).await.unwrap();
    assert_eq!(
        ended(&mut alice_events, &id, "alice's end").await,
        Outcome::Completed
    );
    assert_eq!(
        ended(&mut bob_events, &id, "bob's end").await,
        Outcome::Completed
    );

    let score = speech::pesq(&input, &record);
    let (ha, hb) = (last_call(voice(&net, a)), last_call(voice(&net, b)));
    println!("PESQ {score}; alice {ha:?}; bob {hb:?}");
    assert!(score > 3.5, "PESQ {score}");
    for h in [&ha, &hb] {
        assert_eq!(
            (h.id.as_str(), h.outcome),
            (id.as_str(), Some(Outcome::Completed))
        );
        assert!(h.duration_ms > 0);
        let q = h.quality.as_ref().expect("media figures");
        assert!(q.received > 100, "{q:?}");
    }
    assert_eq!(hb.name, "alice");
    assert!(voice(&net, a).list().is_empty() && voice(&net, b).list().is_empty());
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_rejected_busy_or_rung_out() {
    nodus_testnet::test_logs();
    let dir = tempfile::tempdir().unwrap();
    let net = Testnet::start(3, dir.path()).await.unwrap();
    net.wait_connected(2, T).await.unwrap();
    let (a, b) = (1, 2);
    introduce(&net, a, b).await;
    let (mut alice_events, mut bob_events) = (voice(&net, a).events(), voice(&net, b).events());

    let first = voice(&net, a).call("bob", Media::default()).await.unwrap();
    next_event(&mut bob_events, "it rings", |e| {
        matches!(e, VoiceEvent::Incoming { .. }).then_some(())
    })
    .await;
    voice(&net, b).reject(None).await.unwrap();
    assert_eq!(
        ended(&mut alice_events, &first.id, "rejected").await,
        Outcome::Rejected
    );

    // Bob is in a call with node 0 when alice calls: busy.
    nodus_testnet::msg::introduce(msg(&net, 0), msg(&net, b), "carol", "bob")
        .await
        .unwrap();
    let carol = voice(&net, 0).call("bob", Media::default()).await.unwrap();
    next_event(&mut bob_events, "carol rings", |e| {
        matches!(e, VoiceEvent::Incoming { call, .. } if *call == carol.id).then_some(())
    })
    .await;
    let second = voice(&net, a).call("bob", Media::default()).await.unwrap();
    assert_eq!(
        ended(&mut alice_events, &second.id, "busy").await,
        Outcome::Busy
    );
    // Again at once: busy again, but bob's history takes one row a minute of it.
    let third = voice(&net, a).call("bob", Media::default()).await.unwrap();
    assert_eq!(
        ended(&mut alice_events, &third.id, "busy again").await,
        Outcome::Busy
    );
    // Carol gives up before bob answers: bob missed it.
    voice(&net, 0).hangup(None).await.unwrap();
    assert_eq!(
        ended(&mut bob_events, &carol.id, "carol hung up").await,
        Outcome::Missed
    );
    let outcomes: Vec<Option<Outcome>> = voice(&net, b)
        .history(10)
        .unwrap()
        .iter()
        .map(|c| c.outcome)
        .collect();
    // Newest first by when they started ringing: alice's busy call came after carol's.
    assert_eq!(
        outcomes,
        [
            Some(Outcome::Busy),
            Some(Outcome::Missed),
            Some(Outcome::Rejected)
        ]
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neither_dialable_the_call_goes_through_a_relay_and_survives_its_death() {
    nodus_testnet::test_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(4, dir.path()).await.unwrap();
    net.wait_connected(3, T).await.unwrap();
    let relays: Vec<String> = [0, 3]
        .iter()
        .map(|k| net.node(*k).p2p_addr("tcp").unwrap().to_string())
        .collect();
    let a = net.add_node(hidden_node_config(5, &relays)).await.unwrap();
    let b = net.add_node(hidden_node_config(4, &relays)).await.unwrap();
    net.wait_circuits(b, 2, T).await.unwrap();
    net.wait_circuits(a, 2, T).await.unwrap();
    introduce(&net, a, b).await;
    let input = speech::speech(dir.path());
    let pcm = wav::read(&input).unwrap();
    let record = dir.path().join("bob-heard.wav");
    let (id, mut alice_events, mut bob_events) =
        call_and_answer(&net, (a, b), &input, &record).await;

    // Half way through, the relay alice's media goes through dies.
    tokio::time::sleep(seconds_of(pcm.len()) / 2).await;
    let route = voice(&net, a)
        .get(&id)
        .unwrap()
        .route
        .expect("a route in use");
    assert!(
        route.starts_with("relay "),
        "hidden nodes talk through a relay: {route}"
    );
    let relay_addr = route.trim_start_matches("relay ");
    let dead = (0..4)
        .find(|k| voice(&net, *k).relay().addr.as_deref() == Some(relay_addr))
        .expect("the relay in use is one of the public nodes");
    net.kill(dead).await.unwrap();
    tokio::time::sleep(seconds_of(pcm.len()) / 2 + Duration::from_secs(1)).await;

    let now = voice(&net, a).get(&id).unwrap().route.unwrap();
    assert_ne!(now, route, "the call moved off the dead relay");
    voice(&net, a).hangup(None).await.unwrap();
    assert_eq!(
        ended(&mut alice_events, &id, "alice's end").await,
        Outcome::Completed
    );
    assert_eq!(
        ended(&mut bob_events, &id, "bob's end").await,
        Outcome::Completed
    );
    let heard = last_call(voice(&net, b)).quality.expect("media figures");
    let score = speech::pesq(&input, &record);
    println!(
        "PESQ {score} with relay node {dead} killed mid-call ({route} -> {now}); bob {heard:?}"
    );
    assert!(heard.switches >= 1, "{heard:?}");
    assert!(
        heard.longest_gap_ms < 1000,
        "{} ms of silence",
        heard.longest_gap_ms
    );
    assert!(score > 3.0, "PESQ {score}");
    net.shutdown().await;
}

/// A's speech to B over `a_routes` / `b_routes`; B's recording's PESQ.
async fn impaired_call(
    dir: &Path,
    a: tokio::net::UdpSocket,
    b: tokio::net::UdpSocket,
    a_routes: Vec<Route>,
    b_routes: Vec<Route>,
) -> (f64, nodus_voice::session::Summary) {
    let input = speech::speech(dir);
    let said = wav::read(&input).unwrap();
    let (a, b) = (
        Arc::new(Session::new(a, a_routes)),
        Arc::new(Session::new(b, b_routes)),
    );
    let t = talk(
        a,
        b,
        said,
        DEFAULT_BITRATE,
        Duration::from_millis(1500),
        async {},
    )
    .await
    .unwrap();
    let out = dir.join("heard.wav");
    wav::write(&out, &t.heard).unwrap();
    (speech::pesq(&input, &out), t.b)
}

const ONE_WAY: Duration = Duration::from_millis(20);
const JITTER: Duration = Duration::from_millis(30);
const LOSS: f64 = 0.05;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_stays_clear_under_loss_and_jitter_directly_and_through_a_relay() {
    let dir = tempfile::tempdir().unwrap();
    let bind = || tokio::net::UdpSocket::bind("127.0.0.1:0");

    // Direct: A sends to the proxy, which forwards to B; B answers wherever A's packets
    // come from (the proxy), so both directions are impaired.
    let (sa, sb) = (bind().await.unwrap(), bind().await.unwrap());
    let proxy = impair::udp_impair(
        "127.0.0.1:0".parse().unwrap(),
        sb.local_addr().unwrap(),
        ONE_WAY,
        JITTER,
        LOSS,
    )
    .await
    .unwrap();
    let (direct, summary) =
        impaired_call(dir.path(), sa, sb, vec![Route::Direct(proxy.addr)], vec![]).await;
    println!("PESQ direct, impaired: {direct}; {summary:?}");
    drop(proxy);

    // Through a relay: A reaches the relay through the proxy.
    let relay = Relay::bind("127.0.0.1:0", Limits::default()).await.unwrap();
    let _relay_task = tokio::spawn(relay.clone().run());
    let (ta, tb) = relay.allocate().unwrap();
    let proxy = impair::udp_impair(
        "127.0.0.1:0".parse().unwrap(),
        relay.addr(),
        ONE_WAY,
        JITTER,
        LOSS,
    )
    .await
    .unwrap();
    let (sa, sb) = (bind().await.unwrap(), bind().await.unwrap());
    let (relayed, summary) = impaired_call(
        dir.path(),
        sa,
        sb,
        vec![Route::Relay {
            relay: proxy.addr,
            token: ta,
        }],
        vec![Route::Relay {
            relay: relay.addr(),
            token: tb,
        }],
    )
    .await;
    println!("PESQ through a relay, impaired: {relayed}; {summary:?}");
    assert!(direct > 3.0, "PESQ direct {direct}");
    assert!(relayed > 3.0, "PESQ relayed {relayed}");
    assert!(summary.lost > 0, "the proxy dropped some: {summary:?}");
}

/// A relay node (relaying, reached at `public` if given) and two hidden nodes, Alice
/// and Bob, each other's contacts, that reach everything through it: (net, alice, bob).
async fn hidden_pair(
    dir: &Path,
    relays: usize,
    edit: impl Fn(&mut nodus_voice::VoiceConfig, usize),
) -> (Testnet, usize, usize) {
    nodus_testnet::test_logs();
    let mut net = Testnet::start(0, dir).await.unwrap();
    for k in 0..relays {
        let mut c = nodus_testnet::node_config(nodus_testnet::node_ip(k), &net.bootstrap_addrs());
        c.edit::<nodus_voice::VoiceConfig>(|v| edit(v, k)).unwrap();
        net.add_node(c).await.unwrap();
    }
    let addrs: Vec<String> = (0..relays)
        .map(|k| net.node(k).p2p_addr("tcp").unwrap().to_string())
        .collect();
    let relay_ids: Vec<String> = (0..relays)
        .map(|k| net.node(k).peer_id().to_string())
        .collect();
    let mut ends = Vec::new();
    for k in [relays + 1, relays + 2] {
        let mut c = hidden_node_config(k, &addrs);
        c.edit::<nodus_voice::VoiceConfig>(|v| {
            v.relays = relay_ids.clone();
            v.relays_per_call = 1;
        })
        .unwrap();
        ends.push(net.add_node(c).await.unwrap());
    }
    for k in &ends {
        net.wait_circuits(*k, relays, T).await.unwrap();
    }
    introduce(&net, ends[0], ends[1]).await;
    (net, ends[0], ends[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_between_nodes_through_an_impaired_relay_path_stays_clear() {
    let dir = tempfile::tempdir().unwrap();
    // The relay listens on a port chosen here; callers reach it through a proxy that
    // delays, jitters and drops each way. Each datagram passes it twice (caller to
    // relay, relay to callee): 10 ms, up to 15 ms jitter and 2.5% loss a pass make
    // about 20 ms, 30 ms and 5% end to end.
    let ip = nodus_testnet::node_ip(0);
    let port = std::net::UdpSocket::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let relay_addr = std::net::SocketAddr::from((ip, port));
    let proxy = impair::udp_impair(
        "127.0.50.1:0".parse().unwrap(),
        relay_addr,
        Duration::from_millis(10),
        Duration::from_millis(15),
        0.025,
    )
    .await
    .unwrap();
    let public = proxy.addr.to_string();
    let (net, a, b) = hidden_pair(dir.path(), 1, |v, _| {
        v.relay.listen = relay_addr.to_string();
        v.relay.public = public.clone();
    })
    .await;
    let input = speech::speech(dir.path());
    let pcm = wav::read(&input).unwrap();
    let record = dir.path().join("bob-heard.wav");
    let (id, mut alice_events, mut bob_events) =
        call_and_answer(&net, (a, b), &input, &record).await;
    tokio::time::sleep(seconds_of(pcm.len()) + Duration::from_secs(1)).await;
    assert_eq!(
        voice(&net, a).get(&id).unwrap().route.as_deref(),
        Some(format!("relay {public}").as_str())
    );
    voice(&net, a).hangup(None).await.unwrap();
    ended(&mut alice_events, &id, "alice's end").await;
    ended(&mut bob_events, &id, "bob's end").await;
    let (qa, qb) = (
        last_call(voice(&net, a)).quality.unwrap(),
        last_call(voice(&net, b)).quality.unwrap(),
    );
    let score = speech::pesq(&input, &record);
    println!("PESQ {score} between nodes through an impaired relay path; alice {qa:?}; bob {qb:?}");
    assert!(qb.lost > 0, "the proxy dropped some: {qb:?}");
    assert!(
        qa.worst_loss_reported > 0.0,
        "bob's reports of his loss reached alice: {qa:?}"
    );
    assert!(score > 3.0, "PESQ {score}");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_with_one_relay_leg_asks_for_another_when_it_dies() {
    let dir = tempfile::tempdir().unwrap();
    let (mut net, a, b) = hidden_pair(dir.path(), 2, |_, _| {}).await;
    let input = speech::speech(dir.path());
    let pcm = wav::read(&input).unwrap();
    let record = dir.path().join("bob-heard.wav");
    let (id, mut alice_events, mut bob_events) =
        call_and_answer(&net, (a, b), &input, &record).await;
    tokio::time::sleep(seconds_of(pcm.len()) / 3).await;
    let route = voice(&net, a).get(&id).unwrap().route.expect("a route");
    let dead = (0..2)
        .find(|k| {
            Some(route.trim_start_matches("relay ")) == voice(&net, *k).relay().addr.as_deref()
        })
        .expect("the relay in use is node 0 or 1");
    net.kill(dead).await.unwrap();
    // Every route is quiet: a second later alice's node asks the other relay for a leg
    // and tells bob (a Move signal); the call goes on there.
    let moved = next_event(&mut alice_events, "the call on a new relay", |e| match e {
        VoiceEvent::Route { call, route: r } if *call == id && *r != route => Some(r.clone()),
        _ => None,
    })
    .await;
    tokio::time::sleep(seconds_of(pcm.len()) * 2 / 3 + Duration::from_secs(1)).await;
    voice(&net, a).hangup(None).await.unwrap();
    assert_eq!(
        ended(&mut bob_events, &id, "bob's end").await,
        Outcome::Completed
    );
    let qb = last_call(voice(&net, b)).quality.unwrap();
    let score = speech::pesq(&input, &record);
    println!("PESQ {score}; relay node {dead} killed, moved {route} -> {moved}; bob {qb:?}");
    let other = voice(&net, 1 - dead).relay().addr.unwrap();
    assert_eq!(moved, format!("relay {other}"));
    // Half a second of quiet before asking, the allocation, the Move signal.
    assert!(
        qb.longest_gap_ms < 2000,
        "{} ms of silence",
        qb.longest_gap_ms
    );
    assert!(score > 2.0, "PESQ {score}");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hidden_nodes_talk_clearly_through_a_relay() {
    let dir = tempfile::tempdir().unwrap();
    let (net, a, b) = hidden_pair(dir.path(), 1, |_, _| {}).await;
    let input = speech::speech(dir.path());
    let pcm = wav::read(&input).unwrap();
    let record = dir.path().join("bob-heard.wav");
    let (id, mut alice_events, mut bob_events) =
        call_and_answer(&net, (a, b), &input, &record).await;
    tokio::time::sleep(seconds_of(pcm.len()) + Duration::from_secs(1)).await;
    let route = voice(&net, a).get(&id).unwrap().route.unwrap();
    voice(&net, a).hangup(None).await.unwrap();
    ended(&mut alice_events, &id, "alice's end").await;
    ended(&mut bob_events, &id, "bob's end").await;
    let score = speech::pesq(&input, &record);
    println!("PESQ {score} through {route}");
    assert_eq!(
        route,
        format!("relay {}", voice(&net, 0).relay().addr.unwrap())
    );
    assert!(score > 3.5, "PESQ {score}");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_direct_path_dies_the_call_moves_to_the_relay_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let input = speech::speech(dir.path());
    let said = wav::read(&input).unwrap();
    let relay = Relay::bind("127.0.0.1:0", Limits::default()).await.unwrap();
    let _relay_task = tokio::spawn(relay.clone().run());
    let (ta, tb) = relay.allocate().unwrap();
    let bind = || tokio::net::UdpSocket::bind("127.0.0.1:0");
    let (sa, sb) = (bind().await.unwrap(), bind().await.unwrap());
    // The direct path goes through a proxy (no impairment) that is cut half way: both
    // ways, as a NAT binding that times out would.
    let proxy = impair::udp_impair(
        "127.0.0.1:0".parse().unwrap(),
        sb.local_addr().unwrap(),
        Duration::ZERO,
        Duration::ZERO,
        0.0,
    )
    .await
    .unwrap();
    let a = Arc::new(Session::new(
        sa,
        vec![
            Route::Relay {
                relay: relay.addr(),
                token: ta,
            },
            Route::Direct(proxy.addr),
        ],
    ));
    let b = Arc::new(Session::new(
        sb,
        vec![Route::Relay {
            relay: relay.addr(),
            token: tb,
        }],
    ));
    let mut proxy = Some(proxy);
    let (a_side, b_side) = (a.clone(), b.clone());
    let t = talk(a, b, said, DEFAULT_BITRATE, Duration::from_secs(1), async {
        let before = (
            a_side.active().borrow().clone(),
            b_side.active().borrow().clone(),
        );
        assert!(
            before.0.as_ref().is_some_and(Route::is_direct)
                && before.1.as_ref().is_some_and(Route::is_direct),
            "both on the direct path first: {before:?}"
        );
        drop(proxy.take());
    })
    .await
    .unwrap();
    let out = dir.path().join("heard.wav");
    wav::write(&out, &t.heard).unwrap();
    let score = speech::pesq(&input, &out);
    let after = a_side.active().borrow().clone().unwrap();
    println!("PESQ {score}, direct path cut, now {after}; {:?}", t.b);
    assert!(!after.is_direct(), "alice moved to the relay: {after}");
    assert!(t.b.switches >= 2, "direct, then the relay: {:?}", t.b);
    assert!(
        t.b.longest_gap_ms < 1000,
        "{} ms of silence",
        t.b.longest_gap_ms
    );
    assert!(score > 3.0, "PESQ {score}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrow_link_is_found_by_its_queue_and_the_bitrate_fits_under_it_before_it_drops() {
    nodus_testnet::test_logs();
    let dir = tempfile::tempdir().unwrap();
    let input = speech::speech(dir.path());
    let said = wav::read(&input).unwrap();
    let bind = || tokio::net::UdpSocket::bind("127.0.0.1:0");
    let (sa, sb) = (bind().await.unwrap(), bind().await.unwrap());
    // A reaches B over 40 kbps with three seconds of buffer (a bloated access link):
    // the call starts at 48 kbps with each frame sent twice, over twice what fits.
    const LINK: u64 = 40_000;
    let link = impair::udp_bottleneck(
        "127.0.0.1:0".parse().unwrap(),
        sb.local_addr().unwrap(),
        LINK,
        Duration::from_secs(3),
    )
    .await
    .unwrap();
    let a = Arc::new(Session::new(sa, vec![Route::Direct(link.addr)]));
    let b = Arc::new(Session::new(sb, vec![]));
    let t = talk(a, b, said, DEFAULT_BITRATE, Duration::from_secs(2), async {
    })
    .await
    .unwrap();
    let out = dir.path().join("heard.wav");
    wav::write(&out, &t.heard).unwrap();
    let score = speech::pesq(&input, &out);
    println!(
        "PESQ {score} through a {LINK} bps link; A {:?}; B {:?}",
        t.a, t.b
    );
    assert!(
        t.a.lowest_remb > 0 && (t.a.lowest_remb as u64) < LINK,
        "B told A what the link carries: {:?}",
        t.a
    );
    // Opus under what the link carries less the packets' headers (27 bytes, 50 a
    // second), where it started at 48 kbps with every frame sent twice.
    assert!(
        (t.a.lowest_bitrate as u64) < LINK - 27 * 8 * 50,
        "A went under it: {:?}",
        t.a
    );
    // Found by the queue, before the buffer overflowed: nothing was lost, and the
    // queue stayed a fraction of the three seconds it could have grown to. (The
    // delay rising and falling mid-speech costs PESQ: it is printed, not judged.)
    assert_eq!(t.b.lost, 0, "{:?}", t.b);
    assert!(t.b.worst_queue_ms < 1000.0, "{:?}", t.b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fullband_caller_is_heard_clearly_by_a_wideband_callee() {
    nodus_testnet::test_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(1, dir.path()).await.unwrap();
    // Alice codes at 48 kHz, Bob at 16 kHz: each side picks its own rate.
    let mut ends = Vec::new();
    for (k, hz) in [(1, 48_000), (2, 16_000)] {
        let mut c = nodus_testnet::node_config(nodus_testnet::node_ip(k), &net.bootstrap_addrs());
        c.edit::<nodus_voice::VoiceConfig>(|v| v.sample_rate = hz)
            .unwrap();
        ends.push(net.add_node(c).await.unwrap());
    }
    let (a, b) = (ends[0], ends[1]);
    net.wait_connected(2, T).await.unwrap();
    introduce(&net, a, b).await;
    let reference = speech::speech(dir.path());
    let pcm = wav::read(&reference).unwrap();
    // Alice's file is at her rate; the 16 kHz one is refused with what to do.
    let wrong = voice(&net, a)
        .call(
            "bob",
            Media {
                input: Some(reference.clone()),
                ..Media::default()
            },
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        wrong.contains("48000 Hz") && wrong.contains("ffmpeg"),
        "{wrong}"
    );
    let fullband = dir.path().join("speech-48k.wav");
    speech::run(
        std::process::Command::new("ffmpeg")
            .args(["-loglevel", "error", "-y", "-i"])
            .arg(&reference)
            .args(["-ar", "48000", "-ac", "1", "-sample_fmt", "s16"])
            .arg(&fullband),
    );
    let record = dir.path().join("bob-heard.wav");
    let (id, mut alice_events, mut bob_events) =
        call_and_answer(&net, (a, b), &fullband, &record).await;
    tokio::time::sleep(seconds_of(pcm.len()) + Duration::from_secs(1)).await;
    voice(&net, a).hangup(Some(&id)).await.unwrap();
    ended(&mut alice_events, &id, "alice's end").await;
    ended(&mut bob_events, &id, "bob's end").await;
    // Bob's recording is at his rate.
    let heard = wav::read(&record).unwrap();
    assert!(heard.len() > pcm.len() / 2, "{} samples", heard.len());
    let score = speech::pesq(&reference, &record);
    println!("PESQ {score}: 48 kHz in, 16 kHz out");
    assert!(score > 3.5, "PESQ {score}");
    net.shutdown().await;
}
