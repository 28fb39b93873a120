//! The vault's keys and what they seal. Primitives only from audited crates:
//! ChaCha20-Poly1305 (RustCrypto) for records and wrapped keys, HPKE (RFC 9180, base
//! mode, X25519 + HKDF-SHA256 + ChaCha20-Poly1305) to hand a grant key to a provider.
//!
//! The key hierarchy:
//! - each record has a **data key**; its versions are sealed under it;
//! - the node's **master key** wraps every data key (the patient's own access);
//! - each grant has a **grant key**, sealed to the provider's X25519 key with HPKE once,
//!   and wrapping the data keys of the records the grant covers. A grant of 10,000
//!   records is one HPKE operation and 10,000 symmetric wraps;
//! - revoking deletes the grant and gives the records it covered new data keys, so the
//!   old grant key opens nothing written after.
//!
//! Every seal binds what it protects through its associated data (`aad_*`), so a sealed
//! value moved to another record, version or grant fails to open.

use std::path::Path;

use chacha20poly1305::aead::Aead;
use chacha20poly1305::aead::Payload;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type HAead = hpke::aead::ChaCha20Poly1305;

pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
/// Bytes a seal adds: the nonce before, the tag after.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + 16;

pub type Key = [u8; KEY_LEN];

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("does not open: tampered with, or sealed for another key or place")]
    Open,
    #[error("not an X25519 public key")]
    PublicKey,
    #[error(
        "the vault key file {path} is damaged ({len} bytes, expected 64); restore it from a backup"
    )]
    KeyFile { path: String, len: usize },
    #[error(transparent)]
    Core(#[from] nodus_core::CoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub fn random_key() -> Key {
    rand::random()
}

fn cipher(key: &Key) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::new(&(*key).into())
}

/// `nonce || ciphertext || tag`.
pub fn seal(key: &Key, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let nonce: [u8; NONCE_LEN] = rand::random();
    let ct = cipher(key)
        .encrypt(
            &nonce.into(),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("ChaCha20-Poly1305 seals any message under 256 GiB");
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

pub fn open(key: &Key, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(CryptoError::Open);
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Open)?;
    cipher(key)
        .decrypt(&nonce.into(), Payload { msg: ct, aad })
        .map_err(|_| CryptoError::Open)
}

/// Opens a sealed key.
pub fn open_key(key: &Key, aad: &[u8], sealed: &[u8]) -> Result<Key, CryptoError> {
    open(key, aad, sealed)?
        .try_into()
        .map_err(|_| CryptoError::Open)
}

/// Associated data of a record's version.
pub fn aad_record(patient: &str, rid: &str, version: u64) -> Vec<u8> {
    format!("nodus-vault record\0{patient}\0{rid}\0{version}").into_bytes()
}

/// Associated data of a record's data key wrapped under the master or a grant key.
pub fn aad_wrap(patient: &str, rid: &str, epoch: u64) -> Vec<u8> {
    format!("nodus-vault data key\0{patient}\0{rid}\0{epoch}").into_bytes()
}

/// HPKE `info` of a grant key sealed to a provider.
pub fn info_grant(patient: &str, provider: &str, grant: u64) -> Vec<u8> {
    format!("nodus-vault grant\0{patient}\0{provider}\0{grant}").into_bytes()
}

/// A grant key sealed to a provider's public key: `(encapsulated key, ciphertext)`.
pub fn seal_to(
    public: &[u8; 32],
    info: &[u8],
    key: &Key,
) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
    let pk =
        <Kem as hpke::Kem>::PublicKey::from_bytes(public).map_err(|_| CryptoError::PublicKey)?;
    let (enc, ct) = hpke::single_shot_seal::<HAead, Kdf, Kem>(&OpModeS::Base, &pk, info, key, b"")
        .map_err(|_| CryptoError::PublicKey)?;
    Ok((enc.to_bytes().to_vec(), ct))
}

/// The node's vault keys: the master key, and the X25519 key providers are granted to.
pub struct Keys {
    master: Key,
    private: <Kem as hpke::Kem>::PrivateKey,
    public: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({})", hex::encode(self.public))
    }
}

impl Keys {
    fn from_seed(bytes: &[u8; 64]) -> Keys {
        let master: Key = bytes[..32].try_into().expect("32 bytes");
        let (private, public) = Kem::derive_keypair(&bytes[32..]);
        let public = public.to_bytes().into();
        Keys {
            master,
            private,
            public,
        }
    }

    /// Reads `path` (64 bytes, mode 0600), making it first if it is not there.
    pub fn load_or_create(path: &Path) -> Result<Keys, CryptoError> {
        let seed: [u8; 64] = {
            let mut s = [0u8; 64];
            s[..32].copy_from_slice(&random_key());
            s[32..].copy_from_slice(&random_key());
            s
        };
        // Written whole or not at all: a crash while making it leaves no short file.
        if !path.exists() {
            nodus_core::fsutil::write_atomic(path, &seed, 0o600)?;
        }
        let bytes = std::fs::read(path)?;
        let seed: [u8; 64] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::KeyFile {
                path: path.display().to_string(),
                len: bytes.len(),
            })?;
        Ok(Keys::from_seed(&seed))
    }

    /// Keys that live only in memory (benchmarks, tests).
    pub fn ephemeral() -> Keys {
        let mut s = [0u8; 64];
        s[..32].copy_from_slice(&random_key());
        s[32..].copy_from_slice(&random_key());
        Keys::from_seed(&s)
    }

    pub fn master(&self) -> &Key {
        &self.master
    }

    /// The X25519 public key providers give patients to be granted to.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// Opens a grant key sealed to this node.
    pub fn open_grant(&self, enc: &[u8], sealed: &[u8], info: &[u8]) -> Result<Key, CryptoError> {
        let enc =
            <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| CryptoError::Open)?;
        let key = hpke::single_shot_open::<HAead, Kdf, Kem>(
            &OpModeR::Base,
            &self.private,
            &enc,
            info,
            sealed,
            b"",
        )
        .map_err(|_| CryptoError::Open)?;
        key.try_into().map_err(|_| CryptoError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_opens_only_with_its_key_and_its_place() {
        let k = random_key();
        let s = seal(&k, b"here", b"secret");
        assert_eq!(open(&k, b"here", &s).unwrap(), b"secret");
        assert!(open(&k, b"there", &s).is_err());
        assert!(open(&random_key(), b"here", &s).is_err());
        let mut t = s.clone();
        t[20] ^= 1;
        assert!(open(&k, b"here", &t).is_err());
        assert!(open(&k, b"here", &s[..10]).is_err());
    }

    #[test]
    fn a_grant_key_opens_for_its_provider_only() {
        let provider = Keys::ephemeral();
        let other = Keys::ephemeral();
        let gk = random_key();
        let (enc, ct) = seal_to(&provider.public(), b"info", &gk).unwrap();
        assert_eq!(provider.open_grant(&enc, &ct, b"info").unwrap(), gk);
        assert!(other.open_grant(&enc, &ct, b"info").is_err());
        assert!(provider.open_grant(&enc, &ct, b"other").is_err());
    }

    #[test]
    fn the_key_file_is_private_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vault.key");
        let a = Keys::load_or_create(&p).unwrap();
        let b = Keys::load_or_create(&p).unwrap();
        assert_eq!(a.public(), b.public());
        assert_eq!(a.master(), b.master());
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::write(&p, b"short").unwrap();
        assert!(matches!(
            Keys::load_or_create(&p),
            Err(CryptoError::KeyFile { len: 5, .. })
        ));
    }
}
