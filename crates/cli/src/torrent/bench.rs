//! `nodus bench torrent`: one loopback swarm (a file, three seeders, a tracker) and one
//! leecher at a time (nodus, then libtorrent, aria2 and Transmission) against the same
//! seeders, each in its own process; wall time, MB/s, ratio to nodus and peak RSS. Then
//! the time to hash-check the finished download (nodus on every core, beside `sha1sum`
//! of the same file on one).
//!
//! The seeders are libtorrent (interop/bt/lt_peer.py), the reference implementation, so
//! no leecher is measured against its own code. A client that is not installed is
//! reported as missing, not failed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use nodus_node::ApiClient;
use serde_json::json;

use crate::ui::stats::cpu_secs;
use crate::ui::progress::spinner;
use crate::ui::{self, table};

/// `nodus bench torrent` (flattened into `nodus bench`).
#[derive(clap::Subcommand, Debug)]
pub enum Area {
    /// A loopback swarm: nodus, libtorrent, aria2 and Transmission each download the
    /// same file from the same seeders; MB/s, ratio to nodus, peak RSS; hash-check speed
    Torrent {
        /// Size of the file, in MiB
        #[arg(long, default_value_t = 2048)]
        size_mib: u64,
        /// libtorrent seeders
        #[arg(long, default_value_t = 3)]
        seeders: usize,
        /// Seconds a leecher is given before it is reported as not finished
        #[arg(long, default_value_t = 300)]
        limit_secs: u64,
        /// Only these leechers, e.g. nodus,aria2 (default: all four)
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
}

impl Area {
    pub async fn run(self, json: bool) -> Result<ExitCode> {
        let Area::Torrent {
            size_mib,
            seeders,
            limit_secs,
            only,
        } = self;
        let o = Options {
            size_mib,
            seeders,
            limit_secs,
            only,
        };
        run(o, json).await
    }
}

pub struct Options {
    pub size_mib: u64,
    pub seeders: usize,
    /// Longest a leecher is given before it is reported as not finished.
    pub limit_secs: u64,
    /// Only these leechers (nodus, libtorrent, aria2, transmission); all when empty.
    pub only: Vec<String>,
}

fn lt_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/bt/lt_peer.py")
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Peak resident memory of a live process, in bytes (VmHWM).
fn peak_rss(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn fill(path: &Path, bytes: u64) -> Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        for c in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    f.get_ref().sync_all()?;
    Ok(())
}

/// Writes every dirty page out, so that each leecher starts with the disk idle rather
/// than behind the write-back of the file or of the previous leecher's download.
/// Before each leecher: dirty pages written out, then a pause, so that every leecher
/// starts from the same memory state. On a VM that hands freed memory back to its host
/// (free page reporting, a few seconds after the free; this project's CI machines do),
/// writing into page-cache pages another process has just freed runs about ten times as
/// fast as writing into fresh ones (`dd` of 2 GiB here: 3.3 GB/s right after deleting a
/// 2 GiB file, 0.34 GB/s three seconds later). Without the pause the leecher after one
/// whose download was just deleted would get that head start. Small files (the test's
/// 8 MiB) skip the pause: a few MiB of warm pages change nothing.
fn settle_disk(size: u64) {
    let _ = Command::new("sync").status();
    if size >= 256 << 20 {
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// What a leecher's process used while it downloaded: wall time, peak RSS, CPU time
/// (sampled every 20 ms, so up to 20 ms of a client that exits when done is missed).
#[derive(Clone, Copy)]
struct Usage {
    secs: f64,
    rss: Option<u64>,
    cpu: Option<f64>,
}

struct Sampler {
    pid: u32,
    start: Instant,
    rss: Option<u64>,
    /// CPU time at the start (a node process has started up before it is asked).
    cpu_before: f64,
    cpu: Option<f64>,
}

impl Sampler {
    /// Timing from `start`; CPU time from now.
    fn new(pid: u32, start: Instant) -> Sampler {
        Sampler {
            pid,
            start,
            rss: None,
            cpu_before: cpu_secs(pid).unwrap_or(0.0),
            cpu: None,
        }
    }
    fn sample(&mut self) {
        self.rss = peak_rss(self.pid).or(self.rss);
        self.cpu = cpu_secs(self.pid).or(self.cpu);
    }
    fn usage(&self) -> Usage {
        Usage {
            secs: self.start.elapsed().as_secs_f64(),
            rss: self.rss,
            cpu: self.cpu.map(|c| c - self.cpu_before),
        }
    }
}

/// CPU time the seeders have used so far.
fn seeders_cpu(seeders: &[Proc]) -> Option<f64> {
    seeders.iter().map(|p| cpu_secs(p.0.id())).sum()
}

struct Run {
    client: &'static str,
    usage: Option<Usage>,
    /// CPU time the seeders used during this leecher's download.
    seeders_cpu: Option<f64>,
    note: String,
}

impl Run {
    fn new(client: &'static str, result: Result<Usage>, seeders_cpu: Option<f64>) -> Run {
        match result {
            Ok(u) => Run {
                client,
                usage: Some(u),
                seeders_cpu,
                note: String::new(),
            },
            Err(e) => Run {
                client,
                usage: None,
                seeders_cpu: None,
                note: format!("{e:#}"),
            },
        }
    }
}

/// Waits for `done` while sampling `pid`'s peak RSS and CPU time.
fn watch(pid: u32, limit: Duration, mut done: impl FnMut() -> Result<bool>) -> Result<Usage> {
    let mut s = Sampler::new(pid, Instant::now());
    loop {
        s.sample();
        if done()? {
            return Ok(s.usage());
        }
        if s.start.elapsed() > limit {
            return Err(anyhow!("not done in {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last non-empty line a client wrote to its log, to say why it did not finish.
fn last_line(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    Some(line.chars().take(200).collect())
}

fn same_size(path: &Path, want: u64) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() == want)
}

pub async fn run(o: Options, json_out: bool) -> Result<ExitCode> {
    let size = o.size_mib * 1024 * 1024;
    let work = tempfile::Builder::new()
        .prefix("nodus-bench-torrent")
        .tempdir_in("/var/tmp")?;
    let w = work.path().to_path_buf();
    let pb = spinner(&format!(
        "writing a {} MiB file and its torrent",
        o.size_mib
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let tracker = format!("http://{}/announce", listener.local_addr()?);
    let tracker_task = tokio::spawn(nodus_torrent::tracker_server::serve(listener));
    let seed_dir = w.join("seed");
    std::fs::create_dir_all(&seed_dir)?;
    let file = seed_dir.join("big.bin");
    let (f2, t2) = (file.clone(), tracker.clone());
    let meta = tokio::task::spawn_blocking(move || -> Result<_> {
        fill(&f2, size)?;
        Ok(nodus_torrent::create::create(
            &f2,
            &nodus_torrent::create::CreateOptions {
                version: nodus_torrent::metainfo::Version::V1,
                trackers: vec![t2],
                ..Default::default()
            },
        )?)
    })
    .await??;
    let torrent = w.join("big.torrent");
    std::fs::write(&torrent, meta.to_bytes())?;
    pb.finish_and_clear();

    let has_lt = Command::new("python3")
        .args(["-c", "import libtorrent"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_lt {
        return Err(anyhow!(
            "the seeders are libtorrent: `python3 -m pip install -r interop/bt/requirements.txt` (scripts/test does it)"
        ));
    }
    let pb = spinner(&format!("starting {} libtorrent seeders", o.seeders));
    let mut seeders = Vec::new();
    for _ in 0..o.seeders {
        let mut c = Command::new("python3")
            .arg(lt_script())
            .args(["seed", "--timeout", "600", "--torrent"])
            .arg(&torrent)
            .arg("--dir")
            .arg(&seed_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(c.stdout.take().context("seeder stdout")?).read_line(&mut line)?;
        let v: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("seeder said {line:?}"))?;
        if v["seeding"] != true {
            return Err(anyhow!("a seeder does not have the whole file: {line}"));
        }
        seeders.push(Proc(c));
    }
    pb.finish_and_clear();
    // Let the seeders announce before any leecher asks.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let limit = Duration::from_secs(o.limit_secs);
    let mut runs = Vec::new();
    let name = "big.bin";

    let wanted = |c: &str| {
        o.only.is_empty()
            || o.only
                .iter()
                .any(|w| c.to_lowercase().starts_with(&w.to_lowercase()))
    };
    // nodus, in a process of its own like the others.
    if wanted("nodus") {
        settle_disk(size);
        let pb = spinner("nodus downloading");
        let before = seeders_cpu(&seeders);
        let result = nodus_leech(&w, &torrent, name, size, limit).await;
        let used = seeders_cpu(&seeders).zip(before).map(|(a, b)| a - b);
        runs.push(Run::new("nodus", result, used));
        pb.finish_and_clear();
    }

    let clients: [(&'static str, &str); 3] = [
        ("libtorrent 2.1", "python3"),
        ("aria2", "aria2c"),
        ("Transmission", "transmission-cli"),
    ];
    for (client, bin) in clients {
        if !wanted(client) {
            continue;
        }
        settle_disk(size);
        let out = w.join(format!("out-{bin}"));
        std::fs::create_dir_all(&out)?;
        let pb = spinner(&format!("{client} downloading"));
        let mut cmd = Command::new(bin);
        let marker = out.join("done");
        match bin {
            "python3" => {
                cmd.arg(lt_script())
                    .args(["download", "--timeout", "600", "--torrent"])
                    .arg(&torrent)
                    .arg("--dir")
                    .arg(&out);
            }
            "aria2c" => {
                cmd.args([
                    "--enable-dht=false",
                    "--bt-enable-lpd=false",
                    "--seed-time=0",
                    "--quiet=true",
                ])
                .args([
                    "--listen-port=6930-6939",
                    "--file-allocation=none",
                    "--bt-max-peers=0",
                ])
                .arg(format!("--dir={}", out.display()))
                .arg(&torrent);
            }
            _ => {
                let script = out.join("finished.sh");
                std::fs::write(
                    &script,
                    format!("#!/bin/sh\ntouch '{}'\n", marker.display()),
                )?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
                // TCP only, like every other client here; no DHT or local discovery.
                std::fs::create_dir_all(out.join(".cfg"))?;
                std::fs::write(
                    out.join(".cfg/settings.json"),
                    r#"{"dht-enabled": false, "lpd-enabled": false, "utp-enabled": false}"#,
                )?;
                // A port below the kernel's ephemeral range (32768 and up), which no
                // socket bound to port 0 elsewhere can be holding: Transmission dials no
                // loopback peer, so if it could not listen it would never get a byte.
                cmd.args(["-p", "27530", "--no-portmap", "-et", "-f"])
                    .arg(&script)
                    .arg("-g")
                    .arg(out.join(".cfg"))
                    .arg("-w")
                    .arg(&out)
                    .arg(&torrent);
            }
        }
        let log = out.join("client.log");
        let child = match cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                pb.finish_and_clear();
                runs.push(Run::new(client, Err(anyhow!("not installed ({e})")), None));
                continue;
            }
        };
        let pid = child.id();
        let mut p = Proc(child);
        let target = out.join(name);
        let before = seeders_cpu(&seeders);
        let result = tokio::task::block_in_place(|| {
            watch(pid, limit, || {
                Ok(match bin {
                    "transmission-cli" => marker.exists(),
                    _ => match p.0.try_wait()? {
                        Some(st) if st.success() => true,
                        Some(st) => return Err(anyhow!("exited with {st}")),
                        None => false,
                    },
                })
            })
        });
        let used = seeders_cpu(&seeders).zip(before).map(|(a, b)| a - b);
        drop(p);
        pb.finish_and_clear();
        let result = result
            .and_then(|u| {
                if same_size(&target, size) {
                    Ok(u)
                } else {
                    Err(anyhow!("finished without the whole file"))
                }
            })
            .map_err(|e| match last_line(&log) {
                Some(said) => e.context(format!("{client} last said: {said}")),
                None => e,
            });
        runs.push(Run::new(client, result, used));
        let _ = std::fs::remove_dir_all(&out);
    }
    drop(seeders);
    tracker_task.abort();

    // Hash check of the complete file: nodus on every core, sha1sum on one.
    let pb = spinner("hash-checking the download");
    let (m2, dir2) = (meta.clone(), seed_dir.clone());
    let (check_secs, good) = tokio::task::spawn_blocking(move || {
        let storage = nodus_torrent::storage::Storage::new(&dir2, &m2.info);
        let t = Instant::now();
        let have = nodus_torrent::check::check(&m2, &storage);
        (t.elapsed().as_secs_f64(), have.count())
    })
    .await?;
    let t = Instant::now();
    let sha1sum_ok = Command::new("sha1sum")
        .arg(&file)
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let sha1sum_secs = t.elapsed().as_secs_f64();
    pb.finish_and_clear();

    let mb = size as f64 / 1e6;
    let nodus_rate = runs
        .iter()
        .find(|r| r.client == "nodus")
        .and_then(|r| r.usage)
        .map(|u| u.secs)
        .map(|s| mb / s);
    if json_out {
        ui::json(&json!({
            "size_bytes": size,
            "seeders": o.seeders,
            "runs": runs.iter().map(|r| json!({
                "client": r.client, "seconds": r.usage.map(|u| u.secs),
                "mb_per_s": r.usage.map(|u| mb / u.secs),
                "peak_rss_bytes": r.usage.and_then(|u| u.rss),
                "cpu_seconds": r.usage.and_then(|u| u.cpu),
                "seeders_cpu_seconds": r.seeders_cpu, "note": r.note,
            })).collect::<Vec<_>>(),
            "check": { "nodus_seconds": check_secs, "pieces_ok": good, "sha1sum_seconds": sha1sum_ok.then_some(sha1sum_secs) },
        }));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "\nbench torrent: {:.0} MB file, {} pieces of {} KiB, {} libtorrent seeders on loopback, one leecher at a time\n",
        mb,
        meta.info.num_pieces,
        meta.info.piece_length / 1024,
        o.seeders
    );
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let u = r.usage;
            let rate = u.map(|u| mb / u.secs);
            let secs = |x: Option<f64>| x.map_or("-".into(), |s| format!("{s:.2}"));
            vec![
                r.client.to_string(),
                secs(u.map(|u| u.secs)),
                rate.map_or("-".into(), |x| format!("{x:.0}")),
                match (rate, nodus_rate) {
                    (Some(x), Some(n)) => format!("{:.2}", n / x),
                    _ => "-".into(),
                },
                u.and_then(|u| u.rss)
                    .map_or("-".into(), |b| format!("{:.0}", b as f64 / 1e6)),
                secs(u.and_then(|u| u.cpu)),
                secs(r.seeders_cpu),
                r.note.clone(),
            ]
        })
        .collect();
    table(
        &[
            "leecher",
            "seconds",
            "MB/s",
            "nodus speed / its",
            "peak RSS MB",
            "CPU s",
            "seeders' CPU s",
            "note",
        ],
        &rows,
    );
    println!();
    table(
        &["hash check of the finished file", "seconds", "GB/s"],
        &[
            vec![
                format!("nodus ({} pieces verified, all cores)", good),
                format!("{check_secs:.2}"),
                format!("{:.2}", size as f64 / 1e9 / check_secs),
            ],
            vec![
                "sha1sum (one core, for reference)".into(),
                if sha1sum_ok {
                    format!("{sha1sum_secs:.2}")
                } else {
                    "-".into()
                },
                if sha1sum_ok {
                    format!("{:.2}", size as f64 / 1e9 / sha1sum_secs)
                } else {
                    "-".into()
                },
            ],
        ],
    );
    Ok(ExitCode::SUCCESS)
}

/// A `nodus up` process with a fresh data dir downloads the torrent through its API.
async fn nodus_leech(
    w: &Path,
    torrent: &Path,
    name: &str,
    size: u64,
    limit: Duration,
) -> Result<Usage> {
    let exe = std::env::current_exe()?;
    let dir = w.join("nodus-leech");
    let st = Command::new(&exe)
        .arg("--data-dir")
        .arg(&dir)
        .arg("init")
        .stdout(Stdio::null())
        .status()?;
    if !st.success() {
        return Err(anyhow!("nodus init failed"));
    }
    std::fs::write(
        dir.join("config.toml"),
        "[p2p]\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\nmdns = false\n[chain]\nenabled = false\n[torrent]\nlisten = \"127.0.0.1:0\"\ndht_bootstrap = []\n",
    )?;
    let child = Command::new(&exe)
        .arg("--data-dir")
        .arg(&dir)
        .args(["up", "--log", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id();
    let _p = Proc(child);
    let dd = nodus_core::DataDir::new(&dir);
    let t = Instant::now();
    let api = loop {
        if let Ok(a) = ApiClient::from_data_dir(&dd)
            && a.get("/api/v1/status").await.is_ok()
        {
            break a;
        }
        if t.elapsed() > Duration::from_secs(20) {
            return Err(anyhow!("nodus did not start"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let out = w.join("out-nodus");
    let bytes = std::fs::read(torrent)?;
    let start = Instant::now();
    let v = api
        .post(
            "/api/v1/torrent",
            &json!({ "torrent_base64": data_encoding::BASE64.encode(&bytes), "out_dir": out.display().to_string() }),
        )
        .await?;
    let id = v["id"].as_str().unwrap_or_default().to_string();
    let mut sampler = Sampler::new(pid, start);
    loop {
        sampler.sample();
        let v = api.get(&format!("/api/v1/torrent/{id}")).await?;
        if v["state"] == "seeding" {
            break;
        }
        if start.elapsed() > limit {
            return Err(anyhow!("not done in {limit:?}: {v}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let usage = sampler.usage();
    if !same_size(&out.join(name), size) {
        return Err(anyhow!("finished without the whole file"));
    }
    let _ = std::fs::remove_dir_all(&out);
    Ok(usage)
}
