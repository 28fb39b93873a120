//! Streaming as a person uses it: `nodus open` on a node process prints a URL that
//! plays while the torrent downloads; the gateway's cache survives kill -9; mistakes
//! say what to do; the benchmark's plumbing.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

fn gateway_of(dir: &Path) -> String {
    endpoints(dir).unwrap()["extra"]["gateway"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A plain GET of `url` (http://host:port/path): the status and the body.
fn get(url: &str) -> (u16, Vec<u8>) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = TcpStream::connect(host).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let code = String::from_utf8_lossy(&resp[9..12]).parse().unwrap();
    (code, resp[split + 4..].to_vec())
}

#[test]
fn open_prints_a_url_that_plays_and_the_cache_survives_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    torrent_node(&a, "127.0.71.1", "");
    torrent_node(&b, "127.0.72.1", "");
    let _seeder = up(&a);
    let mut viewer = up(&b);
    let file = tmp.path().join("clip.mp4");
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    std::fs::write(&file, &data).unwrap();
    let o = nodus(&a, &["share", file.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let shared = json(&o);
    let seeder = endpoints(&a).unwrap()["extra"]["bittorrent"]
        .as_str()
        .unwrap()
        .to_string();
    let magnet = format!("{}&x.pe={seeder}", shared["magnet"].as_str().unwrap());

    fails_saying(
        &nodus(&b, &["open", &magnet, "--file", "3"]),
        "out of range",
    );
    let o = nodus(&b, &["open", &magnet]);
    assert!(o.status.success(), "{}", stderr(&o));
    let url = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let id = shared["id"].as_str().unwrap();
    assert_eq!(url, format!("{}/content/{id}/clip.mp4", gateway_of(&b)));
    let (code, body) = get(&url);
    assert_eq!(code, 200);
    assert!(body == data, "the file's bytes");
    let o = nodus(&b, &["open", &magnet, "--player"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("/play/{id}/clip.mp4")));

    let o = nodus(&b, &["gateway", "--json"]);
    assert_eq!(json(&o)["cached"], serde_json::json!([id]));
    viewer.child.kill().unwrap();
    let _ = viewer.child.wait();
    let _viewer = up(&b);
    let o = nodus(&b, &["gateway", "--json"]);
    assert_eq!(
        json(&o)["cached"],
        serde_json::json!([id]),
        "the cache survives kill -9"
    );
    let (code, body) = get(&format!("{}/content/{id}/clip.mp4", gateway_of(&b)));
    assert_eq!(code, 200);
    assert!(body == data, "and so does what it holds");
}

/// The benchmark's plumbing, with a tiny file: nodus and nginx are measured (timing is
/// never asserted); rqbit and WebTorrent are not installed by a test.
#[test]
fn bench_cdn_measures_every_row() {
    let o = std::process::Command::new(BIN)
        .args([
            "--json",
            "bench",
            "cdn",
            "--size-mb",
            "2",
            "--runs",
            "1",
            "--no-install",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    // scripts/test installs ffmpeg and Chromium, so the first-frame row is measured too.
    for who in ["nodus", "nginx"] {
        for row in ["first_byte_ms", "first_frame_ms", "seek_ms", "rate_mbs"] {
            assert!(
                v[who][row].as_f64().is_some_and(|x| x > 0.0),
                "{who} {row}: {v}"
            );
        }
    }
}
