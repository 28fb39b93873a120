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
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

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

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

async fn measure_pair(
    transport: &str,
    first_node: usize,
    mib: usize,
    trips: usize,
) -> Result<Measured> {
    let dir = tempfile::tempdir()?;
    let mut net = Testnet::start(0, dir.path()).await?;
    let mut cfg_a = node_config(node_ip(first_node), &[]);
    let mut cfg_b = node_config(node_ip(first_node + 1), &[]);
    cfg_a.p2p.relay.enabled = false;
    cfg_b.p2p.relay.enabled = false;
    let a = net.add_node(cfg_a).await?;
    let b = net.add_node(cfg_b).await?;
    serve(&net.node(b).net)?;
    let addr = net
        .node(b)
        .p2p_addr(transport)
        .ok_or_else(|| anyhow!("no {transport} listener"))?;
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
        .ok_or_else(|| anyhow!("iperf3 JSON without end.sum_received"))?;
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
    let (iperf_mbs, iperf_rtt) = match iperf3(mib).await {
        Ok(v) => (Some(v.0), Some(v.1)),
        Err(e) => {
            eprintln!("iperf3: {e:#}");
            (None, None)
        }
    };
    let (echo_p50, echo_p99) = tcp_echo(trips).await?;
    let tcp = measure_pair("tcp", 100, mib, trips).await?;
    let quic = measure_pair("quic-v1", 110, mib, trips).await?;

    let ratio = |a: f64, b: Option<f64>| b.map(|b| format!("{:.2}", a / b)).unwrap_or("n/a".into());
    let f = |v: Option<f64>| v.map(|v| format!("{v:.0}")).unwrap_or("n/a".into());
    let rows = vec![
        vec![
            "iperf3 (TCP)".into(),
            f(iperf_mbs),
            "1.00".into(),
            "-".into(),
            "-".into(),
            iperf_rtt
                .map(|r| format!("{r:.0} (kernel mean)"))
                .unwrap_or("n/a".into()),
        ],
        vec![
            "plain TCP echo".into(),
            "-".into(),
            "-".into(),
            format!("{echo_p50:.0}"),
            format!("{echo_p99:.0}"),
            "-".into(),
        ],
        vec![
            "nodus TCP+Noise+Yamux".into(),
            format!("{:.0}", tcp.mb_per_s),
            ratio(tcp.mb_per_s, iperf_mbs),
            format!("{:.0}", tcp.rtt_p50_us),
            format!("{:.0}", tcp.rtt_p99_us),
            format!("{:.2}x echo p50", tcp.rtt_p50_us / echo_p50),
        ],
        vec![
            "nodus QUIC".into(),
            format!("{:.0}", quic.mb_per_s),
            ratio(quic.mb_per_s, iperf_mbs),
            format!("{:.0}", quic.rtt_p50_us),
            format!("{:.0}", quic.rtt_p99_us),
            format!("{:.2}x echo p50", quic.rtt_p50_us / echo_p50),
        ],
    ];
    if json_out {
        output::json(&json!({
            "mib": mib, "round_trips": trips,
            "iperf3": { "mb_per_s": iperf_mbs, "mean_rtt_us": iperf_rtt },
            "tcp_echo": { "rtt_p50_us": echo_p50, "rtt_p99_us": echo_p99 },
            "nodus_tcp": { "mb_per_s": tcp.mb_per_s, "ratio_to_iperf3": iperf_mbs.map(|b| tcp.mb_per_s / b), "rtt_p50_us": tcp.rtt_p50_us, "rtt_p99_us": tcp.rtt_p99_us },
            "nodus_quic": { "mb_per_s": quic.mb_per_s, "ratio_to_iperf3": iperf_mbs.map(|b| quic.mb_per_s / b), "rtt_p50_us": quic.rtt_p50_us, "rtt_p99_us": quic.rtt_p99_us },
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
