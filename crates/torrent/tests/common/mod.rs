//! Helpers shared by the torrent crate's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use nodus_torrent::TorrentConfig;
use nodus_torrent::{SpawnOptions, TorrentHandle, TorrentState};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

pub struct Node {
    pub handle: TorrentHandle,
    pub dir: PathBuf,
    pub _stop: watch::Sender<bool>,
}

/// A node whose DHT joins nobody (it still answers, so others may join through it).
pub async fn node(dir: &Path) -> Node {
    node_with_dht(dir, vec![]).await
}

/// A node whose DHT joins through `bootstrap` (host:port of other DHT nodes).
pub async fn node_with_dht(dir: &Path, bootstrap: Vec<String>) -> Node {
    node_with(dir, |c| c.dht_bootstrap = bootstrap).await
}

/// A node on its own loopback IP, its configuration changed by `f`.
pub async fn node_with(dir: &Path, f: impl FnOnce(&mut TorrentConfig)) -> Node {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    std::fs::create_dir_all(dir).unwrap();
    let (tx, rx) = watch::channel(false);
    let mut reg = Registry::default();
    // Each node on its own loopback address, as peers on the Internet are: bans are by IP.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let ip = format!(
        "127.0.{}.{}",
        100 + n / 250 + std::process::id() % 50,
        1 + n % 250
    );
    let mut config = TorrentConfig {
        listen: format!("{ip}:0"),
        dht_bootstrap: vec![],
        ..Default::default()
    };
    f(&mut config);
    let (handle, _tasks) = nodus_torrent::spawn(
        SpawnOptions {
            config,
            store_path: &dir.join("torrent.redb"),
            download_dir: dir.join("downloads"),
            torrents_dir: dir.join("torrents"),
        },
        &mut reg,
        rx,
    )
    .await
    .unwrap();
    Node {
        handle,
        dir: dir.to_path_buf(),
        _stop: tx,
    }
}

/// Shares `path` with the defaults: v1, no tracker, piece length by size.
pub async fn share(n: &Node, path: &Path) -> nodus_torrent::types::Shared {
    share_as(n, path, None, None).await
}

/// Shares `path` as torrent `version` ("v1", "v2", "hybrid") with `piece_length`.
pub async fn share_as(
    n: &Node,
    path: &Path,
    version: Option<&str>,
    piece_length: Option<u64>,
) -> nodus_torrent::types::Shared {
    n.handle
        .share(nodus_torrent::ShareRequest {
            path: path.display().to_string(),
            version: version.map(String::from),
            trackers: vec![],
            web_seeds: vec![],
            piece_length,
        })
        .await
        .unwrap()
}

/// `leech` downloads `source` into `<its dir>/out` from `peers` (and whoever it finds);
/// returns the output directory and the torrent once complete.
pub async fn download(
    leech: &Node,
    source: String,
    peers: Vec<String>,
    secs: u64,
) -> (PathBuf, nodus_torrent::TorrentInfo) {
    let out = leech.dir.join("out");
    let info = leech
        .handle
        .add(nodus_torrent::AddRequest {
            source,
            out_dir: Some(out.display().to_string()),
            peers,
            ..Default::default()
        })
        .await
        .unwrap();
    let done = wait_complete(&leech.handle, &info.id, secs).await;
    (out, done)
}

pub fn content(len: usize, seed: u8) -> Vec<u8> {
    let mut x = seed as u32 | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

pub async fn wait_complete(h: &TorrentHandle, id: &str, secs: u64) -> nodus_torrent::TorrentInfo {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let info = h.get(id).unwrap();
        if info.state == TorrentState::Seeding {
            return info;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not complete in {secs}s: {info:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn dht_of(n: &Node) -> Vec<String> {
    vec![n.handle.dht_addr().expect("DHT on").to_string()]
}

pub fn peer_of(n: &Node) -> Vec<String> {
    vec![n.handle.listen_addr().unwrap().to_string()]
}

/// Every file under `a` is under `b` with the same bytes. Links are not shared: `b` has
/// nothing where `a` has one.
pub fn assert_same_tree(a: &Path, b: &Path) {
    if a.symlink_metadata().unwrap().file_type().is_symlink() {
        assert!(b.symlink_metadata().is_err(), "{} was shared", a.display());
        return;
    }
    if a.is_file() {
        assert!(
            std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
            "{} differs from {}",
            b.display(),
            a.display()
        );
        return;
    }
    for e in std::fs::read_dir(a).unwrap() {
        let e = e.unwrap();
        assert_same_tree(&e.path(), &b.join(e.file_name()));
    }
}
