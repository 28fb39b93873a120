//! An onion service's keys and the address they give.

use std::path::Path;

use data_encoding::BASE32_NOPAD;
use libp2p::identity::{Keypair, ed25519};
use sha2::{Digest, Sha256};

use crate::OnionError;
use crate::ntor::OnionKey;

pub const SUFFIX: &str = ".nodus";
const VERSION: u8 = 1;
/// The HKDF salt that derives a service's ntor key from its identity.
const NTOR_FROM_IDENTITY: &[u8] = b"nodus-onion-service-ntor-from-identity-1";
/// Characters of an address before [`SUFFIX`].
pub const ADDRESS_LEN: usize = 56;

/// A service's identity as the protocol names it: its Ed25519 public key.
pub type ServiceId = [u8; 32];

fn checksum(id: &ServiceId) -> [u8; 2] {
    let d = Sha256::new_with_prefix(b"nodus-onion-address")
        .chain_update(id)
        .chain_update([VERSION])
        .finalize();
    [d[0], d[1]]
}

/// `<base32>.nodus` for a service.
pub fn encode(id: &ServiceId) -> String {
    let mut raw = Vec::with_capacity(35);
    raw.extend_from_slice(id);
    raw.extend_from_slice(&checksum(id));
    raw.push(VERSION);
    format!("{}{SUFFIX}", BASE32_NOPAD.encode(&raw).to_ascii_lowercase())
}

/// The service an address names; `None` unless it is a well-formed address whose
/// checksum holds. A host name `sub.<address>` names the same service.
pub fn decode(host: &str) -> Option<ServiceId> {
    let host = host.to_ascii_lowercase();
    let stem = host.strip_suffix(SUFFIX)?;
    let stem = stem.rsplit('.').next()?;
    if stem.len() != ADDRESS_LEN {
        return None;
    }
    let raw = BASE32_NOPAD
        .decode(stem.to_ascii_uppercase().as_bytes())
        .ok()?;
    let id: ServiceId = raw.get(..32)?.try_into().ok()?;
    (raw.len() == 35 && raw[32..34] == checksum(&id) && raw[34] == VERSION).then_some(id)
}

/// Whether `host` is meant as an onion service (so never resolved elsewhere).
pub fn is_onion(host: &str) -> bool {
    host.to_ascii_lowercase().ends_with(SUFFIX)
}

/// A service's two keys.
#[derive(Clone)]
pub struct ServiceKeys {
    pub identity: Keypair,
    pub ntor: OnionKey,
}

impl ServiceKeys {
    pub fn generate() -> ServiceKeys {
        ServiceKeys {
            identity: Keypair::generate_ed25519(),
            ntor: OnionKey::generate(),
        }
    }

    /// The keys of a service whose identity another part of the node owns (messaging's
    /// anonymous identity): its address is that key's, and its ntor key is derived
    /// from it (HKDF-SHA256, its own label), so the same identity always gives the
    /// same descriptor keys and nothing more is stored.
    pub fn from_identity(identity: Keypair) -> Result<ServiceKeys, OnionError> {
        let ed = identity
            .clone()
            .try_into_ed25519()
            .map_err(|_| OnionError::Key("an onion service identity is an ed25519 key".into()))?;
        let mut ntor = zeroize::Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<Sha256>::new(Some(NTOR_FROM_IDENTITY), ed.secret().as_ref())
            .expand(b"ntor", &mut ntor[..])
            .expect("32 bytes is within HKDF-SHA256's limit");
        Ok(ServiceKeys {
            identity,
            ntor: OnionKey::from_bytes(*ntor),
        })
    }

    pub fn id(&self) -> ServiceId {
        public_bytes(&self.identity)
    }

    pub fn address(&self) -> String {
        encode(&self.id())
    }

    /// The keys in `path` (64 bytes, mode 0600), made there first if it is not there.
    pub fn load_or_create(path: &Path) -> Result<ServiceKeys, OnionError> {
        let bad = |what: String| OnionError::Key(format!("{}: {what}", path.display()));
        match std::fs::read(path) {
            Ok(mut bytes) if bytes.len() == 64 => {
                let ntor: [u8; 32] = bytes[32..].try_into().expect("32 bytes");
                let secret = ed25519::SecretKey::try_from_bytes(&mut bytes[..32])
                    .map_err(|e| bad(e.to_string()))?;
                Ok(ServiceKeys {
                    identity: ed25519::Keypair::from(secret).into(),
                    ntor: OnionKey::from_bytes(ntor),
                })
            }
            Ok(_) => Err(bad(
                "not an onion service key (64 bytes); remove it to make a new address".into(),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let keys = ServiceKeys::generate();
                let ed = keys
                    .identity
                    .clone()
                    .try_into_ed25519()
                    .expect("an ed25519 key");
                let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(64));
                bytes.extend_from_slice(ed.secret().as_ref());
                bytes.extend_from_slice(&keys.ntor.secret_bytes()[..]);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| bad(e.to_string()))?;
                }
                nodus_core::fsutil::write_atomic(path, &bytes, 0o600)
                    .map_err(|e| bad(e.to_string()))?;
                Ok(keys)
            }
            Err(e) => Err(bad(e.to_string())),
        }
    }
}

/// The 32 bytes of an Ed25519 identity's public key.
pub fn public_bytes(k: &Keypair) -> ServiceId {
    k.public()
        .try_into_ed25519()
        .expect("onion service keys are ed25519")
        .to_bytes()
}

/// Checks an Ed25519 signature by service `id`.
pub fn verify(id: &ServiceId, message: &[u8], signature: &[u8]) -> bool {
    ed25519::PublicKey::try_from_bytes(id).is_ok_and(|k| k.verify(message, signature))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_and_typos_are_refused() {
        let keys = ServiceKeys::generate();
        let a = keys.address();
        assert_eq!(a.len(), ADDRESS_LEN + SUFFIX.len());
        assert_eq!(decode(&a), Some(keys.id()));
        assert_eq!(decode(&a.to_uppercase()), Some(keys.id()));
        assert_eq!(decode(&format!("www.{a}")), Some(keys.id()));
        // One character changed: the checksum catches it.
        let mut typo = a.clone().into_bytes();
        typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
        assert_eq!(decode(std::str::from_utf8(&typo).unwrap()), None);
        assert_eq!(decode("example.nodus"), None);
        assert_eq!(decode("example.org"), None);
        assert!(is_onion("x.NODUS"));
    }

    #[test]
    fn keys_from_an_identity_are_the_same_each_time_and_name_it() {
        let identity = Keypair::generate_ed25519();
        let a = ServiceKeys::from_identity(identity.clone()).unwrap();
        let b = ServiceKeys::from_identity(identity.clone()).unwrap();
        assert_eq!(a.id(), public_bytes(&identity));
        assert_eq!(a.ntor.public(), b.ntor.public());
        let other = ServiceKeys::from_identity(Keypair::generate_ed25519()).unwrap();
        assert_ne!(a.ntor.public(), other.ntor.public());
    }

    #[test]
    fn keys_are_kept_in_a_private_file_and_give_the_same_address() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("services").join("8080.key");
        let a = ServiceKeys::load_or_create(&path).unwrap();
        let b = ServiceKeys::load_or_create(&path).unwrap();
        assert_eq!(a.address(), b.address());
        assert_eq!(a.ntor.public(), b.ntor.public());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, b"short").unwrap();
        assert!(ServiceKeys::load_or_create(&path).is_err());
    }
}
