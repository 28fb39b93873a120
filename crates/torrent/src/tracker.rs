//! Tracker announces over HTTP (BEP 3, compact peer lists per BEP 23); UDP trackers
//! (BEP 15) are in `tracker_udp`.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use percent_encoding::{NON_ALPHANUMERIC, percent_encode};

use crate::bencode;
use crate::wire::parse_compact_v4;

/// Peers taken from one tracker answer, at most.
pub const MAX_PEERS: usize = 500;

pub struct Announce {
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    pub event: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceResponse {
    pub interval: u64,
    pub peers: Vec<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    #[error("tracker unreachable: {0}")]
    Http(#[from] reqwest::Error),
    #[error("tracker unreachable: {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("tracker unreachable: {0}")]
    Unreachable(String),
    #[error("tracker refused: {0}")]
    Failure(String),
    #[error("tracker answer is not bencode: {0}")]
    Bencode(#[from] crate::bencode::BencodeError),
    #[error("tracker answer is malformed: {0}")]
    Malformed(&'static str),
    #[error("UDP tracker packet is malformed: {0}")]
    UdpMalformed(&'static str),
    #[error("unsupported tracker URL {0}")]
    Unsupported(String),
}

/// Announces to an HTTP(S) or UDP (BEP 15) tracker; a UDP announce leaves from `bind`.
pub async fn announce(
    http: &reqwest::Client,
    bind: Option<IpAddr>,
    url: &str,
    a: &Announce,
) -> Result<AnnounceResponse, TrackerError> {
    if url.starts_with("udp://") {
        return crate::tracker_udp::announce(url, bind, a).await;
    }
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(TrackerError::Unsupported(url.to_string()));
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    let mut full = format!(
        "{url}{sep}info_hash={}&peer_id={}&port={}&uploaded={}&downloaded={}&left={}&compact=1&numwant=200",
        percent_encode(&a.info_hash, NON_ALPHANUMERIC),
        percent_encode(&a.peer_id, NON_ALPHANUMERIC),
        a.port,
        a.uploaded,
        a.downloaded,
        a.left,
    );
    if let Some(e) = a.event {
        full.push_str("&event=");
        full.push_str(e);
    }
    let resp = http
        .get(&full)
        .timeout(Duration::from_secs(15))
        .send()
        .await?;
    let body = resp.bytes().await?;
    parse_response(&body)
}

/// Decodes a tracker's answer (untrusted input).
pub fn parse_response(body: &[u8]) -> Result<AnnounceResponse, TrackerError> {
    let (v, _) = bencode::decode_prefix(body)?;
    let d = v
        .as_dict()
        .ok_or(TrackerError::Malformed("not a dictionary"))?;
    if let Some(f) = d.bytes("failure reason") {
        return Err(TrackerError::Failure(
            String::from_utf8_lossy(f).chars().take(200).collect(),
        ));
    }
    let interval = d.int("interval").filter(|&i| i > 0).unwrap_or(1800) as u64;
    let mut peers = Vec::new();
    match d.get("peers") {
        Some(bencode::Value::Bytes(b)) => peers.extend(parse_compact_v4(b, MAX_PEERS)),
        Some(bencode::Value::List(l)) => {
            for p in l.iter().take(MAX_PEERS) {
                let Some(p) = p.as_dict() else { continue };
                let ip = p.str("ip").and_then(|s| s.parse::<IpAddr>().ok());
                let port = p.int("port").filter(|&x| (1..=65535).contains(&x));
                if let (Some(ip), Some(port)) = (ip, port) {
                    peers.push(SocketAddr::new(ip, port as u16));
                }
            }
        }
        _ => {}
    }
    if let Some(b) = d.bytes("peers6") {
        for c in b.chunks_exact(18).take(MAX_PEERS) {
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&c[..16]);
            let port = u16::from_be_bytes([c[16], c[17]]);
            if port != 0 {
                peers.push(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port));
            }
        }
    }
    Ok(AnnounceResponse { interval, peers })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_dict_peer_lists() {
        let r = parse_response(b"d8:intervali900e5:peers6:\x7f\x00\x00\x01\x1a\xe1e").unwrap();
        assert_eq!(r.interval, 900);
        assert_eq!(r.peers, vec!["127.0.0.1:6881".parse().unwrap()]);
        let r = parse_response(b"d5:peersld2:ip9:127.0.0.24:porti7000eeee").unwrap();
        assert_eq!(r.peers, vec!["127.0.0.2:7000".parse().unwrap()]);
        assert!(matches!(
            parse_response(b"d14:failure reason3:nope"),
            Err(TrackerError::Failure(_))
        ));
        assert!(parse_response(b"garbage").is_err());
    }
}
