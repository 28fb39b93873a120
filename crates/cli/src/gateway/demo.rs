//! The demo's content-delivery part: a short video (made by ffmpeg) seeded by three
//! nodes, opened through a fourth node's gateway from a magnet link; headless Chromium
//! plays it from the gateway's player page, seeks to the middle and plays on. Without
//! ffmpeg or Chromium it says so and checks the same over HTTP.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use nodus_gateway::{AddSource, GatewayHandle};
use nodus_testnet::Testnet;
use nodus_torrent::TorrentHandle;

use crate::torrent::bytes;
use crate::ui::progress::{STEP_TIMEOUT, Steps, ms, step};

pub async fn steps(net: &mut Testnet, steps: &mut Steps) {
    step(
        steps,
        "a video seeded by three nodes plays through a fourth node's gateway, seeks and plays on",
        stream_a_video(net),
    )
    .await;
}

/// Running nodes with file sharing and the gateway on.
fn streaming_nodes(net: &Testnet) -> Vec<(usize, TorrentHandle, GatewayHandle)> {
    net.running()
        .into_iter()
        .filter_map(|k| {
            let n = net.node(k);
            Some((
                k,
                n.service::<TorrentHandle>()?.clone(),
                n.service::<GatewayHandle>()?.clone(),
            ))
        })
        .collect()
}

async fn stream_a_video(net: &mut Testnet) -> Result<String> {
    let nodes = streaming_nodes(net);
    if nodes.len() < 4 {
        bail!("{} nodes run file sharing and the gateway; 4 are needed", nodes.len());
    }
    let tmp = tempfile::tempdir()?;
    let video = tmp.path().join("pattern.mp4");
    let made = nodus_testnet::media::test_video(&video, 20).await;
    let mut notes = Vec::new();
    if let Err(e) = &made {
        notes.push(format!("{e}; a stand-in file instead"));
        std::fs::write(&video, crate::torrent::demo::file_content(3_000_000))?;
    }
    let data = std::fs::read(&video)?;
    let mut infohash = String::new();
    let mut peers = String::new();
    let mut seeders = Vec::new();
    for (i, (k, t, _)) in nodes[..3].iter().enumerate() {
        let (ih, addr) =
            crate::torrent::seed_copy(t, &tmp.path().join(format!("seed{i}")), "pattern.mp4", &data).await?;
        infohash = ih;
        peers.push_str(&format!("&x.pe={addr}"));
        seeders.push((*k, addr.to_string()));
    }
    let (viewer, t, g) = &nodes[3];
    let started = Instant::now();
    let opened = g
        .open(AddSource::Link(format!("magnet:?xt=urn:btih:{infohash}&dn=pattern.mp4{peers}")), None)
        .await?;
    let metadata = started.elapsed();
    // Time to first byte, from a cold torrent: no piece of it is on the viewer yet.
    let http = reqwest::Client::new();
    let t0 = Instant::now();
    let mut r = http.get(&opened.url).send().await?.error_for_status()?;
    let first = r.chunk().await?.ok_or_else(|| anyhow!("an empty response"))?;
    let ttfb = t0.elapsed();
    if first[..] != data[..first.len()] {
        bail!("the gateway's first bytes differ from the video's");
    }
    drop(r);
    let page = format!("{}/play/{}/{}", g.url(), opened.id, opened.path);
    let played = match (&made, nodus_testnet::browser::available()) {
        (Ok(()), true) => {
            let b = nodus_testnet::browser::Browser::start().await?;
            let p = b.play_and_seek(&page, STEP_TIMEOUT).await;
            b.quit().await;
            let p = p?;
            if p.after <= p.mid + 1.0 {
                bail!("the video did not play on after the seek: {p:?}");
            }
            format!(
                "Chromium: first frame {}, seek to {:.0} s answered in {}, played on to {:.1} s",
                p.first_frame_ms.map_or("-".into(), |f| format!("{f:.0} ms")),
                p.mid,
                ms(Duration::from_secs_f64(p.seek_ms / 1000.0)),
                p.after
            )
        }
        _ => {
            if made.is_ok() {
                notes.push("Chromium is not installed (scripts/test installs it): HTTP only".into());
            }
            // A seek, as a player makes it: a Range from the middle.
            let mid = data.len() / 2;
            let t0 = Instant::now();
            let r = http
                .get(&opened.url)
                .header(reqwest::header::RANGE, format!("bytes={mid}-"))
                .send()
                .await?
                .error_for_status()?;
            let got = r.bytes().await?;
            if got[..] != data[mid..] {
                bail!("the bytes from the middle differ from the video's");
            }
            format!("a seek to the middle answered in {}", ms(t0.elapsed()))
        }
    };
    let info = t.get(&opened.id)?;
    let per_peer: Vec<String> = seeders
        .iter()
        .map(|(k, addr)| {
            let got = info.peers.iter().find(|p| p.addr == *addr).map_or(0, |p| p.downloaded);
            format!("node {k} {}", bytes(got))
        })
        .collect();
    let mut figure = format!(
        "{} on node {viewer}: metadata {}, first byte {}; {played}; fetched from {}",
        bytes(data.len() as u64),
        ms(metadata),
        ms(ttfb),
        per_peer.join(", ")
    );
    for n in notes {
        figure.push_str(&format!(" ({n})"));
    }
    Ok(figure)
}
