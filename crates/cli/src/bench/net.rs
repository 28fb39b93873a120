//! `nodus bench net`: stream throughput and round-trip latency between two nodes over
//! TCP and over QUIC on loopback, beside iperf3 and a plain TCP echo measured in the
//! same run.

use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::StreamProtocol;
use nodus_net::NetworkHandle;
use nodus_testnet::{Testnet, node_config, node_ip};
use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};

use crate::output::{self, table};

const PROTOCOL: StreamProtocol = StreamProtocol::new("/nodus/bench/1");
const CHUNK: usize = 256 * 1024;

/// Serves bench streams: `T` + u64 length: read that many bytes, answer one byte;
/// `E`: echo 32-byte blocks until the stream ends.
fn serve(net: &NetworkHandle) -> Result<()> {
    let mut incoming = net.incoming(PROTOCOL)?;
    tokio::spawn(async move {
        while let Some((_, mut s)) = incoming.next().await {
            tokio::spawn(async move {
                let mut mode = [0u8; 1];
                if s.read_exact(&mut mode).await.is_err() {
                    return;
                }
                match mode[0] {
                    b'T' => {
                        let mut len = [0u8; 8];
                        if s.read_exact(&mut len).await.is_err() {
                            return;
                        }
                        let mut left = u64::from_be_bytes(len);
                        let mut buf = vec![0u8; CHUNK];
                        while left > 0 {
                            let want = (left as usize).min(CHUNK);
                            match s.read(&mut buf[..want]).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => left -= n as u64,
                            }
                        }
                        let _ = s.write_all(b"k").await;
                        let _ = s.flush().await;
                    }
                    b'E' => {
                        let mut b = [0u8; 32];
                        while s.read_exact(&mut b).await.is_ok() {
                            if s.write_all(&b).await.is_err() || s.flush().await.is_err() {
                                return;
                            }
                        }
                    }
                    _ => {}
                }
            });
        }
    });
    Ok(())
}

struct Measured {
    mb_per_s: f64,
    rtt_p50_us: f64,
    rtt_p99_us: f64,
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// Runs the far end of the benchmark in this process until stdin closes: one node that
/// serves the bench protocol, its addresses printed as one JSON line.
pub async fn serve_process(ip: &str) -> Result<ExitCode> {
    let ip: std::net::Ipv4Addr = ip.parse().context("--ip must be an IPv4 address")?;
    let dir = tempfile::tempdir()?;
    let mut net = Testnet::start(0, dir.path()).await?;
    let mut cfg = node_config(ip, &[]);
    cfg.p2p.relay.enabled = false;
    let k = net.add_node(cfg).await?;
    serve(&net.node(k).net)?;
    let addr = |t: &str| net.node(k).p2p_addr(t).map(|a| a.to_string());
    println!(
        "{}",
        json!({ "tcp": addr("tcp"), "quic-v1": addr("quic-v1") })
    );
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    net.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Where the far end runs: a second node in this process, or `nodus bench net-serve` in
/// another one (as iperf3's server is).
#[derive(Clone, Copy, PartialEq)]
enum FarEnd {
    SameProcess,
    OtherProcess,
}

async fn measure_pair(
    transport: &str,
    first_node: usize,
    far: FarEnd,
    mib: usize,
    trips: usize,
) -> Result<Measured> {
    let dir = tempfile::tempdir()?;
    let mut net = Testnet::start(0, dir.path()).await?;
    let mut cfg_a = node_config(node_ip(first_node), &[]);
    cfg_a.p2p.relay.enabled = false;
    let a = net.add_node(cfg_a).await?;
    let mut server = None;
    let addr: libp2p::Multiaddr = match far {
        FarEnd::SameProcess => {
            let mut cfg_b = node_config(node_ip(first_node + 1), &[]);
            cfg_b.p2p.relay.enabled = false;
            let b = net.add_node(cfg_b).await?;
            serve(&net.node(b).net)?;
            net.node(b)
                .p2p_addr(transport)
                .ok_or_else(|| anyhow!("no {transport} listener"))?
        }
        FarEnd::OtherProcess => {
            let mut child = tokio::process::Command::new(std::env::current_exe()?)
                .args(["bench", "net-serve", "--ip"])
                .env("TOKIO_WORKER_THREADS", "1")
                .arg(node_ip(first_node + 1).to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()?;
            let out = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
            let mut line = String::new();
            tokio::io::BufReader::new(out).read_line(&mut line).await?;
            let v: serde_json::Value = serde_json::from_str(&line)
                .map_err(|e| anyhow!("bench server said {line:?}: {e}"))?;
            server = Some(child);
            v[transport]
                .as_str()
                .ok_or_else(|| anyhow!("bench server has no {transport} address"))?
                .parse()?
        }
    };
    let peer = net.node(a).net.dial(addr).await?;

    let mut s = net.node(a).net.open_stream(peer, PROTOCOL).await?;
    let total = (mib * 1024 * 1024) as u64;
    let buf = vec![0xA5u8; CHUNK];
    let t = Instant::now();
    s.write_all(b"T").await?;
    s.write_all(&total.to_be_bytes()).await?;
    let mut left = total;
    while left > 0 {
        let n = (left as usize).min(CHUNK);
        s.write_all(&buf[..n]).await?;
        left -= n as u64;
    }
    s.flush().await?;
    let mut ack = [0u8; 1];
    s.read_exact(&mut ack).await?;
    let secs = t.elapsed().as_secs_f64();
    let mb_per_s = total as f64 / secs / 1e6;

    let mut e = net.node(a).net.open_stream(peer, PROTOCOL).await?;
    e.write_all(b"E").await?;
    let mut rtts = Vec::with_capacity(trips);
    let mut block = [7u8; 32];
    for _ in 0..trips {
        let t = Instant::now();
        e.write_all(&block).await?;
        e.flush().await?;
        e.read_exact(&mut block).await?;
        rtts.push(t.elapsed());
    }
    rtts.sort();
    let m = Measured {
        mb_per_s,
        rtt_p50_us: percentile(&rtts, 0.5),
        rtt_p99_us: percentile(&rtts, 0.99),
    };
    drop(s);
    drop(e);
    net.shutdown().await;
    if let Some(mut child) = server {
        drop(child.stdin.take());
        let _ = child.wait().await;
    }
    Ok(m)
}

/// A plain TCP echo of 32-byte blocks on loopback: the floor for round-trip latency.
async fn tcp_echo(trips: usize) -> Result<(f64, f64)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Ok((mut s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            let mut b = [0u8; 32];
            while s.read_exact(&mut b).await.is_ok() {
                if s.write_all(&b).await.is_err() {
                    return;
                }
            }
        }
    });
    let mut c = tokio::net::TcpStream::connect(addr).await?;
    c.set_nodelay(true)?;
    let mut rtts = Vec::with_capacity(trips);
    let mut b = [1u8; 32];
    for _ in 0..trips {
        let t = Instant::now();
        c.write_all(&b).await?;
        c.read_exact(&mut b).await?;
        rtts.push(t.elapsed());
    }
    rtts.sort();
    Ok((percentile(&rtts, 0.5), percentile(&rtts, 0.99)))
}

/// iperf3 over loopback TCP: (MB/s received, mean kernel RTT in µs).
async fn iperf3(mib: usize) -> Result<(f64, f64)> {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let mut server = tokio::process::Command::new("iperf3")
        .args(["-s", "-1", "-B", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("iperf3 is not installed: `apt-get install iperf3` (scripts/test does it)")?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = tokio::process::Command::new("iperf3")
        .args([
            "-c",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-n",
            &format!("{mib}M"),
            "-J",
        ])
        .output()
        .await?;
    let _ = server.wait().await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        anyhow!(
            "iperf3 printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .filter(|b| *b > 0.0)
        .ok_or_else(|| anyhow!("iperf3 measured no throughput (is --mib too small?)"))?;
    let rtt = v["end"]["streams"][0]["sender"]["mean_rtt"]
        .as_f64()
        .unwrap_or(0.0);
    Ok((bps / 8.0 / 1e6, rtt))
}

pub async fn run(mib: usize, trips: usize, json_out: bool) -> Result<ExitCode> {
    if mib == 0 || trips == 0 {
        return Err(anyhow!("--mib and --round-trips must be at least 1"));
    }
    eprintln!("nodus bench net: {mib} MiB per throughput run, {trips} round trips per latency run");
    let pb = crate::demo::spinner("iperf3 and a plain TCP echo");
    let reference = iperf3(mib).await;
    pb.finish_and_clear();
    let (iperf_mbs, iperf_rtt) = match reference {
        Ok(v) => (Some(v.0), Some(v.1)),
        Err(e) => {
            eprintln!("iperf3: {e:#}");
            (None, None)
        }
    };
    let (echo_p50, echo_p99) = tcp_echo(trips).await?;
    let runs = [
        (
            "TCP+Noise+Yamux, 2 processes",
            "tcp",
            100,
            FarEnd::OtherProcess,
        ),
        ("QUIC, 2 processes", "quic-v1", 110, FarEnd::OtherProcess),
        (
            "TCP+Noise+Yamux, 1 process",
            "tcp",
            120,
            FarEnd::SameProcess,
        ),
        ("QUIC, 1 process", "quic-v1", 130, FarEnd::SameProcess),
    ];
    let mut measured = Vec::new();
    for (label, transport, first, far) in runs {
        let pb = crate::demo::spinner(&format!("nodus {label}"));
        let m = measure_pair(transport, first, far, mib, trips).await;
        pb.finish_and_clear();
        measured.push((label, transport, far, m?));
    }

    let ratio = |a: f64| {
        iperf_mbs
            .map(|b| format!("{:.2}", a / b))
            .unwrap_or("n/a".into())
    };
    let mut rows = vec![
        vec![
            "iperf3 (TCP, 2 processes)".into(),
            iperf_mbs.map(|v| format!("{v:.0}")).unwrap_or("n/a".into()),
            "1.00".into(),
            "-".into(),
            "-".into(),
            iperf_rtt
                .map(|r| format!("kernel mean rtt {r:.0} µs"))
                .unwrap_or("not installed".into()),
        ],
        vec![
            "plain TCP echo".into(),
            "-".into(),
            "-".into(),
            format!("{echo_p50:.0}"),
            format!("{echo_p99:.0}"),
            "floor for rtt".into(),
        ],
    ];
    for (label, _, _, m) in &measured {
        rows.push(vec![
            format!("nodus {label}"),
            format!("{:.0}", m.mb_per_s),
            ratio(m.mb_per_s),
            format!("{:.0}", m.rtt_p50_us),
            format!("{:.0}", m.rtt_p99_us),
            format!("rtt {:.1}x echo", m.rtt_p50_us / echo_p50),
        ]);
    }
    if json_out {
        let runs: Vec<serde_json::Value> = measured
            .iter()
            .map(|(label, transport, far, m)| {
                json!({
                    "label": label,
                    "transport": transport,
                    "processes": if *far == FarEnd::OtherProcess { 2 } else { 1 },
                    "mb_per_s": m.mb_per_s,
                    "ratio_to_iperf3": iperf_mbs.map(|b| m.mb_per_s / b),
                    "rtt_p50_us": m.rtt_p50_us,
                    "rtt_p99_us": m.rtt_p99_us,
                })
            })
            .collect();
        output::json(&json!({
            "mib": mib, "round_trips": trips,
            "iperf3": { "mb_per_s": iperf_mbs, "mean_rtt_us": iperf_rtt },
            "tcp_echo": { "rtt_p50_us": echo_p50, "rtt_p99_us": echo_p99 },
            "nodus": runs,
        }));
    } else {
        table(
            &[
                "path",
                "MB/s",
                "ratio to iperf3",
                "rtt p50 µs",
                "rtt p99 µs",
                "note",
            ],
            &rows,
        );
    }
    Ok(ExitCode::SUCCESS)
}
