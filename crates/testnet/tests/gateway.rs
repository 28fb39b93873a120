//! The content gateway on real nodes: a torrent added from a magnet link on the first
//! request and served over HTTP while it downloads, with every kind of Range; a seek
//! past what has arrived fetched first; a slow peer kept off the pieces a reader needs
//! next; readers' priorities let go when they close; the cache budget; what a browser
//! from another site or a garbage request gets.

use std::path::Path;
use std::time::Duration;

use nodus_core::Config;
use nodus_gateway::{AddSource, GatewayConfig, GatewayHandle};
use nodus_testnet::{Testnet, node_config, node_ip, wait_until};
use nodus_torrent::{AddRequest, ShareRequest, TorrentConfig, TorrentHandle};
use rand::RngCore;
use reqwest::StatusCode;
use reqwest::header;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(60);

fn gw(net: &Testnet, k: usize) -> GatewayHandle {
    net.node(k).service::<GatewayHandle>().unwrap().clone()
}

fn tor(net: &Testnet, k: usize) -> TorrentHandle {
    net.node(k).service::<TorrentHandle>().unwrap().clone()
}

fn random(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::rng().fill_bytes(&mut v);
    v
}

/// Node `k` shares a directory `name` holding `files`; returns the infohash (v1).
async fn share(
    net: &Testnet,
    k: usize,
    root: &Path,
    name: &str,
    files: &[(&str, &[u8])],
    piece_length: u64,
) -> String {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for (f, data) in files {
        std::fs::write(dir.join(f), data).unwrap();
    }
    let path = if files.len() == 1 {
        dir.join(files[0].0)
    } else {
        dir
    };
    let info = tor(net, k)
        .share(ShareRequest {
            path: path.display().to_string(),
            version: None,
            trackers: vec![],
            web_seeds: vec![],
            piece_length: (piece_length > 0).then_some(piece_length),
        })
        .await
        .unwrap();
    info.infohash_v1.unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .unwrap()
}

fn config_with(k: usize, f: impl FnOnce(&mut TorrentConfig, &mut GatewayConfig)) -> Config {
    let mut c = node_config(node_ip(k), &[]);
    let mut t: TorrentConfig = c.section().unwrap();
    let mut g: GatewayConfig = c.section().unwrap();
    f(&mut t, &mut g);
    c.set_section(&t);
    c.set_section(&g);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_magnet_opened_through_the_gateway_is_served_with_every_kind_of_range() {
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let net = Testnet::start(2, tmp.path()).await.unwrap();
    let video = random(1_500_000);
    let notes = b"read me\n".to_vec();
    let ih = share(
        &net,
        0,
        &tmp.path().join("src"),
        "film",
        &[("video.mp4", &video), ("notes.txt", &notes)],
        65536,
    )
    .await;
    let peer = tor(&net, 0).listen_addr().unwrap();
    let base = gw(&net, 1).url();
    let http = client();

    // The first request adds the torrent, waits for its metadata and shows its index.
    let r = http
        .get(format!(
            "{base}/content/magnet?xt=urn:btih:{ih}&dn=film&x.pe={peer}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.url().path(), format!("/content/{ih}/"));
    let index = r.text().await.unwrap();
    assert!(
        index.contains("film/video.mp4") && index.contains("film/notes.txt"),
        "{index}"
    );
    assert!(
        index.contains(&format!("/play/{ih}/film/video.mp4")),
        "a player for the video"
    );
    assert_eq!(
        gw(&net, 1).cached(),
        vec![ih.clone()],
        "added by the gateway: cached"
    );

    let url = format!("{base}/content/{ih}/film/video.mp4");
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers().clone();
    assert_eq!(h[header::CONTENT_TYPE], "video/mp4");
    assert_eq!(h[header::CONTENT_LENGTH], "1500000");
    assert_eq!(h[header::ACCEPT_RANGES], "bytes");
    let etag = h[header::ETAG].to_str().unwrap().to_string();
    assert_eq!(r.bytes().await.unwrap(), video, "every byte, verified");

    let get = |range: &'static str| {
        let http = http.clone();
        let url = url.clone();
        async move {
            http.get(&url)
                .header(header::RANGE, range)
                .send()
                .await
                .unwrap()
        }
    };
    let r = get("bytes=100-199").await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()[header::CONTENT_RANGE], "bytes 100-199/1500000");
    assert_eq!(r.bytes().await.unwrap(), video[100..200]);
    let r = get("bytes=-100").await;
    assert_eq!(
        r.headers()[header::CONTENT_RANGE],
        "bytes 1499900-1499999/1500000"
    );
    assert_eq!(r.bytes().await.unwrap(), video[1_499_900..]);
    let r = get("bytes=1400000-").await;
    assert_eq!(r.bytes().await.unwrap(), video[1_400_000..]);
    for absurd in [
        "bytes=1500000-",
        "bytes=9-3",
        "bytes=99999999999999999999999-",
        "bytes=x-y",
        "bytes=0-1,1-2",
    ] {
        let r = get(absurd).await;
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{absurd}");
        assert_eq!(r.headers()[header::CONTENT_RANGE], "bytes */1500000");
    }
    // Several ranges: one multipart/byteranges body.
    let r = get("bytes=0-9,1000-1009").await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    let ct = r.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    let boundary = ct
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap()
        .to_string();
    let body = r.bytes().await.unwrap();
    let mut expect = Vec::new();
    for (a, b) in [(0usize, 9usize), (1000, 1009)] {
        expect.extend_from_slice(format!("\r\n--{boundary}\r\nContent-Type: video/mp4\r\nContent-Range: bytes {a}-{b}/1500000\r\n\r\n").as_bytes());
        expect.extend_from_slice(&video[a..=b]);
    }
    expect.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    assert_eq!(body.as_ref(), expect.as_slice());
    // Conditional requests.
    let r = http
        .get(&url)
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let r = http
        .get(&url)
        .header(header::RANGE, "bytes=0-0")
        .header(header::IF_RANGE, "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "If-Range that does not match: the whole file"
    );
    let r = http.head(&url).send().await.unwrap();
    assert_eq!(r.headers()[header::CONTENT_LENGTH], "1500000");
    let r = http
        .get(format!("{base}/content/{ih}/film/notes.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()[header::CONTENT_TYPE], "text/plain");
    assert_eq!(r.bytes().await.unwrap(), notes);

    // Mistakes get a reason; other sites and other hosts are refused.
    let r = http
        .get(format!("{base}/content/{ih}/film/nothing.mp4"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.text().await.unwrap().contains(&format!("/content/{ih}/")));
    let r = http
        .get(format!("{base}/content/{}/x", "ab".repeat(20)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.text().await.unwrap().contains("/content/magnet?xt="));
    let r = http
        .get(format!("{base}/content/magnet"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = http
        .get(format!("{base}/content/magnet?xt=urn:btih:zz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = http
        .get(&url)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = http
        .get(&url)
        .header(header::HOST, "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::MISDIRECTED_REQUEST, "DNS rebinding");
    // Garbage on the socket: a 400 and the gateway goes on.
    let mut s = tokio::net::TcpStream::connect(gw(&net, 1).addr())
        .await
        .unwrap();
    s.write_all(b"\x00\x01GARBAGE \xff\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(T, s.read_to_end(&mut answer)).await;
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    let r = get("bytes=0-0").await;
    assert_eq!(r.bytes().await.unwrap(), video[..1]);
}

/// Node 0 seeds a 16 MiB file; node 1 downloads it at 4 MiB/s (about four seconds for
/// the whole). Returns the net, node 1, the data, the infohash and node 1's URL of it.
async fn slow_download(dir: &Path) -> (Testnet, usize, Vec<u8>, String, String) {
    nodus_testnet::test_logs();
    let mut net = Testnet::start(1, dir).await.unwrap();
    let k = net
        .add_node(config_with(1, |t, _| t.download_limit_kib = 4096))
        .await
        .unwrap();
    let data = random(16 << 20);
    let ih = share(
        &net,
        0,
        &dir.join("src"),
        "big",
        &[("big.bin", &data)],
        65536,
    )
    .await;
    let peer = tor(&net, 0).listen_addr().unwrap().to_string();
    tor(&net, k)
        .add(AddRequest {
            source: ih.clone(),
            peers: vec![peer],
            ..Default::default()
        })
        .await
        .unwrap();
    let url = format!("{}/content/{ih}/big.bin", gw(&net, k).url());
    (net, k, data, ih, url)
}

/// Fails unless fewer than half of torrent `ih`'s pieces are here (`what` came first).
fn before_half(t: &TorrentHandle, ih: &str, what: &str) {
    let info = t.get(ih).unwrap();
    assert!(
        info.pieces_have < info.pieces_total / 2,
        "{what} came only after {} of {} pieces were here",
        info.pieces_have,
        info.pieces_total
    );
}

/// Node 0 seeds a 16 MiB file; node 1 downloads at 4 MiB/s, so the whole takes about
/// four seconds: a read at the end is answered long before the torrent completes,
/// because the reader's window is fetched first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seek_past_what_has_arrived_is_fetched_first_and_a_closed_reader_lets_go() {
    let tmp = tempfile::tempdir().unwrap();
    let (net, k, data, ih, url) = slow_download(tmp.path()).await;
    let t = tor(&net, k);
    let http = client();
    let r = http
        .get(&url)
        .header(header::RANGE, format!("bytes={}-", data.len() - 100_000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap(), data[data.len() - 100_000..]);
    before_half(&t, &ih, "the end");
    // Fetched for the reader, its pieces were served from memory, not read back.
    let memory = net
        .metric(k, "nodus_torrent_stream_bytes_memory_total")
        .await;
    assert!(memory >= 100_000.0, "{memory} bytes from memory");
    // A reader with a response open holds a window; closing it lets the window go.
    wait_until(T, "no reader", || async { t.readers(&ih).unwrap() == 0 })
        .await
        .unwrap();
    let mut open = http
        .get(&url)
        .header(header::RANGE, "bytes=8000000-")
        .send()
        .await
        .unwrap();
    let first = open.chunk().await.unwrap().unwrap();
    assert_eq!(first[..], data[8_000_000..8_000_000 + first.len()]);
    assert_eq!(t.readers(&ih).unwrap(), 1);
    drop(open);
    wait_until(T, "the closed reader's window gone", || async {
        t.readers(&ih).unwrap() == 0
    })
    .await
    .unwrap();
}

/// Two tabs at different places in one file, while it downloads at 4 MiB/s (about four
/// seconds for the whole): each reader holds its own window, and both are answered
/// long before the torrent completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_readers_at_different_places_each_get_their_window() {
    let tmp = tempfile::tempdir().unwrap();
    let (net, k, data, ih, url) = slow_download(tmp.path()).await;
    let t = tor(&net, k);
    let http = client();
    let tab = |from: usize| {
        http.get(&url)
            .header(header::RANGE, format!("bytes={from}-"))
            .send()
    };
    let (a, b) = (5_000_000, 13_000_000);
    let (ra, rb) = tokio::join!(tab(a), tab(b));
    let (mut ra, mut rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(t.readers(&ih).unwrap(), 2);
    let (ca, cb) = tokio::join!(ra.chunk(), rb.chunk());
    let (ca, cb) = (ca.unwrap().unwrap(), cb.unwrap().unwrap());
    assert_eq!(ca[..], data[a..a + ca.len()]);
    assert_eq!(cb[..], data[b..b + cb.len()]);
    before_half(&t, &ih, "both tabs");
    drop((ra, rb));
    wait_until(T, "both windows gone", || async {
        t.readers(&ih).unwrap() == 0
    })
    .await
    .unwrap();
}

/// A piece nobody has: the request ends after `wait_secs` with what was missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_that_does_not_come_ends_the_request_with_the_reason() {
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(0, tmp.path()).await.unwrap();
    let k = net
        .add_node(config_with(0, |_, g| g.wait_secs = 1))
        .await
        .unwrap();
    let file = tmp.path().join("alone.mp4");
    std::fs::write(&file, random(300_000)).unwrap();
    let meta = nodus_torrent::create::create(&file, &Default::default()).unwrap();
    let opened = gw(&net, k)
        .open(AddSource::Torrent(meta.to_bytes()), None)
        .await
        .unwrap();
    assert_eq!(opened.path, "alone.mp4");
    assert!(
        opened
            .url
            .ends_with(&format!("/content/{}/alone.mp4", opened.id))
    );
    let r = client().get(&opened.url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
    let why = r.text().await.unwrap();
    assert!(
        why.contains("piece 0") && why.contains("did not arrive within"),
        "{why}"
    );
}

/// The picture: a video seeded by three nodes, a fourth node's gateway serving
/// it, headless Chromium playing it from the player page, seeking to the middle and
/// playing on without a media error; ffprobe reads the same stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_a_video_from_three_seeders_through_the_gateway_and_seeks() {
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let video = tmp.path().join("pattern.mp4");
    nodus_testnet::media::test_video(&video, 20).await.unwrap();
    let bytes = std::fs::read(&video).unwrap();
    let net = Testnet::start(4, tmp.path()).await.unwrap();
    let mut ih = String::new();
    let mut peers = String::new();
    for k in 0..3 {
        ih = share(
            &net,
            k,
            &tmp.path().join(format!("seed{k}")),
            "pattern",
            &[("pattern.mp4", &bytes)],
            0,
        )
        .await;
        peers.push_str(&format!("&x.pe={}", tor(&net, k).listen_addr().unwrap()));
    }
    let opened = gw(&net, 3)
        .open(
            AddSource::Link(format!("magnet:?xt=urn:btih:{ih}{peers}")),
            None,
        )
        .await
        .unwrap();
    let browser = nodus_testnet::browser::Browser::start().await.unwrap();
    let page = format!("{}/play/{}/{}", gw(&net, 3).url(), opened.id, opened.path);
    let played = browser.play_and_seek(&page, T).await;
    browser.quit().await;
    let played = played.unwrap();
    assert!((played.duration - 20.0).abs() < 0.5, "{played:?}");
    assert!(
        played.after > played.mid + 1.0,
        "playing on after the seek: {played:?}"
    );
    assert!(
        played.controls && played.first_frame_ms.is_some(),
        "controls once the first frame showed: {played:?}"
    );
    let probe = nodus_testnet::media::probe(&opened.url).await.unwrap();
    assert_eq!(probe.codecs, vec!["h264", "aac"]);
    assert!((probe.duration - 20.0).abs() < 0.5, "{probe:?}");
    let t = tor(&net, 3);
    wait_until(T, "the whole video here", || async {
        t.get(&ih).unwrap().progress == 1.0
    })
    .await
    .unwrap();
    let info = t.get(&ih).unwrap();
    let from_peers: u64 = info.peers.iter().map(|p| p.downloaded).sum();
    // Every byte from the seeders, and not each block twice (endgame asks a second peer
    // only for a block its first has held a while).
    assert!(
        from_peers >= bytes.len() as u64 && from_peers < bytes.len() as u64 * 3 / 2,
        "fetched {from_peers} bytes from the seeders for {}",
        bytes.len()
    );
}

/// Two seeders of one file, behind proxies that add 5 ms and 60 ms each way: the
/// gateway's reader gets the stream mostly from the near one, and the far one is marked
/// slow (kept off the pieces a reader needs next).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_near_seeder_serves_most_of_the_stream_and_the_far_one_is_marked_slow() {
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let net = Testnet::start(3, tmp.path()).await.unwrap();
    // Large enough that the far seeder delivers blocks before the near one is done.
    let data = random(64 << 20);
    let mut ih = String::new();
    for k in 0..2 {
        ih = share(
            &net,
            k,
            &tmp.path().join(format!("seed{k}")),
            "two",
            &[("two.bin", &data)],
            262144,
        )
        .await;
    }
    let proxy = |k: usize, ms: u64| {
        nodus_testnet::impair::tcp_delay(
            "127.0.0.1:0".parse().unwrap(),
            tor(&net, k).listen_addr().unwrap(),
            Duration::from_millis(ms),
        )
    };
    let near_proxy = proxy(0, 5).await.unwrap();
    let far = proxy(1, 60).await.unwrap();
    let near = near_proxy.addr;
    // The far seeder first, so it has delivered blocks (and its latency is known) by
    // the time the near one joins, however fast the machine.
    let opened = gw(&net, 2)
        .open(
            AddSource::Link(format!("magnet:?xt=urn:btih:{ih}&x.pe={}", far.addr)),
            None,
        )
        .await
        .unwrap();
    let t = tor(&net, 2);
    let mut reading = client()
        .get(&opened.url)
        .header(header::RANGE, "bytes=0-")
        .send()
        .await
        .unwrap();
    let first = reading.chunk().await.unwrap().unwrap();
    assert_eq!(first[..], data[..first.len()]);
    t.add_peers(&ih, &[near.to_string()]).unwrap();
    drop(reading);
    let got = client()
        .get(&opened.url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got, data);
    wait_until(T, "the far seeder marked slow", || async {
        t.get(&ih)
            .unwrap()
            .peers
            .iter()
            .any(|p| p.addr == far.addr.to_string() && p.slow)
    })
    .await
    .unwrap();
    // By the address dialled (pieces are credited by the port a peer says it listens
    // on, which through a proxy is not the address dialled).
    let info = t.get(&ih).unwrap();
    let from = |a: std::net::SocketAddr| {
        info.peers
            .iter()
            .find(|p| p.addr == a.to_string())
            .map_or(0, |p| p.downloaded)
    };
    let (n_near, n_far) = (from(near), from(far.addr));
    assert!(n_near > 4 * n_far, "near {n_near} bytes, far {n_far}");
    let near_peer = info
        .peers
        .iter()
        .find(|p| p.addr == near.to_string())
        .unwrap();
    assert!(!near_peer.slow, "{near_peer:?}");
}

/// The cache: torrents the gateway added are removed least recently watched first once
/// they pass `cache_mb`; one added by hand stays whatever its size; what is cached is
/// seeded; the cache's list survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_keeps_its_budget_never_touches_what_was_added_by_hand_and_seeds() {
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(1, tmp.path()).await.unwrap();
    let k = net
        .add_node(config_with(1, |_, g| g.cache_mb = 1))
        .await
        .unwrap();
    let kept = net
        .add_node(node_config(node_ip(2), &net.bootstrap_addrs()))
        .await
        .unwrap();
    let seeder = tor(&net, 0).listen_addr().unwrap();
    let mut ids = Vec::new();
    for (name, size) in [("a", 600_000), ("b", 600_000), ("mine", 2_000_000)] {
        let file = format!("{name}.bin");
        ids.push(
            share(
                &net,
                0,
                &tmp.path().join("src"),
                name,
                &[(file.as_str(), &random(size))],
                65536,
            )
            .await,
        );
    }
    let t = tor(&net, k);
    t.add(AddRequest {
        source: ids[2].clone(),
        peers: vec![seeder.to_string()],
        ..Default::default()
    })
    .await
    .unwrap();
    let http = client();
    for id in &ids[..2] {
        let o = gw(&net, k)
            .open(
                AddSource::Link(format!("magnet:?xt=urn:btih:{id}&x.pe={seeder}")),
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            http.get(&o.url)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .len(),
            600_000
        );
    }
    for id in &ids {
        wait_until(T, "complete", || async {
            t.get(id).unwrap().progress == 1.0
        })
        .await
        .unwrap();
    }
    assert_eq!(
        gw(&net, k).cached(),
        ids[..2].to_vec(),
        "least recently watched first"
    );
    let removed = gw(&net, k).enforce_budget().await.unwrap();
    assert_eq!(removed, vec![ids[0].clone()]);
    assert!(t.get(&ids[0]).is_err(), "removed");
    let a_file = Path::new(&t.get(&ids[1]).unwrap().save_dir).join("a.bin");
    assert!(!a_file.exists(), "with its file");
    assert!(
        t.get(&ids[2]).is_ok(),
        "added by hand: never the cache's, however large"
    );
    assert_eq!(
        gw(&net, k).enforce_budget().await.unwrap(),
        Vec::<String>::new()
    );

    // What the cache holds is seeded: a node that knows only the gateway node gets it.
    net.kill(0).await.unwrap();
    let g_addr = t.listen_addr().unwrap().to_string();
    let other = tor(&net, kept);
    other
        .add(AddRequest {
            source: ids[1].clone(),
            peers: vec![g_addr],
            ..Default::default()
        })
        .await
        .unwrap();
    wait_until(T, "downloaded from the gateway's cache", || async {
        other.get(&ids[1]).unwrap().progress == 1.0
    })
    .await
    .unwrap();

    // The handle holds the torrent store open: let it go, as a separate process would.
    drop(t);
    net.stop(k).await.unwrap();
    net.restart(k).await.unwrap();
    assert_eq!(
        gw(&net, k).cached(),
        vec![ids[1].clone()],
        "the cache's list survives a restart"
    );
}
