//! Who someone is, and how to start talking to them.
//!
//! A [`ContactCard`] binds a node's messaging keys (Olm's Curve25519 and Ed25519
//! identity keys, and the X25519 key mailboxes seal to) to its libp2p peer id: the
//! node's own ed25519 identity signs them, and the peer id carries that public key, so
//! anyone holding a card can check it without asking anyone else.
//!
//! An [`Invite`] is a card plus one one-time key, printed as a contact code. A
//! [`KeyBundle`] is a card plus a batch of one-time keys and a fallback key, published
//! in the DHT under `/msg/keys/<peer id>` and replenished as keys are used.

use libp2p::PeerId;
use libp2p::identity::{Keypair, PublicKey};
use serde::{Deserialize, Serialize};

use crate::wire;

pub const CODE_PREFIX: &str = "nodus-msg:";
pub const MAX_NAME: usize = 64;
pub const MAX_BUNDLE_KEYS: usize = 50;
const CARD_DOMAIN: &[u8] = b"nodus-msg-card-v1";
const BUNDLE_DOMAIN: &[u8] = b"nodus-msg-keys-v1";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CardError {
    #[error("not a contact code: it should start with {CODE_PREFIX}")]
    NotACode,
    #[error("the contact code is damaged (copy it again, whole): {0}")]
    NotBase64(#[source] vodozemac::Base64DecodeError),
    #[error("the contact code is damaged (copy it again, whole): {0}")]
    Damaged(#[source] postcard::Error),
    #[error("the card's peer id does not carry an ed25519 key")]
    BadPeer,
    #[error("the card's signature does not match its peer id")]
    BadSignature,
    #[error("display name longer than {MAX_NAME} bytes")]
    NameTooLong,
    #[error(
        "the name is empty: give one with at least one visible character, or leave --name out to use the name in the code"
    )]
    NameEmpty,
    #[error("key bundle of {0} one-time keys, over the limit of {MAX_BUNDLE_KEYS}")]
    TooManyKeys(usize),
    #[error("undecodable key bundle: {0}")]
    BundleUndecodable(#[source] postcard::Error),
    #[error("only /msg/keys/<peer id> is stored in the msg namespace")]
    BadRecordKey,
    #[error("a key bundle signed by another peer than its key names")]
    ForeignBundle,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactCard {
    pub peer: Vec<u8>,
    pub name: String,
    pub curve25519: [u8; 32],
    pub ed25519: [u8; 32],
    pub seal: [u8; 32],
    pub signature: Vec<u8>,
}

#[derive(Serialize)]
struct CardBody<'a> {
    peer: &'a [u8],
    name: &'a str,
    curve25519: &'a [u8; 32],
    ed25519: &'a [u8; 32],
    seal: &'a [u8; 32],
}

fn public_key_of(peer: &PeerId) -> Result<PublicKey, CardError> {
    let mh = peer.as_ref();
    if mh.code() != 0 {
        return Err(CardError::BadPeer);
    }
    PublicKey::try_decode_protobuf(mh.digest()).map_err(|_| CardError::BadPeer)
}

fn signed_bytes(domain: &[u8], body: &impl Serialize) -> Vec<u8> {
    let mut bytes = domain.to_vec();
    bytes.extend_from_slice(&wire::encode(body));
    bytes
}

impl ContactCard {
    pub fn new(
        node_key: &Keypair,
        name: &str,
        curve25519: [u8; 32],
        ed25519: [u8; 32],
        seal: [u8; 32],
    ) -> Result<Self, CardError> {
        if name.len() > MAX_NAME {
            return Err(CardError::NameTooLong);
        }
        let peer = node_key.public().to_peer_id().to_bytes();
        let body = CardBody {
            peer: &peer,
            name,
            curve25519: &curve25519,
            ed25519: &ed25519,
            seal: &seal,
        };
        let signature = node_key
            .sign(&signed_bytes(CARD_DOMAIN, &body))
            .map_err(|_| CardError::BadPeer)?;
        Ok(ContactCard {
            peer,
            name: name.to_string(),
            curve25519,
            ed25519,
            seal,
            signature,
        })
    }

    /// Checks the binding and returns the peer the card belongs to.
    pub fn verify(&self) -> Result<PeerId, CardError> {
        if self.name.len() > MAX_NAME {
            return Err(CardError::NameTooLong);
        }
        let peer = PeerId::from_bytes(&self.peer).map_err(|_| CardError::BadPeer)?;
        let key = public_key_of(&peer)?;
        let body = CardBody {
            peer: &self.peer,
            name: &self.name,
            curve25519: &self.curve25519,
            ed25519: &self.ed25519,
            seal: &self.seal,
        };
        if !key.verify(&signed_bytes(CARD_DOMAIN, &body), &self.signature) {
            return Err(CardError::BadSignature);
        }
        Ok(peer)
    }
}

/// A contact code: the card and one one-time key to open a session with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invite {
    pub card: ContactCard,
    pub one_time_key: [u8; 32],
    /// The card owner's node key over the one-time key.
    pub key_signature: Vec<u8>,
}

impl Invite {
    pub fn new(node_key: &Keypair, card: ContactCard, otk: [u8; 32]) -> Result<Self, CardError> {
        let key_signature = node_key
            .sign(&signed_bytes(BUNDLE_DOMAIN, &[otk]))
            .map_err(|_| CardError::BadPeer)?;
        Ok(Invite {
            card,
            one_time_key: otk,
            key_signature,
        })
    }

    pub fn to_code(&self) -> String {
        format!(
            "{CODE_PREFIX}{}",
            vodozemac::base64_encode(wire::encode(self))
        )
    }

    /// Parses and verifies a contact code.
    pub fn from_code(code: &str) -> Result<(Invite, PeerId), CardError> {
        let b64 = code
            .trim()
            .strip_prefix(CODE_PREFIX)
            .ok_or(CardError::NotACode)?;
        let bytes = vodozemac::base64_decode(b64).map_err(CardError::NotBase64)?;
        let invite: Invite = postcard::from_bytes(&bytes).map_err(CardError::Damaged)?;
        let peer = invite.card.verify()?;
        let key = public_key_of(&peer)?;
        if !key.verify(
            &signed_bytes(BUNDLE_DOMAIN, &[invite.one_time_key]),
            &invite.key_signature,
        ) {
            return Err(CardError::BadSignature);
        }
        Ok((invite, peer))
    }
}

/// One-time keys published in the DHT, signed by the node key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyBundle {
    pub card: ContactCard,
    pub one_time_keys: Vec<[u8; 32]>,
    pub fallback: Option<[u8; 32]>,
    pub published_ms: u64,
    pub signature: Vec<u8>,
}

#[derive(Serialize)]
struct BundleBody<'a> {
    keys: &'a [[u8; 32]],
    fallback: &'a Option<[u8; 32]>,
    published_ms: u64,
}

impl KeyBundle {
    pub fn new(
        node_key: &Keypair,
        card: ContactCard,
        one_time_keys: Vec<[u8; 32]>,
        fallback: Option<[u8; 32]>,
        published_ms: u64,
    ) -> Result<Self, CardError> {
        let body = BundleBody {
            keys: &one_time_keys,
            fallback: &fallback,
            published_ms,
        };
        let signature = node_key
            .sign(&signed_bytes(BUNDLE_DOMAIN, &body))
            .map_err(|_| CardError::BadPeer)?;
        Ok(KeyBundle {
            card,
            one_time_keys,
            fallback,
            published_ms,
            signature,
        })
    }

    pub fn verify(&self) -> Result<PeerId, CardError> {
        let peer = self.card.verify()?;
        if self.one_time_keys.len() > MAX_BUNDLE_KEYS {
            return Err(CardError::TooManyKeys(self.one_time_keys.len()));
        }
        let body = BundleBody {
            keys: &self.one_time_keys,
            fallback: &self.fallback,
            published_ms: self.published_ms,
        };
        if !public_key_of(&peer)?.verify(&signed_bytes(BUNDLE_DOMAIN, &body), &self.signature) {
            return Err(CardError::BadSignature);
        }
        Ok(peer)
    }
}

/// The DHT key a peer's bundle lives under.
pub fn bundle_key(peer: &PeerId) -> Vec<u8> {
    format!("/msg/keys/{peer}").into_bytes()
}

/// The validator for the `msg` DHT namespace: only a bundle signed by the peer its key
/// names is stored or returned.
pub fn validate_record(key: &[u8], value: &[u8]) -> Result<(), CardError> {
    let peer = std::str::from_utf8(key)
        .ok()
        .and_then(|k| k.strip_prefix("/msg/keys/"))
        .ok_or(CardError::BadRecordKey)?;
    let bundle: KeyBundle = postcard::from_bytes(value).map_err(CardError::BundleUndecodable)?;
    let signer = bundle.verify()?;
    if signer.to_string() != peer {
        return Err(CardError::ForeignBundle);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(key: &Keypair) -> ContactCard {
        ContactCard::new(key, "alice", [1; 32], [2; 32], [3; 32]).unwrap()
    }

    #[test]
    fn invite_round_trip_and_tamper() {
        let key = Keypair::generate_ed25519();
        let invite = Invite::new(&key, card(&key), [4; 32]).unwrap();
        let code = invite.to_code();
        let (back, peer) = Invite::from_code(&code).unwrap();
        assert_eq!(back, invite);
        assert_eq!(peer, key.public().to_peer_id());

        let mut forged = invite.clone();
        forged.card.curve25519 = [9; 32];
        assert_eq!(
            Invite::from_code(&forged.to_code()).unwrap_err(),
            CardError::BadSignature
        );
        let mut swapped = invite.clone();
        swapped.one_time_key = [5; 32];
        assert_eq!(
            Invite::from_code(&swapped.to_code()).unwrap_err(),
            CardError::BadSignature
        );
        assert_eq!(Invite::from_code("hello").unwrap_err(), CardError::NotACode);
        assert!(matches!(
            Invite::from_code(&code[..code.len() - 10]),
            Err(CardError::NotBase64(_) | CardError::Damaged(_))
        ));
    }

    #[test]
    fn bundle_record_is_checked_against_its_key() {
        let key = Keypair::generate_ed25519();
        let other = Keypair::generate_ed25519();
        let peer = key.public().to_peer_id();
        let bundle = KeyBundle::new(&key, card(&key), vec![[7; 32]; 5], Some([8; 32]), 1).unwrap();
        let value = wire::encode(&bundle);
        assert!(validate_record(&bundle_key(&peer), &value).is_ok());
        assert_eq!(
            validate_record(&bundle_key(&other.public().to_peer_id()), &value),
            Err(CardError::ForeignBundle)
        );
        assert_eq!(
            validate_record(b"/msg/other/x", &value),
            Err(CardError::BadRecordKey)
        );
        let mut more = bundle.clone();
        more.one_time_keys.push([6; 32]);
        assert_eq!(
            validate_record(&bundle_key(&peer), &wire::encode(&more)),
            Err(CardError::BadSignature)
        );
        assert!(matches!(
            validate_record(&bundle_key(&peer), b"junk"),
            Err(CardError::BundleUndecodable(_))
        ));
    }
}
