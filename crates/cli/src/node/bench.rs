//! `nodus bench net`: stream throughput and round-trip latency between two nodes over
//! TCP and over QUIC on loopback, beside iperf3 and a plain TCP echo measured in the
//! same run.
//!
//! Each throughput figure is the median of `--repeat` transfers (iperf3's too), and the
//! range is printed beside it: on a shared 2-core VM one transfer can land anywhere
//! within about ±20%.

use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::StreamProtocol;
use nodus_net::NetworkHandle;
use nodus_testnet::{Testnet, node_config, node_ip};
use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};

use crate::ui::stats::percentile;
use crate::ui::{self, table};

/// `nodus bench net` (flattened into `nodus bench`).
#[derive(clap::Subcommand, Debug)]
pub enum Area {
    /// The far end of `bench net` in its own process (used by `bench net` itself)
    #[command(hide = true)]
    NetServe {
        #[arg(long)]
        ip: String,
    },
    /// Stream throughput and round-trip latency over TCP and QUIC, beside iperf3
    Net {
        /// MiB sent per throughput run
        #[arg(long, default_value_t = 1024)]
        mib: usize,
        /// Round trips per latency run
        #[arg(long, default_value_t = 2000)]
        round_trips: usize,
        /// Transfers per throughput figure (the median is printed, and the range)
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
}

impl Area {
    pub async fn run(self, json: bool) -> Result<ExitCode> {
        match self {
            Area::NetServe { ip } => serve_process(&ip).await,
            Area::Net {
                mib,
                round_trips,
                repeat,
            } => {
                let sizes = Sizes {
                    mib,
                    trips: round_trips,
                    repeat,
                };
                run(sizes, json).await
            }
        }
    }
}

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
    /// Every transfer's MB/s, in the order measured.
    runs: Vec<f64>,
    rtt_p50_us: f64,
    rtt_p99_us: f64,
}

impl Measured {
    fn mb_per_s(&self) -> f64 {
        median(&self.runs)
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn range(v: &[f64]) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(0.0, f64::max);
    format!("{lo:.0}-{hi:.0}")
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

/// Sends `total` bytes on a new stream and waits for the far end's one-byte receipt:
/// MB/s.
async fn transfer(net: &NetworkHandle, peer: libp2p::PeerId, total: u64) -> Result<f64> {
    let mut s = net.open_stream(peer, PROTOCOL).await?;
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
    Ok(total as f64 / t.elapsed().as_secs_f64() / 1e6)
}

async fn measure_pair(
    transport: &str,
    first_node: usize,
    far: FarEnd,
    sizes: Sizes,
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

    let mut runs = Vec::with_capacity(sizes.repeat);
    for _ in 0..sizes.repeat {
        runs.push(transfer(&net.node(a).net, peer, sizes.bytes()).await?);
    }

    let mut e = net.node(a).net.open_stream(peer, PROTOCOL).await?;
    e.write_all(b"E").await?;
    let mut rtts = Vec::with_capacity(sizes.trips);
    let mut block = [7u8; 32];
    for _ in 0..sizes.trips {
        let t = Instant::now();
        e.write_all(&block).await?;
        e.flush().await?;
        e.read_exact(&mut block).await?;
        rtts.push(t.elapsed());
    }
    rtts.sort();
    let m = Measured {
        runs,
        rtt_p50_us: percentile(&rtts, 0.5),
        rtt_p99_us: percentile(&rtts, 0.99),
    };
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

/// How much each measurement moves.
#[derive(Clone, Copy)]
pub struct Sizes {
    pub mib: usize,
    pub trips: usize,
    pub repeat: usize,
}

impl Sizes {
    fn bytes(&self) -> u64 {
        (self.mib * 1024 * 1024) as u64
    }
}

pub async fn run(sizes: Sizes, json_out: bool) -> Result<ExitCode> {
    let Sizes { mib, trips, repeat } = sizes;
    if mib == 0 || trips == 0 || repeat == 0 {
        return Err(anyhow!(
            "--mib, --round-trips and --repeat must each be at least 1"
        ));
    }
    eprintln!(
        "nodus bench net: {mib} MiB per transfer, median of {repeat}; {trips} round trips per latency run"
    );
    let pb = crate::ui::progress::spinner("iperf3 and a plain TCP echo");
    let mut iperf_runs = Vec::with_capacity(repeat);
    let mut iperf_rtt = None;
    for _ in 0..repeat {
        match iperf3(mib).await {
            Ok((mbs, rtt)) => {
                iperf_runs.push(mbs);
                iperf_rtt = Some(rtt);
            }
            Err(e) => {
                eprintln!("iperf3: {e:#}");
                break;
            }
        }
    }
    pb.finish_and_clear();
    let iperf_mbs = (!iperf_runs.is_empty()).then(|| median(&iperf_runs));
    let (echo_p50, echo_p99) = tcp_echo(trips).await?;
    let runs = [
        (
            "TCP+TLS+Yamux, 2 processes",
            "tcp",
            100,
            FarEnd::OtherProcess,
        ),
        ("QUIC, 2 processes", "quic-v1", 110, FarEnd::OtherProcess),
        ("TCP+TLS+Yamux, 1 process", "tcp", 120, FarEnd::SameProcess),
        ("QUIC, 1 process", "quic-v1", 130, FarEnd::SameProcess),
    ];
    let mut measured = Vec::new();
    for (label, transport, first, far) in runs {
        let pb = crate::ui::progress::spinner(&format!("nodus {label}"));
        let m = measure_pair(transport, first, far, sizes).await;
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
            if iperf_runs.is_empty() {
                "-".into()
            } else {
                range(&iperf_runs)
            },
            "1.00".into(),
            "-".into(),
            "-".into(),
            iperf_rtt
                .map(|r| format!("kernel mean rtt {r:.0} µs"))
                .unwrap_or("not installed".into()),
            "-".into(),
        ],
        vec![
            "plain TCP echo".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            format!("{echo_p50:.0}"),
            format!("{echo_p99:.0}"),
            "floor for rtt".into(),
            "-".into(),
        ],
    ];
    // Issue 24's aims: at least half of iperf3's throughput, round trips under 5x the
    // plain TCP echo's.
    let aim = |mbs: f64, rtt: f64| {
        let throughput = match iperf_mbs {
            Some(b) => format!("≥ 0.5 of iperf3: {}", if mbs / b >= 0.5 { "met" } else { "not met" }),
            None => "≥ 0.5 of iperf3: n/a".to_string(),
        };
        let ratio = rtt / echo_p50;
        format!(
            "{throughput}; rtt < 5x echo: {}",
            if ratio < 5.0 { "met" } else { "not met" }
        )
    };
    for (label, _, _, m) in &measured {
        rows.push(vec![
            format!("nodus {label}"),
            format!("{:.0}", m.mb_per_s()),
            range(&m.runs),
            ratio(m.mb_per_s()),
            format!("{:.0}", m.rtt_p50_us),
            format!("{:.0}", m.rtt_p99_us),
            format!("rtt {:.1}x echo", m.rtt_p50_us / echo_p50),
            aim(m.mb_per_s(), m.rtt_p50_us),
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
                    "mb_per_s": m.mb_per_s(),
                    "mb_per_s_runs": m.runs,
                    "ratio_to_iperf3": iperf_mbs.map(|b| m.mb_per_s() / b),
                    "rtt_p50_us": m.rtt_p50_us,
                    "rtt_p99_us": m.rtt_p99_us,
                })
            })
            .collect();
        ui::json(&json!({
            "mib": mib, "round_trips": trips, "repeat": repeat,
            "iperf3": { "mb_per_s": iperf_mbs, "mb_per_s_runs": iperf_runs, "mean_rtt_us": iperf_rtt },
            "tcp_echo": { "rtt_p50_us": echo_p50, "rtt_p99_us": echo_p99 },
            "nodus": runs,
        }));
    } else {
        table(
            &[
                "path",
                "MB/s",
                "runs",
                "ratio to iperf3",
                "rtt p50 µs",
                "rtt p99 µs",
                "note",
                "aim",
            ],
            &rows,
        );
    }
    Ok(ExitCode::SUCCESS)
}
