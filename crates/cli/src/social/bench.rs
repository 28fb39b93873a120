//! `nodus bench social`: events ingested per second with signature verification (one
//! connection, then several at once), REQ latency over a store of a million events,
//! and the time to catch up after a partition, measured with the same client and the
//! same pre-signed events against nodus's relay and nostr-rs-relay 0.8.12. The bench
//! installs it on first use (`apt-get install protobuf-compiler` when `protoc` is
//! missing, then `cargo install nostr-rs-relay`, about 9 minutes on 2 cores; not in CI);
//! `--no-install` skips that, and its column then reads "not installed".
//!
//! The large store is filled offline on both sides (nodus's store written directly,
//! nostr-rs-relay's by its `bulkloader`), then each relay is started on it and queried.
//! Catching up: two nodus nodes, one cut off while it takes N events, reconcile by
//! negentropy when they meet again; two nostr-rs-relays have no way to do that between
//! themselves, so a client copies the N events from one to the other (REQ, then EVENT),
//! which is how Nostr users move notes between relays today.
//!
//! The aim (issue 21): at least 20,000 verified events a second, and ahead of
//! nostr-rs-relay on every row.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nodus_social::client::Client;
use nodus_social::relay::now;
use nodus_social::store::{Incoming, Store};
use nodus_social::{Event, Keys, SocialHandle};
use nodus_testnet::{Testnet, wait_until};
use serde_json::json;

use crate::ui::progress::spinner;
use crate::ui::stats::percentile;
use crate::ui::{self, table};

/// `nodus bench social` (flattened into `nodus bench`).
#[derive(clap::Subcommand, Debug)]
pub enum Area {
    /// Nostr relay: verified events per second (one connection and many), REQ latency
    /// p50/p99 over a large store, catching up after a partition; beside nostr-rs-relay
    Social {
        /// Events per ingest run
        #[arg(long, default_value_t = 20_000)]
        events: usize,
        /// Connections publishing at once in the second run
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Events in the store the REQs run over
        #[arg(long, default_value_t = 1_000_000)]
        stored: usize,
        /// REQ round trips timed
        #[arg(long, default_value_t = 300)]
        queries: usize,
        /// Events one side misses during the partition
        #[arg(long, default_value_t = 10_000)]
        missed: usize,
        /// Events a publisher sends ahead of their OKs (the same client for both relays)
        #[arg(long, default_value_t = 1024)]
        window: usize,
        /// Do not install nostr-rs-relay when it is missing
        #[arg(long)]
        no_install: bool,
    },
}

impl Area {
    pub async fn run(self, json: bool) -> Result<ExitCode> {
        let Area::Social {
            events,
            connections,
            stored,
            queries,
            missed,
            window,
            no_install,
        } = self;
        if !no_install && !nostr_rs_relay_installed() {
            install_reference();
        }
        run(
            Sizes {
                events: events.max(1),
                connections: connections.max(1),
                stored: stored.max(AUTHORS * 20),
                queries: queries.max(1),
                missed: missed.max(1),
                window: window.max(1),
            },
            json,
        )
        .await
    }
}

struct Sizes {
    events: usize,
    connections: usize,
    stored: usize,
    queries: usize,
    missed: usize,
    window: usize,
}

const AUTHORS: usize = 50;

#[derive(Default)]
struct Figures {
    one: f64,
    many: f64,
    p50_us: f64,
    p99_us: f64,
    /// Seconds to catch up on the missed events.
    catch_up: f64,
}

/// `n` notes by `keys` in turn, one second apart going back from now, signed on every
/// core.
fn sign_all(keys: &[Keys], n: usize, tag: &str) -> Vec<Event> {
    let t = now();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per = n.div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = (0..threads)
            .map(|p| {
                s.spawn(move || {
                    (p * per..((p + 1) * per).min(n))
                        .map(|i| {
                            keys[i % keys.len()].sign(t - (i as u64 % 30_000_000), 1, vec![], &format!("{tag} note {i}"))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    })
}

async fn publish_all(url: &str, events: &[Event], window: usize) -> Result<()> {
    let mut c = Client::connect(url).await?;
    let accepted = c.publish_many(events, window).await?;
    c.close().await;
    if accepted != events.len() {
        bail!("the relay accepted {accepted} of {} events", events.len());
    }
    Ok(())
}

/// Events per second on one connection, then on `connections` at once.
async fn ingest(url: &str, keys: &[Keys], sizes: &Sizes) -> Result<(f64, f64)> {
    let first = sign_all(keys, sizes.events, "one");
    let t = Instant::now();
    publish_all(url, &first, sizes.window).await?;
    let one = sizes.events as f64 / t.elapsed().as_secs_f64();

    let second = sign_all(keys, sizes.events, "many");
    let chunk = sizes.events.div_ceil(sizes.connections);
    let t = Instant::now();
    let runs: Vec<_> = second
        .chunks(chunk)
        .map(|part| {
            let url = url.to_string();
            let part = part.to_vec();
            let window = sizes.window;
            tokio::spawn(async move { publish_all(&url, &part, window).await })
        })
        .collect();
    for r in runs {
        r.await.map_err(|e| anyhow!("a publisher failed: {e}"))??;
    }
    Ok((one, sizes.events as f64 / t.elapsed().as_secs_f64()))
}

/// REQ round trips (one author's latest 20 notes): p50 and p99 in µs.
async fn query(url: &str, keys: &[Keys], queries: usize) -> Result<(f64, f64)> {
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
    Ok((percentile(&took, 0.5), percentile(&took, 0.99)))
}

/// Writes `events` into the store at `path` as the relay would have.
fn fill_store(path: &Path, events: &[Event]) -> Result<()> {
    let store = Store::open(path, u64::MAX)?;
    for chunk in events.chunks(20_000) {
        let batch: Vec<Incoming<&Event>> = chunk
            .iter()
            .map(|event| Incoming {
                event,
                evictable: false,
            })
            .collect();
        store.insert_batch(&batch)?;
    }
    Ok(())
}

fn relay_url(net: &Testnet, k: usize) -> Result<String> {
    Ok(net
        .node(k)
        .service::<SocialHandle>()
        .ok_or_else(|| anyhow!("node {k} runs no relay"))?
        .relay_url())
}

async fn measure_nodus(dir: &Path, keys: &[Keys], big: &[Event], sizes: &Sizes) -> Result<Figures> {
    let pb = spinner("nodus: ingesting");
    let mut net = Testnet::start(1, &dir.join("one")).await?;
    let (one, many) = ingest(&relay_url(&net, 0)?, keys, sizes).await?;
    pb.set_message(format!("nodus: writing a store of {} events", big.len()));
    net.stop(0).await?;
    let store = net.data_dir(0).service_dir("social").join("social.redb");
    std::fs::remove_file(&store).ok();
    let path = store.clone();
    let events = big.to_vec();
    tokio::task::spawn_blocking(move || fill_store(&path, &events)).await??;
    net.restart(0).await?;
    pb.set_message("nodus: querying");
    let (p50_us, p99_us) = query(&relay_url(&net, 0)?, keys, sizes.queries).await?;
    net.shutdown().await;

    pb.set_message(format!("nodus: catching up on {} events after a partition", sizes.missed));
    let mut net = Testnet::start(2, &dir.join("two")).await?;
    let author = &keys[0];
    for k in 0..2 {
        net.node(k)
            .service::<SocialHandle>()
            .ok_or_else(|| anyhow!("node {k} runs no relay"))?
            .set_follow(author.public(), true)
            .await?;
    }
    net.restart_isolated(0).await?;
    let missed = sign_all(std::slice::from_ref(author), sizes.missed, "missed");
    publish_all(&relay_url(&net, 0)?, &missed, sizes.window).await?;
    let b = net.node(1).service::<SocialHandle>().cloned().ok_or_else(|| anyhow!("no relay"))?;
    let before = b.stored();
    let addr = net.node(1).p2p_addr("tcp").ok_or_else(|| anyhow!("node 1 has no TCP address"))?;
    let t = Instant::now();
    net.node(0).net.dial(addr).await?;
    let want = before + sizes.missed as u64;
    wait_until(Duration::from_secs(600), "the other node to catch up", || async { b.stored() >= want }).await?;
    let catch_up = t.elapsed().as_secs_f64();
    net.shutdown().await;
    pb.finish_and_clear();
    Ok(Figures {
        one,
        many,
        p50_us,
        p99_us,
        catch_up,
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

/// Whether nostr-rs-relay is installed.
fn nostr_rs_relay_installed() -> bool {
    Command::new("nostr-rs-relay")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn runs(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs nostr-rs-relay 0.8.12 (and protoc, which its build needs), saying what it
/// does; on failure the bench goes on without it.
fn install_reference() {
    eprintln!("nostr-rs-relay is not installed: installing it for the comparison (about 9 minutes; --no-install skips this)");
    if !runs("protoc", "--version") {
        let apt = if is_root() {
            Command::new("apt-get").args(["install", "-y", "-q", "protobuf-compiler"]).status()
        } else {
            Command::new("sudo").args(["apt-get", "install", "-y", "-q", "protobuf-compiler"]).status()
        };
        if !apt.is_ok_and(|s| s.success()) {
            eprintln!("could not install protobuf-compiler; nostr-rs-relay's column will read \"not installed\"");
            return;
        }
    }
    // Not --locked: the lockfile it ships pins a `time` that no longer compiles.
    let built = Command::new("cargo")
        .args(["install", "nostr-rs-relay", "--version", "0.8.12"])
        .status();
    if !built.is_ok_and(|s| s.success()) {
        eprintln!("`cargo install nostr-rs-relay` failed; its column will read \"not installed\"");
    }
}

/// Whether this process runs as root (the uid from /proc, without libc).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// A running nostr-rs-relay, killed when dropped.
struct Reference {
    child: Child,
    url: String,
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_reference(dir: &Path) -> Result<Reference> {
    std::fs::create_dir_all(dir)?;
    let (child, url) = start_nostr_rs_relay(dir)?.ok_or_else(|| anyhow!("nostr-rs-relay is not installed"))?;
    let r = Reference { child, url };
    wait_until(Duration::from_secs(30), "nostr-rs-relay to listen", || async {
        Client::connect(&r.url).await.is_ok()
    })
    .await?;
    Ok(r)
}

/// Loads `events` into the nostr-rs-relay database in `dir` with its bulkloader.
fn bulk_load(dir: &Path, events: &[Event]) -> Result<()> {
    let mut child = Command::new("bulkloader")
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("running nostr-rs-relay's bulkloader")?;
    {
        let mut stdin = std::io::BufWriter::new(child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?);
        for e in events {
            stdin.write_all(e.to_json().as_bytes())?;
            stdin.write_all(b"\n")?;
        }
    }
    if !child.wait()?.success() {
        bail!("nostr-rs-relay's bulkloader failed");
    }
    Ok(())
}

/// All events of `author` on the relay at `from`, paged back by `until`, sent to `to`.
async fn copy_between(from: &str, to: &str, author: &Keys, n: usize, window: usize) -> Result<()> {
    let mut src = Client::connect(from).await?;
    let mut got: Vec<Event> = Vec::with_capacity(n);
    let mut until: Option<u64> = None;
    let mut seen = std::collections::HashSet::new();
    loop {
        let mut f = json!({"authors": [hex::encode(author.public())], "limit": 500});
        if let Some(u) = until {
            f["until"] = json!(u);
        }
        let page = src.subscribe(&format!("p{}", got.len()), &[f]).await?;
        let fresh: Vec<Event> = page.into_iter().filter(|e| seen.insert(e.id)).collect();
        if fresh.is_empty() {
            break;
        }
        until = fresh.iter().map(|e| e.created_at).min();
        got.extend(fresh);
    }
    src.close().await;
    if got.len() < n {
        bail!("copied {} of {n} events", got.len());
    }
    publish_all(to, &got, window).await
}

async fn measure_reference(dir: &Path, keys: &[Keys], big: &[Event], sizes: &Sizes) -> Result<Figures> {
    let pb = spinner("nostr-rs-relay: ingesting");
    let (one, many) = {
        let r = start_reference(&dir.join("ingest")).await?;
        ingest(&r.url, keys, sizes).await?
    };
    pb.set_message(format!("nostr-rs-relay: loading a store of {} events", big.len()));
    let store = dir.join("store");
    // Started once to make its database, then loaded while stopped.
    drop(start_reference(&store).await?);
    let (d, events) = (store.clone(), big.to_vec());
    tokio::task::spawn_blocking(move || bulk_load(&d, &events)).await??;
    pb.set_message("nostr-rs-relay: querying");
    let (p50_us, p99_us) = {
        let r = start_reference(&store).await?;
        query(&r.url, keys, sizes.queries).await?
    };
    pb.set_message(format!("nostr-rs-relay: copying {} events to another relay", sizes.missed));
    let author = &keys[0];
    let missed = sign_all(std::slice::from_ref(author), sizes.missed, "missed");
    let (a, b) = (start_reference(&dir.join("a")).await?, start_reference(&dir.join("b")).await?);
    publish_all(&a.url, &missed, sizes.window).await?;
    let t = Instant::now();
    copy_between(&a.url, &b.url, author, sizes.missed, sizes.window).await?;
    let catch_up = t.elapsed().as_secs_f64();
    pb.finish_and_clear();
    Ok(Figures {
        one,
        many,
        p50_us,
        p99_us,
        catch_up,
    })
}

async fn run(sizes: Sizes, json_out: bool) -> Result<ExitCode> {
    let dir = tempfile::tempdir()?;
    let keys: Vec<Keys> = (0..AUTHORS).map(|_| Keys::generate()).collect();
    // The ceiling the id and signature check alone sets, on one core.
    let sample = sign_all(&keys, 5_000, "check");
    let t = Instant::now();
    for e in &sample {
        e.verify().map_err(|e| anyhow!("a freshly signed event does not verify: {e}"))?;
    }
    let checks = sample.len() as f64 / t.elapsed().as_secs_f64();
    let pb = spinner(&format!("signing {} events for the large store", sizes.stored));
    let big = tokio::task::spawn_blocking({
        let keys = keys.clone();
        let n = sizes.stored;
        move || sign_all(&keys, n, "stored")
    })
    .await?;
    pb.finish_and_clear();
    let ours = measure_nodus(&dir.path().join("nodus"), &keys, &big, &sizes).await?;
    let theirs = if nostr_rs_relay_installed() {
        Some(measure_reference(&dir.path().join("reference"), &keys, &big, &sizes).await?)
    } else {
        None
    };

    let ratio = |a: f64, b: Option<f64>, higher_is_better: bool| match b {
        Some(b) if a > 0.0 && b > 0.0 => {
            format!("{:.2}x", if higher_is_better { a / b } else { b / a })
        }
        _ => "-".into(),
    };
    let reference = |f: fn(&Figures) -> f64| theirs.as_ref().map(f);
    let cell = |v: Option<f64>, unit: &str| v.map_or("not installed".into(), |v| format!("{v:.0}{unit}"));
    let connections = sizes.connections;
    let rows = vec![
        vec![
            "events/s, one connection".into(),
            format!("{:.0}", ours.one),
            cell(reference(|f| f.one), ""),
            ratio(ours.one, reference(|f| f.one), true),
            "20,000; ahead".into(),
        ],
        vec![
            format!("events/s, {connections} connections"),
            format!("{:.0}", ours.many),
            cell(reference(|f| f.many), ""),
            ratio(ours.many, reference(|f| f.many), true),
            "20,000; ahead".into(),
        ],
        vec![
            format!("REQ p50, {} events stored", sizes.stored),
            format!("{:.0} µs", ours.p50_us),
            cell(reference(|f| f.p50_us), " µs"),
            ratio(ours.p50_us, reference(|f| f.p50_us), false),
            "ahead".into(),
        ],
        vec![
            "REQ p99".into(),
            format!("{:.0} µs", ours.p99_us),
            cell(reference(|f| f.p99_us), " µs"),
            ratio(ours.p99_us, reference(|f| f.p99_us), false),
            "ahead".into(),
        ],
        vec![
            format!("catch up on {} missed events", sizes.missed),
            format!("{:.2} s", ours.catch_up),
            theirs.as_ref().map_or("not installed".into(), |f| format!("{:.2} s (client copy)", f.catch_up)),
            ratio(ours.catch_up, reference(|f| f.catch_up), false),
            "ahead".into(),
        ],
    ];
    if json_out {
        let f = |f: &Figures| json!({"one": f.one, "many": f.many, "p50_us": f.p50_us, "p99_us": f.p99_us, "catch_up_s": f.catch_up});
        ui::json(&json!({ "nodus": f(&ours), "nostr_rs_relay": theirs.as_ref().map(f), "checks_per_core_per_s": checks }));
    } else {
        println!(
            "nodus bench social: {} events per ingest run, {AUTHORS} authors, up to {} in flight per connection, signatures checked by each relay",
            sizes.events, sizes.window
        );
        table(&["", "nodus", "nostr-rs-relay", "nodus vs it", "aim"], &rows);
        println!("one core checks {checks:.0} events/s (id and BIP-340 signature): the ceiling per core before anything else an event costs");
    }
    Ok(ExitCode::SUCCESS)
}
