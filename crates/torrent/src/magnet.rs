//! Magnet links (BEP 9, BEP 52): `xt=urn:btih:` (hex or base32 SHA-1) and
//! `xt=urn:btmh:1220` (SHA-256 multihash), with `dn`, `tr`, `ws` and `x.pe`.

use std::net::SocketAddr;

use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::metainfo::{Hash20, InfoHashes, Metainfo};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Magnet {
    pub hashes: InfoHashes,
    pub name: Option<String>,
    pub trackers: Vec<String>,
    pub web_seeds: Vec<String>,
    pub peers: Vec<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MagnetError {
    #[error("not a magnet link (it must start with magnet:?)")]
    NotMagnet,
    #[error(
        "the magnet link has no infohash (xt=urn:btih:<40 hex or 32 base32> or xt=urn:btmh:1220<64 hex>)"
    )]
    NoHash,
    #[error("bad infohash {0:?} in the magnet link")]
    BadHash(String),
}

impl Magnet {
    pub fn parse(link: &str) -> Result<Magnet, MagnetError> {
        let query = link
            .strip_prefix("magnet:?")
            .ok_or(MagnetError::NotMagnet)?;
        let mut m = Magnet {
            hashes: InfoHashes { v1: None, v2: None },
            name: None,
            trackers: Vec::new(),
            web_seeds: Vec::new(),
            peers: Vec::new(),
        };
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned();
            match k {
                "xt" => {
                    if let Some(h) = v.strip_prefix("urn:btih:") {
                        m.hashes.v1 = Some(parse_btih(h)?);
                    } else if let Some(h) = v.strip_prefix("urn:btmh:") {
                        let bytes = h
                            .strip_prefix("1220")
                            .and_then(|h| hex::decode(h).ok())
                            .and_then(|b| <[u8; 32]>::try_from(b).ok())
                            .ok_or_else(|| MagnetError::BadHash(h.to_string()))?;
                        m.hashes.v2 = Some(bytes);
                    }
                }
                "dn" => m.name = Some(v),
                "tr" => m.trackers.push(v),
                "ws" => m.web_seeds.push(v),
                "x.pe" => m.peers.extend(v.parse::<SocketAddr>().ok()),
                _ => {}
            }
        }
        if m.hashes.v1.is_none() && m.hashes.v2.is_none() {
            return Err(MagnetError::NoHash);
        }
        Ok(m)
    }

    /// A bare 40-hex infohash taken as a magnet link.
    pub fn from_hex(hex_hash: &str) -> Result<Magnet, MagnetError> {
        Magnet::parse(&format!("magnet:?xt=urn:btih:{hex_hash}"))
    }

    pub fn of(meta: &Metainfo) -> Magnet {
        Magnet {
            hashes: meta.hashes,
            name: Some(meta.info.name.clone()),
            trackers: meta.trackers.iter().flatten().cloned().collect(),
            web_seeds: meta.web_seeds.clone(),
            peers: Vec::new(),
        }
    }

    pub fn to_link(&self) -> String {
        let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
        let mut parts = Vec::new();
        if let Some(h) = self.hashes.v1 {
            parts.push(format!("xt=urn:btih:{}", hex::encode(h)));
        }
        if let Some(h) = self.hashes.v2 {
            parts.push(format!("xt=urn:btmh:1220{}", hex::encode(h)));
        }
        if let Some(n) = &self.name {
            parts.push(format!("dn={}", enc(n)));
        }
        parts.extend(self.trackers.iter().map(|t| format!("tr={}", enc(t))));
        parts.extend(self.web_seeds.iter().map(|t| format!("ws={}", enc(t))));
        parts.extend(self.peers.iter().map(|p| format!("x.pe={p}")));
        format!("magnet:?{}", parts.join("&"))
    }
}

fn parse_btih(h: &str) -> Result<Hash20, MagnetError> {
    let bytes = match h.len() {
        40 => hex::decode(h).ok(),
        32 => data_encoding::BASE32
            .decode(h.to_ascii_uppercase().as_bytes())
            .ok(),
        _ => None,
    };
    bytes
        .and_then(|b| <Hash20>::try_from(b).ok())
        .ok_or_else(|| MagnetError::BadHash(h.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hex_base32_and_v2() {
        let hex = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";
        let m = Magnet::parse(&format!(
            "magnet:?xt=urn:btih:{hex}&dn=a+b%20c&tr=http%3A%2F%2Ft%2Fa&x.pe=127.0.0.1:6881"
        ))
        .unwrap();
        assert_eq!(m.hashes.v1.map(hex::encode).as_deref(), Some(hex));
        assert_eq!(m.name.as_deref(), Some("a b c"));
        assert_eq!(m.trackers, vec!["http://t/a"]);
        assert_eq!(m.peers.len(), 1);
        let b32 = data_encoding::BASE32.encode(&hex::decode(hex).unwrap());
        assert_eq!(
            Magnet::parse(&format!("magnet:?xt=urn:btih:{b32}"))
                .unwrap()
                .hashes
                .v1,
            m.hashes.v1
        );
        let v2 = "a".repeat(64);
        let m2 = Magnet::parse(&format!("magnet:?xt=urn:btmh:1220{v2}")).unwrap();
        assert!(m2.hashes.v2.is_some() && m2.hashes.v1.is_none());
        assert_eq!(Magnet::parse(&m.to_link()).unwrap(), m);
        assert_eq!(Magnet::parse("magnet:?dn=x"), Err(MagnetError::NoHash));
        assert!(Magnet::parse("http://x").is_err());
        assert!(Magnet::parse("magnet:?xt=urn:btih:zz").is_err());
    }
}
