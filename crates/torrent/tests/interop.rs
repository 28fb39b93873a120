//! Tier 3: real BitTorrent clients nobody here wrote, on loopback, against nodus.
//! libtorrent (PyPI `libtorrent`, through interop/bt/lt_peer.py), aria2 (`aria2c`) and
//! Transmission (`transmission-cli`) each download what nodus seeds, byte for byte, and
//! seed what nodus downloads. scripts/test installs all three.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nodus_torrent::{AddRequest, ShareRequest};

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

/// Starts an open tracker on 127.0.0.1 and returns its announce URL.
async fn tracker() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(nodus_torrent::tracker_server::serve(l));
    format!("http://{addr}/announce")
}

/// Starts our open tracker with UDP too; returns its udp:// announce URL.
async fn udp_tracker() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let u = tokio::net::UdpSocket::bind(addr).await.unwrap();
    tokio::spawn(nodus_torrent::tracker_server::serve_with(l, Some(u)));
    format!("udp://{addr}/announce")
}

/// opentracker (Debian's, built whitelist-only) on UDP and HTTP, allowing `hashes`.
fn opentracker(dir: &Path, hashes: &[&str]) -> (Proc, u16) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("whitelist"), hashes.join("\n") + "\n").unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("opentracker")
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-P",
            &port.to_string(),
        ])
        .args(["-w", "whitelist", "-d"])
        .arg(dir)
        .current_dir(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("opentracker (scripts/test installs it)");
    // Up once its TCP port answers.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "opentracker did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (Proc(child), port)
}

struct Shared {
    seed: Node,
    src: PathBuf,
    torrent: PathBuf,
    /// The magnet link `share` gave.
    magnet: String,
    /// The web server serving the album when asked for (nginx).
    web: Option<(Proc, String)>,
    _tmp: tempfile::TempDir,
}

#[derive(Default)]
struct SeedOpts {
    trackers: Vec<String>,
    dht_bootstrap: Vec<String>,
    /// The seeder's IP, when not one of loopback's.
    ip: Option<String>,
    /// Serve the album over HTTP too and list that as the torrent's web seed.
    web_seed: bool,
}

/// What `nodus share` makes with no flag: the torrent every client gets in these tests
/// unless one tests a format (issue 17 point 12: hand clients what users get).
const DEFAULT: &str = "the default";

/// A nodus node seeding a multi-file directory of `version` ("v1", "v2", "hybrid", or
/// [`DEFAULT`]: no version and no piece length asked, as `nodus share` with no flag).
async fn nodus_seed(version: &str, trackers: Vec<String>) -> Shared {
    seed_album(
        version,
        SeedOpts {
            trackers,
            ..Default::default()
        },
    )
    .await
}

/// The same, with its DHT joining through `dht_bootstrap`.
async fn nodus_seed_in_dht(
    version: &str,
    trackers: Vec<String>,
    dht_bootstrap: Vec<String>,
) -> Shared {
    seed_album(
        version,
        SeedOpts {
            trackers,
            dht_bootstrap,
            ..Default::default()
        },
    )
    .await
}

async fn seed_album(version: &str, opts: SeedOpts) -> Shared {
    let tmp = tempfile::tempdir().unwrap();
    let seed = node_with(&tmp.path().join("seed"), |c| {
        c.dht_bootstrap = opts.dht_bootstrap;
        if let Some(ip) = &opts.ip {
            c.listen = format!("{ip}:0");
        }
    })
    .await;
    let src = tmp.path().join("share").join("album");
    std::fs::create_dir_all(src.join("disc 2")).unwrap();
    std::fs::write(src.join("01 intro.flac"), content(1_500_000, 11)).unwrap();
    std::fs::write(src.join("disc 2/02 outro.flac"), content(2_300_001, 12)).unwrap();
    std::fs::write(src.join("cover.jpg"), content(90_000, 13)).unwrap();
    let web = opts
        .web_seed
        .then(|| nginx(&tmp.path().join("nginx"), &tmp.path().join("share")))
        .map(|(p, port)| (p, format!("http://127.0.0.1:{port}/")));
    let shared = seed
        .handle
        .share(ShareRequest {
            path: src.display().to_string(),
            version: (version != DEFAULT).then(|| version.into()),
            trackers: opts.trackers,
            web_seeds: web.iter().map(|(_, u)| u.clone()).collect(),
            piece_length: (version != DEFAULT).then_some(256 * 1024),
        })
        .await
        .unwrap();
    Shared {
        seed,
        src,
        torrent: PathBuf::from(shared.torrent_path),
        magnet: shared.magnet,
        web,
        _tmp: tmp,
    }
}

/// nginx (Debian's nginx-light) serving `root` on a free loopback port.
fn nginx(dir: &Path, root: &Path) -> (Proc, u16) {
    std::fs::create_dir_all(dir).unwrap();
    let port = free_port();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off; master_process off; user root; pid {d}/nginx.pid; error_log {d}/error.log;\n\
             events {{}}\n\
             http {{ access_log off; client_body_temp_path {d}; proxy_temp_path {d}; \
             fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d}; \
             server {{ listen 127.0.0.1:{port}; root {r}; }} }}\n",
            d = dir.display(),
            r = root.display()
        ),
    )
    .unwrap();
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(dir)
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (scripts/test installs nginx-light)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nginx did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (Proc(child), port)
}

/// Runs `lt_peer.py download ARGS` to the end and returns its JSON line.
fn run_lt_download(args: &[&str]) -> serde_json::Value {
    let out = Command::new("python3")
        .arg(lt_script())
        .arg("download")
        .args(args)
        .args(["--timeout", "60"])
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "libtorrent did not finish:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim().lines().last().unwrap_or_default()).unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `leech` downloads the album of `s` from `source` (and `peers`, if any), byte for
/// byte, and gets every piece from `from` (a peer's address or a web seed's URL).
async fn leech_album_from(
    leech: &Node,
    s: &Shared,
    source: String,
    from: impl std::fmt::Display,
    peers: Vec<String>,
) -> nodus_torrent::TorrentInfo {
    let (out, done) = download(leech, source, peers, 60).await;
    assert_same_tree(&s.src, &out.join("album"));
    assert_eq!(
        done.pieces_from,
        vec![(from.to_string(), done.pieces_total)],
        "every piece from {from}"
    );
    done
}

/// libtorrent downloads the album `s` seeds, finding it as `args` say, byte for byte.
async fn lt_downloads_album(s: &Shared, args: Vec<String>) {
    let out = s.seed.dir.join("lt");
    let mut all = vec!["--dir".to_string(), out.display().to_string()];
    all.extend(args);
    let v = tokio::task::spawn_blocking(move || {
        run_lt_download(&all.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_same_tree(&s.src, &out.join("album"));
}

/// libtorrent (started with `lt_args` too) downloads the album nodus seeds, given the
/// .torrent and nodus's address; nodus must have uploaded all of it.
async fn libtorrent_downloads(version: &str, lt_args: &[&str]) {
    let s = nodus_seed(version, vec![]).await;
    let peer = s.seed.handle.listen_addr().unwrap();
    let mut args = vec![
        "--torrent".to_string(),
        s.torrent.display().to_string(),
        "--peer".into(),
        peer.to_string(),
    ];
    args.extend(lt_args.iter().map(|a| a.to_string()));
    lt_downloads_album(&s, args).await;
    let id = &s.seed.handle.list()[0].id;
    assert!(s.seed.handle.get(id).unwrap().uploaded >= 3_890_001);
}

/// What `nodus share` makes with no flag (v1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libtorrent_downloads_the_default_share_from_nodus() {
    libtorrent_downloads(DEFAULT, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libtorrent_downloads_v2_from_nodus() {
    libtorrent_downloads("v2", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libtorrent_downloads_hybrid_from_nodus() {
    libtorrent_downloads("hybrid", &[]).await;
}

/// libtorrent set to require encryption (forced RC4, both ways) downloads from nodus:
/// nodus answers its MSE handshake and serves over RC4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libtorrent_requiring_encryption_downloads_from_nodus() {
    libtorrent_downloads("hybrid", &["--require-encryption"]).await;
}

/// nodus downloads from a libtorrent seed that requires encryption: nodus opens with
/// MSE offering both methods and libtorrent picks RC4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodus_downloads_from_libtorrent_requiring_encryption() {
    // libtorrent's forced policy drops any connection that is not RC4 (MSE), so a
    // complete download is the proof; the connection itself is gone by then (a seed
    // hangs up on a peer that became one).
    nodus_downloads_from_libtorrent("v1", &["--require-encryption"], false).await;
}

/// A v2-only magnet link: libtorrent gets the info from nodus (BEP 9), then the piece
/// layers the info leaves out, by BEP 52 hash requests that nodus answers with proofs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libtorrent_fetches_v2_piece_layers_from_nodus() {
    let s = nodus_seed("v2", vec![]).await;
    let peer = s.seed.handle.listen_addr().unwrap().to_string();
    let magnet = s.seed.handle.list()[0].magnet.clone().unwrap();
    assert!(
        magnet.contains("btmh") && !magnet.contains("btih"),
        "{magnet}"
    );
    lt_downloads_album(&s, vec!["--magnet".into(), magnet, "--peer".into(), peer]).await;
}

/// The other way: nodus, given a v2-only magnet link and a libtorrent seed, asks it for
/// the piece layers and checks every piece against them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodus_fetches_v2_piece_layers_from_libtorrent() {
    let done = nodus_downloads_from_libtorrent("v2", &[], true).await;
    assert_eq!(done.hash_failures, 0);
}

/// uTP (BEP 29): libtorrent with TCP off dials nodus over uTP and downloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libtorrent_over_utp_downloads_from_nodus() {
    libtorrent_downloads("v1", &["--utp-only"]).await;
}

/// uTP the other way: libtorrent seeds with TCP off; nodus's TCP attempt is turned
/// away and it reaches libtorrent over uTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodus_downloads_from_libtorrent_over_utp() {
    nodus_downloads_from_libtorrent("v1", &["--utp-only"], false).await;
}

/// libtorrent seeds (after checking the data itself); prints its port.
fn lt_seed(args: &[&str]) -> (Proc, SocketAddr) {
    let mut child = Command::new("python3")
        .arg(lt_script())
        .arg("seed")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let port = v["listen_port"].as_u64().unwrap() as u16;
    (Proc(child), SocketAddr::from(([127, 0, 0, 1], port)))
}

/// A DHT of two nodus nodes: a router (the entry point others are given) and a seeder
/// that joined through it, seeding `version` with no tracker.
struct DhtSeed {
    shared: Shared,
    hash: String,
    /// The router's DHT address.
    entry: String,
    _router: (Node, tempfile::TempDir),
}

async fn nodus_seed_behind_dht_router(version: &str) -> DhtSeed {
    let tmp = tempfile::tempdir().unwrap();
    let router = node(&tmp.path().join("router")).await;
    let shared = nodus_seed_in_dht(version, vec![], dht_of(&router)).await;
    DhtSeed {
        hash: shared.seed.handle.list()[0].infohash_v1.clone().unwrap(),
        entry: dht_of(&router).remove(0),
        shared,
        _router: (router, tmp),
    }
}

/// Trackerless: libtorrent has only the infohash and a DHT entry node (a third nodus
/// node); it finds nodus in the DHT, fetches the metadata from it and downloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libtorrent_finds_nodus_through_the_dht() {
    let s = nodus_seed_behind_dht_router("hybrid").await;
    let args = vec![
        "--infohash".into(),
        s.hash.clone(),
        "--dht-bootstrap".into(),
        s.entry.clone(),
    ];
    lt_downloads_album(&s.shared, args).await;
}

/// Trackerless the other way: libtorrent seeds and announces in the DHT; nodus, given
/// only the infohash, finds it there and gets every piece from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodus_finds_libtorrent_through_the_dht() {
    let tmp = tempfile::tempdir().unwrap();
    let router = node(&tmp.path().join("router")).await;
    let s = nodus_seed("v1", vec![]).await;
    let entry = dht_of(&router).remove(0);
    let (torrent, dir) = (s.torrent.clone(), s.src.parent().unwrap().to_path_buf());
    let (_lt, lt_addr) = tokio::task::spawn_blocking(move || {
        lt_seed(&[
            "--torrent",
            path(&torrent),
            "--dir",
            path(&dir),
            "--dht-bootstrap",
            &entry,
        ])
    })
    .await
    .unwrap();
    // The nodus seeder must not be found: this test is about libtorrent's announce.
    let hash = s.seed.handle.list()[0].infohash_v1.clone().unwrap();
    s.seed.handle.remove(&hash, false).await.unwrap();
    let leech = node_with_dht(&tmp.path().join("leech"), dht_of(&router)).await;
    leech_album_from(&leech, &s, hash, lt_addr, vec![]).await;
}

/// A libtorrent seed (started with `lt_args` besides its torrent and data) serves the
/// album to a new nodus node given its address and the .torrent (or, with `by_magnet`,
/// only the magnet link). Returns what the node saw.
async fn nodus_downloads_from_libtorrent(
    version: &str,
    lt_args: &'static [&'static str],
    by_magnet: bool,
) -> nodus_torrent::TorrentInfo {
    let s = nodus_seed(version, vec![]).await;
    let (torrent, dir) = (s.torrent.clone(), s.src.parent().unwrap().to_path_buf());
    let (_lt, lt_addr) = tokio::task::spawn_blocking(move || {
        lt_seed(&[&["--torrent", path(&torrent), "--dir", path(&dir)], lt_args].concat())
    })
    .await
    .unwrap();
    let leech = node(&s.seed.dir.join("../leech")).await;
    let source = match by_magnet {
        true => s.seed.handle.list()[0].magnet.clone().unwrap(),
        false => s.torrent.display().to_string(),
    };
    let peers = vec![lt_addr.to_string()];
    leech_album_from(&leech, &s, source, lt_addr, peers).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodus_downloads_hybrid_from_libtorrent() {
    nodus_downloads_from_libtorrent("hybrid", &[], false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodus_downloads_v2_from_libtorrent() {
    nodus_downloads_from_libtorrent("v2", &[], false).await;
}

/// libtorrent announces to our UDP tracker (BEP 15) and finds the nodus seeder there:
/// the tracker's server side speaks the protocol as a real client expects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libtorrent_finds_nodus_through_our_udp_tracker() {
    let url = udp_tracker().await;
    let s = nodus_seed("v1", vec![url]).await;
    let torrent = s.torrent.display().to_string();
    lt_downloads_album(&s, vec!["--torrent".into(), torrent]).await;
}

/// nodus announces to opentracker over UDP (BEP 15): a nodus leecher finds the nodus
/// seeder through a tracker nobody here wrote, so the client side is checked too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodus_swarm_through_opentracker_over_udp() {
    let tmp = tempfile::tempdir().unwrap();
    // The infohash must be whitelisted before the first announce; share once to learn it.
    let probe = nodus_seed("v1", vec![]).await;
    let hash = probe.seed.handle.list()[0].infohash_v1.clone().unwrap();
    let (_ot, port) = opentracker(&tmp.path().join("ot"), &[&hash]);
    let url = format!("udp://127.0.0.1:{port}/announce");
    let s = nodus_seed("v1", vec![url.clone()]).await;
    assert_eq!(s.seed.handle.list()[0].infohash_v1.as_deref(), Some(&*hash));
    drop(probe);
    let leech = node(&tmp.path().join("leech")).await;
    let magnet = format!("magnet:?xt=urn:btih:{hash}&tr={url}");
    let seed = s.seed.handle.listen_addr().unwrap();
    leech_album_from(&leech, &s, magnet, seed, vec![]).await;
}

/// A new nodus node downloads the album, finding peers through the tracker only, and
/// gets every piece from the reference client listening on one of `ports`.
async fn leech_through_tracker(s: &Shared, ports: std::ops::RangeInclusive<u16>) {
    let leech = node(&s.seed.dir.join("../leech")).await;
    let out = leech.dir.join("out");
    let info = leech
        .handle
        .add(AddRequest {
            source: s.torrent.display().to_string(),
            out_dir: Some(out.display().to_string()),
            ..Default::default()
        })
        .await
        .unwrap();
    let done = wait_complete(&leech.handle, &info.id, 90).await;
    assert_same_tree(&s.src, &out.join("album"));
    assert_all_from_ports(&done, ports);
}

/// Every piece came from the peer listening on one of `ports` (the reference client).
fn assert_all_from_ports(done: &nodus_torrent::TorrentInfo, ports: std::ops::RangeInclusive<u16>) {
    let from_client: u32 = done
        .pieces_from
        .iter()
        .filter(|(a, _)| {
            a.parse::<SocketAddr>()
                .is_ok_and(|a| ports.contains(&a.port()))
        })
        .map(|(_, n)| *n)
        .sum();
    assert_eq!(from_client, done.pieces_total, "{:?}", done.pieces_from);
}

fn wait_for_file(path: &Path, want: &[u8], secs: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if std::fs::read(path).is_ok_and(|d| d == want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} not complete in {secs}s",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// aria2 finds nodus through the tracker and downloads the whole album.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aria2_downloads_from_nodus() {
    let url = tracker().await;
    let s = nodus_seed(DEFAULT, vec![url]).await;
    let out = s.seed.dir.join("aria2");
    let torrent = s.torrent.clone();
    let o = out.clone();
    let status = tokio::task::spawn_blocking(move || {
        Command::new("aria2c")
            .args([
                "--enable-dht=false",
                "--bt-enable-lpd=false",
                "--seed-time=0",
                "--quiet=true",
            ])
            .args([
                "--bt-stop-timeout=60",
                "--listen-port=6920-6929",
                "--console-log-level=warn",
            ])
            .arg(format!("--dir={}", o.display()))
            .arg(torrent)
            .status()
            .expect("aria2c")
    })
    .await
    .unwrap();
    assert!(status.success(), "aria2c exit {status}");
    assert_same_tree(&s.src, &out.join("album"));
}

/// Trackerless: aria2 has only a magnet link with the infohash and a DHT entry point
/// (a nodus node); it finds the nodus seeder in the DHT and downloads the album.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aria2_finds_nodus_through_the_dht() {
    let s = nodus_seed_behind_dht_router(DEFAULT).await;
    let (magnet, entry) = (s.shared.magnet.clone(), s.entry.clone());
    let s = &s.shared;
    let out = s.seed.dir.join("aria2");
    let o = out.clone();
    let status = tokio::task::spawn_blocking(move || {
        Command::new("aria2c")
            .args([
                "--enable-dht=true",
                "--bt-enable-lpd=false",
                "--seed-time=0",
                "--quiet=true",
                "--bt-stop-timeout=60",
                "--listen-port=6930-6939",
                "--dht-listen-port=6940-6949",
                "--console-log-level=warn",
            ])
            .arg(format!("--dht-entry-point={entry}"))
            .arg(format!("--dht-file-path={}/dht.dat", o.display()))
            .arg(format!("--dir={}", o.display()))
            .arg(magnet)
            .status()
            .expect("aria2c")
    })
    .await
    .unwrap();
    assert!(status.success(), "aria2c exit {status}");
    assert_same_tree(&s.src, &out.join("album"));
}

/// aria2 seeds (after checking the data); nodus downloads from it through the tracker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodus_downloads_from_aria2() {
    let url = tracker().await;
    let s = nodus_seed(DEFAULT, vec![url]).await;
    let mut aria = Proc(
        Command::new("aria2c")
            .args([
                "--enable-dht=false",
                "--bt-enable-lpd=false",
                "--seed-ratio=0.0",
                "--check-integrity=true",
            ])
            .args([
                "--listen-port=6990-6999",
                "--quiet=true",
                "--bt-tracker-interval=1",
            ])
            .arg(format!("--dir={}", s.src.parent().unwrap().display()))
            .arg(&s.torrent)
            .spawn()
            .expect("aria2c"),
    );
    // Only aria2 may serve it: the nodus seed stops.
    let id = s.seed.handle.list()[0].id.clone();
    s.seed.handle.pause(&id).unwrap();
    leech_through_tracker(&s, 6990..=6999).await;
    let _ = aria.0.kill();
}

/// Runs transmission-cli. Its `-p` port is below the kernel's ephemeral range (32768 and
/// up), so no socket another test bound to port 0 can be holding it: Transmission dials
/// no loopback peer and, unable to listen, would never be reached.
fn transmission(args: &[&str], dir: &Path, torrent: &Path) -> Proc {
    let cfg = dir.join(".transmission");
    std::fs::create_dir_all(&cfg).unwrap();
    // No DHT or local discovery (nothing to find offline), TCP only as the others.
    std::fs::write(
        cfg.join("settings.json"),
        r#"{"dht-enabled": false, "lpd-enabled": false, "utp-enabled": false}"#,
    )
    .unwrap();
    Proc(
        Command::new("transmission-cli")
            .args(args)
            .arg("-g")
            .arg(&cfg)
            .arg("-w")
            .arg(dir)
            .arg(torrent)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("transmission-cli"),
    )
}

/// Transmission finds nodus through the tracker and downloads the album.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transmission_downloads_from_nodus() {
    let url = tracker().await;
    let s = nodus_seed(DEFAULT, vec![url]).await;
    let out = s.seed.dir.join("transmission");
    std::fs::create_dir_all(&out).unwrap();
    let _t = transmission(&["-p", "27500", "--no-portmap", "-et"], &out, &s.torrent);
    transmission_has_album(&s.src, &out, 90).await;
}

/// Waits until Transmission has written the album under `out`, each file byte for byte.
async fn transmission_has_album(src: &Path, out: &Path, secs: u64) {
    let (src, o) = (src.to_path_buf(), out.to_path_buf());
    tokio::task::spawn_blocking(move || {
        for f in ["01 intro.flac", "disc 2/02 outro.flac", "cover.jpg"] {
            let want = std::fs::read(src.join(f)).unwrap();
            wait_for_file(&o.join("album").join(f), &want, secs, "transmission");
        }
    })
    .await
    .unwrap();
}

/// A network namespace of its own, joined to this one by a veth pair: `hosts` are
/// addresses on this side, `inside` the namespace's. Removed (with the pair) on drop.
struct Netns {
    name: String,
    hosts: Vec<String>,
    inside: String,
}

impl Netns {
    fn new(hosts: usize) -> Netns {
        let pid = std::process::id();
        let net = format!("10.231.{}", 20 + pid % 200);
        let ns = Netns {
            name: format!("nodus-test-{pid}"),
            hosts: (1..=hosts).map(|i| format!("{net}.{i}")).collect(),
            inside: format!("{net}.200"),
        };
        let (a, b) = (format!("vn{pid}a"), format!("vn{pid}b"));
        let run = |args: &[&str]| {
            let o = Command::new("ip")
                .args(args)
                .output()
                .expect("ip (iproute2)");
            assert!(
                o.status.success(),
                "ip {args:?}: {} (network namespaces need root)",
                String::from_utf8_lossy(&o.stderr)
            );
        };
        run(&["netns", "add", &ns.name]);
        run(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
        run(&["link", "set", &b, "netns", &ns.name]);
        for (i, h) in ns.hosts.iter().enumerate() {
            let prefix = if i == 0 { 24 } else { 32 };
            run(&["addr", "add", &format!("{h}/{prefix}"), "dev", &a]);
        }
        run(&["link", "set", &a, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns.name, "ip"];
            all.extend_from_slice(args);
            run(&all);
        };
        inside(&["addr", "add", &format!("{}/24", ns.inside), "dev", &b]);
        inside(&["link", "set", &b, "up"]);
        inside(&["link", "set", "lo", "up"]);
        ns
    }

    /// `program args…` run inside the namespace.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A dht.dat as Transmission reads it at start: our id and the nodes to begin from.
fn transmission_dht_dat(nodes: &[String]) -> Vec<u8> {
    let mut compact = Vec::new();
    for n in nodes {
        let a: std::net::SocketAddrV4 = n.parse().unwrap();
        compact.extend_from_slice(&a.ip().octets());
        compact.extend_from_slice(&a.port().to_be_bytes());
    }
    let mut dat = b"d2:id20:".to_vec();
    dat.extend_from_slice(&[0x5a; 20]);
    dat.extend_from_slice(format!("5:nodes{}:", compact.len()).as_bytes());
    dat.extend_from_slice(&compact);
    dat.push(b'e');
    dat
}

/// Trackerless with Transmission: it has only a magnet link with the infohash, finds the
/// nodus seeder in the DHT and downloads the album. Its DHT treats 127/8 as martian and
/// searches only once it knows more than 8 nodes (4 of them answering), so it runs in a
/// network namespace of its own and its dht.dat lists twelve nodus DHT nodes, the seeder
/// announced among them. Each node has an address of its own, as DHT nodes do (ours
/// keep at most two of one address per bucket).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transmission_finds_nodus_through_the_dht() {
    let ns = Netns::new(13);
    let tmp = tempfile::tempdir().unwrap();
    let on_host = |c: &mut nodus_torrent::TorrentConfig, ip: &str, bootstrap: Vec<String>| {
        c.listen = format!("{ip}:0");
        c.dht_bootstrap = bootstrap;
    };
    let first = node_with(&tmp.path().join("dht0"), |c| {
        on_host(c, &ns.hosts[1], vec![])
    })
    .await;
    let entry = dht_of(&first);
    let mut dht = vec![first];
    for i in 2..13 {
        let e = entry.clone();
        let dir = tmp.path().join(format!("dht{i}"));
        dht.push(node_with(&dir, |c| on_host(c, &ns.hosts[i], e)).await);
    }
    let s = seed_album(
        DEFAULT,
        SeedOpts {
            dht_bootstrap: entry.clone(),
            ip: Some(ns.hosts[0].clone()),
            ..Default::default()
        },
    )
    .await;
    let cfg = s.seed.dir.join(".transmission");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("settings.json"),
        r#"{"dht-enabled": true, "lpd-enabled": false, "utp-enabled": false, "pex-enabled": false}"#,
    )
    .unwrap();
    let nodes: Vec<String> = dht.iter().flat_map(dht_of).collect();
    std::fs::write(cfg.join("dht.dat"), transmission_dht_dat(&nodes)).unwrap();
    let out = s.seed.dir.join("transmission");
    std::fs::create_dir_all(&out).unwrap();
    let _t = Proc(
        ns.command("transmission-cli")
            .args(["-p", "51520", "--no-portmap", "-et", "-g"])
            .arg(&cfg)
            .arg("-w")
            .arg(&out)
            .arg(&s.magnet)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("transmission-cli"),
    );
    transmission_has_album(&s.src, &out, 120).await;
}

/// Transmission seeds (it verifies the files first); nodus downloads from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodus_downloads_from_transmission() {
    let url = tracker().await;
    let s = nodus_seed(DEFAULT, vec![url]).await;
    let id = s.seed.handle.list()[0].id.clone();
    s.seed.handle.pause(&id).unwrap();
    let dir = s.src.parent().unwrap().to_path_buf();
    let _t = transmission(&["-p", "27510", "--no-portmap", "-et"], &dir, &s.torrent);
    leech_through_tracker(&s, 27510..=27510).await;
}

/// A port nothing listens on now (for a client that must be told one).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes `data` to `path` with every byte outside `keep` zeroed: a client checking
/// it finds exactly the pieces inside `keep`.
fn write_part(path: &Path, data: &[u8], keep: std::ops::Range<usize>) {
    let mut part = vec![0u8; data.len()];
    part[keep.clone()].copy_from_slice(&data[keep]);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, part).unwrap();
}

/// Web seeds (BEP 19): a nodus node with no peer at all downloads the album, byte for
/// byte, from nginx, the web seed the torrent lists (hybrid: padding files included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodus_downloads_from_a_web_seed_alone() {
    let s = seed_album(
        "hybrid",
        SeedOpts {
            web_seed: true,
            ..Default::default()
        },
    )
    .await;
    let url = s.web.as_ref().unwrap().1.clone();
    let leech = node(&s.seed.dir.join("../leech")).await;
    leech_album_from(&leech, &s, s.torrent.display().to_string(), url, vec![]).await;
}

/// The mixed swarm: aria2, libtorrent and a nodus node each hold a different third of
/// a file (48 pieces); a fourth node, nodus, downloads from all three at once and
/// credits each with exactly its third.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodus_downloads_from_aria2_libtorrent_and_nodus_at_once() {
    const PIECE: usize = 256 * 1024;
    let tmp = tempfile::tempdir().unwrap();
    let data = content(48 * PIECE, 77);
    let src = tmp.path().join("full").join("mix.bin");
    std::fs::create_dir_all(src.parent().unwrap()).unwrap();
    std::fs::write(&src, &data).unwrap();
    let maker = node(&tmp.path().join("maker")).await;
    let made = share_as(&maker, &src, Some("v1"), Some(PIECE as u64)).await;
    drop(maker);
    let torrent = PathBuf::from(&made.torrent_path);
    let third = 16 * PIECE;

    // aria2: the first third.
    let aria_dir = tmp.path().join("aria2");
    write_part(&aria_dir.join("mix.bin"), &data, 0..third);
    let aria_port = free_port();
    let _aria = Proc(
        Command::new("aria2c")
            .args(["--enable-dht=false", "--bt-enable-lpd=false"])
            .args(["--seed-ratio=0.0", "--check-integrity=true", "--quiet=true"])
            .arg(format!("--listen-port={aria_port}"))
            .arg(format!("--dir={}", aria_dir.display()))
            .arg(&torrent)
            .spawn()
            .expect("aria2c"),
    );
    // libtorrent: the second.
    let lt_dir = tmp.path().join("lt");
    write_part(&lt_dir.join("mix.bin"), &data, third..2 * third);
    let (t, d) = (torrent.clone(), lt_dir.clone());
    let (_lt, lt_addr) =
        tokio::task::spawn_blocking(move || lt_seed(&["--torrent", path(&t), "--dir", path(&d)]))
            .await
            .unwrap();
    // nodus: the last, checked on add.
    let part = node(&tmp.path().join("part")).await;
    let part_dir = tmp.path().join("part-data");
    write_part(&part_dir.join("mix.bin"), &data, 2 * third..data.len());
    let held = part
        .handle
        .add(AddRequest {
            source: torrent.display().to_string(),
            out_dir: Some(part_dir.display().to_string()),
            ..Default::default()
        })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while part.handle.get(&held.id).unwrap().pieces_have < 16 {
        assert!(Instant::now() < deadline, "nodus did not find its third");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // aria2 listens once it has checked its data.
    let aria_addr = SocketAddr::from(([127, 0, 0, 1], aria_port));
    while std::net::TcpStream::connect(aria_addr).is_err() {
        assert!(Instant::now() < deadline, "aria2 did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let leech = node(&tmp.path().join("leech")).await;
    let out = leech.dir.join("out");
    let nodus_addr = part.handle.listen_addr().unwrap();
    let info = leech
        .handle
        .add(AddRequest {
            source: torrent.display().to_string(),
            out_dir: Some(out.display().to_string()),
            peers: [aria_addr, lt_addr, nodus_addr]
                .iter()
                .map(SocketAddr::to_string)
                .collect(),
            ..Default::default()
        })
        .await
        .unwrap();
    let done = wait_complete(&leech.handle, &info.id, 60).await;
    assert!(std::fs::read(out.join("mix.bin")).unwrap() == data);
    let mut from = done.pieces_from.clone();
    from.sort();
    let mut want = vec![
        (aria_addr.to_string(), 16),
        (lt_addr.to_string(), 16),
        (nodus_addr.to_string(), 16),
    ];
    want.sort();
    assert_eq!(from, want, "pieces per peer");
}
