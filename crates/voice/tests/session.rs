//! A call's media both ways over real UDP sockets on 127.0.0.1, directly and through the
//! datagram relay: speech from espeak-ng goes in on each side and the other side's
//! recording scores PESQ above 3.5; a stranger's datagrams are dropped and counted while
//! the call goes on; the call moves from the relay to the direct path mid-call.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{pesq, speech};
use nodus_voice::codec::DEFAULT_BITRATE;
use nodus_voice::media::Keys;
use nodus_voice::relay::{Limits, Relay};
use nodus_voice::session::{Path, Recording, Samples, Session, Setup};
use nodus_voice::wav;
use tokio::net::UdpSocket;

async fn socket() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

struct Call {
    a: std::sync::Arc<Session>,
    b: std::sync::Arc<Session>,
    heard_by_b: Recording,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts a call between two sessions on `paths` (A's, B's), A speaking `pcm`.
fn start(a: Session, b: Session, pcm: Vec<i16>) -> Call {
    let (ab, ba) = (Keys::random(), Keys::random());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let heard_by_b = Recording::default();
    let (a, b) = (std::sync::Arc::new(a), std::sync::Arc::new(b));
    let mut tasks = Vec::new();
    {
        let (a, s) = (a.clone(), stopped.clone());
        let setup = Setup {
            send: ab.clone(),
            receive: ba.clone(),
            path: Path::Direct("0.0.0.0:0".parse().unwrap()),
            bitrate: DEFAULT_BITRATE,
        };
        tasks.push(tokio::spawn(async move {
            a.run(setup, Samples::new(pcm), Recording::default(), s)
                .await
                .unwrap();
        }));
    }
    {
        let (b, s, rec) = (b.clone(), stopped, heard_by_b.clone());
        let setup = Setup {
            send: ba,
            receive: ab,
            path: Path::Direct("0.0.0.0:0".parse().unwrap()),
            bitrate: DEFAULT_BITRATE,
        };
        tasks.push(tokio::spawn(async move {
            b.run(setup, Samples::new(vec![]), rec, s).await.unwrap();
        }));
    }
    Call {
        a,
        b,
        heard_by_b,
        stop,
        tasks,
    }
}

impl Call {
    /// Lets the call run for the speech and a second more, ends it, scores B's recording.
    async fn finish(self, input: &std::path::Path, len: usize) -> f64 {
        tokio::time::sleep(Duration::from_millis((len as u64 * 1000 / 16_000) + 1000)).await;
        self.stop.send(true).unwrap();
        for t in self.tasks {
            t.await.unwrap();
        }
        let dir = input.parent().unwrap();
        let out = dir.join("heard.wav");
        wav::write(&out, &self.heard_by_b.0.lock().unwrap()).unwrap();
        pesq(input, &out)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_call_carries_speech_and_shrugs_off_a_strangers_datagrams() {
    let dir = tempfile::tempdir().unwrap();
    let input = speech(dir.path());
    let pcm = wav::read(&input).unwrap();
    let (sa, sb) = (socket().await, socket().await);
    let (aa, ba): (SocketAddr, SocketAddr) = (sa.local_addr().unwrap(), sb.local_addr().unwrap());
    let a = Session::new(sa, Path::Direct(ba));
    let b = Session::new(sb, Path::Direct(aa));
    let len = pcm.len();
    let call = start(a, b, pcm);
    let stranger = socket().await;
    for _ in 0..20 {
        stranger.send_to(b"\x80\x6f garbage", ba).await.unwrap();
    }
    let b_session = call.b.clone();
    let score = call.finish(&input, len).await;
    println!("PESQ direct {score}");
    assert!(score > 3.5, "PESQ {score}");
    assert_eq!(b_session.counters.dropped.load(Ordering::Relaxed), 20);
    assert!(b_session.counters.received.load(Ordering::Relaxed) > 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_the_relay_moves_to_the_direct_path_mid_call() {
    let dir = tempfile::tempdir().unwrap();
    let input = speech(dir.path());
    let pcm = wav::read(&input).unwrap();
    let relay = Relay::bind("127.0.0.1:0", Limits::default()).await.unwrap();
    let relay_task = tokio::spawn(relay.clone().run());
    let (ta, tb) = relay.allocate().unwrap();
    let (sa, sb) = (socket().await, socket().await);
    let ba = sb.local_addr().unwrap();
    let a = Session::new(
        sa,
        Path::Relay {
            relay: relay.addr(),
            token: ta,
        },
    );
    let b = Session::new(
        sb,
        Path::Relay {
            relay: relay.addr(),
            token: tb,
        },
    );
    let len = pcm.len();
    let call = start(a, b, pcm);
    // Half way, the relay dies; A moves to the direct path, and B follows A's packets.
    tokio::time::sleep(Duration::from_millis(len as u64 * 1000 / 16_000 / 2)).await;
    let through_relay = relay.counters.forwarded.load(Ordering::Relaxed);
    relay_task.abort();
    call.a.switch(Path::Direct(ba)).await;
    let aa = call.a.local_addr().unwrap();
    call.b.switch(Path::Direct(aa)).await;
    let score = call.finish(&input, len).await;
    println!("PESQ relay then direct {score}, {through_relay} through the relay");
    assert!(through_relay > 50, "{through_relay} through the relay");
    assert!(score > 3.0, "PESQ {score}");
}
