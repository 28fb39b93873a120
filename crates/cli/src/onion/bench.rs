//! `nodus bench onion`: what a three-hop circuit costs, on loopback in one process.
//! - Building a circuit through three relays (three ntor handshakes, two extensions).
//! - Time to first byte of an HTTP answer on a circuit already built (BEGIN to the
//!   exit, the request, the first byte back).
//! - An HTTP download of `--mib` through the SOCKS5 proxy and three relays, beside the
//!   same download straight from the server.
//!
//! The aims (issue 18): first byte under 10 ms, at least 100 MB/s per circuit. The
//! issue's reference, a private Tor network measured in the same run, is not built yet:
//! its row says so.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use nodus_onion::client::{Circuit, Hop};
use nodus_testnet::Testnet;
use nodus_testnet::onion::{add_relay, handle, http_server, socks_get, wait_relays};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    },
}

impl Area {
    pub async fn run(self, json: bool) -> Result<ExitCode> {
        let Area::Onion { mib, rounds } = self;
        run(mib, rounds.max(1), json).await
    }
}

async fn run(mib: usize, rounds: usize, json: bool) -> Result<ExitCode> {
    let dir = tempfile::tempdir()?;
    let pb = spinner("starting a client and three relays");
    let mut net = Testnet::start(1, &dir.path().join("net")).await?;
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
        s.write_all(format!("GET / HTTP/1.0\r\nHost: {target}\r\n\r\n").as_bytes()).await?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await?;
        first.push(t.elapsed());
    }
    builds.sort();
    first.sort();
    pb.finish_and_clear();

    let pb = spinner(&format!("{mib} MiB through the SOCKS5 proxy and three relays"));
    let proxy = handle(&net, 0).socks_addr().to_string();
    let t = Instant::now();
    let got = socks_get(&proxy, &target, "/").await?;
    let onion_secs = t.elapsed().as_secs_f64();
    if got != body {
        bail!("the download through the circuit came back with {} bytes, not {}", got.len(), body.len());
    }
    let t = Instant::now();
    let direct = reqwest::get(format!("http://{target}/")).await?.bytes().await?;
    let direct_secs = t.elapsed().as_secs_f64();
    if direct.len() != body.len() {
        bail!("the direct download came back short");
    }
    pb.finish_and_clear();
    net.shutdown().await;

    let mbps = |secs: f64| body.len() as f64 / secs / 1e6;
    let (build_p50, first_p50) = (percentile(&builds, 0.5) / 1e3, percentile(&first, 0.5) / 1e3);
    if json {
        ui::json(&json!({
            "circuit_build_ms": { "p50": build_p50, "p99": percentile(&builds, 0.99) / 1e3 },
            "first_byte_ms": { "p50": first_p50, "p99": percentile(&first, 0.99) / 1e3 },
            "download_mib": mib,
            "onion_mb_s": mbps(onion_secs),
            "direct_mb_s": mbps(direct_secs),
            "tor": null,
        }));
        return Ok(ExitCode::SUCCESS);
    }
    println!("nodus bench onion: a client and three relays on loopback, one process; {rounds} rounds, {mib} MiB download");
    let aim = |ok: bool, text: &str| format!("{text}: {}", if ok { "met" } else { "not met" });
    table(
        &["measure", "nodus", "p99", "private Tor network", "aim"],
        &[
            vec![
                "circuit build, 3 hops, ms".into(),
                format!("{build_p50:.2}"),
                format!("{:.2}", percentile(&builds, 0.99) / 1e3),
                "not measured yet".into(),
                "-".into(),
            ],
            vec![
                "first byte on a built circuit, ms".into(),
                format!("{first_p50:.2}"),
                format!("{:.2}", percentile(&first, 0.99) / 1e3),
                "not measured yet".into(),
                aim(first_p50 < 10.0, "< 10 ms"),
            ],
            vec![
                format!("{mib} MiB via SOCKS5 and 3 relays, MB/s"),
                format!("{:.0}", mbps(onion_secs)),
                "-".into(),
                "not measured yet".into(),
                aim(mbps(onion_secs) >= 100.0, ">= 100 MB/s"),
            ],
            vec![
                format!("{mib} MiB straight from the server, MB/s"),
                format!("{:.0}", mbps(direct_secs)),
                "-".into(),
                "-".into(),
                "(reference)".into(),
            ],
        ],
    );
    Ok(ExitCode::SUCCESS)
}
