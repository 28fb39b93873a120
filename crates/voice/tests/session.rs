//! A call's media both ways over real UDP sockets on 127.0.0.1, directly and through the
//! datagram relay: speech from espeak-ng goes in on one side and the other side's
//! recording scores PESQ above 3.5; a stranger's datagrams are dropped and counted while
//! the call goes on; when the relay in use dies mid-call the call moves to another
//! route on its own, with less than a second of silence; a call that starts on a relay
//! moves to the direct route once that answers.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{pesq, speech};
use nodus_voice::codec::DEFAULT_BITRATE;
use nodus_voice::media::Keys;
use nodus_voice::relay::{Limits, Relay};
use nodus_voice::session::{Recording, Route, Samples, Session, Setup, Summary};
use nodus_voice::wav;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

async fn socket() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

struct Call {
    a: Arc<Session>,
    b: Arc<Session>,
    heard_by_b: Recording,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<JoinHandle<Summary>>,
}

/// Starts a call between two sessions, A speaking `pcm`.
fn start(a: Session, b: Session, pcm: Vec<i16>) -> Call {
    let (ab, ba) = (Keys::random(), Keys::random());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let heard_by_b = Recording::default();
    let (a, b) = (Arc::new(a), Arc::new(b));
    let setup = |send: &Keys, receive: &Keys| Setup {
        send: send.clone(),
        receive: receive.clone(),
        bitrate: DEFAULT_BITRATE,
    };
    let tasks = vec![
        {
            let (a, s, setup) = (a.clone(), stopped.clone(), setup(&ab, &ba));
            tokio::spawn(async move {
                a.run(setup, Samples::new(pcm), Recording::default(), s)
                    .await
                    .unwrap()
            })
        },
        {
            let (b, s, rec, setup) = (b.clone(), stopped, heard_by_b.clone(), setup(&ba, &ab));
            tokio::spawn(async move { b.run(setup, Samples::new(vec![]), rec, s).await.unwrap() })
        },
    ];
    Call {
        a,
        b,
        heard_by_b,
        stop,
        tasks,
    }
}

fn seconds(len: usize) -> Duration {
    Duration::from_millis(len as u64 * 1000 / 16_000)
}

impl Call {
    /// Lets the call run for the speech and a second more, ends it, scores B's
    /// recording; B's summary.
    async fn finish(self, input: &std::path::Path, len: usize) -> (f64, Summary) {
        tokio::time::sleep(seconds(len) + Duration::from_secs(1)).await;
        self.stop.send(true).unwrap();
        let mut summaries = Vec::new();
        for t in self.tasks {
            summaries.push(t.await.unwrap());
        }
        let out = input.parent().unwrap().join("heard.wav");
        wav::write(&out, &self.heard_by_b.0.lock().unwrap()).unwrap();
        (pesq(input, &out), summaries.pop().unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_call_carries_speech_and_shrugs_off_a_strangers_datagrams() {
    let dir = tempfile::tempdir().unwrap();
    let input = speech(dir.path());
    let pcm = wav::read(&input).unwrap();
    let (sa, sb) = (socket().await, socket().await);
    let (aa, ba): (SocketAddr, SocketAddr) = (sa.local_addr().unwrap(), sb.local_addr().unwrap());
    let a = Session::new(sa, vec![Route::Direct(ba)]);
    let b = Session::new(sb, vec![Route::Direct(aa)]);
    let len = pcm.len();
    let call = start(a, b, pcm);
    let stranger = socket().await;
    for _ in 0..20 {
        stranger.send_to(b"\x80\x6f garbage", ba).await.unwrap();
    }
    let b_session = call.b.clone();
    let (score, summary) = call.finish(&input, len).await;
    println!("PESQ direct {score}; {summary:?}");
    assert!(score > 3.5, "PESQ {score}");
    assert_eq!(b_session.counters.dropped.load(Ordering::Relaxed), 20);
    assert_eq!(summary.dropped, 20);
    assert!(summary.received > 100);
    assert_eq!(summary.switches, 0);
}

async fn relay() -> (Arc<Relay>, JoinHandle<()>) {
    let relay = Relay::bind("127.0.0.1:0", Limits::default()).await.unwrap();
    let task = tokio::spawn(relay.clone().run());
    (relay, task)
}

fn leg(relay: &Relay, token: [u8; 16]) -> Route {
    Route::Relay {
        relay: relay.addr(),
        token,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_relay_in_use_dies_the_call_moves_to_the_other_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let input = speech(dir.path());
    let pcm = wav::read(&input).unwrap();
    let relays = [relay().await, relay().await];
    let tokens = [
        relays[0].0.allocate().unwrap(),
        relays[1].0.allocate().unwrap(),
    ];
    let a = Session::new(
        socket().await,
        vec![
            leg(&relays[0].0, tokens[0].0),
            leg(&relays[1].0, tokens[1].0),
        ],
    );
    let b = Session::new(
        socket().await,
        vec![
            leg(&relays[0].0, tokens[0].1),
            leg(&relays[1].0, tokens[1].1),
        ],
    );
    let len = pcm.len();
    let call = start(a, b, pcm);
    // Half way, the relay A sends through dies.
    tokio::time::sleep(seconds(len) / 2).await;
    let in_use = call.a.active().borrow().clone().expect("a route was heard");
    let dead = relays
        .iter()
        .position(|(r, _)| leg(r, [0; 16]).to_string() == in_use.to_string())
        .expect("the route in use is one of the relays");
    let through_dead = relays[dead].0.counters.forwarded.load(Ordering::Relaxed);
    relays[dead].1.abort();
    let (score, summary) = call.finish(&input, len).await;
    let through_other = relays[1 - dead]
        .0
        .counters
        .forwarded
        .load(Ordering::Relaxed);
    println!(
        "PESQ relay {dead} died mid-call {score}; {through_dead} through it, {through_other} through the other; {summary:?}"
    );
    assert!(through_dead > 50, "{through_dead} through the first relay");
    assert!(
        through_other > 50,
        "{through_other} through the second relay"
    );
    assert!(summary.switches >= 1);
    assert!(
        summary.longest_gap_ms < 1000,
        "{} ms of silence",
        summary.longest_gap_ms
    );
    assert!(score > 3.0, "PESQ {score}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_a_relay_moves_to_the_direct_route_once_it_answers() {
    let dir = tempfile::tempdir().unwrap();
    let input = speech(dir.path());
    let pcm = wav::read(&input).unwrap();
    let (r, _task) = relay().await;
    let (ta, tb) = r.allocate().unwrap();
    let (sa, sb) = (socket().await, socket().await);
    let bb = sb.local_addr().unwrap();
    // A knows B's address; B does not know A's and learns it from what opens.
    let a = Session::new(sa, vec![leg(&r, ta), Route::Direct(bb)]);
    let b = Session::new(sb, vec![leg(&r, tb)]);
    let len = pcm.len();
    let call = start(a, b, pcm);
    let (a_side, b_side) = (call.a.clone(), call.b.clone());
    let (score, summary) = call.finish(&input, len).await;
    println!("PESQ relay then direct {score}; {summary:?}");
    assert!(score > 3.5, "PESQ {score}");
    let a_uses = a_side.active().borrow().clone().unwrap();
    let b_uses = b_side.active().borrow().clone().unwrap();
    assert!(
        a_uses.is_direct() && b_uses.is_direct(),
        "{a_uses} / {b_uses}"
    );
}
