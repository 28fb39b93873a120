//! A relay's descriptor: who it is, its onion key, whether it exits, where it is. Signed
//! with the relay's overlay identity, so anyone can pass it on and nobody can change it.
//!
//! ```text
//! signed      = postcard(Signed { descriptor, public_key, signature })   at most 4 KiB
//! descriptor  = postcard(Descriptor { version 4, peer, onion_key, exit, addrs, published_ms,
//!                                     ticket { epoch, nonce } })
//! signature   = identity key's signature over "nodus-onion-descriptor-4" | descriptor
//! ```
//!
//! The version names the circuit protocol the relay speaks, so that relays of builds
//! that cannot carry each other's circuits never meet in a path: 2 added the ticket, 3
//! the AES-256-CTR layers ([`crate::layers`]), 4 congestion control and stream XON/XOFF
//! ([`crate::congestion`], [`crate::stream`]); a descriptor of another version is
//! refused.
//!
//! The ticket is the relay's admission cost for the day ([`crate::admission`]); a
//! directory checks it, not this module.
//!
//! `public_key` is the libp2p protobuf encoding of the identity's public key; the peer id
//! it gives must be `peer`. At most [`MAX_ADDRS`] addresses of at most 64 bytes each.

use libp2p::identity::{Keypair, PublicKey};
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use crate::OnionError;
use crate::admission::Ticket;

pub const MAX_SIGNED: usize = 4096;
pub const MAX_ADDRS: usize = 8;
const MAX_ADDR: usize = 64;
const DOMAIN: &[u8] = b"nodus-onion-descriptor-4";
const VERSION: u8 = 4;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    pub version: u8,
    /// The relay's peer id, as bytes.
    pub peer: Vec<u8>,
    pub onion_key: [u8; 32],
    pub exit: bool,
    /// Multiaddrs, as bytes.
    pub addrs: Vec<Vec<u8>>,
    pub published_ms: u64,
    /// The relay's admission ticket for the day.
    pub ticket: Ticket,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Signed {
    descriptor: Vec<u8>,
    public_key: Vec<u8>,
    signature: Vec<u8>,
}

/// A descriptor whose signature checked, with what was read from it.
#[derive(Debug, Clone)]
pub struct Verified {
    pub descriptor: Descriptor,
    pub peer: PeerId,
    pub addrs: Vec<Multiaddr>,
    /// The signed bytes, to pass on unchanged.
    pub signed: Vec<u8>,
}

impl Descriptor {
    pub fn new(
        peer: PeerId,
        onion_key: [u8; 32],
        exit: bool,
        addrs: &[Multiaddr],
        published_ms: u64,
        ticket: Ticket,
    ) -> Descriptor {
        Descriptor {
            version: VERSION,
            peer: peer.to_bytes(),
            onion_key,
            exit,
            addrs: addrs
                .iter()
                .map(|a| a.to_vec())
                .filter(|a| a.len() <= MAX_ADDR)
                .take(MAX_ADDRS)
                .collect(),
            published_ms,
            ticket,
        }
    }

    /// Signs with the relay's identity; `keys` must be the identity of `peer`.
    pub fn sign(&self, keys: &Keypair) -> Result<Vec<u8>, OnionError> {
        let descriptor = postcard::to_stdvec(self).expect("a descriptor always encodes");
        let signature = keys
            .sign(&[DOMAIN, &descriptor].concat())
            .map_err(|e| OnionError::Malformed(format!("signing: {e}")))?;
        let signed = Signed {
            descriptor,
            public_key: keys.public().encode_protobuf(),
            signature,
        };
        Ok(postcard::to_stdvec(&signed).expect("a signed descriptor always encodes"))
    }
}

/// Reads and checks a signed descriptor from a peer.
pub fn verify(bytes: &[u8]) -> Result<Verified, OnionError> {
    let bad = |what: &str| OnionError::Malformed(format!("descriptor: {what}"));
    if bytes.len() > MAX_SIGNED {
        return Err(bad("too long"));
    }
    let signed: Signed = postcard::from_bytes(bytes).map_err(|_| bad("not a signed descriptor"))?;
    let d: Descriptor =
        postcard::from_bytes(&signed.descriptor).map_err(|_| bad("does not decode"))?;
    if d.version != VERSION {
        return Err(bad("unknown version"));
    }
    let peer = PeerId::from_bytes(&d.peer).map_err(|_| bad("peer id"))?;
    let key = PublicKey::try_decode_protobuf(&signed.public_key).map_err(|_| bad("public key"))?;
    if key.to_peer_id() != peer {
        return Err(bad("signed by another identity"));
    }
    if !key.verify(&[DOMAIN, &signed.descriptor].concat(), &signed.signature) {
        return Err(bad("signature does not verify"));
    }
    if d.addrs.len() > MAX_ADDRS || d.addrs.iter().any(|a| a.len() > MAX_ADDR) {
        return Err(bad("too many or too long addresses"));
    }
    let addrs = d
        .addrs
        .iter()
        .map(|a| Multiaddr::try_from(a.clone()).map_err(|_| bad("address")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Verified {
        descriptor: d,
        peer,
        addrs,
        signed: bytes.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_descriptors_verify_and_changed_ones_do_not() {
        let keys = Keypair::generate_ed25519();
        let peer = keys.public().to_peer_id();
        let addr: Multiaddr = "/ip4/10.1.2.3/tcp/4001".parse().unwrap();
        let ticket = Ticket { epoch: 0, nonce: 3 };
        let d = Descriptor::new(
            peer,
            [7; 32],
            true,
            std::slice::from_ref(&addr),
            1000,
            ticket,
        );
        let signed = d.sign(&keys).unwrap();
        let v = verify(&signed).unwrap();
        assert_eq!(
            (v.peer, v.addrs, v.descriptor),
            (peer, vec![addr], d.clone())
        );

        // Any flipped bit: refused.
        for i in 0..signed.len() {
            let mut bad = signed.clone();
            bad[i] ^= 0x01;
            assert!(verify(&bad).is_err(), "byte {i}");
        }
        // Signed by someone else for this peer: refused.
        let other = Keypair::generate_ed25519();
        assert!(verify(&d.sign(&other).unwrap()).is_err());
    }
}
