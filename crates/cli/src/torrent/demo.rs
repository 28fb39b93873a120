//! The demo's file-sharing part: three nodes each hold a different third of a file; a
//! fourth finds them through a tracker and downloads from all three at once. Then a file
//! shared without any tracker is fetched from its infohash alone, its seeder found
//! through the mainline DHT.

use std::time::Instant;

use anyhow::{Result, anyhow};
use nodus_testnet::{Testnet, wait_until};
use nodus_torrent::create::{CreateOptions, create};
use nodus_torrent::{AddRequest, TorrentState};

use crate::ui::progress::{STEP_TIMEOUT, Steps, step};

const PIECE: u64 = 256 * 1024;
const PIECES: u64 = 96;

pub(crate) fn file_content(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub async fn steps(net: &mut Testnet, steps: &mut Steps) {
    step(
        steps,
        "three nodes hold a third of a file each; a fourth downloads from all at once",
        share_in_thirds(net),
    )
    .await;
    step(
        steps,
        "no tracker: a file found from its infohash alone, through the mainline DHT",
        trackerless(net),
    )
    .await;
}

/// Four running nodes with file sharing on (earlier steps killed some).
fn four_sharing_nodes(net: &Testnet) -> Result<[usize; 4]> {
    let sharing: Vec<usize> = net
        .running()
        .into_iter()
        .filter(|k| {
            net.node(*k)
                .service::<nodus_torrent::TorrentHandle>()
                .is_some()
        })
        .collect();
    match sharing[..] {
        [a, b, c, d, ..] => Ok([a, b, c, d]),
        _ => Err(anyhow!(
            "{} nodes run file sharing; 4 are needed",
            sharing.len()
        )),
    }
}

async fn trackerless(net: &Testnet) -> Result<String> {
    // The DHT nodes learned of each other from the connections of the step before
    // (PORT messages): no bootstrap router here. The seeder held a third there, the
    // leecher was the downloader.
    let [seeder, _, _, leecher] = four_sharing_nodes(net)?;
    let (s, l) = (
        net.node(seeder)
            .service::<nodus_torrent::TorrentHandle>()
            .cloned(),
        net.node(leecher)
            .service::<nodus_torrent::TorrentHandle>()
            .cloned(),
    );
    let (Some(s), Some(l)) = (s, l) else {
        return Err(anyhow!("no torrent service"));
    };
    let tmp = tempfile::tempdir()?;
    let data = file_content(4 * 1024 * 1024 + 12_345);
    let (infohash, seeder_addr) =
        super::seed_copy(&s, &tmp.path().join("src"), "lecture.webm", &data).await?;
    let seeder_addr = seeder_addr.to_string();
    let out = tmp.path().join("fetched");
    let t = Instant::now();
    let info = l
        .add(AddRequest {
            source: infohash.clone(),
            out_dir: Some(out.display().to_string()),
            ..Default::default()
        })
        .await?;
    wait_until(STEP_TIMEOUT, "the download to complete", || async {
        l.get(&info.id)
            .is_ok_and(|i| i.state == TorrentState::Seeding)
    })
    .await?;
    let took = t.elapsed();
    if std::fs::read(out.join("lecture.webm"))? != data {
        return Err(anyhow!("the downloaded file differs from the original"));
    }
    let done = l.get(&info.id)?;
    if !done
        .pieces_from
        .iter()
        .any(|(p, n)| *p == seeder_addr && *n > 0)
    {
        return Err(anyhow!(
            "the pieces did not come from the seeder: {:?}",
            done.pieces_from
        ));
    }
    Ok(format!(
        "node {leecher} had only the infohash {}…; it found node {seeder} through the DHT ({} DHT nodes known, learned from its peers) and got {:.1} MB in {:.0} ms, every piece hash-checked",
        &infohash[..12],
        l.dht_nodes(),
        data.len() as f64 / 1e6,
        took.as_secs_f64() * 1000.0
    ))
}

async fn share_in_thirds(net: &Testnet) -> Result<String> {
    let [a, b, c, downloader] = four_sharing_nodes(net)?;
    let holders = [a, b, c];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let tracker = format!("http://{}/announce", listener.local_addr()?);
    let tracker_task = tokio::spawn(nodus_torrent::tracker_server::serve(listener));

    let tmp = tempfile::tempdir()?;
    let data = file_content((PIECE * PIECES) as usize);
    let src = tmp.path().join("source").join("film.mkv");
    std::fs::create_dir_all(src.parent().unwrap_or(tmp.path()))?;
    std::fs::write(&src, &data)?;
    let opts = CreateOptions {
        trackers: vec![tracker],
        piece_length: Some(PIECE),
        ..Default::default()
    };
    let meta = tokio::task::spawn_blocking(move || create(&src, &opts)).await??;
    let torrent = tmp.path().join("film.torrent");
    std::fs::write(&torrent, meta.to_bytes())?;
    let third = (PIECE * PIECES / 3) as usize;

    let mut holder_addrs = Vec::new();
    for (j, k) in holders.iter().enumerate() {
        // Node k has only its third on disk; the rest of its copy is zeros.
        let dir = tmp.path().join(format!("node{k}"));
        std::fs::create_dir_all(&dir)?;
        let mut part = vec![0u8; data.len()];
        part[j * third..(j + 1) * third].copy_from_slice(&data[j * third..(j + 1) * third]);
        std::fs::write(dir.join("film.mkv"), &part)?;
        let h = net
            .node(*k)
            .service::<nodus_torrent::TorrentHandle>()
            .cloned()
            .ok_or_else(|| anyhow!("no torrent service"))?;
        let info = h
            .add(AddRequest {
                source: torrent.display().to_string(),
                out_dir: Some(dir.display().to_string()),
                ..Default::default()
            })
            .await?;
        if info.pieces_have as u64 != PIECES / 3 {
            return Err(anyhow!(
                "node {k} holds {} pieces, not a third",
                info.pieces_have
            ));
        }
        holder_addrs.push(
            h.listen_addr()
                .ok_or_else(|| anyhow!("no listen address"))?
                .to_string(),
        );
    }

    let h = net
        .node(downloader)
        .service::<nodus_torrent::TorrentHandle>()
        .cloned()
        .ok_or_else(|| anyhow!("no torrent service"))?;
    let out = tmp.path().join("downloaded");
    let t = Instant::now();
    let info = h
        .add(AddRequest {
            source: torrent.display().to_string(),
            out_dir: Some(out.display().to_string()),
            ..Default::default()
        })
        .await?;
    wait_until(STEP_TIMEOUT, "the download to complete", || async {
        h.get(&info.id)
            .is_ok_and(|i| i.state == TorrentState::Seeding)
    })
    .await?;
    let took = t.elapsed();
    tracker_task.abort();
    let done = h.get(&info.id)?;
    if std::fs::read(out.join("film.mkv"))? != data {
        return Err(anyhow!("the downloaded file differs from the original"));
    }
    let counts: Vec<String> = holder_addrs
        .iter()
        .zip(holders)
        .map(|(a, k)| {
            let n = done
                .pieces_from
                .iter()
                .find(|(p, _)| p == a)
                .map_or(0, |(_, n)| *n);
            format!("{n} from node {k}")
        })
        .collect();
    let from_all = holder_addrs
        .iter()
        .all(|a| done.pieces_from.iter().any(|(p, n)| p == a && *n > 0));
    if !from_all {
        return Err(anyhow!(
            "not every holder contributed: {:?}",
            done.pieces_from
        ));
    }
    Ok(format!(
        "node {downloader} found them through a tracker and got {:.1} MB ({} pieces: {}) in {:.0} ms, {:.0} MB/s; every piece hash-checked",
        data.len() as f64 / 1e6,
        done.pieces_total,
        counts.join(", "),
        took.as_secs_f64() * 1000.0,
        data.len() as f64 / 1e6 / took.as_secs_f64()
    ))
}
