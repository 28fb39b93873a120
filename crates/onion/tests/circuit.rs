//! Three-hop circuits between real overlay nodes on loopback: bytes reach a TCP server
//! through three relays and come back; each relay sees only its two neighbours (and the
//! exit its destination); an exit refuses what its policy forbids, a relay that is no
//! exit refuses every stream; garbage on the protocol ends only that stream. (The
//! SOCKS5 proxy with curl and Python's requests: `crates/testnet/tests/onion.rs`.)

use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncReadExt as _, AsyncWriteExt as _};
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use nodus_net::NetworkHandle;
use nodus_onion::OnionError;
use nodus_onion::cell::EndReason;
use nodus_onion::client::{Circuit, Hop};
use nodus_onion::exit::ExitPolicy;
use nodus_onion::link::PROTOCOL;
use nodus_onion::ntor::OnionKey;
use nodus_onion::relay::{self, Relay, Seen, View};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;

#[path = "../../net/tests/common/mod.rs"]
mod common;
use common::{addr_of, config};

const T: Duration = Duration::from_secs(30);

struct Node {
    net: NetworkHandle,
    addr: Multiaddr,
}

/// An overlay node on `ip` (the net crate's test config), with its dialable address.
async fn node(ip: &str) -> Node {
    let (net, _) = nodus_net::spawn(
        Keypair::generate_ed25519(),
        config(ip),
        &mut Registry::default(),
    )
    .unwrap();
    let addr = addr_of(&net).await;
    Node { net, addr }
}

struct RelayNode {
    node: Node,
    hop: Hop,
    relay: Arc<Relay>,
    views: broadcast::Receiver<Seen>,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn relay_node(ip: &str, exit: Option<ExitPolicy>) -> RelayNode {
    relay_node_at_rate(ip, exit, 0).await
}

/// A relay passing on at most `rate` bytes a second (0: no limit).
async fn relay_node_at_rate(ip: &str, exit: Option<ExitPolicy>, rate: u64) -> RelayNode {
    let node = node(ip).await;
    let key = OnionKey::generate();
    let hop = Hop {
        peer: node.net.local_peer_id(),
        onion_key: key.public(),
    };
    let relay = Arc::new(Relay::new(&hop.peer, key, exit).with_rate(rate));
    let views = relay.views.subscribe();
    // Stopped when the test drops it.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    relay::spawn(node.net.clone(), relay.clone(), stopped).unwrap();
    RelayNode {
        node,
        hop,
        relay,
        views,
        _stop: stop,
    }
}

fn seen(r: &mut RelayNode) -> Vec<View> {
    let mut v = Vec::new();
    while let Ok(x) = r.views.try_recv() {
        v.push(x.view);
    }
    v
}

/// A TCP server that answers each connection's first line with `size` bytes derived from
/// it, then closes.
async fn server(ip: &str, size: usize) -> String {
    let l = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut line = Vec::new();
                let mut b = [0u8; 1];
                while s.read_exact(&mut b).await.is_ok() && b[0] != b'\n' {
                    line.push(b[0]);
                }
                s.write_all(&answer(&line, size)).await.unwrap();
                s.shutdown().await.unwrap();
            });
        }
    });
    addr
}

fn answer(line: &[u8], size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| line[i % line.len()] ^ (i % 251) as u8)
        .collect()
}

/// Sends `line` to the server through `circuit` and checks its 3 MiB answer.
async fn ask(circuit: &Circuit, target: &str, line: &[u8]) {
    let mut s = circuit.connect(target).await.unwrap();
    s.write_all(&[line, b"\n"].concat()).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert!(
        got == answer(line, 3 << 20),
        "{} bytes, not the server's",
        got.len()
    );
}

/// A client and three relays on 127.0.`net`.2-5, the exit reaching loopback, the middle
/// passing on at most `middle_rate` bytes a second (0: no limit). The client knows only
/// its guard's address; each relay can reach the next.
async fn line_of_relays(net: u8, middle_rate: u64) -> (Node, RelayNode, RelayNode, RelayNode) {
    let ip = |k: u8| format!("127.0.{net}.{k}");
    let client = node(&ip(2)).await;
    let guard = relay_node(&ip(3), None).await;
    let middle = relay_node_at_rate(&ip(4), None, middle_rate).await;
    let test_exit = ExitPolicy {
        allow_private: true,
        reject_ports: Vec::new(),
    };
    let exit = relay_node(&ip(5), Some(test_exit)).await;
    client.net.dial(guard.node.addr.clone()).await.unwrap();
    guard.node.net.dial(middle.node.addr.clone()).await.unwrap();
    middle.node.net.dial(exit.node.addr.clone()).await.unwrap();
    (client, guard, middle, exit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_cross_three_relays_and_each_sees_only_its_neighbours() {
    let (client, mut guard, mut middle, mut exit) = line_of_relays(181, 0).await;
    // 3 MiB back: past the stream window, so SENDMEs must flow.
    let target = server("127.0.181.6", 3 << 20).await;

    let path = [guard.hop.clone(), middle.hop.clone(), exit.hop.clone()];
    let circuit = Circuit::build(&client.net, &path).await.unwrap();
    assert_eq!(
        circuit.hops(),
        [guard.hop.peer, middle.hop.peer, exit.hop.peer]
    );
    ask(&circuit, &target, b"through three hops").await;

    let me = client.net.local_peer_id();
    let (g, m, x) = (guard.hop.peer, middle.hop.peer, exit.hop.peer);
    assert_eq!(
        seen(&mut guard),
        [
            View::Created { prev: me },
            View::Extended { prev: me, next: m }
        ]
    );
    assert_eq!(
        seen(&mut middle),
        [
            View::Created { prev: g },
            View::Extended { prev: g, next: x }
        ]
    );
    assert_eq!(
        seen(&mut exit),
        [
            View::Created { prev: m },
            View::Exit {
                prev: m,
                target: target.clone()
            }
        ]
    );

    // A second stream on the same circuit.
    ask(&circuit, &target, b"again").await;
}

/// A stream whose reader stops reading is paused (XOFF), not its circuit: the circuit's
/// window is acknowledged as cells arrive, so another stream on it goes on to the end;
/// then the paused one resumes (XON) and gets all of its answer. Without the pause the
/// stalled stream's cells would pile up past what the client holds for it, and the
/// client would end the circuit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_reader_stalls_is_paused_and_its_circuit_goes_on() {
    let (client, guard, middle, exit) = line_of_relays(186, 0).await;
    let big = server("127.0.186.6", 16 << 20).await;
    let small = server("127.0.186.7", 3 << 20).await;
    let path = [guard.hop.clone(), middle.hop.clone(), exit.hop.clone()];
    let circuit = Circuit::build(&client.net, &path).await.unwrap();

    let mut stalled = circuit.connect(&big).await.unwrap();
    stalled.write_all(b"not read yet\n").await.unwrap();
    let mut first = [0u8; 1];
    stalled.read_exact(&mut first).await.unwrap();
    // Each XOFF is followed by at most one XON: the stream is paused while more XOFFs
    // than XONs came (a reader slower for a moment than the circuit pauses it too).
    let paused = |relay: &Arc<Relay>, now: bool| {
        let relay = relay.clone();
        move || {
            let (off, on) = relay.flow_heard();
            async move {
                if now {
                    off == on + 1
                } else {
                    off > 0 && off == on
                }
            }
        }
    };
    nodus_testnet::wait_until(
        T,
        "the client's XOFF at the exit",
        paused(&exit.relay, true),
    )
    .await
    .unwrap();
    ask(&circuit, &small, b"meanwhile").await;
    let (off, on) = exit.relay.flow_heard();
    assert_eq!(off, on + 1, "still paused while the reader stalls");

    let mut rest = Vec::new();
    tokio::time::timeout(T, stalled.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    let got = [&first[..], &rest].concat();
    assert!(
        got == answer(b"not read yet", 16 << 20),
        "{} bytes, not the server's",
        got.len()
    );
    assert!(!circuit.is_closed());
    nodus_testnet::wait_until(
        T,
        "the client's XON at the exit",
        paused(&exit.relay, false),
    )
    .await
    .unwrap();
}

/// A middle relay limited to 1 MB/s carries the 3 MiB answer (about 3.2 MB of cells)
/// no faster than that allows: 2.9 s at the least, less its quarter-second burst. (A
/// lower bound only: a loaded machine can make it slower, never faster.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_passes_on_no_more_than_its_bandwidth() {
    const RATE: u64 = 1_000_000;
    let (client, guard, middle, exit) = line_of_relays(184, RATE).await;
    let target = server("127.0.184.6", 3 << 20).await;
    let path = [guard.hop.clone(), middle.hop.clone(), exit.hop.clone()];
    let circuit = Circuit::build(&client.net, &path).await.unwrap();
    let started = tokio::time::Instant::now();
    ask(&circuit, &target, b"limited").await;
    let cells = (3u64 << 20).div_ceil(nodus_onion::cell::RELAY_DATA as u64);
    let least = (cells * nodus_onion::cell::CELL_LEN as u64 - RATE / 4) as f64 / RATE as f64;
    let took = started.elapsed().as_secs_f64();
    assert!(
        took >= least,
        "{took:.2} s, where {RATE} B/s allows no less than {least:.2} s"
    );
}

async fn refused_by_policy(circuit: &Circuit, target: &str) {
    let e = circuit.connect(target).await.unwrap_err();
    assert!(
        matches!(e, OnionError::StreamRefused(EndReason::ExitPolicy)),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exits_refuse_what_their_policy_forbids_and_relays_are_no_exits() {
    let client = node("127.0.182.2").await;
    let guard = relay_node("127.0.182.3", None).await;
    // The default policy: nothing private or loopback.
    let exit = relay_node("127.0.182.4", Some(ExitPolicy::default())).await;
    client.net.dial(guard.node.addr.clone()).await.unwrap();
    guard.node.net.dial(exit.node.addr.clone()).await.unwrap();
    let target = server("127.0.182.6", 10).await;

    let circuit = Circuit::build(&client.net, &[guard.hop.clone(), exit.hop.clone()])
        .await
        .unwrap();
    refused_by_policy(&circuit, &target).await;
    // The circuit is still good after a refused stream.
    assert!(!circuit.is_closed());

    // A relay that is no exit refuses every stream.
    let circuit = Circuit::build(&client.net, std::slice::from_ref(&guard.hop))
        .await
        .unwrap();
    refused_by_policy(&circuit, &target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_wrong_keys_end_only_that_circuit() {
    let client = node("127.0.183.2").await;
    let guard = relay_node("127.0.183.3", None).await;
    client.net.dial(guard.node.addr.clone()).await.unwrap();

    // Not a cell: the relay closes that stream and goes on serving.
    let mut s = client
        .net
        .open_stream(guard.hop.peer, PROTOCOL)
        .await
        .unwrap();
    s.write_all(&[0xff; 5000]).await.unwrap();
    s.flush().await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(T, s.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(rest.is_empty(), "nothing answers garbage");

    // A client with the wrong onion key for the relay: refused, no circuit.
    let wrong = Hop {
        peer: guard.hop.peer,
        onion_key: OnionKey::generate().public(),
    };
    assert!(Circuit::build(&client.net, &[wrong]).await.is_err());

    // An extension to a peer that is not a relay fails cleanly.
    let stranger = PeerId::random();
    let bad = Hop {
        peer: stranger,
        onion_key: OnionKey::generate().public(),
    };
    let e = Circuit::build(&client.net, &[guard.hop.clone(), bad])
        .await
        .unwrap_err();
    assert!(
        matches!(e, OnionError::ExtendFailed(p) if p == stranger),
        "{e}"
    );

    // And the relay still builds circuits.
    Circuit::build(&client.net, std::slice::from_ref(&guard.hop))
        .await
        .unwrap();
}

/// Links of 50 ms each way: a round trip through the three relays takes 300 ms at the
/// least, so the old fixed window of 256 cells (1 MiB, as Tor's fixed windows) could
/// carry no more than 3.5 MB/s. The exit's congestion window must open past it: a
/// window grows only while it is full and the path queues little, so past 256 means
/// more than 256 cells were in flight at once. (A debug build's relays are slower than
/// that cap; `nodus bench onion` measures the throughput, in release.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circuit_with_a_long_round_trip_opens_its_window_past_a_fixed_one() {
    const ONE_WAY: Duration = Duration::from_millis(50);
    const SIZE: usize = 16 << 20;
    let line = nodus_testnet::delayed::line(187, ONE_WAY, None)
        .await
        .unwrap();
    let target = server("127.0.187.6", SIZE).await;

    let circuit = Circuit::build(&line.client, &line.path).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut s = circuit.connect(&target).await.unwrap();
    s.write_all(b"far away\n").await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    let took = started.elapsed().as_secs_f64();
    assert!(
        got == answer(b"far away", SIZE),
        "{} bytes, not the server's",
        got.len()
    );
    let largest = line.exit.largest_window();
    println!(
        "{} MiB in {took:.2} s ({:.1} MB/s), the exit's window reached {largest} cells; \
         a fixed window of 256 allows {:.1} MB/s at this round trip",
        SIZE >> 20,
        SIZE as f64 / took / 1e6,
        256.0 * nodus_onion::cell::RELAY_DATA as f64 / (6.0 * ONE_WAY.as_secs_f64()) / 1e6,
    );
    assert!(largest > 256, "the window stayed at {largest} cells");
}
