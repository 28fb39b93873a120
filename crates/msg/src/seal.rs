//! Sealing an envelope for a mailbox: HPKE (RFC 9180, base mode, X25519-HKDF-SHA256,
//! ChaCha20-Poly1305) to the recipient's seal key, so the mailbox holding it learns only
//! the routing key, not who sent it. The Olm ciphertext inside stays the only thing that
//! authenticates the sender.

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};

const INFO: &[u8] = b"nodus-msg-mailbox-v1";
const ENCAPPED: usize = 32;

type PrivateKey = <X25519HkdfSha256 as Kem>::PrivateKey;
type PublicKey = <X25519HkdfSha256 as Kem>::PublicKey;
type EncappedKey = <X25519HkdfSha256 as Kem>::EncappedKey;

/// A node's seal key pair; the secret half never leaves msg.redb.
pub struct SealKey {
    secret: PrivateKey,
    public: [u8; 32],
}

impl SealKey {
    pub fn generate() -> Self {
        let (secret, public) = X25519HkdfSha256::gen_keypair();
        SealKey {
            public: public.to_bytes().into(),
            secret,
        }
    }

    pub fn from_secret(bytes: &[u8]) -> Option<Self> {
        let secret = PrivateKey::from_bytes(bytes).ok()?;
        let public = X25519HkdfSha256::sk_to_pk(&secret).to_bytes().into();
        Some(SealKey { secret, public })
    }

    pub fn secret_bytes(&self) -> Vec<u8> {
        self.secret.to_bytes().to_vec()
    }

    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// Opens what [`seal`] made for this key; `None` if it was not for us or was altered.
    pub fn open(&self, sealed: &[u8], routing_key: &[u8]) -> Option<Vec<u8>> {
        let (encapped, ciphertext) = sealed.split_at_checked(ENCAPPED)?;
        let encapped = EncappedKey::from_bytes(encapped).ok()?;
        hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
            &OpModeR::Base,
            &self.secret,
            &encapped,
            INFO,
            ciphertext,
            routing_key,
        )
        .ok()
    }
}

/// Seals `plaintext` to `recipient`, binding the routing key as associated data so a
/// mailbox cannot file it under another recipient unnoticed.
pub fn seal(recipient: &[u8; 32], plaintext: &[u8], routing_key: &[u8]) -> Option<Vec<u8>> {
    let pk = PublicKey::from_bytes(recipient).ok()?;
    let (encapped, ciphertext) = hpke::single_shot_seal::<
        ChaCha20Poly1305,
        HkdfSha256,
        X25519HkdfSha256,
    >(&OpModeS::Base, &pk, INFO, plaintext, routing_key)
    .ok()?;
    let mut out = encapped.to_bytes().to_vec();
    out.extend_from_slice(&ciphertext);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_tamper() {
        let key = SealKey::generate();
        let sealed = seal(&key.public(), b"hello", b"bob").unwrap();
        assert_eq!(key.open(&sealed, b"bob").unwrap(), b"hello");
        assert!(key.open(&sealed, b"carol").is_none());
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(key.open(&bad, b"bob").is_none());
        assert!(SealKey::generate().open(&sealed, b"bob").is_none());
        let restored = SealKey::from_secret(&key.secret_bytes()).unwrap();
        assert_eq!(restored.public(), key.public());
        assert!(key.open(&[1, 2, 3], b"bob").is_none());
    }
}
