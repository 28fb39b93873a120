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
use nodus_voice::pair::talk;
use nodus_voice::relay::{Limits, Relay};
use nodus_voice::session::{Route, Session, Summary};
use nodus_voice::wav;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

async fn socket() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// A says the sentence to B over these sessions (`during` runs half way); PESQ of what
/// B heard, and B's summary.
async fn call(
    dir: &std::path::Path,
    a: &Arc<Session>,
    b: &Arc<Session>,
    during: impl std::future::Future<Output = ()>,
) -> (f64, Summary) {
    let input = speech(dir);
    let said = wav::read(&input).unwrap();
    let t = talk(
        a.clone(),
        b.clone(),
        said,
        DEFAULT_BITRATE,
        Duration::from_secs(1),
        during,
    )
    .await
    .unwrap();
    let out = dir.join("heard.wav");
    wav::write(&out, &t.heard).unwrap();
    (pesq(&input, &out), t.b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_call_carries_speech_and_shrugs_off_a_strangers_datagrams() {
    let dir = tempfile::tempdir().unwrap();
    let (sa, sb) = (socket().await, socket().await);
    let (aa, ba): (SocketAddr, SocketAddr) = (sa.local_addr().unwrap(), sb.local_addr().unwrap());
    let a = Arc::new(Session::new(sa, vec![Route::Direct(ba)]));
    let b_session = Arc::new(Session::new(sb, vec![Route::Direct(aa)]));
    let stranger = socket().await;
    let (score, summary) = call(dir.path(), &a, &b_session, async {
        for _ in 0..20 {
            stranger.send_to(b"\x80\x6f garbage", ba).await.unwrap();
        }
    })
    .await;
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
    let relays = [relay().await, relay().await];
    let tokens = [
        relays[0].0.allocate().unwrap(),
        relays[1].0.allocate().unwrap(),
    ];
    let a = Arc::new(Session::new(
        socket().await,
        vec![
            leg(&relays[0].0, tokens[0].0),
            leg(&relays[1].0, tokens[1].0),
        ],
    ));
    let b = Arc::new(Session::new(
        socket().await,
        vec![
            leg(&relays[0].0, tokens[0].1),
            leg(&relays[1].0, tokens[1].1),
        ],
    ));
    // Half way, the relay A sends through dies.
    let mut dead = None;
    let (score, summary) = call(dir.path(), &a, &b, async {
        let in_use = a.active().borrow().clone().expect("a route was heard");
        let k = relays
            .iter()
            .position(|(r, _)| leg(r, [0; 16]).to_string() == in_use.to_string())
            .expect("the route in use is one of the relays");
        dead = Some((k, relays[k].0.counters.forwarded.load(Ordering::Relaxed)));
        relays[k].1.abort();
    })
    .await;
    let (dead, through_dead) = dead.unwrap();
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
    let (r, _task) = relay().await;
    let (ta, tb) = r.allocate().unwrap();
    let (sa, sb) = (socket().await, socket().await);
    let bb = sb.local_addr().unwrap();
    // A knows B's address; B does not know A's and learns it from what opens.
    let a_side = Arc::new(Session::new(sa, vec![leg(&r, ta), Route::Direct(bb)]));
    let b_side = Arc::new(Session::new(sb, vec![leg(&r, tb)]));
    let (score, summary) = call(dir.path(), &a_side, &b_side, async {}).await;
    println!("PESQ relay then direct {score}; {summary:?}");
    assert!(score > 3.5, "PESQ {score}");
    let a_uses = a_side.active().borrow().clone().unwrap();
    let b_uses = b_side.active().borrow().clone().unwrap();
    assert!(
        a_uses.is_direct() && b_uses.is_direct(),
        "{a_uses} / {b_uses}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_side_that_hangs_up_says_bye_and_the_other_ends_without_a_signal() {
    use nodus_voice::codec::SampleRate;
    use nodus_voice::media::Keys;
    use nodus_voice::session::{Recording, Samples, Setup};
    let (sa, sb) = (socket().await, socket().await);
    let (aa, ba): (SocketAddr, SocketAddr) = (sa.local_addr().unwrap(), sb.local_addr().unwrap());
    let a = Arc::new(Session::new(sa, vec![Route::Direct(ba)]));
    let b = Arc::new(Session::new(sb, vec![Route::Direct(aa)]));
    let (ab, ba_keys) = (Keys::random(), Keys::random());
    let setup = |send: &Keys, receive: &Keys| Setup {
        send: send.clone(),
        receive: receive.clone(),
        bitrate: DEFAULT_BITRATE,
        rate: SampleRate::WIDEBAND,
    };
    let (stop_a, stopped_a) = tokio::sync::watch::channel(false);
    // B's own stop never turns: only A's BYE can end it.
    let (_stop_b, stopped_b) = tokio::sync::watch::channel(false);
    let (sa_setup, sb_setup) = (setup(&ab, &ba_keys), setup(&ba_keys, &ab));
    let ta = {
        let a = a.clone();
        tokio::spawn(async move {
            a.run(
                sa_setup,
                Samples::new(vec![1000; 16_000]),
                Recording::default(),
                stopped_a,
            )
            .await
        })
    };
    let tb = {
        let b = b.clone();
        tokio::spawn(async move {
            b.run(
                sb_setup,
                Samples::new(vec![]),
                Recording::default(),
                stopped_b,
            )
            .await
        })
    };
    // Once B hears A, A hangs up.
    let mut heard = b.active();
    heard.wait_for(Option::is_some).await.unwrap();
    stop_a.send(true).unwrap();
    let a_summary = ta.await.unwrap().unwrap();
    let b_summary = tokio::time::timeout(Duration::from_secs(30), tb)
        .await
        .expect("B ends on A's BYE")
        .unwrap()
        .unwrap();
    assert!(b_summary.bye, "{b_summary:?}");
    assert!(!a_summary.bye, "A hung up itself: {a_summary:?}");
}
