//! The relay messages of onion services and their checks. Every decoder here reads a
//! peer's bytes: bounded by one cell, refused whole if anything is off.

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use super::address::{self, ServiceId, ServiceKeys};
use crate::OnionError;
use crate::cell::RELAY_DATA;
use crate::client::Hop;
use crate::ntor::CREATE_LEN;

const ESTABLISH_DOMAIN: &[u8] = b"nodus-onion-establish-intro-1";
const INTRODUCE_INFO: &[u8] = b"nodus-onion-introduce-1";
pub const COOKIE_LEN: usize = 20;
pub type Cookie = [u8; COOKIE_LEN];

fn bad(what: &str) -> OnionError {
    OnionError::Malformed(format!("onion service message: {what}"))
}

/// ESTABLISH_INTRO: the service's key, and its signature over the hop's binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EstablishIntro {
    pub service: ServiceId,
    pub signature: Vec<u8>,
}

impl EstablishIntro {
    pub fn new(keys: &ServiceKeys, binding: &[u8; 32]) -> Result<EstablishIntro, OnionError> {
        let signature = keys
            .identity
            .sign(&[ESTABLISH_DOMAIN, binding].concat())
            .map_err(|e| OnionError::Key(e.to_string()))?;
        Ok(EstablishIntro {
            service: keys.id(),
            signature,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("always encodes")
    }

    /// The service whose signature over this circuit's `binding` the message carries.
    pub fn verify(data: &[u8], binding: &[u8; 32]) -> Result<ServiceId, OnionError> {
        let m: EstablishIntro =
            postcard::from_bytes(data).map_err(|_| bad("ESTABLISH_INTRO does not decode"))?;
        if !address::verify(
            &m.service,
            &[ESTABLISH_DOMAIN, binding].concat(),
            &m.signature,
        ) {
            return Err(bad("ESTABLISH_INTRO signature"));
        }
        Ok(m.service)
    }
}

/// INTRODUCE1 and INTRODUCE2: which service, and what only it can open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Introduce {
    pub service: ServiceId,
    pub sealed: Vec<u8>,
}

/// What the client seals to the service inside [`Introduce`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntroPayload {
    /// The rendezvous point's peer id, as bytes.
    pub rendezvous: Vec<u8>,
    pub rendezvous_key: [u8; 32],
    pub cookie: Cookie,
    /// The ntor CREATE for the service.
    pub create: Vec<u8>,
}

/// An introduction the service opened.
#[derive(Debug, Clone)]
pub struct Opened {
    pub rendezvous: Hop,
    pub cookie: Cookie,
    pub create: [u8; CREATE_LEN],
    /// The seal's encapsulated key, unique per introduction: a replay repeats it.
    pub seal_id: [u8; 32],
}

type PublicKey = <X25519HkdfSha256 as Kem>::PublicKey;
type PrivateKey = <X25519HkdfSha256 as Kem>::PrivateKey;
type EncappedKey = <X25519HkdfSha256 as Kem>::EncappedKey;
const ENCAPPED: usize = 32;

impl Introduce {
    /// Seals `payload` to the service's key `ntor`.
    pub fn seal(
        service: ServiceId,
        ntor: &[u8; 32],
        payload: &IntroPayload,
    ) -> Result<Introduce, OnionError> {
        let pk = PublicKey::from_bytes(ntor).map_err(|_| bad("service key"))?;
        let plain = postcard::to_stdvec(payload).expect("always encodes");
        let (encapped, ciphertext) = hpke::single_shot_seal::<
            ChaCha20Poly1305,
            HkdfSha256,
            X25519HkdfSha256,
        >(
            &OpModeS::Base, &pk, INTRODUCE_INFO, &plain, &service
        )
        .map_err(|_| bad("sealing"))?;
        let mut sealed = encapped.to_bytes().to_vec();
        sealed.extend_from_slice(&ciphertext);
        Ok(Introduce { service, sealed })
    }

    pub fn encode(&self) -> Result<Vec<u8>, OnionError> {
        let data = postcard::to_stdvec(self).expect("always encodes");
        if data.len() > RELAY_DATA {
            return Err(bad("INTRODUCE longer than a cell"));
        }
        Ok(data)
    }

    pub fn decode(data: &[u8]) -> Result<Introduce, OnionError> {
        postcard::from_bytes(data).map_err(|_| bad("INTRODUCE does not decode"))
    }

    /// Opens an introduction with the service's keys.
    pub fn open(&self, keys: &ServiceKeys) -> Result<Opened, OnionError> {
        if self.service != keys.id() {
            return Err(bad("INTRODUCE for another service"));
        }
        let (encapped, ciphertext) = self
            .sealed
            .split_at_checked(ENCAPPED)
            .ok_or_else(|| bad("INTRODUCE too short"))?;
        let sk = PrivateKey::from_bytes(&keys.ntor.secret_bytes()[..])
            .map_err(|_| bad("service key"))?;
        let ek = EncappedKey::from_bytes(encapped).map_err(|_| bad("INTRODUCE key"))?;
        let plain = hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
            &OpModeR::Base,
            &sk,
            &ek,
            INTRODUCE_INFO,
            ciphertext,
            &self.service,
        )
        .map_err(|_| bad("INTRODUCE does not open"))?;
        let p: IntroPayload =
            postcard::from_bytes(&plain).map_err(|_| bad("introduction does not decode"))?;
        let peer = PeerId::from_bytes(&p.rendezvous).map_err(|_| bad("rendezvous point"))?;
        Ok(Opened {
            rendezvous: Hop {
                peer,
                onion_key: p.rendezvous_key,
            },
            cookie: p.cookie,
            create: p
                .create
                .as_slice()
                .try_into()
                .map_err(|_| bad("introduction's CREATE"))?,
            seal_id: encapped.try_into().expect("32 bytes"),
        })
    }
}

/// RENDEZVOUS1: the cookie, then the service's ntor CREATED.
pub fn split_rendezvous1(data: &[u8]) -> Result<(Cookie, &[u8]), OnionError> {
    match data.split_at_checked(COOKIE_LEN) {
        Some((cookie, created)) if created.len() == crate::ntor::CREATED_LEN => {
            Ok((cookie.try_into().expect("20 bytes"), created))
        }
        _ => Err(bad("RENDEZVOUS1 length")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn establish_intro_holds_only_on_its_circuit() {
        let keys = ServiceKeys::generate();
        let m = EstablishIntro::new(&keys, &[1; 32]).unwrap().encode();
        assert_eq!(EstablishIntro::verify(&m, &[1; 32]).unwrap(), keys.id());
        assert!(EstablishIntro::verify(&m, &[2; 32]).is_err());
        let mut forged = m.clone();
        *forged.last_mut().unwrap() ^= 1;
        assert!(EstablishIntro::verify(&forged, &[1; 32]).is_err());
    }

    #[test]
    fn introductions_open_only_for_their_service() {
        let keys = ServiceKeys::generate();
        let payload = IntroPayload {
            rendezvous: PeerId::random().to_bytes(),
            rendezvous_key: [3; 32],
            cookie: [4; COOKIE_LEN],
            create: vec![5; CREATE_LEN],
        };
        let i = Introduce::seal(keys.id(), &keys.ntor.public(), &payload).unwrap();
        let data = i.encode().unwrap();
        let opened = Introduce::decode(&data).unwrap().open(&keys).unwrap();
        assert_eq!(opened.cookie, payload.cookie);
        assert_eq!(opened.create, [5; CREATE_LEN]);
        // Another service's keys, or a byte changed: nothing opens.
        assert!(i.open(&ServiceKeys::generate()).is_err());
        let mut changed = i.clone();
        *changed.sealed.last_mut().unwrap() ^= 1;
        assert!(changed.open(&keys).is_err());
        // Filed under another service: the associated data no longer matches.
        let other = ServiceKeys::generate();
        let mut moved = i.clone();
        moved.service = other.id();
        assert!(moved.open(&keys).is_err());
    }
}
