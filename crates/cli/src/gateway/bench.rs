//! `nodus bench cdn`: streaming a torrent's file over HTTP from a cold swarm of three
//! seeders (nodus nodes on loopback), measured the same way for each streaming server
//! a user might pick: nodus's gateway; rqbit's HTTP streaming (`cargo install rqbit`
//! 9.1); WebTorrent's CLI 6 (from `interop/cdn`, installed with `npm ci --ignore-scripts`:
//! its WebRTC module cannot be built offline, so a stub stands in and it runs TCP-only);
//! and plain HTTP from nginx serving the file from disk, the floor no torrent client can
//! beat. The bench installs rqbit and WebTorrent on first use unless `--no-install`.
//!
//! WebTorrent's CLI adds a torrent only at start, so its "asked" moment is its launch
//! (Node's start-up, about 0.3 s, is in its first-byte figure); nodus and rqbit are
//! running already and asked over HTTP.
//!
//! Every run starts cold: a fresh nodus node (or a fresh rqbit process) that has none
//! of the torrent. Rows, each the median of `--runs` cold runs:
//! - first byte: from asking the client to add the magnet link (with the seeders'
//!   addresses) to the first byte of the file over HTTP;
//! - seek: once the metadata is in, a Range request at three quarters of the file, to
//!   its first byte;
//! - stream rate: the whole file over one GET, from the first byte to the last;
//! - first frame: a 20 s H.264 video (made by ffmpeg) played by headless Chromium from
//!   a page with only a `<video>` and the first-frame probe (nginx serves it for the
//!   others; nodus's gateway serves its own player page, because it refuses requests
//!   from another site's page): from asking the client to add the magnet link, as for
//!   the first byte, to the frame showing. Chromium is shown the page's origin before
//!   the client is asked (it starts a renderer for each new site, about 100 ms here);
//!   three cold clients a run (the median of all of them: Chromium's own times vary by
//!   tens of ms), after one page Chromium plays for nobody (its first is slower), each
//!   page left for `about:blank` once measured so no video plays on through the rows.
//!
//! The aims (issue 20): first byte under 100 ms, a seek answered under 200 ms, ahead of
//! the others on every row.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use nodus_gateway::{AddSource, GatewayHandle};
use nodus_testnet::browser::Browser;
use nodus_testnet::{Testnet, node_config, node_ip};
use nodus_torrent::TorrentHandle;
use serde_json::json;
use tokio::process::{Child, Command};

use crate::ui::progress::spinner;
use crate::ui::{self, table};

/// `nodus bench cdn` (flattened into `nodus bench`).
#[derive(clap::Subcommand, Debug)]
pub enum Area {
    /// Content delivery: first byte, seek and stream rate from a cold swarm of three
    /// seeders; beside rqbit's HTTP streaming, WebTorrent's CLI and nginx
    Cdn {
        /// Size of the file streamed, in MB
        #[arg(long, default_value_t = 64)]
        size_mb: usize,
        /// Cold runs per row and client (the median is shown)
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Do not install rqbit or WebTorrent when missing
        #[arg(long)]
        no_install: bool,
    },
}

impl Area {
    pub async fn run(self, json: bool) -> Result<ExitCode> {
        let Area::Cdn {
            size_mb,
            runs,
            no_install,
        } = self;
        if !no_install && which("rqbit").is_none() {
            install_rqbit();
        }
        if !no_install && !webtorrent().exists() {
            install_webtorrent();
        }
        run(size_mb.max(1) * 1_000_000, runs.max(1), json).await
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// `cargo install rqbit` (many minutes on 2 cores: the first run only).
fn install_rqbit() {
    eprintln!("installing rqbit 9.1 for the comparison (cargo install; --no-install skips it)");
    let ok = std::process::Command::new("cargo")
        .args(["install", "rqbit", "--version", "^9.1.0-beta.0", "--locked"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("rqbit could not be installed: its column reads \"not installed\"");
    }
}

fn interop_cdn() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop/cdn")
}

fn webtorrent() -> PathBuf {
    interop_cdn().join("node_modules/webtorrent-cli/bin/cmd.js")
}

/// `npm ci --ignore-scripts` in interop/cdn (the lockfile pins webtorrent-cli 6.0.1;
/// `overrides` puts the stub in place of node-datachannel).
fn install_webtorrent() {
    eprintln!("installing webtorrent-cli 6 for the comparison (npm; --no-install skips it)");
    let ok = std::process::Command::new("npm")
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(interop_cdn())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("webtorrent-cli could not be installed: its column reads \"not installed\"");
    }
}

/// A single-file torrent the seeders hold.
#[derive(Clone)]
struct Target {
    infohash: String,
    /// The file's name (in the torrent, and in nginx's root).
    name: String,
}

/// The three seeders and what they seed.
struct Swarm {
    net: Testnet,
    peers: Vec<String>,
    /// The file the byte rows stream, and its bytes.
    stream: Target,
    data: Vec<u8>,
    /// A short real video for the first-frame row (when ffmpeg is installed).
    video: Option<Target>,
    /// A seeder's directory (nginx serves it).
    dir: PathBuf,
}

impl Swarm {
    fn magnet(&self, t: &Target) -> String {
        let pe: String = self.peers.iter().map(|p| format!("&x.pe={p}")).collect();
        format!("magnet:?xt=urn:btih:{}&dn={}{pe}", t.infohash, t.name)
    }
}

async fn swarm(root: &Path, size: usize) -> Result<Swarm> {
    let net = Testnet::start(3, &root.join("nodes")).await?;
    let data = crate::torrent::demo::file_content(size);
    let video_file = root.join("pattern.mp4");
    let video = nodus_testnet::media::test_video(&video_file, 20)
        .await
        .ok()
        .and_then(|()| std::fs::read(&video_file).ok());
    let (mut stream, mut clip) = (None, None);
    let mut peers = Vec::new();
    let mut dir = PathBuf::new();
    for k in 0..3 {
        dir = root.join(format!("seed{k}"));
        let t = net
            .node(k)
            .service::<TorrentHandle>()
            .ok_or_else(|| anyhow!("node {k} runs no file sharing"))?;
        let (ih, addr) = crate::torrent::seed_copy(t, &dir, "stream.bin", &data).await?;
        stream = Some(Target { infohash: ih, name: "stream.bin".into() });
        if let Some(v) = &video {
            let (ih, _) = crate::torrent::seed_copy(t, &dir, "pattern.mp4", v).await?;
            clip = Some(Target { infohash: ih, name: "pattern.mp4".into() });
        }
        peers.push(addr.to_string());
    }
    std::fs::write(dir.join("player.html"), nodus_testnet::browser::PLAYER_PAGE)?;
    Ok(Swarm {
        net,
        peers,
        stream: stream.ok_or_else(|| anyhow!("nothing seeded"))?,
        data,
        video: clip,
        dir,
    })
}

/// One client's figures: medians over the runs.
#[derive(Clone, Copy, Debug, Default)]
struct Figures {
    first_byte_ms: f64,
    /// None without ffmpeg or Chromium.
    first_frame_ms: Option<f64>,
    seek_ms: f64,
    rate_mbs: f64,
}

/// A client that has added the torrent: where its file is, and when it was asked.
struct Opened {
    url: String,
    asked: Instant,
    /// The same moment on the wall clock (Chromium's page times are on it).
    asked_wall: SystemTime,
    /// Keeps the client's process alive for the run.
    _keep: Option<Child>,
    /// The fresh nodus node, stopped after the run (as the other clients' processes
    /// are killed), so finished runs do not load the machine.
    node: Option<usize>,
}

impl Opened {
    async fn close(self, s: &mut Swarm) {
        if let Some(k) = self.node {
            let _ = s.net.stop(k).await;
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Who {
    Nodus,
    Rqbit,
    WebTorrent,
    Nginx,
}

/// Where a client is asked for the torrent, and what it serves then.
struct Asking<'a> {
    target: &'a Target,
    /// Distinguishes the runs' download folders.
    run: usize,
    nginx: &'a str,
    /// For the first-frame row: Chromium, shown the origin of the page it will play
    /// from before the client is asked (Chromium starts a renderer for each site it
    /// has not shown yet, about 100 ms here, and every fresh node is a new site).
    browser: Option<&'a Browser>,
}

impl Asking<'_> {
    async fn visit_origin(&self, origin: &str) -> Result<()> {
        if let Some(b) = self.browser {
            b.goto(&format!("{origin}/")).await?;
        }
        Ok(())
    }
}

/// The moment a client is asked, on both clocks.
fn now() -> (Instant, SystemTime) {
    (Instant::now(), SystemTime::now())
}

/// A fresh, cold client with the torrent added; returns once the file's URL is known
/// (for torrents, once the metadata is in).
async fn open(who: Who, s: &mut Swarm, a: &Asking<'_>) -> Result<Opened> {
    match who {
        Who::Nodus => {
            let k = s.net.len();
            let k = s.net.add_node(node_config(node_ip(k), &[])).await?;
            let g = s
                .net
                .node(k)
                .service::<GatewayHandle>()
                .ok_or_else(|| anyhow!("no gateway"))?
                .clone();
            a.visit_origin(&g.url()).await?;
            let (asked, asked_wall) = now();
            let o = g.open(AddSource::Link(s.magnet(a.target)), None).await?;
            Ok(Opened {
                url: o.url,
                asked,
                asked_wall,
                _keep: None,
                node: Some(k),
            })
        }
        Who::Nginx => {
            a.visit_origin(a.nginx).await?;
            let (asked, asked_wall) = now();
            Ok(Opened {
                url: format!("{}/{}", a.nginx, a.target.name),
                asked,
                asked_wall,
                _keep: None,
                node: None,
            })
        }
        Who::Rqbit => rqbit_open(s, a).await,
        Who::WebTorrent => webtorrent_open(s, a).await,
    }
}

/// Launches WebTorrent's CLI on the magnet link; returns once its stream answers.
async fn webtorrent_open(s: &Swarm, a: &Asking<'_>) -> Result<Opened> {
    let target = a.target;
    let dir = tempfile::tempdir()?.keep();
    let port = nodus_testnet::free_port()?;
    a.visit_origin(a.nginx).await?;
    let (asked, asked_wall) = now();
    let child = Command::new("node")
        .arg(webtorrent())
        .args(["download", &s.magnet(target), "--keep-seeding", "--quiet", "-p"])
        .arg(port.to_string())
        .arg("-o")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting webtorrent")?;
    let url = format!(
        "http://127.0.0.1:{port}/webtorrent/{}/{}",
        target.infohash, target.name
    );
    // Its server answers 404 until the torrent's metadata is in.
    let http = reqwest::Client::new();
    for _ in 0..1500 {
        if let Ok(r) = http.head(&url).send().await
            && r.status().is_success()
        {
            return Ok(Opened {
                url,
                asked,
                asked_wall,
                _keep: Some(child),
                node: None,
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("webtorrent did not serve {url}")
}

/// A fresh rqbit process with the torrent added. The port is chosen free, then given
/// to rqbit: another process may take it in between, so one that does not come up is
/// started again on another.
async fn rqbit_open(s: &Swarm, a: &Asking<'_>) -> Result<Opened> {
    let dir = tempfile::tempdir()?.keep();
    let http = reqwest::Client::new();
    let mut failed = String::new();
    for _ in 0..3 {
        let port = nodus_testnet::free_port()?;
        let api = format!("http://127.0.0.1:{port}");
        let log = dir.join(format!("rqbit-{port}.log"));
        let mut child = Command::new("rqbit")
            .args(["--disable-dht", "--disable-dht-persistence", "--disable-upnp-port-forward"])
            .arg("--http-api-listen-addr")
            .arg(format!("127.0.0.1:{port}"))
            .args(["server", "start", "--disable-persistence"])
            .arg(&dir)
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .env("XDG_CACHE_HOME", dir.join("cache"))
            .env("XDG_DATA_HOME", dir.join("data"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()
            .context("starting rqbit")?;
        if !up(&http, &api, &mut child).await {
            let _ = child.kill().await;
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            failed = text.lines().rev().take(3).collect::<Vec<_>>().join(" / ");
            continue;
        }
        a.visit_origin(a.nginx).await?;
        let (asked, asked_wall) = now();
        let v: serde_json::Value = http
            .post(format!(
                "{api}/torrents?overwrite=true&initial_peers={}&output_folder={}",
                s.peers.join(","),
                dir.join(format!("out{}", a.run)).display()
            ))
            .body(s.magnet(a.target))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let id = v["id"].as_u64().ok_or_else(|| anyhow!("rqbit's answer: {v}"))?;
        return Ok(Opened {
            url: format!("{api}/torrents/{id}/stream/0"),
            asked,
            asked_wall,
            _keep: Some(child),
            node: None,
        });
    }
    bail!("rqbit did not come up (three tries); its last words: {failed}")
}

/// Whether `url` answers within 10 s while `child` runs.
async fn up(http: &reqwest::Client, url: &str, child: &mut Child) -> bool {
    for _ in 0..200 {
        if http.get(url).send().await.is_ok() {
            return true;
        }
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A GET (with `range`): when its first byte came, its body, when its last came.
async fn fetch(
    http: &reqwest::Client,
    url: &str,
    range: Option<String>,
) -> Result<(Instant, Vec<u8>, Instant)> {
    let mut req = http.get(url);
    if let Some(r) = range {
        req = req.header(reqwest::header::RANGE, r);
    }
    let mut resp = req.send().await?.error_for_status()?;
    let mut body = Vec::new();
    let mut first = None;
    while let Some(c) = resp.chunk().await? {
        if first.is_none() && !c.is_empty() {
            first = Some(Instant::now());
        }
        body.extend_from_slice(&c);
    }
    let first = first.ok_or_else(|| anyhow!("{url}: an empty body"))?;
    Ok((first, body, Instant::now()))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(from: Instant, to: Instant) -> f64 {
    (to - from).as_secs_f64() * 1000.0
}

/// First-frame samples per run (see the module docs).
const FRAME_SAMPLES: usize = 3;
/// Cold clients per run: one for each byte row, then the first-frame samples.
const SLOTS: usize = 3 + FRAME_SAMPLES;

async fn measure(
    who: Who,
    s: &mut Swarm,
    runs: usize,
    nginx: &str,
    browser: Option<&Browser>,
) -> Result<Figures> {
    let http = reqwest::Client::new();
    let (mut first, mut frame, mut seek, mut rate) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let size = s.data.len();
    let chunk = 65536.min(size);
    let stream = s.stream.clone();
    let video = s.video.clone();
    let asking = |target, run, browser| Asking {
        target,
        run,
        nginx,
        browser,
    };
    for run in 0..runs {
        // First byte: from asking the client to add the torrent.
        let o = open(who, s, &asking(&stream, run * SLOTS, None)).await?;
        let (at, body, _) = fetch(&http, &o.url, Some(format!("bytes=0-{}", chunk - 1))).await?;
        if body[..] != s.data[..chunk] {
            bail!("{}: wrong bytes", o.url);
        }
        first.push(ms(o.asked, at));
        o.close(s).await;
        // Seek: a cold client with the metadata in, asked for the last quarter.
        let o = open(who, s, &asking(&stream, run * SLOTS + 1, None)).await?;
        let from = size * 3 / 4;
        let to = (from + chunk).min(size);
        let asked = Instant::now();
        let (at, body, _) = fetch(&http, &o.url, Some(format!("bytes={from}-{}", to - 1))).await?;
        if body[..] != s.data[from..to] {
            bail!("{}: wrong bytes after a seek", o.url);
        }
        seek.push(ms(asked, at));
        o.close(s).await;
        // Stream rate: the whole file, first byte to last.
        let o = open(who, s, &asking(&stream, run * SLOTS + 2, None)).await?;
        let (at, body, end) = fetch(&http, &o.url, None).await?;
        if body != s.data {
            bail!("{}: the file differs", o.url);
        }
        rate.push(size as f64 / 1e6 / (end - at).as_secs_f64().max(1e-6));
        o.close(s).await;
        // First frame: from asking a cold client to add the torrent to the first frame
        // Chromium shows, from one page (served by nginx) for every client.
        for sample in 0..FRAME_SAMPLES {
            let (Some(b), Some(video)) = (browser, video.as_ref()) else {
                break;
            };
            let o = open(who, s, &asking(video, run * SLOTS + 3 + sample, Some(b))).await?;
            // nodus's gateway refuses what a page of another site asks for (and nginx's
            // page is on another loopback IP): its own player page, the same HTML.
            let page = match who {
                Who::Nodus => o.url.replacen("/content/", "/play/", 1),
                _ => format!("{nginx}/player.html?src={}", crate::ui::enc(&o.url)),
            };
            let shown = b.first_frame(&page, Duration::from_secs(60)).await?;
            let took = shown.duration_since(o.asked_wall).unwrap_or_default();
            frame.push(took.as_secs_f64() * 1000.0);
            // The video would play on (decoded and drawn) through the next rows.
            b.goto("about:blank").await?;
            o.close(s).await;
        }
    }
    Ok(Figures {
        first_byte_ms: median(first),
        first_frame_ms: (!frame.is_empty()).then(|| median(frame)),
        seek_ms: median(seek),
        rate_mbs: median(rate),
    })
}

/// nginx serving `root` on a free port; killed on drop.
async fn nginx(dir: &Path, root: &Path) -> Result<(Child, String)> {
    std::fs::create_dir_all(dir)?;
    let port = nodus_testnet::free_port()?;
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off; master_process off; pid {d}/nginx.pid; error_log {d}/error.log;\n\
             events {{}}\n\
             http {{ access_log off; sendfile on; client_body_temp_path {d}; proxy_temp_path {d}; \
             fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d}; \
             server {{ listen 127.0.0.1:{port}; root {r}; }} }}\n",
            d = dir.display(),
            r = root.display()
        ),
    )?;
    let mut child = Command::new("nginx")
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(dir)
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("nginx (scripts/test installs nginx-light)")?;
    let url = format!("http://127.0.0.1:{port}");
    if !up(&reqwest::Client::new(), &url, &mut child).await {
        bail!("nginx did not serve {url}");
    }
    Ok((child, url))
}

async fn run(size: usize, runs: usize, json_out: bool) -> Result<ExitCode> {
    let tmp = tempfile::tempdir()?;
    let pb = spinner("three nodes seed the file");
    let mut s = swarm(tmp.path(), size).await?;
    pb.finish_and_clear();
    let (_nginx, nginx_url) = nginx(&tmp.path().join("nginx"), &s.dir).await?;
    let browser = match (&s.video, nodus_testnet::browser::available()) {
        (Some(_), true) => Some(nodus_testnet::browser::Browser::start().await?),
        _ => None,
    };
    if let (Some(b), Some(v)) = (&browser, &s.video) {
        // Chromium's first page plays slower than the rest: not in anyone's figures.
        let page = format!("{nginx_url}/player.html?src={}", crate::ui::enc(&format!("{nginx_url}/{}", v.name)));
        b.first_frame(&page, Duration::from_secs(60)).await?;
        b.goto("about:blank").await?;
    }
    let mut results: Vec<(&str, Option<Figures>)> = Vec::new();
    for (name, who, present) in [
        ("nodus", Who::Nodus, true),
        ("rqbit", Who::Rqbit, which("rqbit").is_some()),
        ("webtorrent", Who::WebTorrent, webtorrent().exists()),
        ("nginx", Who::Nginx, true),
    ] {
        if !present {
            results.push((name, None));
            continue;
        }
        let pb = spinner(&format!("{name}: {runs} cold runs of each row"));
        let f = measure(who, &mut s, runs, &nginx_url, browser.as_ref())
            .await
            .with_context(|| format!("measuring {name}"))?;
        pb.finish_and_clear();
        results.push((name, Some(f)));
    }
    if let Some(b) = browser {
        b.quit().await;
    }
    s.net.shutdown().await;
    let ours = results[0].1.unwrap_or_default();
    type Pick = fn(&Figures) -> Option<f64>;
    let cell = |f: Option<Figures>, pick: Pick, unit: &str| match f {
        None => "not installed".into(),
        Some(f) => pick(&f).map_or("no Chromium or ffmpeg".into(), |v| format!("{v:.1} {unit}")),
    };
    let vs = |f: Option<Figures>, pick: Pick, higher: bool| {
        match (f.as_ref().and_then(pick), pick(&ours)) {
            (Some(theirs), Some(mine)) if theirs > 0.0 && mine > 0.0 => {
                format!("{:.2}x", if higher { mine / theirs } else { theirs / mine })
            }
            _ => "-".into(),
        }
    };
    let rows_spec: [(&str, Pick, &str, bool, &str); 4] = [
        ("first byte, cold", |f| Some(f.first_byte_ms), "ms", false, "< 100 ms; ahead"),
        ("first frame, cold", |f| f.first_frame_ms, "ms", false, "ahead"),
        ("seek to 3/4, cold", |f| Some(f.seek_ms), "ms", false, "< 200 ms; ahead"),
        ("stream rate", |f| Some(f.rate_mbs), "MB/s", true, "ahead"),
    ];
    let mut rows = Vec::new();
    for (what, pick, unit, higher, aim) in rows_spec {
        let mut row = vec![what.to_string()];
        for (_, f) in &results {
            row.push(cell(*f, pick, unit));
        }
        row.push(vs(results[1].1, pick, higher));
        row.push(vs(results[2].1, pick, higher));
        row.push(aim.to_string());
        rows.push(row);
    }
    if json_out {
        let f = |f: &Option<Figures>| {
            f.map(|f| json!({"first_byte_ms": f.first_byte_ms, "first_frame_ms": f.first_frame_ms, "seek_ms": f.seek_ms, "rate_mbs": f.rate_mbs}))
        };
        ui::json(&json!({
            "size": size, "runs": runs,
            "nodus": f(&results[0].1), "rqbit": f(&results[1].1),
            "webtorrent": f(&results[2].1), "nginx": f(&results[3].1),
        }));
    } else {
        println!(
            "nodus bench cdn: a {} MB file from three seeders on loopback, median of {runs} cold runs per row",
            size / 1_000_000
        );
        table(
            &["", "nodus", "rqbit", "webtorrent", "nginx (floor)", "nodus vs rqbit", "vs webtorrent", "aim"],
            &rows,
        );
    }
    Ok(ExitCode::SUCCESS)
}
