//! UDP trackers (BEP 15): the packet formats, both sides, and the client's exchange
//! (connect, then announce, with retransmission).
//!
//! Every parser takes untrusted bytes and checks the action and transaction id
//! before reading further; a short or foreign packet is an error, never a panic.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::tracker::{Announce, AnnounceResponse, MAX_PEERS, TrackerError};

pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;
pub const CONNECT: u32 = 0;
pub const ANNOUNCE: u32 = 1;
pub const SCRAPE: u32 = 2;
pub const ERROR: u32 = 3;
/// Per attempt (BEP 15 suggests 15 s doubling; a tracker that is up answers in
/// milliseconds, and three tries bound the wait).
const TIMEOUTS: [Duration; 3] = [
    Duration::from_secs(3),
    Duration::from_secs(6),
    Duration::from_secs(12),
];

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn malformed(what: &'static str) -> TrackerError {
    TrackerError::UdpMalformed(what)
}

/// Checks the header of an answer to transaction `tid`; an error packet becomes
/// `TrackerError::Failure` with its message.
fn check_header(b: &[u8], action: u32, tid: u32) -> Result<(), TrackerError> {
    let (Some(got), Some(got_tid)) = (be_u32(b, 0), be_u32(b, 4)) else {
        return Err(malformed("short packet"));
    };
    if got_tid != tid {
        return Err(malformed("transaction id does not match"));
    }
    if got == ERROR {
        let msg = String::from_utf8_lossy(&b[8..]);
        return Err(TrackerError::Failure(msg.chars().take(200).collect()));
    }
    if got != action {
        return Err(malformed("unexpected action"));
    }
    Ok(())
}

pub fn connect_request(tid: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&PROTOCOL_ID.to_be_bytes());
    b[8..12].copy_from_slice(&CONNECT.to_be_bytes());
    b[12..].copy_from_slice(&tid.to_be_bytes());
    b
}

/// The connection id from a connect answer.
pub fn parse_connect_response(b: &[u8], tid: u32) -> Result<u64, TrackerError> {
    check_header(b, CONNECT, tid)?;
    be_u64(b, 8).ok_or_else(|| malformed("short connect answer"))
}

fn event_code(event: Option<&str>) -> u32 {
    match event {
        Some("completed") => 1,
        Some("started") => 2,
        Some("stopped") => 3,
        _ => 0,
    }
}

pub fn announce_request(conn: u64, tid: u32, key: u32, a: &Announce) -> Vec<u8> {
    let mut b = Vec::with_capacity(98);
    b.extend_from_slice(&conn.to_be_bytes());
    b.extend_from_slice(&ANNOUNCE.to_be_bytes());
    b.extend_from_slice(&tid.to_be_bytes());
    b.extend_from_slice(&a.info_hash);
    b.extend_from_slice(&a.peer_id);
    b.extend_from_slice(&a.downloaded.to_be_bytes());
    b.extend_from_slice(&a.left.to_be_bytes());
    b.extend_from_slice(&a.uploaded.to_be_bytes());
    b.extend_from_slice(&event_code(a.event).to_be_bytes());
    b.extend_from_slice(&0u32.to_be_bytes()); // our IP: the one the packet comes from
    b.extend_from_slice(&key.to_be_bytes());
    b.extend_from_slice(&200i32.to_be_bytes()); // peers wanted
    b.extend_from_slice(&a.port.to_be_bytes());
    b
}

pub fn parse_announce_response(b: &[u8], tid: u32) -> Result<AnnounceResponse, TrackerError> {
    check_header(b, ANNOUNCE, tid)?;
    let interval = be_u32(b, 8).ok_or_else(|| malformed("short announce answer"))?;
    if b.len() < 20 {
        return Err(malformed("short announce answer"));
    }
    let peers = crate::wire::parse_compact_v4(&b[20..], MAX_PEERS);
    Ok(AnnounceResponse {
        interval: if interval == 0 { 1800 } else { interval as u64 },
        peers,
    })
}

/// What a UDP tracker server receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Connect {
        tid: u32,
    },
    Announce {
        conn: u64,
        tid: u32,
        info_hash: [u8; 20],
        left: u64,
        /// 0 none, 1 completed, 2 started, 3 stopped.
        event: u32,
        /// Nonzero: the address the peer asks to be listed under.
        ip: Ipv4Addr,
        port: u16,
    },
    Scrape {
        conn: u64,
        tid: u32,
        info_hashes: Vec<[u8; 20]>,
    },
}

/// Info hashes in one scrape, at most (BEP 15: about 74 fit in a packet).
pub const MAX_SCRAPE: usize = 74;

pub fn parse_request(b: &[u8]) -> Result<Request, TrackerError> {
    let (Some(conn), Some(action), Some(tid)) = (be_u64(b, 0), be_u32(b, 8), be_u32(b, 12)) else {
        return Err(malformed("short request"));
    };
    match action {
        CONNECT if conn == PROTOCOL_ID => Ok(Request::Connect { tid }),
        ANNOUNCE if b.len() >= 98 => Ok(Request::Announce {
            conn,
            tid,
            info_hash: b[16..36].try_into().map_err(|_| malformed("info_hash"))?,
            left: be_u64(b, 64).ok_or_else(|| malformed("left"))?,
            event: be_u32(b, 80).ok_or_else(|| malformed("event"))?,
            ip: Ipv4Addr::from(be_u32(b, 84).ok_or_else(|| malformed("ip"))?),
            port: u16::from_be_bytes([b[96], b[97]]),
        }),
        SCRAPE => Ok(Request::Scrape {
            conn,
            tid,
            info_hashes: b[16..]
                .chunks_exact(20)
                .take(MAX_SCRAPE)
                .filter_map(|c| c.try_into().ok())
                .collect(),
        }),
        _ => Err(malformed("unknown action or short packet")),
    }
}

/// Announces to `url` (udp://host:port[/...]) from `bind` (any address when None).
pub async fn announce(
    url: &str,
    bind: Option<IpAddr>,
    a: &Announce,
) -> Result<AnnounceResponse, TrackerError> {
    let hostport = url
        .strip_prefix("udp://")
        .and_then(|r| r.split('/').next())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| TrackerError::Unsupported(url.to_string()))?;
    let target = tokio::time::timeout(Duration::from_secs(10), tokio::net::lookup_host(hostport))
        .await
        .map_err(|_| TrackerError::Unreachable(format!("{hostport}: name lookup timed out")))?
        .map_err(|source| TrackerError::Io {
            what: hostport.to_string(),
            source,
        })?
        .find(|t| bind.is_none_or(|b| b.is_ipv4() == t.is_ipv4()))
        .ok_or_else(|| TrackerError::Unreachable(format!("{hostport}: no usable address")))?;
    let local = match (bind, target) {
        (Some(ip), _) => SocketAddr::new(ip, 0),
        (None, SocketAddr::V4(_)) => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0).into(),
        (None, SocketAddr::V6(_)) => "[::]:0".parse().expect("literal"),
    };
    let sock = UdpSocket::bind(local)
        .await
        .map_err(|source| TrackerError::Io {
            what: format!("binding {local}"),
            source,
        })?;
    sock.connect(target)
        .await
        .map_err(|source| TrackerError::Io {
            what: target.to_string(),
            source,
        })?;
    let tid: u32 = rand::random();
    let conn = exchange(&sock, &connect_request(tid), |b| {
        parse_connect_response(b, tid)
    })
    .await?;
    let tid: u32 = rand::random();
    let req = announce_request(conn, tid, rand::random(), a);
    exchange(&sock, &req, |b| parse_announce_response(b, tid)).await
}

/// Sends `req` until an answer parses (retransmitting on silence); packets that do
/// not parse as the answer (stale or foreign) are skipped.
async fn exchange<T>(
    sock: &UdpSocket,
    req: &[u8],
    parse: impl Fn(&[u8]) -> Result<T, TrackerError>,
) -> Result<T, TrackerError> {
    let mut buf = vec![0u8; 2048];
    let mut last = TrackerError::Unreachable("the UDP tracker did not answer".into());
    for timeout in TIMEOUTS {
        sock.send(req).await.map_err(|source| TrackerError::Io {
            what: "sending to the UDP tracker".into(),
            source,
        })?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let n = match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) => {
                    last = TrackerError::Io {
                        what: "receiving from the UDP tracker".into(),
                        source: e,
                    };
                    break;
                }
                Ok(Ok(n)) => n,
            };
            match parse(&buf[..n]) {
                Ok(v) => return Ok(v),
                Err(e @ TrackerError::Failure(_)) => return Err(e),
                Err(e) => last = e,
            }
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_through_the_server_parser() {
        assert_eq!(
            parse_request(&connect_request(7)).unwrap(),
            Request::Connect { tid: 7 }
        );
        let a = Announce {
            info_hash: [1; 20],
            peer_id: [2; 20],
            port: 6881,
            uploaded: 3,
            downloaded: 4,
            left: 5,
            event: Some("started"),
        };
        assert_eq!(
            parse_request(&announce_request(99, 8, 1, &a)).unwrap(),
            Request::Announce {
                conn: 99,
                tid: 8,
                info_hash: [1; 20],
                left: 5,
                event: 2,
                ip: Ipv4Addr::UNSPECIFIED,
                port: 6881
            }
        );
    }

    #[test]
    fn answers_are_checked_before_they_are_read() {
        let mut ok = vec![0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 60, 0, 0, 0, 1, 0, 0, 0, 2];
        ok.extend_from_slice(&[127, 0, 0, 1, 0x1a, 0xe1]);
        let r = parse_announce_response(&ok, 9).unwrap();
        assert_eq!(r.interval, 60);
        assert_eq!(r.peers, vec!["127.0.0.1:6881".parse().unwrap()]);
        assert!(
            parse_announce_response(&ok, 10).is_err(),
            "foreign transaction"
        );
        assert!(parse_announce_response(&ok[..12], 9).is_err(), "short");
        let mut err = vec![0, 0, 0, 3, 0, 0, 0, 9];
        err.extend_from_slice(b"unregistered torrent");
        assert!(matches!(
            parse_announce_response(&err, 9),
            Err(TrackerError::Failure(m)) if m == "unregistered torrent"
        ));
        assert!(parse_connect_response(&[0; 15], 0).is_err());
        assert!(parse_request(&[0; 15]).is_err());
    }
}
