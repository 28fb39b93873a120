//! `nodus bench voice`: what a call sounds like and costs, and what one relay carries.
//!
//! - Six calls, the same espeak-ng sentence each, on real UDP sockets through the code
//!   a node runs (`Session`: Opus, SRTP, jitter buffer, routes): direct and through one
//!   relay, clean and with 20 ms one way, up to 30 ms jitter and 5% loss each way
//!   (the harness's user-space impairment proxy); at 48 kHz (scored after ffmpeg
//!   brings the recording to 16 kHz); over a 40 kbps link with a 3 s buffer (the
//!   longest queue and the lowest bitrate show the bandwidth estimate at work). For
//!   each: PESQ (P.862 wideband) of
//!   what was heard, the mouth-to-ear delay (p50/p99 over each second of speech, by
//!   cross-correlation), CPU per call end. The reference: the same speech through
//!   ffmpeg's libopus at the same bitrate, no network (the codec's own ceiling).
//! - How many calls one relay (the forwarding loop a relay node runs, on a thread of its
//!   own) carries at under 1% added loss: each call two endpoints sending a 160-byte
//!   datagram every 20 ms, the load raised step by step.
//!
//! Anchors (issue 23): ITU-T G.114 recommends under 150 ms one way; a good Opus call
//! scores PESQ about 4. Aims: mouth to ear under 60 ms through a relay on loopback,
//! PESQ at least 4.0 clean, at least 500 calls through one relay.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use nodus_testnet::impair;
use nodus_voice::codec::{DEFAULT_BITRATE, SampleRate};
use nodus_voice::measure::{mouth_to_ear, percentile};
use nodus_voice::pair::talk_at;
use nodus_voice::relay::{Limits, Relay, TOKEN_LEN, Token};
use nodus_voice::session::{Route, Session};
use serde_json::json;
use tokio::net::UdpSocket;

use super::speech;
use crate::ui::progress::spinner;
use crate::ui::stats::{cpu_secs, thread_cpu_secs};
use crate::ui::{self, table};

/// `nodus bench voice` (flattened into `nodus bench`).
#[derive(clap::Subcommand, Debug)]
pub enum Area {
    /// Voice calls: PESQ, mouth-to-ear delay and CPU per call, direct and through a
    /// relay, clean and impaired, beside ffmpeg's libopus; calls one relay carries
    Voice {
        /// The most calls the relay load goes up to
        #[arg(long, default_value_t = 1500)]
        max_calls: usize,
        /// Seconds each relay load step runs
        #[arg(long, default_value_t = 4)]
        seconds: u64,
    },
}

impl Area {
    pub async fn run(self, json: bool) -> Result<ExitCode> {
        let Area::Voice { max_calls, seconds } = self;
        run(max_calls.max(1), seconds.max(1), json).await
    }
}

struct CallFigures {
    what: &'static str,
    pesq: Option<f64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    cpu_pct: f64,
    lost: u64,
    /// The longest queue B measured on the path, the lowest bitrate A sent at.
    worst_queue_ms: f64,
    lowest_bitrate: i32,
}

const ONE_WAY: Duration = Duration::from_millis(20);
const JITTER: Duration = Duration::from_millis(30);
const LOSS: f64 = 0.05;
/// The narrow link: 40 kbps with three seconds of buffer.
const NARROW_BPS: u64 = 40_000;
const NARROW_BUFFER: Duration = Duration::from_secs(3);

async fn udp() -> Result<UdpSocket> {
    Ok(UdpSocket::bind("127.0.0.1:0").await?)
}

/// The way from A to B in a benchmark call.
#[derive(Clone, Copy, PartialEq)]
enum Way {
    Direct,
    Relay,
    /// Through the impairment proxy (delay, jitter, loss), directly or to the relay.
    Impaired { relay: bool },
    /// Directly, over a narrow link with a deep buffer.
    Narrow,
}

/// One call of the sentence, A to B, both ends at `rate`; `said` is at 16 kHz (and
/// `said48` at 48 kHz, for a fullband call).
async fn one_call(
    dir: &Path,
    said: &[i16],
    said48: Option<&[i16]>,
    what: &'static str,
    way: Way,
) -> Result<CallFigures> {
    let (sa, sb) = (udp().await?, udp().await?);
    let b_addr = sb.local_addr()?;
    let any: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    // Kept alive for the call: the relay's task and the proxy.
    let mut _relay_task = None;
    let mut _proxy = None;
    let relayed = matches!(way, Way::Relay | Way::Impaired { relay: true });
    let (target, b_routes) = if relayed {
        let relay = Relay::bind("127.0.0.1:0", Limits::default()).await?;
        _relay_task = Some(tokio::spawn(relay.clone().run()));
        let (ta, tb) = relay.allocate()?;
        ((relay.addr(), Some(ta)), vec![Route::Relay { relay: relay.addr(), token: tb }])
    } else {
        ((b_addr, None), vec![])
    };
    let a_to = match way {
        Way::Impaired { .. } => Some(impair::udp_impair(any, target.0, ONE_WAY, JITTER, LOSS).await?),
        Way::Narrow => Some(impair::udp_bottleneck(any, target.0, NARROW_BPS, NARROW_BUFFER).await?),
        Way::Direct | Way::Relay => None,
    }
    .map_or(target.0, |p| {
        let addr = p.addr;
        _proxy = Some(p);
        addr
    });
    let a_routes = match target.1 {
        Some(token) => vec![Route::Relay { relay: a_to, token }],
        None => vec![Route::Direct(a_to)],
    };
    let (a, b) = (Arc::new(Session::new(sa, a_routes)), Arc::new(Session::new(sb, b_routes)));
    let (rate, input) = match said48 {
        Some(pcm) => (SampleRate::FULLBAND, pcm),
        None => (SampleRate::WIDEBAND, said),
    };
    let cpu0 = cpu_secs(std::process::id()).unwrap_or(0.0);
    let t = Instant::now();
    let talked = talk_at(a, b, input.to_vec(), rate, DEFAULT_BITRATE, Duration::from_secs(1), async {}).await?;
    let wall = t.elapsed().as_secs_f64();
    let cpu = cpu_secs(std::process::id()).unwrap_or(0.0) - cpu0;
    let said_path = dir.join("said.wav");
    let name = what.replace([' ', ',', '%'], "-");
    let heard_path = dir.join(format!("heard-{name}.wav"));
    let heard = if rate == SampleRate::WIDEBAND {
        nodus_voice::wav::write(&heard_path, &talked.heard)?;
        talked.heard.clone()
    } else {
        // PESQ scores 16 kHz: ffmpeg's resampler brings the recording there.
        let full = dir.join(format!("heard-{name}-48k.wav"));
        nodus_voice::wav::write_at(&full, rate, &talked.heard)?;
        ffmpeg_resample(&full, 16_000, &heard_path)?;
        nodus_voice::wav::read(&heard_path)?
    };
    let delays = mouth_to_ear(said, talked.a.started_unix_us, &heard, talked.b.started_unix_us, 2000);
    Ok(CallFigures {
        what,
        pesq: speech::pesq(&said_path, &heard_path)?,
        p50_ms: percentile(&delays, 50.0),
        p99_ms: percentile(&delays, 99.0),
        // Two ends ran in this process.
        cpu_pct: 100.0 * cpu / wall / 2.0,
        lost: talked.b.lost,
        worst_queue_ms: talked.b.worst_queue_ms,
        lowest_bitrate: talked.a.lowest_bitrate,
    })
}

/// `from` at `hz` into `to` (16-bit mono), by ffmpeg.
fn ffmpeg_resample(from: &Path, hz: u32, to: &Path) -> Result<()> {
    let ok = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-i"])
        .arg(from)
        .args(["-ar", &hz.to_string(), "-ac", "1", "-sample_fmt", "s16"])
        .arg(to)
        .status()
        .context("ffmpeg resamples the fullband call (apt-get install ffmpeg; scripts/test does)")?;
    anyhow::ensure!(ok.success(), "ffmpeg could not resample {}", from.display());
    Ok(())
}

/// The same speech through ffmpeg's libopus at the same bitrate (encode, decode; no
/// network): None when ffmpeg or its libopus is missing.
fn ffmpeg_opus(dir: &Path) -> Result<Option<f64>> {
    let (said, opus, back) = (dir.join("said.wav"), dir.join("ref.opus"), dir.join("ref.wav"));
    let enc = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-i"])
        .arg(&said)
        .args(["-c:a", "libopus", "-b:a", &DEFAULT_BITRATE.to_string(), "-application", "voip", "-frame_duration", "20"])
        .arg(&opus)
        .status();
    if !enc.is_ok_and(|s| s.success()) {
        return Ok(None);
    }
    let dec = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-i"])
        .arg(&opus)
        .args(["-ar", "16000", "-ac", "1", "-sample_fmt", "s16"])
        .arg(&back)
        .status()?;
    if !dec.success() {
        return Ok(None);
    }
    speech::pesq(&said, &back)
}

/// Sent and received datagrams of one relay load step, and the relay thread's CPU.
struct Load {
    calls: usize,
    sent: u64,
    received: u64,
    relay_cpu_pct: f64,
}

impl Load {
    fn loss(&self) -> f64 {
        if self.sent == 0 {
            return 1.0;
        }
        1.0 - self.received as f64 / self.sent as f64
    }
}

/// Datagrams a call end sends: a 160-byte SRTP packet's size.
const PACKET: usize = 160;
/// Sockets each side of the load uses (calls share them; the relay keys sides by token).
const SOCKETS: usize = 8;

/// `calls` calls through one relay for `secs` seconds (after one second to warm up).
async fn relay_load(calls: usize, secs: u64) -> Result<Load> {
    // The relay on a thread and runtime of its own, as a relay node's loop would be.
    let limits = Limits {
        max_allocations: calls + 8,
        ..Limits::default()
    };
    let (relay_tx, relay_rx) = std::sync::mpsc::channel();
    let tid = Arc::new(AtomicI32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let (tid, stop) = (tid.clone(), stop.clone());
        std::thread::spawn(move || -> Result<()> {
            // SAFETY: gettid only returns this thread's id.
            tid.store(unsafe { libc::gettid() }, Ordering::Relaxed);
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async move {
                let relay = Relay::bind("127.0.0.1:0", limits).await?;
                relay_tx.send(relay.clone()).map_err(|_| anyhow!("bench gone"))?;
                let run = relay.run();
                tokio::pin!(run);
                loop {
                    tokio::select! {
                        _ = &mut run => return Ok(()),
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {
                            if stop.load(Ordering::Relaxed) { return Ok(()); }
                        }
                    }
                }
            })
        })
    };
    let relay = tokio::task::spawn_blocking(move || relay_rx.recv())
        .await?
        .context("the relay thread did not start")?;
    let tokens: Vec<(Token, Token)> = (0..calls)
        .map(|_| relay.allocate())
        .collect::<Result<_, _>>()?;
    let mut sides = Vec::new();
    for _ in 0..2 * SOCKETS {
        let s = UdpSocket::bind("127.0.0.1:0").await?;
        let sock = socket2::SockRef::from(&s);
        let _ = sock.set_recv_buffer_size(4 << 20);
        let _ = sock.set_send_buffer_size(4 << 20);
        sides.push(Arc::new(s));
    }
    let received = Arc::new(AtomicU64::new(0));
    let counting = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for s in &sides {
        let (s, received) = (s.clone(), received.clone());
        readers.push(tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok(n) = s.recv(&mut buf).await {
                // Counted when it was sent in the window (its first byte says so).
                if n == PACKET - TOKEN_LEN && buf[0] == 1 {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let to = relay.addr();
    let sent = Arc::new(AtomicU64::new(0));
    // Every 5 ms a quarter of the calls send from both ends: each end every 20 ms.
    let sender = {
        let (sides, sent, counting) = (sides.clone(), sent.clone(), counting.clone());
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            let mut packet = [0u8; PACKET];
            let mut round = 0usize;
            loop {
                tick.tick().await;
                let counted = counting.load(Ordering::Relaxed);
                packet[TOKEN_LEN] = counted as u8;
                for (i, (ta, tb)) in tokens.iter().enumerate().filter(|(i, _)| i % 4 == round % 4) {
                    for (side, token) in [(i % SOCKETS, ta), (SOCKETS + i % SOCKETS, tb)] {
                        packet[..TOKEN_LEN].copy_from_slice(token);
                        if sides[side].send_to(&packet, to).await.is_ok() && counted {
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                round += 1;
            }
        }
    };
    let sending = tokio::spawn(sender);
    // Warm up: every side's address known to the relay.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tid = tid.load(Ordering::Relaxed);
    let cpu0 = thread_cpu_secs(tid).unwrap_or(0.0);
    let t = Instant::now();
    counting.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    counting.store(false, Ordering::Relaxed);
    // What was in flight lands (or not) within this; the sender finishes the round it
    // was in (still counted) before `sent` is read.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent_n = sent.load(Ordering::Relaxed);
    let relay_cpu = thread_cpu_secs(tid).unwrap_or(0.0) - cpu0;
    let wall = t.elapsed().as_secs_f64();
    sending.abort();
    for r in readers {
        r.abort();
    }
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    Ok(Load {
        calls,
        sent: sent_n,
        received: received.load(Ordering::Relaxed),
        relay_cpu_pct: 100.0 * relay_cpu / wall,
    })
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |x| format!("{x:.digits$}"))
}

async fn run(max_calls: usize, secs: u64, json: bool) -> Result<ExitCode> {
    let dir = tempfile::tempdir()?;
    let said = speech::speak(&dir.path().join("said.wav"))?;
    let pb = spinner("ffmpeg's libopus on the same speech");
    let reference = ffmpeg_opus(dir.path())?;
    pb.finish_and_clear();
    let mut calls = Vec::new();
    let said48_path = dir.path().join("said-48k.wav");
    ffmpeg_resample(&dir.path().join("said.wav"), 48_000, &said48_path)?;
    let said48 = nodus_voice::wav::read_at(&said48_path, SampleRate::FULLBAND)?;
    for (what, way, fullband) in [
        ("direct, clean", Way::Direct, false),
        ("one relay, clean", Way::Relay, false),
        ("direct, 5% loss, 30 ms jitter", Way::Impaired { relay: false }, false),
        ("one relay, 5% loss, 30 ms jitter", Way::Impaired { relay: true }, false),
        ("direct, clean, 48 kHz", Way::Direct, true),
        ("direct, 40 kbps link, 3 s buffer", Way::Narrow, false),
    ] {
        let pb = spinner(&format!("a call: {what}"));
        let said48 = fullband.then_some(&said48[..]);
        calls.push(one_call(dir.path(), &said, said48, what, way).await?);
        pb.finish_and_clear();
    }
    let mut loads = Vec::new();
    let mut steps: Vec<usize> = [100, 250, 500, 600, 750, 1000, 1250, 1500, 2000, 3000]
        .into_iter()
        .filter(|n| *n < max_calls)
        .collect();
    steps.push(max_calls);
    for n in steps {
        let pb = spinner(&format!("{n} calls through one relay"));
        let l = relay_load(n, secs).await?;
        pb.finish_and_clear();
        let over = l.loss() >= 0.01;
        loads.push(l);
        if over {
            break;
        }
    }
    let carried = loads
        .iter()
        .filter(|l| l.loss() < 0.01)
        .map(|l| l.calls)
        .max()
        .unwrap_or(0);

    if json {
        ui::json(&json!({
            "reference_pesq_ffmpeg_libopus": reference,
            "calls": calls.iter().map(|c| json!({
                "what": c.what, "pesq": c.pesq, "mouth_to_ear_p50_ms": c.p50_ms,
                "mouth_to_ear_p99_ms": c.p99_ms, "cpu_percent_per_call_end": c.cpu_pct,
                "frames_lost": c.lost, "worst_queue_ms": c.worst_queue_ms,
                "lowest_bitrate": c.lowest_bitrate,
            })).collect::<Vec<_>>(),
            "relay": loads.iter().map(|l| json!({
                "calls": l.calls, "sent": l.sent, "received": l.received,
                "loss": l.loss(), "relay_cpu_percent": l.relay_cpu_pct,
            })).collect::<Vec<_>>(),
            "calls_one_relay_carries": carried,
        }));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "nodus bench voice: the same espeak-ng sentence ({:.1} s) in each call, Opus at {} kbps; reference: ffmpeg's libopus on it, no network",
        said.len() as f64 / 16_000.0,
        DEFAULT_BITRATE / 1000
    );
    let mut rows = Vec::new();
    for c in &calls {
        // (At 48 kHz the bits also carry what wideband PESQ does not hear: no aim.)
        let aim = if c.what.contains("48 kHz") {
            "-"
        } else if c.what.contains("clean") {
            "at least 4.0"
        } else if c.what.contains("loss") {
            "above 3.0"
        } else {
            "-"
        };
        rows.push(vec![
            format!("PESQ, {}", c.what),
            opt(c.pesq, 2),
            opt(reference, 2),
            match (c.pesq, reference) {
                (Some(p), Some(r)) => format!("{:.2}x", p / r),
                _ => "-".into(),
            },
            aim.into(),
        ]);
    }
    for c in &calls {
        let through_relay_clean = c.what == "one relay, clean";
        rows.push(vec![
            format!("mouth to ear p50 / p99, {}", c.what),
            format!("{} / {} ms", opt(c.p50_ms, 0), opt(c.p99_ms, 0)),
            "150 ms (G.114)".into(),
            c.p50_ms.map_or("-".into(), |d| format!("{:.2}x", d / 150.0)),
            if through_relay_clean { "under 60 ms".into() } else { "-".into() },
        ]);
    }
    for c in &calls {
        rows.push(vec![
            format!("CPU per call end, {}", c.what),
            format!("{:.1}% of a core", c.cpu_pct),
            "-".into(),
            "-".into(),
            "-".into(),
        ]);
    }
    for c in calls.iter().filter(|c| c.what.contains("kbps link")) {
        rows.push(vec![
            format!("longest queue / frames lost, {}", c.what),
            format!("{:.0} ms / {}", c.worst_queue_ms, c.lost),
            format!("{} ms (the buffer)", NARROW_BUFFER.as_millis()),
            format!("{:.2}x", c.worst_queue_ms / NARROW_BUFFER.as_millis() as f64),
            "under 1000 ms / 0".into(),
        ]);
        rows.push(vec![
            format!("lowest Opus bitrate, {}", c.what),
            format!("{:.1} kbps", c.lowest_bitrate as f64 / 1000.0),
            format!("{:.0} kbps (the link)", NARROW_BPS as f64 / 1000.0),
            format!("{:.2}x", c.lowest_bitrate as f64 / NARROW_BPS as f64),
            "under the link less headers".into(),
        ]);
    }
    rows.push(vec![
        "calls one relay carries at under 1% loss".into(),
        carried.to_string(),
        "500 (aim)".into(),
        format!("{:.2}x", carried as f64 / 500.0),
        "at least 500".into(),
    ]);
    table(&["", "nodus", "reference", "ratio", "aim"], &rows);
    println!();
    let load_rows: Vec<Vec<String>> = loads
        .iter()
        .map(|l| {
            vec![
                l.calls.to_string(),
                format!("{:.0}", l.sent as f64 / secs as f64),
                format!("{:.2}%", 100.0 * l.loss()),
                format!("{:.0}%", l.relay_cpu_pct),
            ]
        })
        .collect();
    table(&["calls through one relay", "datagrams/s in", "loss", "relay thread CPU"], &load_rows);
    Ok(ExitCode::SUCCESS)
}
