//! The operator's Nostr key: the file it lives in (`<data dir>/social/key`, 32 secret
//! bytes, mode 0600) and the forms people paste (NIP-19 `npub`/`nsec`, or hex).

use std::path::{Path, PathBuf};

use bech32::{Bech32, Hrp};

use crate::error::SocialError;
use crate::event::Keys;

/// A key as a person wrote it could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyTextError {
    #[error("{0:?} is not a key: give 64 hex characters or an npub1/nsec1 string (NIP-19)")]
    Unreadable(String),
    #[error("expected an {wanted} key, got an {got} one")]
    WrongPart { wanted: &'static str, got: String },
    #[error("that secret key is not a valid secp256k1 key")]
    NotOnCurve,
}

fn bech32_of(hrp: &'static str, bytes: &[u8; 32]) -> String {
    bech32::encode::<Bech32>(Hrp::parse_unchecked(hrp), bytes).unwrap_or_default()
}

pub fn npub(public: &[u8; 32]) -> String {
    bech32_of("npub", public)
}

pub fn nsec(secret: &[u8; 32]) -> String {
    bech32_of("nsec", secret)
}

/// 32 bytes from hex or from bech32 with the human-readable part `hrp`.
fn parse(text: &str, hrp: &'static str) -> Result<[u8; 32], KeyTextError> {
    let text = text.trim();
    let unreadable = || KeyTextError::Unreadable(text.chars().take(80).collect());
    let mut out = [0u8; 32];
    if text.len() == 64 && hex::decode_to_slice(text.to_ascii_lowercase(), &mut out).is_ok() {
        return Ok(out);
    }
    let (got, data) = bech32::decode(text).map_err(|_| unreadable())?;
    if got.as_str() != hrp {
        return Err(KeyTextError::WrongPart {
            wanted: hrp,
            got: got.to_string(),
        });
    }
    data.try_into().map_err(|_| unreadable())
}

/// A public key as hex or `npub1...`.
pub fn parse_public(text: &str) -> Result<[u8; 32], KeyTextError> {
    parse(text, "npub")
}

/// A secret key as hex or `nsec1...`.
pub fn parse_secret(text: &str) -> Result<Keys, KeyTextError> {
    Keys::from_secret(parse(text, "nsec")?).map_err(|_| KeyTextError::NotOnCurve)
}

fn key_path(dir: &Path) -> PathBuf {
    dir.join("key")
}

/// The node's Nostr key, made on first start.
pub fn load(dir: &Path) -> Result<Keys, SocialError> {
    let path = key_path(dir);
    let fresh = Keys::generate();
    nodus_core::fsutil::write_new(&path, &fresh.secret(), 0o600)?;
    let bytes = std::fs::read(&path).map_err(|source| SocialError::Io {
        what: "reading the social key",
        source,
    })?;
    let secret: [u8; 32] = bytes
        .try_into()
        .map_err(|_| SocialError::BadKey(path.clone()))?;
    Keys::from_secret(secret).map_err(|_| SocialError::BadKey(path))
}

/// Makes `keys` the node's key; the one it replaces is kept beside it as
/// `key.<unix time>.old` (mode 0600), whose path is returned.
pub fn replace(dir: &Path, keys: &Keys, now: u64) -> Result<Option<PathBuf>, SocialError> {
    let path = key_path(dir);
    let mut kept = None;
    if let Ok(old) = std::fs::read(&path)
        && old.as_slice() != keys.secret().as_slice()
    {
        let backup = dir.join(format!("key.{now}.old"));
        nodus_core::fsutil::write_atomic(&backup, &old, 0o600)?;
        kept = Some(backup);
    }
    nodus_core::fsutil::write_atomic(&path, &keys.secret(), 0o600)?;
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_as_hex_or_nip19() {
        // NIP-19's own example.
        let npub_text = "npub10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8qzvjptg";
        let hex_text = "7e7e9c42a91bfef19fa929e5fda1b72e0ebc1a4c1141673e2794234d86addf4e";
        let from_bech = parse_public(npub_text).unwrap();
        assert_eq!(hex::encode(from_bech), hex_text);
        assert_eq!(parse_public(hex_text).unwrap(), from_bech);
        assert_eq!(npub(&from_bech), npub_text);
        let k = Keys::generate();
        assert_eq!(
            parse_secret(&nsec(&k.secret())).unwrap().public(),
            k.public()
        );
        assert!(matches!(
            parse_public(&nsec(&k.secret())),
            Err(KeyTextError::WrongPart { wanted: "npub", .. })
        ));
        assert!(matches!(
            parse_public("bob"),
            Err(KeyTextError::Unreadable(_))
        ));
        assert_eq!(
            parse_secret(&"00".repeat(32)).map(|_| ()),
            Err(KeyTextError::NotOnCurve)
        );
    }

    #[test]
    fn a_replaced_key_is_kept_aside() {
        let d = tempfile::tempdir().unwrap();
        let first = load(d.path()).unwrap();
        assert_eq!(load(d.path()).unwrap().public(), first.public());
        let second = Keys::generate();
        let kept = replace(d.path(), &second, 42).unwrap().unwrap();
        assert_eq!(std::fs::read(&kept).unwrap(), first.secret());
        assert_eq!(load(d.path()).unwrap().public(), second.public());
        use std::os::unix::fs::PermissionsExt;
        for p in [kept, d.path().join("key")] {
            assert_eq!(
                std::fs::metadata(p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }
}
