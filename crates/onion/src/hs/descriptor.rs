//! An onion service's descriptor: its introduction points and its ntor key, signed
//! with its identity key; and the descriptors a node holds.
//!
//! ```text
//! signed = postcard(Signed { body, signature })                 at most 4 KiB
//! body   = postcard(ServiceDescriptor { version 1, service, ntor_key,
//!                   intros [(peer id bytes, onion key)] (1 to 8), published_ms })
//! signature = Ed25519 by `service` over "nodus-onion-service-descriptor-1" | body
//! ```

use std::collections::HashMap;

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use super::address::{self, ServiceId, ServiceKeys};
use crate::OnionError;
use crate::client::Hop;
use crate::directory::{FUTURE_MS, LIFETIME_MS};

const DOMAIN: &[u8] = b"nodus-onion-service-descriptor-1";
pub const MAX_SIGNED: usize = 4096;
pub const MAX_INTROS: usize = 8;
/// Services a node keeps descriptors of.
pub const MAX_SERVICES: usize = 20_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDescriptor {
    pub version: u8,
    pub service: ServiceId,
    pub ntor_key: [u8; 32],
    pub intros: Vec<(Vec<u8>, [u8; 32])>,
    pub published_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Signed {
    body: Vec<u8>,
    signature: Vec<u8>,
}

/// A descriptor whose signature checked.
#[derive(Debug, Clone)]
pub struct Service {
    pub id: ServiceId,
    pub ntor_key: [u8; 32],
    pub intros: Vec<Hop>,
    pub published_ms: u64,
}

fn bad(what: &str) -> OnionError {
    OnionError::Malformed(format!("service descriptor: {what}"))
}

/// Signs a descriptor naming `intros`.
pub fn sign(keys: &ServiceKeys, intros: &[Hop], published_ms: u64) -> Result<Vec<u8>, OnionError> {
    let d = ServiceDescriptor {
        version: 1,
        service: keys.id(),
        ntor_key: keys.ntor.public(),
        intros: intros
            .iter()
            .take(MAX_INTROS)
            .map(|h| (h.peer.to_bytes(), h.onion_key))
            .collect(),
        published_ms,
    };
    let body = postcard::to_stdvec(&d).expect("always encodes");
    let signature = keys
        .identity
        .sign(&[DOMAIN, &body].concat())
        .map_err(|e| OnionError::Key(e.to_string()))?;
    Ok(postcard::to_stdvec(&Signed { body, signature }).expect("always encodes"))
}

/// Reads and checks a signed descriptor from a peer.
pub fn verify(bytes: &[u8]) -> Result<Service, OnionError> {
    if bytes.len() > MAX_SIGNED {
        return Err(bad("too long"));
    }
    let s: Signed = postcard::from_bytes(bytes).map_err(|_| bad("does not decode"))?;
    let d: ServiceDescriptor = postcard::from_bytes(&s.body).map_err(|_| bad("body"))?;
    if d.version != 1 {
        return Err(bad("unknown version"));
    }
    if !address::verify(&d.service, &[DOMAIN, &s.body].concat(), &s.signature) {
        return Err(bad("signature does not verify"));
    }
    if d.intros.is_empty() || d.intros.len() > MAX_INTROS {
        return Err(bad("number of introduction points"));
    }
    let intros = d
        .intros
        .iter()
        .map(|(p, k)| {
            Ok(Hop {
                peer: PeerId::from_bytes(p).map_err(|_| bad("introduction point"))?,
                onion_key: *k,
            })
        })
        .collect::<Result<Vec<_>, OnionError>>()?;
    Ok(Service {
        id: d.service,
        ntor_key: d.ntor_key,
        intros,
        published_ms: d.published_ms,
    })
}

/// The onion services a node has heard of, newest descriptor of each.
#[derive(Debug, Default)]
pub struct Services {
    known: HashMap<ServiceId, Service>,
    /// Each one's signed descriptor, to hand on unchanged.
    signed: HashMap<ServiceId, Vec<u8>>,
}

impl Services {
    /// Takes a signed descriptor: `Ok(true)` if new or newer (worth passing on).
    pub fn insert(&mut self, signed: &[u8], now_ms: u64) -> Result<bool, OnionError> {
        let s = verify(signed)?;
        if s.published_ms > now_ms + FUTURE_MS {
            return Err(bad("published in the future"));
        }
        if s.published_ms + LIFETIME_MS < now_ms
            || self
                .known
                .get(&s.id)
                .is_some_and(|h| h.published_ms >= s.published_ms)
            || (!self.known.contains_key(&s.id) && self.known.len() >= MAX_SERVICES)
        {
            return Ok(false);
        }
        self.signed.insert(s.id, signed.to_vec());
        self.known.insert(s.id, s);
        Ok(true)
    }

    pub fn expire(&mut self, now_ms: u64) {
        self.known
            .retain(|_, s| s.published_ms + LIFETIME_MS >= now_ms);
        let known = &self.known;
        self.signed.retain(|id, _| known.contains_key(id));
    }

    /// Every descriptor held, as signed.
    pub fn signed(&self) -> impl Iterator<Item = &[u8]> {
        self.signed.values().map(Vec::as_slice)
    }

    pub fn get(&self, id: &ServiceId) -> Option<&Service> {
        self.known.get(id)
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_verify_and_any_change_is_refused() {
        let keys = ServiceKeys::generate();
        let intros = vec![Hop {
            peer: PeerId::random(),
            onion_key: [9; 32],
        }];
        let signed = sign(&keys, &intros, 1_000).unwrap();
        let s = verify(&signed).unwrap();
        assert_eq!((s.id, s.intros[0].peer), (keys.id(), intros[0].peer));
        for i in 0..signed.len() {
            let mut b = signed.clone();
            b[i] ^= 1;
            assert!(verify(&b).is_err(), "byte {i}");
        }
        assert!(verify(&sign(&keys, &[], 1_000).unwrap()).is_err());

        let mut known = Services::default();
        assert!(known.insert(&signed, 2_000).unwrap());
        assert!(!known.insert(&signed, 2_000).unwrap());
        assert!(
            known
                .insert(&sign(&keys, &intros, 1_500).unwrap(), 2_000)
                .unwrap()
        );
        known.expire(1_500 + LIFETIME_MS + 1);
        assert!(known.is_empty());
    }
}
