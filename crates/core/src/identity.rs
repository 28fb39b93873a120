//! The node identity: one ed25519 keypair in `identity.key` (libp2p protobuf encoding),
//! mode 0600. The peer id, the messaging identity and every signature a node makes derive
//! from it, so the file is never replaced behind the user's back.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use libp2p::identity::Keypair;

use crate::error::KeyProblem;
use crate::{CoreError, fsutil};

/// Loads the key at `path`. Refuses a key readable or writable by group or others, and a
/// file that does not decode to an ed25519 keypair.
pub fn load(path: &Path) -> Result<Keypair, CoreError> {
    let meta = std::fs::metadata(path).map_err(|e| CoreError::io(path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CoreError::KeyTooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    let bytes = std::fs::read(path).map_err(|e| CoreError::io(path, e))?;
    let corrupt = |reason: KeyProblem| CoreError::CorruptKey {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.is_empty() {
        return Err(corrupt(KeyProblem::Empty));
    }
    let key = Keypair::from_protobuf_encoding(&bytes).map_err(|e| corrupt(e.into()))?;
    if key.key_type() != libp2p::identity::KeyType::Ed25519 {
        return Err(corrupt(KeyProblem::NotEd25519(key.key_type())));
    }
    Ok(key)
}

/// Returns the key at `path`, creating a fresh one only if no file exists there.
/// The bool says whether a key was created.
pub fn load_or_create(path: &Path) -> Result<(Keypair, bool), CoreError> {
    if path.exists() {
        return load(path).map(|k| (k, false));
    }
    let key = Keypair::generate_ed25519();
    let bytes = key
        .to_protobuf_encoding()
        .map_err(|e| CoreError::CorruptKey {
            path: path.to_path_buf(),
            reason: e.into(),
        })?;
    if fsutil::write_new(path, &bytes, 0o600)? {
        Ok((key, true))
    } else {
        // Lost a race with another `init`: the file that won is the identity.
        load(path).map(|k| (k, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("identity.key");
        let (a, created) = load_or_create(&p).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (b, created) = load_or_create(&p).unwrap();
        assert!(!created);
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
    }

    #[test]
    fn corrupt_key_is_an_error_not_a_new_identity() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("identity.key");
        fsutil::write_atomic(&p, b"garbage", 0o600).unwrap();
        let err = load_or_create(&p).unwrap_err();
        assert!(matches!(err, CoreError::CorruptKey { .. }), "{err}");
        assert_eq!(std::fs::read(&p).unwrap(), b"garbage");
        fsutil::write_atomic(&p, b"", 0o600).unwrap();
        let err = load(&p).unwrap_err().to_string();
        assert!(err.contains("is corrupt (the file is empty)"), "{err}");
        assert!(!err.contains("rsa"), "{err}");
    }

    #[test]
    fn key_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("identity.key");
        load_or_create(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load(&p).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
}
