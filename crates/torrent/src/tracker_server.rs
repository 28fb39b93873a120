//! A small open HTTP tracker (BEP 3 announces, compact answers per BEP 23, scrapes per
//! BEP 48): enough for
//! a LAN or a test swarm of real clients. It keeps every swarm in memory, forgets peers
//! that stop announcing, and answers every peer the others of its swarm.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use percent_encoding::percent_decode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::bencode::{BValue, dict};

/// Seconds between announces asked of clients.
pub const INTERVAL: u64 = 5;
/// How long a peer stays listed without announcing. Clients enforce their own floor on
/// the interval (libtorrent's is five minutes), so this is far above what we ask for.
const PEER_TTL: Duration = Duration::from_secs(30 * 60);
const MAX_SWARMS: usize = 10_000;
const MAX_PEERS_PER_SWARM: usize = 1000;

/// Per swarm: each peer, when it last announced, and whether it is a seed.
type Swarms = Arc<Mutex<HashMap<[u8; 20], HashMap<SocketAddr, (Instant, bool)>>>>;

/// Serves announces on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener) {
    let swarms: Swarms = Arc::default();
    loop {
        let Ok((mut stream, from)) = listener.accept().await else {
            continue;
        };
        let swarms = swarms.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            while n < buf.len() {
                match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf[n..])).await
                {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
                    Ok(Ok(k)) => n += k,
                }
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let body = answer(&swarms, &buf[..n], from.ip());
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&body).await;
            let _ = stream.shutdown().await;
        });
    }
}

fn failure(reason: &str) -> Vec<u8> {
    dict([("failure reason", BValue::str(reason))]).encode()
}

fn answer(swarms: &Swarms, request: &[u8], from: IpAddr) -> Vec<u8> {
    let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
    let Some(target) = line
        .strip_prefix(b"GET ")
        .and_then(|l| l.split(|&b| b == b' ').next())
    else {
        return failure("only GET /announce");
    };
    let (path, query) = match target.iter().position(|&b| b == b'?') {
        Some(i) => (&target[..i], &target[i + 1..]),
        None => return failure("no query"),
    };
    if path.ends_with(b"/scrape") {
        return scrape(swarms, query);
    }
    let mut info_hash = None;
    let mut port = None;
    let mut ip = None;
    let mut stopped = false;
    let mut seed = false;
    for pair in query.split(|&b| b == b'&') {
        let mut kv = pair.splitn(2, |&b| b == b'=');
        let (k, v) = (kv.next().unwrap_or_default(), kv.next().unwrap_or_default());
        let v: Vec<u8> = percent_decode(v).collect();
        match k {
            b"info_hash" => info_hash = <[u8; 20]>::try_from(v.as_slice()).ok(),
            b"port" => {
                port = std::str::from_utf8(&v)
                    .ok()
                    .and_then(|p| p.parse::<u16>().ok())
            }
            b"ip" => {
                ip = std::str::from_utf8(&v)
                    .ok()
                    .and_then(|p| p.parse::<IpAddr>().ok())
            }
            b"event" => stopped = v == b"stopped",
            b"left" => seed = v == b"0",
            _ => {}
        }
    }
    let (Some(hash), Some(port)) = (info_hash, port) else {
        return failure("info_hash and port are required");
    };
    let me = SocketAddr::new(ip.unwrap_or(from), port);
    let mut all = swarms.lock().unwrap_or_else(|e| e.into_inner());
    if !all.contains_key(&hash) && all.len() >= MAX_SWARMS {
        return failure("tracker full");
    }
    let swarm = all.entry(hash).or_default();
    swarm.retain(|_, (seen, _)| seen.elapsed() < PEER_TTL);
    if stopped {
        swarm.remove(&me);
    } else if swarm.len() < MAX_PEERS_PER_SWARM || swarm.contains_key(&me) {
        swarm.insert(me, (Instant::now(), seed));
    }
    let others: Vec<SocketAddr> = swarm.keys().copied().filter(|a| *a != me).collect();
    let seeds = swarm.values().filter(|(_, s)| *s).count() as i64;
    dict([
        ("complete", BValue::Int(seeds)),
        ("incomplete", BValue::Int(swarm.len() as i64 - seeds)),
        ("interval", BValue::Int(INTERVAL as i64)),
        ("peers", BValue::Bytes(crate::wire::compact_v4(&others))),
    ])
    .encode()
}

fn scrape(swarms: &Swarms, query: &[u8]) -> Vec<u8> {
    let all = swarms.lock().unwrap_or_else(|e| e.into_inner());
    let mut files = std::collections::BTreeMap::new();
    for pair in query.split(|&b| b == b'&') {
        let Some(v) = pair.strip_prefix(b"info_hash=") else {
            continue;
        };
        let v: Vec<u8> = percent_decode(v).collect();
        let Ok(hash) = <[u8; 20]>::try_from(v.as_slice()) else {
            continue;
        };
        let (seeds, total) = all.get(&hash).map_or((0, 0), |s| {
            (
                s.values().filter(|(_, seed)| *seed).count() as i64,
                s.len() as i64,
            )
        });
        files.insert(
            hash.to_vec(),
            dict([
                ("complete", BValue::Int(seeds)),
                ("downloaded", BValue::Int(0)),
                ("incomplete", BValue::Int(total - seeds)),
            ]),
        );
        if files.len() >= 100 {
            break;
        }
    }
    dict([("files", BValue::Dict(files))]).encode()
}
