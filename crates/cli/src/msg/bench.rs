//! `nodus bench msg`: messages per second and latency, direct and through one relay,
//! for small and 64 KiB messages; files sent with messages (10 and 100 MiB) beside a
//! bare stream moving the same bytes on the same path; the time to reroute when the
//! relay in use dies; the time from a recipient coming online to its stored messages
//! arriving.
//!
//! Beside each latency the same run measures the floor under it: a frame of the same
//! size echoed over a bare libp2p stream on the same path (no encryption beyond the
//! transport's, nothing written to disk). The aims are the issues': p99 under 10 ms
//! through one relay, reroute under 2 s, at least 40,000 small messages a second direct,
//! and 64 KiB messages at 100 MB/s or more, direct and through a relay.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, StreamProtocol};
use nodus_msg::{MsgEvent, MsgHandle};
use nodus_net::NetworkHandle;
use nodus_testnet::msg::introduce;
use nodus_testnet::{Testnet, hidden_node_config, wait_until};
use serde_json::json;
use tokio::sync::broadcast;

use crate::ui::progress::spinner;
use crate::ui::stats::percentile;
use crate::ui::{self, table};

/// `nodus bench msg` (flattened into `nodus bench`).
#[derive(clap::Subcommand, Debug)]
pub enum Area {
    /// Messages per second and latency, direct and through a relay; reroute and
    /// offline-delivery times
    Msg {
        /// Small (100-byte) messages per throughput run
        #[arg(long, default_value_t = 20000)]
        small: usize,
        /// 64 KiB messages per throughput run
        #[arg(long, default_value_t = 2000)]
        large: usize,
        /// Messages timed one by one per latency run
        #[arg(long, default_value_t = 300)]
        round_trips: usize,
        /// Sizes of the files sent with a message, in MiB
        #[arg(long, value_delimiter = ',', default_value = "10,100")]
        file_mib: Vec<usize>,
    },
}

impl Area {
    pub async fn run(self, json: bool) -> Result<ExitCode> {
        let Area::Msg {
            small,
            large,
            round_trips,
            file_mib,
        } = self;
        run(small, large, round_trips, &file_mib, json).await
    }
}

const ECHO: StreamProtocol = StreamProtocol::new("/nodus/bench-echo/1");
const SINK: StreamProtocol = StreamProtocol::new("/nodus/bench-sink/1");

/// Takes a length (u64) and that many bytes, then answers one byte.
fn sink_server(net: &NetworkHandle) -> Result<()> {
    let mut incoming = net.incoming(SINK)?;
    tokio::spawn(async move {
        while let Some((_, mut s)) = incoming.next().await {
            tokio::spawn(async move {
                let mut len = [0u8; 8];
                if s.read_exact(&mut len).await.is_err() {
                    return;
                }
                let mut left = u64::from_be_bytes(len);
                let mut buf = vec![0u8; 256 * 1024];
                while left > 0 {
                    let want = buf.len().min(left as usize);
                    match s.read(&mut buf[..want]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => left -= n as u64,
                    }
                }
                let _ = s.write_all(&[1]).await;
                let _ = s.close().await;
            });
        }
    });
    Ok(())
}

/// MB/s of `bytes` written over a bare stream to `peer` until it says it has them all.
/// A stream cut under it (a relay closes a circuit after 64 MiB, and the messages before
/// used most of one) starts it over.
async fn bulk(net: &NetworkHandle, peer: PeerId, bytes: &[u8]) -> Result<f64> {
    thrice(|| bulk_once(net, peer, bytes)).await
}

async fn bulk_once(net: &NetworkHandle, peer: PeerId, bytes: &[u8]) -> Result<f64> {
    // Timed from the open stream: after a relay closed the circuit in use, opening one
    // waits for a new circuit, which is not the stream's speed.
    let mut s = net.open_stream(peer, SINK).await?;
    let t = Instant::now();
    s.write_all(&(bytes.len() as u64).to_be_bytes()).await?;
    for piece in bytes.chunks(256 * 1024) {
        s.write_all(piece).await?;
    }
    s.flush().await?;
    let mut done = [0u8; 1];
    s.read_exact(&mut done).await?;
    Ok(bytes.len() as f64 / t.elapsed().as_secs_f64() / 1e6)
}

/// A file of `bytes` from `a` to bob: (ms to take it into the file store, MB/s from
/// the send call to the file checked and complete on bob's side).
async fn file_run(a: &MsgHandle, b: &MsgHandle, bytes: &[u8]) -> Result<(f64, f64)> {
    let t = Instant::now();
    let arrival = nodus_testnet::msg::send_file(a, b, "bob", (bytes, "bench.bin"), T).await?;
    let import_ms = (t.elapsed() - arrival.took).as_secs_f64() * 1000.0;
    Ok((
        import_ms,
        bytes.len() as f64 / arrival.took.as_secs_f64() / 1e6,
    ))
}

struct FileRow {
    run: String,
    import_ms: f64,
    mb_s: f64,
    bare_mb_s: Option<f64>,
}
const T: Duration = Duration::from_secs(60);
const SMALL: usize = 100;
const LARGE: usize = 64 * 1024;

fn echo_server(net: &NetworkHandle) -> Result<()> {
    let mut incoming = net.incoming(ECHO)?;
    tokio::spawn(async move {
        while let Some((_, mut s)) = incoming.next().await {
            tokio::spawn(async move {
                let mut len = [0u8; 4];
                let mut buf = Vec::new();
                while s.read_exact(&mut len).await.is_ok() {
                    buf.resize(u32::from_be_bytes(len) as usize, 0);
                    if s.read_exact(&mut buf).await.is_err()
                        || s.write_all(&len).await.is_err()
                        || s.write_all(&buf).await.is_err()
                        || s.flush().await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    Ok(())
}

/// Round trips of `size`-byte frames over a bare stream: (p50, p99) in ms. A stream cut
/// under it (connections between the pair get replaced now and then) starts it over.
async fn floor(net: &NetworkHandle, peer: PeerId, size: usize, trips: usize) -> Result<(f64, f64)> {
    thrice(|| floor_once(net, peer, size, trips)).await
}

/// Runs `attempt` up to three times, until it succeeds: a reference measurement on a
/// stream the network may cut under it.
async fn thrice<T, F: std::future::Future<Output = Result<T>>>(
    mut attempt: impl FnMut() -> F,
) -> Result<T> {
    let mut last = None;
    for _ in 0..3 {
        match attempt().await {
            Ok(r) => return Ok(r),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow!("no attempt made")))
}

async fn floor_once(
    net: &NetworkHandle,
    peer: PeerId,
    size: usize,
    trips: usize,
) -> Result<(f64, f64)> {
    let mut s = net.open_stream(peer, ECHO).await?;
    let frame = vec![7u8; size];
    let mut back = vec![0u8; size + 4];
    let mut rtts = Vec::with_capacity(trips);
    for _ in 0..trips {
        let t = Instant::now();
        s.write_all(&(size as u32).to_be_bytes()).await?;
        s.write_all(&frame).await?;
        s.flush().await?;
        s.read_exact(&mut back).await?;
        rtts.push(t.elapsed());
    }
    rtts.sort();
    Ok((
        percentile(&rtts, 0.5) / 1000.0,
        percentile(&rtts, 0.99) / 1000.0,
    ))
}

/// Waits for the incoming message with this id on `rx`.
async fn arrival(rx: &mut broadcast::Receiver<MsgEvent>, id: &str) -> Result<()> {
    loop {
        match tokio::time::timeout(T, rx.recv()).await {
            Ok(Ok(MsgEvent::Message { message })) if message.id == id => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(anyhow!("event stream: {e}; message {id} cannot be timed")),
            Err(_) => return Err(anyhow!("message {id} did not arrive")),
        }
    }
}

/// One message at a time, each timed from `send` to its arrival event, and to the
/// sender's `delivered` (the recipient wrote it to disk and acknowledged it).
/// Each as (p50, p99) ms.
async fn latency(
    a: &MsgHandle,
    b: &MsgHandle,
    size: usize,
    n: usize,
) -> Result<((f64, f64), (f64, f64))> {
    let text = "x".repeat(size);
    let mut rx = b.events();
    let mut states = a.events();
    let (mut shown, mut acked) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let t = Instant::now();
        let m = a.send("bob", &text).await?;
        arrival(&mut rx, &m.id).await?;
        shown.push(t.elapsed());
        delivered(&mut states, &m.id).await?;
        acked.push(t.elapsed());
    }
    let _ = b.inbox(false).await;
    let spread = |mut v: Vec<Duration>| {
        v.sort();
        (percentile(&v, 0.5) / 1000.0, percentile(&v, 0.99) / 1000.0)
    };
    Ok((spread(shown), spread(acked)))
}

async fn delivered(rx: &mut broadcast::Receiver<MsgEvent>, id: &str) -> Result<()> {
    loop {
        match tokio::time::timeout(T, rx.recv()).await {
            Ok(Ok(MsgEvent::State { id: i, state, .. }))
                if i == id && state == nodus_msg::MessageState::Delivered =>
            {
                return Ok(());
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(anyhow!("event stream: {e}; message {id} cannot be timed")),
            Err(_) => return Err(anyhow!("message {id} was not acknowledged")),
        }
    }
}

/// Waits until both outboxes are empty. The acknowledgements of a burst are still being
/// written when its last message arrives, and reading the inbox sends read receipts for
/// all of it (20 receipts of 1000 ids after a burst of 20,000, each id an event on the
/// sender). One-by-one latency is about a conversation, not about the tail of the burst
/// before it: timed during those receipts, the sender's event stream fell 15,907 events
/// behind while the first message was on its way.
async fn settle(a: &MsgHandle, b: &MsgHandle) -> Result<()> {
    let deadline = Instant::now() + T;
    for h in [a, b] {
        while h.stats().await?.outbox > 0 {
            if Instant::now() > deadline {
                return Err(anyhow!("an outbox did not empty"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

/// `n` messages sent as fast as the API takes them (many calls in flight), timed until
/// the last has arrived: messages per second.
async fn throughput(a: &MsgHandle, b: &MsgHandle, size: usize, n: usize) -> Result<f64> {
    let text = "y".repeat(size);
    let mut rx = b.events();
    let before = b.stats().await?.messages_received;
    let t = Instant::now();
    let sender = {
        let a = a.clone();
        tokio::spawn(async move {
            let mut calls = futures::stream::iter(0..n)
                .map(|_| {
                    let a = a.clone();
                    let text = text.clone();
                    async move { a.send("bob", &text).await }
                })
                .buffer_unordered(1024);
            while let Some(r) = calls.next().await {
                r?;
            }
            Ok::<(), nodus_msg::MsgError>(())
        })
    };
    let mut got = 0;
    while got < n {
        match tokio::time::timeout(T, rx.recv()).await {
            Ok(Ok(MsgEvent::Message { message })) if !message.outgoing => got += 1,
            Ok(Ok(_)) => {}
            // Events were dropped, arrivals among them: count from the recipient's
            // own tally instead.
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                got = (b.stats().await?.messages_received - before) as usize;
            }
            Ok(Err(e)) => return Err(anyhow!("event stream: {e}")),
            Err(_) => return Err(anyhow!("only {got} of {n} messages arrived")),
        }
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    sender.await??;
    let _ = b.inbox(false).await;
    Ok(rate)
}

struct Row {
    run: String,
    rate: Option<f64>,
    p50: Option<f64>,
    p99: Option<f64>,
    floor: Option<(f64, f64)>,
    /// One by one, to the sender's `delivered`: (p50, p99) ms.
    delivered: Option<(f64, f64)>,
    aim: String,
}

fn f(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}")).unwrap_or("-".into())
}

pub async fn run(
    small: usize,
    large: usize,
    trips: usize,
    file_mib: &[usize],
    json_out: bool,
) -> Result<ExitCode> {
    if small == 0 || large == 0 || trips == 0 || file_mib.contains(&0) {
        return Err(anyhow!(
            "--small, --large, --round-trips and each --file-mib must be at least 1"
        ));
    }
    if let Ok(filter) = std::env::var("NODUS_LOG") {
        crate::ui::process::init_logging(&filter);
    }
    let dir = tempfile::tempdir()?;
    let pb = spinner("starting a 5-node network and two hidden nodes");
    let mut net = Testnet::start(5, dir.path()).await?;
    net.wait_connected(4, T).await?;
    let relays: Vec<String> = [1, 2]
        .iter()
        .filter_map(|k| net.node(*k).p2p_addr("tcp"))
        .map(|a| a.to_string())
        .collect();
    // Direct pair: nodes 3 and 4. Relayed pair: two nodes without listeners.
    let (da, db) = (3, 4);
    let ra = net.add_node(hidden_node_config(5, &relays)).await?;
    let rb = net.add_node(hidden_node_config(6, &relays)).await?;
    net.wait_circuits(ra, 2, T).await?;
    net.wait_circuits(rb, 2, T).await?;
    for (a, b) in [(da, db), (ra, rb)] {
        introduce(
            net.node(a)
                .service::<nodus_msg::MsgHandle>()
                .expect("msg runs"),
            net.node(b)
                .service::<nodus_msg::MsgHandle>()
                .expect("msg runs"),
            "alice",
            "bob",
        )
        .await?;
        echo_server(&net.node(b).net)?;
        sink_server(&net.node(b).net)?;
        // Open the session and the connection before timing anything, and answer once:
        // an established conversation, where Olm has left its pre-key messages behind.
        let mut rx = net
            .node(b)
            .service::<nodus_msg::MsgHandle>()
            .expect("msg runs")
            .events();
        let warm = net
            .node(a)
            .service::<nodus_msg::MsgHandle>()
            .expect("msg runs")
            .send("bob", "warm-up")
            .await?;
        arrival(&mut rx, &warm.id).await?;
        let mut rx = net
            .node(a)
            .service::<nodus_msg::MsgHandle>()
            .expect("msg runs")
            .events();
        let back = net
            .node(b)
            .service::<nodus_msg::MsgHandle>()
            .expect("msg runs")
            .send("alice", "warm-up reply")
            .await?;
        arrival(&mut rx, &back.id).await?;
    }
    pb.finish_and_clear();

    let mut rows = Vec::new();
    for (path, a, b) in [("direct", da, db), ("one relay", ra, rb)] {
        let (ha, hb) = (
            net.node(a)
                .service::<nodus_msg::MsgHandle>()
                .expect("msg runs")
                .clone(),
            net.node(b)
                .service::<nodus_msg::MsgHandle>()
                .expect("msg runs")
                .clone(),
        );
        let bob = net.node(b).peer_id();
        for (size, count) in [(SMALL, small), (LARGE, large)] {
            let label = if size == SMALL { "100 B" } else { "64 KiB" };
            let pb = spinner(&format!("{path}, {label}: {count} messages"));
            let rate = throughput(&ha, &hb, size, count).await?;
            settle(&ha, &hb).await?;
            pb.set_message(format!("{path}, {label}: {trips} timed one by one"));
            let ((p50, p99), acked) = latency(&ha, &hb, size, trips).await?;
            settle(&ha, &hb).await?;
            let fl = floor(&net.node(a).net, bob, size, trips).await?;
            pb.finish_and_clear();
            let mb_s = rate * size as f64 / 1e6;
            let aim = match (path, size) {
                ("direct", SMALL) => format!("≥ 40000/s: {:.2}x", rate / 40000.0),
                ("direct", _) => format!("≥ 100 MB/s: {:.2}x ({mb_s:.0} MB/s)", mb_s / 100.0),
                ("one relay", SMALL) => format!("p99 < 10 ms: {:.2}x", 10.0 / p99),
                _ => format!(
                    "≥ 100 MB/s: {:.2}x ({mb_s:.0} MB/s); p99 < 10 ms: {:.2}x",
                    mb_s / 100.0,
                    10.0 / p99
                ),
            };
            rows.push(Row {
                run: format!("{path}, {label}"),
                rate: Some(rate),
                p50: Some(p50),
                p99: Some(p99),
                floor: Some(fl),
                delivered: Some(acked),
                aim,
            });
        }
    }

    let mut file_rows = Vec::new();
    for (path, a, b) in [("direct", da, db), ("one relay", ra, rb)] {
        let msg = |k: usize| {
            net.node(k)
                .service::<nodus_msg::MsgHandle>()
                .expect("msg runs")
                .clone()
        };
        let (ha, hb) = (msg(a), msg(b));
        for &mib in file_mib {
            let pb = spinner(&format!("{path}: a {mib} MiB file, and a bare stream"));
            let mut bytes = vec![0u8; mib << 20];
            rand::fill(&mut bytes[..]);
            let (import_ms, mb_s) = file_run(&ha, &hb, &bytes)
                .await
                .with_context(|| format!("{path}: the {mib} MiB file"))?;
            // A relay closes a circuit after 64 MiB ([p2p.relay] max_circuit_bytes): a
            // bare stream cannot carry more, a file goes on over the next circuit.
            let bare_mb_s = if path == "direct" || mib < 64 {
                Some(
                    bulk(&net.node(a).net, net.node(b).peer_id(), &bytes)
                        .await
                        .with_context(|| format!("{path}: {mib} MiB over a bare stream"))?,
                )
            } else {
                None
            };
            pb.finish_and_clear();
            file_rows.push(FileRow {
                run: format!("{path}, {mib} MiB file"),
                import_ms,
                mb_s,
                bare_mb_s,
            });
        }
    }

    // Reroute: kill the relay the pair uses, time the next message.
    let pb = spinner("killing the relay in use");
    let bob_id = net.node(rb).peer_id().to_string();
    let relay = net
        .relay_in_use(ra, &bob_id)
        .await
        .and_then(|r| net.index_of(&r))
        .ok_or_else(|| anyhow!("the relayed pair is not on a relay circuit"))?;
    net.kill(relay).await?;
    let t = Instant::now();
    let m = net
        .node(ra)
        .service::<nodus_msg::MsgHandle>()
        .expect("msg runs")
        .send("bob", "after the relay died")
        .await?;
    let mut rx = net
        .node(rb)
        .service::<nodus_msg::MsgHandle>()
        .expect("msg runs")
        .events();
    arrival(&mut rx, &m.id).await?;
    let reroute = t.elapsed().as_secs_f64() * 1000.0;
    pb.finish_and_clear();
    rows.push(Row {
        run: "reroute after the relay dies".into(),
        rate: None,
        p50: Some(reroute),
        p99: None,
        floor: None,
        delivered: None,
        aim: format!("< 2000 ms: {:.2}x", 2000.0 / reroute),
    });

    // Offline recipient: 100 messages stored while it is down.
    let pb = spinner("recipient offline: 100 messages to mailboxes");
    net.kill(db).await?;
    let ha = net
        .node(da)
        .service::<nodus_msg::MsgHandle>()
        .expect("msg runs")
        .clone();
    let mut states = ha.events();
    let mut ids = std::collections::HashSet::new();
    for i in 0..100 {
        ids.insert(ha.send("bob", &format!("stored {i}")).await?.id);
    }
    let mut stored = std::collections::HashSet::new();
    while stored.len() < ids.len() {
        match tokio::time::timeout(T, states.recv()).await {
            Ok(Ok(MsgEvent::State { id, state, .. }))
                if state == nodus_msg::MessageState::Stored && ids.contains(&id) =>
            {
                stored.insert(id);
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(anyhow!(
                    "event stream: {e}; stored messages cannot be counted"
                ));
            }
            Err(_) => return Err(anyhow!("only {} of 100 messages were stored", stored.len())),
        }
    }
    let t = Instant::now();
    net.restart(db).await?;
    let hb = net
        .node(db)
        .service::<nodus_msg::MsgHandle>()
        .expect("msg runs")
        .clone();
    wait_until(T, "stored messages to arrive", || async {
        hb.stats().await.is_ok_and(|s| s.messages_received >= 100)
    })
    .await?;
    let fetched = t.elapsed().as_secs_f64() * 1000.0;
    pb.finish_and_clear();
    rows.push(Row {
        run: "100 stored messages, from coming online".into(),
        rate: None,
        p50: Some(fetched),
        p99: None,
        floor: None,
        delivered: None,
        aim: "-".into(),
    });
    net.shutdown().await;

    if json_out {
        let v: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({ "run": r.run, "msgs_per_s": r.rate, "p50_ms": r.p50, "p99_ms": r.p99,
                        "floor_p50_ms": r.floor.map(|f| f.0), "floor_p99_ms": r.floor.map(|f| f.1),
                        "delivered_p50_ms": r.delivered.map(|f| f.0), "delivered_p99_ms": r.delivered.map(|f| f.1),
                        "aim": r.aim })
            })
            .collect();
        let files: Vec<_> = file_rows
            .iter()
            .map(|r| {
                json!({ "run": r.run, "import_ms": r.import_ms, "mb_per_s": r.mb_s,
                        "bare_stream_mb_per_s": r.bare_mb_s })
            })
            .collect();
        ui::json(&json!({ "messages": v, "files": files }));
        return Ok(ExitCode::SUCCESS);
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.run.clone(),
                f(r.rate, 0),
                f(r.p50, 2),
                f(r.p99, 2),
                r.floor
                    .map(|(a, b)| format!("{a:.2} / {b:.2}"))
                    .unwrap_or("-".into()),
                r.floor
                    .zip(r.p50)
                    .map(|((fl, _), p)| format!("{:.1}x", p / fl))
                    .unwrap_or("-".into()),
                r.delivered
                    .map(|(a, b)| format!("{a:.2} / {b:.2}"))
                    .unwrap_or("-".into()),
                r.aim.clone(),
            ]
        })
        .collect();
    table(
        &[
            "run",
            "msgs/s",
            "ms p50",
            "ms p99",
            "bare stream p50 / p99",
            "p50 vs bare",
            "delivered p50 / p99",
            "aim",
        ],
        &cells,
    );
    let cells: Vec<Vec<String>> = file_rows
        .iter()
        .map(|r| {
            let stream_aim = r
                .bare_mb_s
                .map(|b| format!("; stream speed (≥ 0.8x bare): {:.2}x", r.mb_s / b / 0.8))
                .unwrap_or_else(|| "; over several 64 MiB circuits".into());
            vec![
                r.run.clone(),
                format!("{:.0}", r.import_ms),
                format!("{:.0}", r.mb_s),
                f(r.bare_mb_s, 0),
                r.bare_mb_s
                    .map(|b| format!("{:.2}x", r.mb_s / b))
                    .unwrap_or("-".into()),
                format!("≥ 100 MB/s: {:.2}x{stream_aim}", r.mb_s / 100.0),
            ]
        })
        .collect();
    println!();
    table(
        &[
            "file",
            "take in ms",
            "MB/s",
            "bare stream MB/s",
            "vs bare",
            "aim",
        ],
        &cells,
    );
    println!(
        "\nfiles: random bytes taken into the sender's file store (hashed, synced), then timed from the send call until the recipient has fetched every chunk (sealed, checked, written, synced) and the whole hashes to the offer; the bare stream moves the same bytes over one libp2p stream on the same path, unsealed and unwritten."
    );
    println!(
        "\nmsgs/s: {small} small or {large} large messages in flight through the API until the last arrives; latency: {trips} sent one by one once the burst before is acknowledged, send call to arrival event (shown once decrypted and checked) and to the sender's delivered. Each message is encrypted (Olm) and written to disk by the sender before it leaves and by the recipient before it is acknowledged."
    );
    Ok(ExitCode::SUCCESS)
}
