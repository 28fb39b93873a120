//! `nodus bench onion`: what a three-hop circuit costs, on loopback in one process.
//! - Building a circuit through three relays (three ntor handshakes, two extensions).
//! - Time to first byte of an HTTP answer on a circuit already built (BEGIN to the
//!   exit, the request, the first byte back).
//! - An HTTP download of `--mib` through the SOCKS5 proxy and three relays, beside the
//!   same download straight from the server.
//! - An onion service on another node: first byte with the rendezvous (new SOCKS
//!   credentials each time, so a new rendezvous), first byte on a joined circuit, and
//!   the same download from it (six relays between client and service).
//!
//! - The same through a private Tor network started for the run (see `tor.rs`), beside
//!   nodus's rows, with the ratio: first bytes through SOCKS with new credentials (a new
//!   circuit) and on a circuit in use, the download, the onion service's.
//!
//! - A long round trip: the download through three relays whose links each delay
//!   20 ms each way (user-space proxies, `nodus_testnet::delayed`), with congestion
//!   control, beside the same with a fixed window of 256 cells as before it (Tor's
//!   windows are fixed too, and cap a circuit at window / round trip).
//!
//! The aims (issue 18): first byte under 10 ms, at least 100 MB/s per circuit, an onion
//! service's first byte under 100 ms.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use nodus_onion::client::{Circuit, Hop};
use nodus_testnet::Testnet;
use nodus_testnet::onion::{
    add_relay, handle, http_get_on, http_server, socks_connect, socks_get, wait_relays, wait_service,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::tor::TorNet;
use crate::ui::progress::spinner;
use crate::ui::stats::percentile;
use crate::ui::{self, table};

/// `nodus bench onion` (flattened into `nodus bench`).
#[derive(clap::Subcommand, Debug)]
pub enum Area {
    /// Onion circuits: build time, first byte, throughput through three relays
    Onion {
        /// Size of the download, in MiB
        #[arg(long, default_value_t = 100)]
        mib: usize,
        /// Circuits built and first bytes timed
        #[arg(long, default_value_t = 20)]
        rounds: usize,
        /// Leave out the private Tor network (it takes a minute or two to come up)
        #[arg(long)]
        no_tor: bool,
    },
}

impl Area {
    pub async fn run(self, json: bool) -> Result<ExitCode> {
        let Area::Onion { mib, rounds, no_tor } = self;
        run(mib, rounds.max(1), !no_tor, json).await
    }
}

async fn run(mib: usize, rounds: usize, with_tor: bool, json: bool) -> Result<ExitCode> {
    let dir = tempfile::tempdir()?;
    let pb = spinner("starting a client and three relays");
    let mut net = Testnet::start(2, &dir.path().join("net")).await?;
    let relays = [add_relay(&mut net, false).await?, add_relay(&mut net, false).await?, add_relay(&mut net, true).await?];
    wait_relays(&net, 0, 3, 1, Duration::from_secs(60)).await?;
    let path: Vec<Hop> = relays
        .iter()
        .map(|&k| {
            let r = handle(&net, k).relay().ok_or_else(|| anyhow!("node {k} is no relay"))?;
            Ok(Hop {
                peer: net.node(k).peer_id(),
                onion_key: r.keys[0].public(),
            })
        })
        .collect::<Result<_>>()?;
    let body: Vec<u8> = (0..mib << 20).map(|i| (i % 251) as u8).collect();
    let port = http_server(body.clone()).await?;
    let target = format!("localhost:{port}");
    pb.finish_and_clear();

    let pb = spinner(&format!("{rounds} circuits built, {rounds} first bytes"));
    let client = &net.node(0).net;
    let mut builds = Vec::new();
    let mut circuit = None;
    for _ in 0..rounds {
        let t = Instant::now();
        let c = Circuit::build(client, &path).await?;
        builds.push(t.elapsed());
        circuit = Some(c);
    }
    let circuit = circuit.expect("at least one round");
    let mut first = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let mut s = circuit.connect(&target).await?;
        s.write_all(small_get(&target).as_bytes()).await?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await?;
        first.push(t.elapsed());
    }
    builds.sort();
    first.sort();
    pb.finish_and_clear();

    let pb = spinner(&format!("{mib} MiB through the SOCKS5 proxy and three relays"));
    let proxy = handle(&net, 0).socks_addr().to_string();
    let onion_mb_s = download(&proxy, &target, &body).await?;
    let (exit_fresh, exit_used) = first_bytes(&proxy, &target, "exit", rounds).await?;
    let t = Instant::now();
    let direct = reqwest::get(format!("http://{target}/")).await?.bytes().await?;
    let direct_secs = t.elapsed().as_secs_f64();
    if direct.len() != body.len() {
        bail!("the direct download came back short");
    }
    pb.finish_and_clear();

    let pb = spinner("an onion service: rendezvous, first bytes, the download");
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
    let address = handle(&net, 1).serve(port, 80)?.address;
    wait_service(&net, 0, &address, since, Duration::from_secs(60)).await?;
    let onion_target = format!("{address}:80");
    let (fresh, joined) = first_bytes(&proxy, &onion_target, "service", rounds).await?;
    let service_mb_s = download(&proxy, &onion_target, &body).await?;
    pb.finish_and_clear();
    net.shutdown().await;

    let pb = spinner("a long round trip: links of 20 ms each way, with and without congestion control");
    let long = (
        long_round_trip(190, None, port, &body).await?,
        long_round_trip(191, Some(256), port, &body).await?,
    );
    pb.finish_and_clear();

    let tor = if with_tor {
        let pb = spinner("a private Tor network: 3 authorities, 4 relays, a client, an onion service");
        let measured = measure_tor(&dir.path().join("tor"), port, &body, rounds).await;
        pb.finish_and_clear();
        measured.map_err(|e| format!("{e:#}"))
    } else {
        Err("left out (--no-tor)".to_string())
    };

    let mbps = |secs: f64| body.len() as f64 / secs / 1e6;
    let (build_p50, first_p50) = (percentile(&builds, 0.5) / 1e3, percentile(&first, 0.5) / 1e3);
    if json {
        ui::json(&json!({
            "circuit_build_ms": { "p50": build_p50, "p99": percentile(&builds, 0.99) / 1e3 },
            "first_byte_ms": { "p50": first_p50, "p99": percentile(&first, 0.99) / 1e3 },
            "download_mib": mib,
            "onion_mb_s": onion_mb_s,
            "direct_mb_s": mbps(direct_secs),
            "service_first_byte_with_rendezvous_ms": { "p50": percentile(&fresh, 0.5) / 1e3, "max": percentile(&fresh, 1.0) / 1e3 },
            "service_first_byte_ms": { "p50": percentile(&joined, 0.5) / 1e3, "p99": percentile(&joined, 0.99) / 1e3 },
            "service_mb_s": service_mb_s,
            "socks_first_byte_new_credentials_ms": { "p50": percentile(&exit_fresh, 0.5) / 1e3 },
            "socks_first_byte_ms": { "p50": percentile(&exit_used, 0.5) / 1e3 },
            "long_round_trip": {
                "one_way_per_link_ms": LONG_ONE_WAY.as_millis() as u64,
                "congestion_control_mb_s": long.0.0,
                "largest_window_cells": long.0.1,
                "fixed_window_256_mb_s": long.1.0,
            },
            "tor": match &tor {
                Ok(t) => json!({
                    "socks_first_byte_new_credentials_ms": { "p50": percentile(&t.fresh, 0.5) / 1e3 },
                    "socks_first_byte_ms": { "p50": percentile(&t.used, 0.5) / 1e3 },
                    "download_mb_s": t.mb_s,
                    "service_first_byte_with_rendezvous_ms": { "p50": percentile(&t.hs_fresh, 0.5) / 1e3 },
                    "service_first_byte_ms": { "p50": percentile(&t.hs_used, 0.5) / 1e3 },
                    "service_mb_s": t.hs_mb_s,
                    "ready_secs": t.ready_secs,
                }),
                Err(why) => json!({ "not_measured": why }),
            },
        }));
        return Ok(ExitCode::SUCCESS);
    }
    println!("nodus bench onion: a client, an onion service and three relays on loopback, one process; {rounds} rounds, {mib} MiB download");
    match &tor {
        Ok(t) => println!(
            "private Tor network (tor {}): 3 authorities, 4 relays, a client, an onion service; ready after {:.0} s",
            tor_version().await,
            t.ready_secs
        ),
        Err(why) => println!("private Tor network: not measured: {why}"),
    }
    let aim = |ok: bool, text: &str| format!("{text}: {}", if ok { "met" } else { "not met" });
    let p50 = |v: &[Duration]| percentile(v, 0.5) / 1e3;
    // Times: how many times sooner nodus is; rates: how many times faster.
    let sooner = |ours: f64, theirs: Option<f64>| theirs.map_or("-".into(), |t| format!("{:.1}x", t / ours));
    let faster = |ours: f64, theirs: Option<f64>| theirs.map_or("-".into(), |t| format!("{:.1}x", ours / t));
    let t = tor.as_ref().ok();
    let shown = |v: Option<f64>, digits: usize| v.map_or("-".into(), |x| format!("{x:.digits$}"));
    let rows = [
        (
            "circuit build, 3 hops, ms".to_string(),
            format!("{build_p50:.2}"),
            format!("{:.2}", percentile(&builds, 0.99) / 1e3),
            None,
            "-".to_string(),
            "-".to_string(),
        ),
        (
            "first byte on a built circuit, ms".into(),
            format!("{first_p50:.2}"),
            format!("{:.2}", percentile(&first, 0.99) / 1e3),
            None,
            "-".into(),
            aim(first_p50 < 10.0, "< 10 ms"),
        ),
        {
            let (ours, theirs) = (p50(&exit_fresh), t.map(|t| p50(&t.fresh)));
            ("first byte via SOCKS, new credentials (new circuit), ms".into(), format!("{ours:.2}"), "-".into(), theirs, sooner(ours, theirs), "-".into())
        },
        {
            let (ours, theirs) = (p50(&exit_used), t.map(|t| p50(&t.used)));
            ("first byte via SOCKS, circuit in use, ms".into(), format!("{ours:.2}"), format!("{:.2}", percentile(&exit_used, 0.99) / 1e3), theirs, sooner(ours, theirs), aim(ours < 10.0, "< 10 ms"))
        },
        {
            let (ours, theirs) = (onion_mb_s, t.map(|t| t.mb_s));
            (format!("{mib} MiB via SOCKS5 and 3 relays, MB/s"), format!("{ours:.0}"), "-".into(), theirs, faster(ours, theirs), aim(ours >= 100.0, ">= 100 MB/s"))
        },
        {
            let (ours, theirs) = (p50(&fresh), t.map(|t| p50(&t.hs_fresh)));
            ("onion service first byte, rendezvous included, ms".into(), format!("{ours:.1}"), format!("{:.1} (max)", percentile(&fresh, 1.0) / 1e3), theirs, sooner(ours, theirs), aim(ours < 100.0, "< 100 ms"))
        },
        {
            let (ours, theirs) = (p50(&joined), t.map(|t| p50(&t.hs_used)));
            ("onion service first byte on a joined circuit, ms".into(), format!("{ours:.2}"), format!("{:.2}", percentile(&joined, 0.99) / 1e3), theirs, sooner(ours, theirs), "-".into())
        },
        {
            let (ours, theirs) = (service_mb_s, t.map(|t| t.hs_mb_s));
            (format!("{mib} MiB from an onion service (6 relays), MB/s"), format!("{ours:.0}"), "-".into(), theirs, faster(ours, theirs), "-".into())
        },
        (
            format!("{mib} MiB straight from the server, MB/s"),
            format!("{:.0}", mbps(direct_secs)),
            "-".into(),
            None,
            "-".into(),
            "(reference)".into(),
        ),
    ];
    table(
        &["measure", "nodus", "p99", "private Tor network", "nodus vs Tor", "aim"],
        &rows
            .into_iter()
            .map(|(m, ours, p99, theirs, ratio, aim)| {
                let digits = if m.contains("MB/s") { 1 } else { 2 };
                vec![m, ours, p99, shown(theirs, digits), ratio, aim]
            })
            .collect::<Vec<_>>(),
    );
    let rtt = 6.0 * LONG_ONE_WAY.as_secs_f64();
    let cap = 256.0 * nodus_onion::cell::RELAY_DATA as f64 / rtt / 1e6;
    println!();
    println!(
        "a round trip of {:.0} ms at the least: three relays whose links delay {} ms each way",
        rtt * 1e3,
        LONG_ONE_WAY.as_millis()
    );
    table(
        &["measure", "congestion control", "fixed window of 256 cells", "ratio", "aim"],
        &[vec![
            format!("{mib} MiB via 3 relays, MB/s"),
            format!("{:.1} (window up to {} cells)", long.0.0, long.0.1),
            format!("{:.1}", long.1.0),
            format!("{:.1}x", long.0.0 / long.1.0),
            aim(long.0.0 > cap, &format!("> {cap:.1} MB/s, a fixed window's cap")),
        ]],
    );
    Ok(ExitCode::SUCCESS)
}

/// One way per link in the long-round-trip rows.
const LONG_ONE_WAY: Duration = Duration::from_millis(20);

/// MB/s of the download from `port` through a circuit of three relays whose links
/// delay [`LONG_ONE_WAY`] (on `127.0.{net}.x`), its exit's window fixed at
/// `fixed_window` cells if given; and the largest window the exit reached.
async fn long_round_trip(net: u8, fixed_window: Option<u32>, port: u16, body: &[u8]) -> Result<(f64, u32)> {
    let line = nodus_testnet::delayed::line(net, LONG_ONE_WAY, fixed_window).await?;
    let circuit = Circuit::build(&line.client, &line.path).await?;
    let target = format!("localhost:{port}");
    let t = Instant::now();
    let mut s = circuit.connect(&target).await?;
    let got = http_get_on(&mut s, &target, "/").await?;
    let secs = t.elapsed().as_secs_f64();
    if got != body {
        bail!("the download through delayed links came back with {} bytes, not {}", got.len(), body.len());
    }
    Ok((body.len() as f64 / secs / 1e6, line.exit.largest_window()))
}

/// What the private Tor network measured: the same measures as nodus's rows.
struct TorFigures {
    ready_secs: f64,
    fresh: Vec<Duration>,
    used: Vec<Duration>,
    mb_s: f64,
    hs_fresh: Vec<Duration>,
    hs_used: Vec<Duration>,
    hs_mb_s: f64,
}

async fn measure_tor(root: &std::path::Path, port: u16, body: &[u8], rounds: usize) -> Result<TorFigures> {
    let t0 = Instant::now();
    let tor = TorNet::start(root, port).await?;
    let ready = Duration::from_secs(300);
    // By IP: Tor's exits resolve names themselves, and "localhost" is not one they take.
    let target = format!("127.0.0.1:{port}");
    until_reachable(&tor.socks, &target, ready).await?;
    let service = format!("{}:80", tor.onion_address(ready).await?);
    until_reachable(&tor.socks, &service, ready).await?;
    let ready_secs = t0.elapsed().as_secs_f64();
    let (fresh, used) = first_bytes(&tor.socks, &target, "tor", rounds).await?;
    let (hs_fresh, hs_used) = first_bytes(&tor.socks, &service, "hs", rounds).await?;
    let mb_s = download(&tor.socks, &target, body).await?;
    let hs_mb_s = download(&tor.socks, &service, body).await?;
    Ok(TorFigures {
        ready_secs,
        fresh,
        used,
        mb_s,
        hs_fresh,
        hs_used,
        hs_mb_s,
    })
}

/// Tries `target` through Tor (new credentials each time, so a new circuit) until it
/// answers: the network has voted, the client has a consensus, the service's
/// descriptor is up.
async fn until_reachable(socks: &str, target: &str, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    for n in 0.. {
        let user = format!("warmup{n}");
        match tokio::time::timeout(Duration::from_secs(20), first_byte(socks, target, Some((&user, "x")))).await {
            Ok(Ok(_)) => return Ok(()),
            _ if start.elapsed() > timeout => break,
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
    bail!("{target} was not reachable through the private Tor network within {timeout:?}")
}

async fn tor_version() -> String {
    match tokio::process::Command::new("tor").arg("--version").output().await {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .nth(2)
            .unwrap_or("?")
            .trim_end_matches('.')
            .to_string(),
        Err(_) => "?".into(),
    }
}

/// First bytes from `target` through `proxy`: with new SOCKS credentials each time (so
/// a new circuit; up to five) and then `rounds` times with the same; each sorted.
async fn first_bytes(proxy: &str, target: &str, tag: &str, rounds: usize) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let mut fresh = Vec::new();
    for i in 0..rounds.min(5) {
        fresh.push(first_byte(proxy, target, Some((&format!("{tag}{i}"), "x"))).await?);
    }
    let mut used = Vec::new();
    for _ in 0..rounds {
        used.push(first_byte(proxy, target, Some((&format!("{tag}0"), "x"))).await?);
    }
    fresh.sort();
    used.sort();
    Ok((fresh, used))
}

/// MB/s of an HTTP download of `body` from `target` through `proxy`, checked.
async fn download(proxy: &str, target: &str, body: &[u8]) -> Result<f64> {
    let t = Instant::now();
    let got = socks_get(proxy, target, "/").await?;
    if got != body {
        bail!("the download from {target} came back with {} bytes, not {}", got.len(), body.len());
    }
    Ok(body.len() as f64 / t.elapsed().as_secs_f64() / 1e6)
}

/// Time to the first byte of an HTTP answer through the SOCKS5 proxy, connection
/// included.
/// A request for the first KiB of the page: first bytes are timed on small answers, as
/// a page's requests mostly are (a request for the whole 100 MiB, left after its first
/// byte, would still be draining from the circuit when the next was timed).
fn small_get(target: &str) -> String {
    format!("GET / HTTP/1.0\r\nHost: {target}\r\nRange: bytes=0-1023\r\n\r\n")
}

async fn first_byte(proxy: &str, target: &str, credentials: Option<(&str, &str)>) -> Result<Duration> {
    let t = Instant::now();
    let mut s = socks_connect(proxy, target, credentials).await?;
    s.write_all(small_get(target).as_bytes()).await?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await?;
    Ok(t.elapsed())
}
