//! Nostr events (NIP-01): their JSON shape, their id and their BIP-340 signature.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use secp256k1::{Keypair, Secp256k1, SecretKey, VerifyOnly, XOnlyPublicKey, schnorr};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Tags an event may carry, at most.
pub const MAX_TAGS: usize = 2_000;

/// A signed event, as clients send it and relays store it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    #[serde(with = "hex32")]
    pub id: [u8; 32],
    #[serde(with = "hex32")]
    pub pubkey: [u8; 32],
    pub created_at: u64,
    pub kind: u16,
    pub tags: Vec<Vec<String>>,
    pub content: String,
    #[serde(with = "hex64")]
    pub sig: [u8; 64],
}

/// Why an event is refused. The prefixes are NIP-01's machine-readable ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("invalid: the id is not the hash of the event")]
    BadId,
    #[error("invalid: the signature does not match the pubkey")]
    BadSignature,
    #[error("invalid: the pubkey is not a point on secp256k1")]
    BadPubkey,
    #[error("invalid: more than {MAX_TAGS} tags")]
    TooManyTags,
    #[error("invalid: a tag must have a name")]
    EmptyTag,
}

/// What kind of storage a kind gets (NIP-01).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Kept; every one of them.
    Regular,
    /// Only the newest per author and kind (0, 3, 10000..20000).
    Replaceable,
    /// Relayed, never stored (20000..30000).
    Ephemeral,
    /// Only the newest per author, kind and `d` tag (30000..40000).
    Addressable,
}

impl Event {
    /// The serialization the id hashes: `[0,pubkey,created_at,kind,tags,content]`.
    fn canonical(
        pubkey: &[u8; 32],
        created_at: u64,
        kind: u16,
        tags: &[Vec<String>],
        content: &str,
    ) -> Vec<u8> {
        let v = (0u8, hex::encode(pubkey), created_at, kind, tags, content);
        // serde_json escapes exactly what JSON.stringify does, as NIP-01 asks.
        serde_json::to_vec(&v).unwrap_or_default()
    }

    pub fn compute_id(&self) -> [u8; 32] {
        Sha256::digest(Self::canonical(
            &self.pubkey,
            self.created_at,
            self.kind,
            &self.tags,
            &self.content,
        ))
        .into()
    }

    /// Checks the shape, the id and the signature.
    pub fn verify(&self) -> Result<(), EventError> {
        if self.tags.len() > MAX_TAGS {
            return Err(EventError::TooManyTags);
        }
        if self.tags.iter().any(|t| t.is_empty()) {
            return Err(EventError::EmptyTag);
        }
        if self.compute_id() != self.id {
            return Err(EventError::BadId);
        }
        let key = parsed_key(&self.pubkey)?;
        let sig = schnorr::Signature::from_byte_array(self.sig);
        VERIFIER
            .verify_schnorr(&sig, &self.id, &key)
            .map_err(|_| EventError::BadSignature)
    }

    pub fn retention(&self) -> Retention {
        match self.kind {
            0 | 3 | 10_000..20_000 => Retention::Replaceable,
            20_000..30_000 => Retention::Ephemeral,
            30_000..40_000 => Retention::Addressable,
            _ => Retention::Regular,
        }
    }

    /// The first value of the first tag named `name`.
    pub fn tag(&self, name: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|t| t.first().is_some_and(|n| n == name))
            .and_then(|t| t.get(1))
            .map(String::as_str)
    }

    /// The keys its `p` tags name (those that are valid hex keys), in order.
    pub fn p_keys(&self) -> impl Iterator<Item = [u8; 32]> + '_ {
        self.tags.iter().filter_map(|t| {
            let mut k = [0u8; 32];
            (t.first().is_some_and(|n| n == "p")
                && t.get(1)
                    .is_some_and(|v| hex::decode_to_slice(v, &mut k).is_ok()))
            .then_some(k)
        })
    }

    /// The value of its `expiration` tag (NIP-40), if any.
    pub fn expires_at(&self) -> Option<u64> {
        self.tag("expiration").and_then(|v| v.parse().ok())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A person's Nostr key.
#[derive(Clone)]
pub struct Keys {
    pair: Keypair,
}

/// One verification context for every check (making one cost 3 µs a check).
static VERIFIER: LazyLock<Secp256k1<VerifyOnly>> = LazyLock::new(Secp256k1::verification_only);

/// Authors' keys already parsed (parsing takes a square root, 4 µs; an author publishes
/// many events). Emptied when full, so what peers send cannot grow it.
static KEYS: LazyLock<Mutex<HashMap<[u8; 32], XOnlyPublicKey>>> = LazyLock::new(Mutex::default);
const KEYS_HELD: usize = 4096;

fn parsed_key(pubkey: &[u8; 32]) -> Result<XOnlyPublicKey, EventError> {
    let mut held = KEYS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(k) = held.get(pubkey) {
        return Ok(*k);
    }
    drop(held);
    let k = XOnlyPublicKey::from_byte_array(*pubkey).map_err(|_| EventError::BadPubkey)?;
    held = KEYS.lock().unwrap_or_else(|e| e.into_inner());
    if held.len() >= KEYS_HELD {
        held.clear();
    }
    held.insert(*pubkey, k);
    Ok(k)
}

impl Keys {
    pub fn generate() -> Keys {
        loop {
            if let Ok(k) = Keys::from_secret(rand::random()) {
                return k;
            }
        }
    }

    pub fn from_secret(secret: [u8; 32]) -> Result<Keys, EventError> {
        let sk = SecretKey::from_byte_array(secret).map_err(|_| EventError::BadPubkey)?;
        Ok(Keys {
            pair: Keypair::from_secret_key(&Secp256k1::signing_only(), &sk),
        })
    }

    pub fn secret(&self) -> [u8; 32] {
        self.pair.secret_bytes()
    }

    pub fn public(&self) -> [u8; 32] {
        self.pair.x_only_public_key().0.serialize()
    }

    /// Signs a new event.
    pub fn sign(&self, created_at: u64, kind: u16, tags: Vec<Vec<String>>, content: &str) -> Event {
        let pubkey = self.public();
        let id: [u8; 32] =
            Sha256::digest(Event::canonical(&pubkey, created_at, kind, &tags, content)).into();
        let aux: [u8; 32] = rand::random();
        let sig = Secp256k1::signing_only()
            .sign_schnorr_with_aux_rand(&id, &self.pair, &aux)
            .to_byte_array();
        Event {
            id,
            pubkey,
            created_at,
            kind,
            tags,
            content: content.to_string(),
            sig,
        }
    }
}

macro_rules! hex_array {
    ($name:ident, $n:expr) => {
        pub(crate) mod $name {
            use serde::{Deserialize, Deserializer, Serializer, de::Error};

            pub fn serialize<S: Serializer>(b: &[u8; $n], s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&hex::encode(b))
            }

            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; $n], D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                let mut out = [0u8; $n];
                // Lowercase only, as NIP-01 requires.
                if s.bytes().any(|c| c.is_ascii_uppercase()) {
                    return Err(D::Error::custom("hex must be lowercase"));
                }
                hex::decode_to_slice(s.as_bytes(), &mut out)
                    .map_err(|_| D::Error::custom(concat!("expected ", $n, " bytes of hex")))?;
                Ok(out)
            }
        }
    };
}
hex_array!(hex32, 32);
hex_array!(hex64, 64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parsed_keys_held_stay_bounded() {
        for _ in 0..KEYS_HELD + 10 {
            Keys::generate().sign(1, 1, vec![], "x").verify().unwrap();
            let held = KEYS.lock().unwrap().len();
            assert!((1..=KEYS_HELD).contains(&held), "{held} keys held");
        }
    }

    #[test]
    fn signed_events_verify_and_tampering_is_caught() {
        let k = Keys::generate();
        let e = k.sign(
            1_700_000_000,
            1,
            vec![vec!["t".into(), "nodus".into()]],
            "hi \"there\"\n",
        );
        e.verify().unwrap();
        let back: Event = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(back, e);

        let mut t = e.clone();
        t.content.push('!');
        assert_eq!(t.verify(), Err(EventError::BadId));
        let mut t = e.clone();
        t.sig[0] ^= 1;
        assert_eq!(t.verify(), Err(EventError::BadSignature));
        let other = Keys::generate();
        let mut t = e.clone();
        t.pubkey = other.public();
        t.id = t.compute_id();
        assert_eq!(t.verify(), Err(EventError::BadSignature));
    }

    #[test]
    fn kinds_sort_into_nip01_retention() {
        let k = Keys::generate();
        let r = |kind| k.sign(1, kind, vec![], "").retention();
        assert_eq!(r(1), Retention::Regular);
        assert_eq!(r(0), Retention::Replaceable);
        assert_eq!(r(10_002), Retention::Replaceable);
        assert_eq!(r(20_001), Retention::Ephemeral);
        assert_eq!(r(30_023), Retention::Addressable);
    }
}
