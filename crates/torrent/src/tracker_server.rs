//! A small open tracker, over HTTP (BEP 3 announces, compact answers per BEP 23,
//! scrapes per BEP 48) and UDP (BEP 15): enough for a LAN or a test swarm of real
//! clients. It keeps every swarm in memory, forgets peers that stop announcing, and
//! answers every peer the others of its swarm. UDP connection ids are derived from a
//! secret, the client's IP and the minute, so the server keeps no per-client state.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use percent_encoding::percent_decode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

use crate::bencode::{BValue, dict};

/// Seconds between announces asked of clients, sent both as `interval` and as `min
/// interval`: libtorrent takes a missing `min interval` as 30 s and waits that long
/// between announces whatever `interval` says, so a peer that only accepts connections
/// (Transmission refuses to dial loopback peers) was found up to 30 s late.
pub const INTERVAL: u64 = 5;
/// How long a peer stays listed without announcing. Clients enforce their own floor on
/// the interval (libtorrent's is five minutes), so this is far above what we ask for.
const PEER_TTL: Duration = Duration::from_secs(30 * 60);
const MAX_SWARMS: usize = 10_000;
const MAX_PEERS_PER_SWARM: usize = 1000;

/// Per swarm: each peer, when it last announced, and whether it is a seed.
type Swarms = Arc<Mutex<HashMap<[u8; 20], HashMap<SocketAddr, (Instant, bool)>>>>;

/// Serves HTTP announces on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener) {
    serve_with(listener, None).await
}

/// Serves HTTP announces on `listener` and, with `udp`, UDP announces on that socket,
/// both into the same swarms, until the task is dropped.
pub async fn serve_with(listener: TcpListener, udp: Option<UdpSocket>) {
    let swarms: Swarms = Arc::default();
    let _udp = udp.map(|sock| AbortOnDrop(tokio::spawn(serve_udp(sock, swarms.clone()))));
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

/// An HTTP tracker request, as parsed from the bytes a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Announce(Announce),
    /// The swarms asked about (at most 100; malformed hashes are skipped).
    Scrape(Vec<[u8; 20]>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub info_hash: [u8; 20],
    pub port: u16,
    /// The address the client asks to be listed at (`ip=`), if any.
    pub ip: Option<IpAddr>,
    pub stopped: bool,
    /// `left=0`: the client has everything.
    pub seed: bool,
}

/// Why a request is not one this tracker answers; the message goes back to the client
/// as the announce's failure reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("only GET /announce")]
    NotGet,
    #[error("no query")]
    NoQuery,
    #[error("info_hash and port are required")]
    Incomplete,
}

/// Most swarms one scrape may ask about.
pub const MAX_SCRAPE: usize = 100;

/// Parses the request line of an HTTP announce or scrape (untrusted input: any bytes
/// are a request or an error).
pub fn parse_request(request: &[u8]) -> Result<Request, RequestError> {
    let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
    let target = line
        .strip_prefix(b"GET ")
        .and_then(|l| l.split(|&b| b == b' ').next())
        .ok_or(RequestError::NotGet)?;
    let i = target
        .iter()
        .position(|&b| b == b'?')
        .ok_or(RequestError::NoQuery)?;
    let (path, query) = (&target[..i], &target[i + 1..]);
    let pairs = || {
        query.split(|&b| b == b'&').map(|pair| {
            let mut kv = pair.splitn(2, |&b| b == b'=');
            let (k, v) = (kv.next().unwrap_or_default(), kv.next().unwrap_or_default());
            (k, percent_decode(v).collect::<Vec<u8>>())
        })
    };
    if path.ends_with(b"/scrape") {
        let hashes = pairs()
            .filter(|(k, _)| *k == b"info_hash")
            .filter_map(|(_, v)| <[u8; 20]>::try_from(v.as_slice()).ok())
            .take(MAX_SCRAPE)
            .collect();
        return Ok(Request::Scrape(hashes));
    }
    let (mut info_hash, mut port, mut ip, mut stopped, mut seed) = (None, None, None, false, false);
    for (k, v) in pairs() {
        let text = || std::str::from_utf8(&v).ok();
        match k {
            b"info_hash" => info_hash = <[u8; 20]>::try_from(v.as_slice()).ok(),
            b"port" => port = text().and_then(|p| p.parse::<u16>().ok()),
            b"ip" => ip = text().and_then(|p| p.parse::<IpAddr>().ok()),
            b"event" => stopped = v == b"stopped",
            b"left" => seed = v == b"0",
            _ => {}
        }
    }
    match (info_hash, port) {
        (Some(info_hash), Some(port)) => Ok(Request::Announce(Announce {
            info_hash,
            port,
            ip,
            stopped,
            seed,
        })),
        _ => Err(RequestError::Incomplete),
    }
}

fn answer(swarms: &Swarms, request: &[u8], from: IpAddr) -> Vec<u8> {
    let a = match parse_request(request) {
        Ok(Request::Announce(a)) => a,
        Ok(Request::Scrape(hashes)) => return scrape(swarms, &hashes),
        Err(e) => return failure(&e.to_string()),
    };
    let me = SocketAddr::new(a.ip.unwrap_or(from), a.port);
    match record(swarms, a.info_hash, me, a.stopped, a.seed) {
        Ok(r) => dict([
            ("complete", BValue::Int(r.seeds as i64)),
            ("incomplete", BValue::Int(r.leechers as i64)),
            ("interval", BValue::Int(INTERVAL as i64)),
            ("min interval", BValue::Int(INTERVAL as i64)),
            ("peers", BValue::Bytes(crate::wire::compact_v4(&r.others))),
        ])
        .encode(),
        Err(reason) => failure(reason),
    }
}

struct Recorded {
    others: Vec<SocketAddr>,
    seeds: usize,
    leechers: usize,
}

/// Notes `me` in the swarm of `hash` (or takes it out, `stopped`) and lists the others.
fn record(
    swarms: &Swarms,
    hash: [u8; 20],
    me: SocketAddr,
    stopped: bool,
    seed: bool,
) -> Result<Recorded, &'static str> {
    let mut all = swarms.lock().unwrap_or_else(|e| e.into_inner());
    if !all.contains_key(&hash) && all.len() >= MAX_SWARMS {
        return Err("tracker full");
    }
    let swarm = all.entry(hash).or_default();
    swarm.retain(|_, (seen, _)| seen.elapsed() < PEER_TTL);
    if stopped {
        swarm.remove(&me);
    } else if swarm.len() < MAX_PEERS_PER_SWARM || swarm.contains_key(&me) {
        swarm.insert(me, (Instant::now(), seed));
    }
    let seeds = swarm.values().filter(|(_, s)| *s).count();
    Ok(Recorded {
        others: swarm.keys().copied().filter(|a| *a != me).collect(),
        seeds,
        leechers: swarm.len() - seeds,
    })
}

/// (seeds, peers in all) of one swarm.
fn counts(swarms: &Swarms, hash: &[u8; 20]) -> (usize, usize) {
    let all = swarms.lock().unwrap_or_else(|e| e.into_inner());
    all.get(hash).map_or((0, 0), |s| {
        (s.values().filter(|(_, seed)| *seed).count(), s.len())
    })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Peers in one UDP answer, at most (the datagram stays under 1500 bytes).
const UDP_MAX_PEERS: usize = 200;

async fn serve_udp(sock: UdpSocket, swarms: Swarms) {
    use crate::tracker_udp::{self as udp, Request};
    let secret: [u8; 16] = rand::random();
    let conn_id = |ip: IpAddr, minute: u64| -> u64 {
        use sha1::{Digest, Sha1};
        let mut h = Sha1::new();
        h.update(secret);
        h.update(ip.to_string().as_bytes());
        h.update(minute.to_be_bytes());
        u64::from_be_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
    };
    let minute = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 60)
    };
    let mut buf = vec![0u8; 2048];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let header = |action: u32, tid: u32| {
            let mut out = action.to_be_bytes().to_vec();
            out.extend_from_slice(&tid.to_be_bytes());
            out
        };
        let reply = match udp::parse_request(&buf[..n]) {
            Err(_) => continue,
            Ok(Request::Connect { tid }) => {
                let mut out = header(udp::CONNECT, tid);
                out.extend_from_slice(&conn_id(from.ip(), minute()).to_be_bytes());
                out
            }
            Ok(Request::Announce { conn, tid, .. } | Request::Scrape { conn, tid, .. })
                // BEP 15: a connection id is good for two minutes.
                if !(0..=2).any(|ago| conn_id(from.ip(), minute().saturating_sub(ago)) == conn) =>
            {
                let mut out = header(udp::ERROR, tid);
                out.extend_from_slice(b"connection id expired; connect again");
                out
            }
            Ok(Request::Announce {
                tid,
                info_hash,
                left,
                event,
                ip,
                port,
                ..
            }) => {
                let ip = if ip.is_unspecified() {
                    from.ip()
                } else {
                    IpAddr::V4(ip)
                };
                let me = SocketAddr::new(ip, port);
                match record(&swarms, info_hash, me, event == 3, left == 0) {
                    Ok(r) => {
                        let mut out = header(udp::ANNOUNCE, tid);
                        out.extend_from_slice(&(INTERVAL as u32).to_be_bytes());
                        out.extend_from_slice(&(r.leechers as u32).to_be_bytes());
                        out.extend_from_slice(&(r.seeds as u32).to_be_bytes());
                        let v4: Vec<SocketAddr> = r
                            .others
                            .into_iter()
                            .filter(SocketAddr::is_ipv4)
                            .take(UDP_MAX_PEERS)
                            .collect();
                        out.extend_from_slice(&crate::wire::compact_v4(&v4));
                        out
                    }
                    Err(reason) => {
                        let mut out = header(udp::ERROR, tid);
                        out.extend_from_slice(reason.as_bytes());
                        out
                    }
                }
            }
            Ok(Request::Scrape {
                tid, info_hashes, ..
            }) => {
                let mut out = header(udp::SCRAPE, tid);
                for h in &info_hashes {
                    let (seeds, total) = counts(&swarms, h);
                    out.extend_from_slice(&(seeds as u32).to_be_bytes());
                    out.extend_from_slice(&0u32.to_be_bytes());
                    out.extend_from_slice(&((total - seeds) as u32).to_be_bytes());
                }
                out
            }
        };
        let _ = sock.send_to(&reply, from).await;
    }
}

fn scrape(swarms: &Swarms, hashes: &[[u8; 20]]) -> Vec<u8> {
    let mut files = std::collections::BTreeMap::new();
    for hash in hashes {
        let (seeds, total) = counts(swarms, hash);
        let (seeds, total) = (seeds as i64, total as i64);
        files.insert(
            hash.to_vec(),
            dict([
                ("complete", BValue::Int(seeds)),
                ("downloaded", BValue::Int(0)),
                ("incomplete", BValue::Int(total - seeds)),
            ]),
        );
    }
    dict([("files", BValue::Dict(files))]).encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announces_are_asked_for_every_interval_and_no_later() {
        let swarms = Swarms::default();
        let hash = "%01".repeat(20);
        let req = format!("GET /announce?info_hash={hash}&port=6881&left=0 HTTP/1.1\r\n\r\n");
        let body = answer(&swarms, req.as_bytes(), IpAddr::from([127, 0, 0, 1]));
        let v = crate::bencode::decode_exact(&body).unwrap();
        let d = v.as_dict().unwrap();
        assert_eq!(d.int("interval"), Some(INTERVAL as i64));
        assert_eq!(d.int("min interval"), Some(INTERVAL as i64));
    }
}
