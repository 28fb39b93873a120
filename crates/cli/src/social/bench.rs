//! `nodus bench social`: events ingested per second with signature verification (one
//! connection, then several at once) and REQ latency over the stored events, measured
//! with the same client and the same pre-signed events against nodus's relay and, when
//! it is installed, nostr-rs-relay (`cargo install nostr-rs-relay`; it takes minutes to
//! build, so the bench does not install it).
//!
//! The aim (issue 21): at least 20,000 verified events a second, and ahead of
//! nostr-rs-relay on every row.

use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use nodus_social::client::Client;
use nodus_social::relay::now;
use nodus_social::{Event, Keys, SocialHandle};
use nodus_testnet::{Testnet, wait_until};
use serde_json::json;

use crate::ui::progress::spinner;
use crate::ui::stats::percentile;
use crate::ui::{self, table};

/// `nodus bench social` (flattened into `nodus bench`).
#[derive(clap::Subcommand, Debug)]
pub enum Area {
    /// Nostr relay: verified events per second (one connection and many) and REQ
    /// latency p50/p99, beside nostr-rs-relay when installed
    Social {
        /// Events per ingest run
        #[arg(long, default_value_t = 5000)]
        events: usize,
        /// Connections publishing at once in the second run
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// REQ round trips timed
        #[arg(long, default_value_t = 300)]
        queries: usize,
    },
}

impl Area {
    pub async fn run(self, json: bool) -> Result<ExitCode> {
        let Area::Social {
            events,
            connections,
            queries,
        } = self;
        run(events, connections.max(1), queries.max(1), json).await
    }
}

const AUTHORS: usize = 50;
/// Events a publisher sends ahead of their OKs.
const WINDOW: usize = 256;

struct Figures {
    one: f64,
    many: f64,
    p50_us: f64,
    p99_us: f64,
}

fn sign_all(keys: &[Keys], n: usize, tag: &str) -> Vec<Event> {
    let t = now();
    (0..n)
        .map(|i| keys[i % keys.len()].sign(t - (i % 3600) as u64, 1, vec![], &format!("{tag} note {i}")))
        .collect()
}

async fn publish_all(url: &str, events: &[Event]) -> Result<()> {
    let mut c = Client::connect(url).await?;
    let accepted = c.publish_many(events, WINDOW).await?;
    c.close().await;
    if accepted != events.len() {
        bail!("the relay accepted {accepted} of {} events", events.len());
    }
    Ok(())
}

async fn measure(url: &str, keys: &[Keys], events: usize, connections: usize, queries: usize) -> Result<Figures> {
    let first = sign_all(keys, events, "one");
    let t = Instant::now();
    publish_all(url, &first).await?;
    let one = events as f64 / t.elapsed().as_secs_f64();

    let second = sign_all(keys, events, "many");
    let chunk = events.div_ceil(connections);
    let t = Instant::now();
    let runs: Vec<_> = second
        .chunks(chunk)
        .map(|part| {
            let url = url.to_string();
            let part = part.to_vec();
            tokio::spawn(async move { publish_all(&url, &part).await })
        })
        .collect();
    for r in runs {
        r.await.map_err(|e| anyhow!("a publisher failed: {e}"))??;
    }
    let many = events as f64 / t.elapsed().as_secs_f64();

    let mut c = Client::connect(url).await?;
    let mut took = Vec::with_capacity(queries);
    for i in 0..queries {
        let author = hex::encode(keys[i % keys.len()].public());
        let t = Instant::now();
        let got = c
            .subscribe(&format!("q{i}"), &[json!({"authors": [author], "kinds": [1], "limit": 20})])
            .await?;
        took.push(t.elapsed());
        if got.len() != 20 {
            bail!("a query returned {} events, 20 expected", got.len());
        }
        c.send_raw(json!(["CLOSE", format!("q{i}")]).to_string()).await?;
    }
    c.close().await;
    took.sort();
    Ok(Figures {
        one,
        many,
        p50_us: percentile(&took, 0.5),
        p99_us: percentile(&took, 0.99),
    })
}

/// nostr-rs-relay on a free port with its database in `dir`, if installed.
fn start_nostr_rs_relay(dir: &Path) -> Result<Option<(Child, String)>> {
    if Command::new("nostr-rs-relay").arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        return Ok(None);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let config = format!(
        "[info]\nrelay_url = \"ws://127.0.0.1:{port}/\"\n[database]\ndata_directory = \"{}\"\n[network]\naddress = \"127.0.0.1\"\nport = {port}\n[limits]\nmessages_per_sec = 0\nmax_event_bytes = 131072\n",
        dir.display()
    );
    std::fs::write(dir.join("config.toml"), config)?;
    let child = Command::new("nostr-rs-relay")
        .arg("--config")
        .arg(dir.join("config.toml"))
        .arg("--db")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(Some((child, format!("ws://127.0.0.1:{port}"))))
}

async fn run(events: usize, connections: usize, queries: usize, json_out: bool) -> Result<ExitCode> {
    let dir = tempfile::tempdir()?;
    let keys: Vec<Keys> = (0..AUTHORS).map(|_| Keys::generate()).collect();
    let pb = spinner("nodus: starting a node");
    let net = Testnet::start(1, &dir.path().join("nodus")).await?;
    let url = net
        .node(0)
        .service::<SocialHandle>()
        .ok_or_else(|| anyhow!("the node runs no relay"))?
        .relay_url();
    pb.set_message("nodus: ingesting and querying");
    let ours = measure(&url, &keys, events, connections, queries).await;
    pb.finish_and_clear();
    net.shutdown().await;
    let ours = ours?;

    let reference_dir = dir.path().join("reference");
    std::fs::create_dir_all(&reference_dir)?;
    let theirs = match start_nostr_rs_relay(&reference_dir)? {
        None => None,
        Some((mut child, url)) => {
            let pb = spinner("nostr-rs-relay: ingesting and querying");
            let ready = wait_until(Duration::from_secs(30), "nostr-rs-relay to listen", || async {
                Client::connect(&url).await.is_ok()
            })
            .await;
            let r = match ready {
                Ok(()) => measure(&url, &keys, events, connections, queries).await,
                Err(e) => Err(e.into()),
            };
            pb.finish_and_clear();
            let _ = child.kill();
            let _ = child.wait();
            Some(r?)
        }
    };

    let ratio = |a: f64, b: Option<f64>, higher_is_better: bool| match b {
        Some(b) if a > 0.0 && b > 0.0 => {
            format!("{:.2}x", if higher_is_better { a / b } else { b / a })
        }
        _ => "-".into(),
    };
    let reference = |f: fn(&Figures) -> f64| theirs.as_ref().map(f);
    let rows = vec![
        vec![
            "events/s, one connection".into(),
            format!("{:.0}", ours.one),
            reference(|f| f.one).map_or("not installed".into(), |v| format!("{v:.0}")),
            ratio(ours.one, reference(|f| f.one), true),
            "20,000; ahead".into(),
        ],
        vec![
            format!("events/s, {connections} connections"),
            format!("{:.0}", ours.many),
            reference(|f| f.many).map_or("not installed".into(), |v| format!("{v:.0}")),
            ratio(ours.many, reference(|f| f.many), true),
            "20,000; ahead".into(),
        ],
        vec![
            format!("REQ p50, {} events stored", 2 * events),
            format!("{:.0} µs", ours.p50_us),
            reference(|f| f.p50_us).map_or("not installed".into(), |v| format!("{v:.0} µs")),
            ratio(ours.p50_us, reference(|f| f.p50_us), false),
            "ahead".into(),
        ],
        vec![
            "REQ p99".into(),
            format!("{:.0} µs", ours.p99_us),
            reference(|f| f.p99_us).map_or("not installed".into(), |v| format!("{v:.0} µs")),
            ratio(ours.p99_us, reference(|f| f.p99_us), false),
            "ahead".into(),
        ],
    ];
    if json_out {
        ui::json(&json!({
            "nodus": {"one": ours.one, "many": ours.many, "p50_us": ours.p50_us, "p99_us": ours.p99_us},
            "nostr_rs_relay": theirs.as_ref().map(|f| json!({"one": f.one, "many": f.many, "p50_us": f.p50_us, "p99_us": f.p99_us})),
        }));
    } else {
        println!(
            "nodus bench social: {events} events per run, {AUTHORS} authors, up to {WINDOW} in flight per connection, signatures checked by each relay"
        );
        table(&["", "nodus", "nostr-rs-relay", "nodus vs it", "aim"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}
