//! Wallet accounts as Ethereum keystore v3 files (scrypt + AES-128-CTR, by the
//! `eth-keystore` crate), one per account in the data dir's `chain/keystore/`, mode 0600, so
//! geth, web3.py, ethers and wallets can import them and nodus can import theirs.

use std::path::{Path, PathBuf};

use alloy_primitives::Address;

use crate::error::ChainError;
use crate::wallet::Key;

fn err(e: impl Into<KeystoreFault>) -> ChainError {
    ChainError::Keystore(e.into())
}

/// A keystore file or directory that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreFault {
    #[error(transparent)]
    DataDir(#[from] nodus_core::CoreError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Keystore(#[from] eth_keystore::KeystoreError),
    #[error("not a keystore file: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: eth_keystore::KeystoreError,
    },
}

/// The wallet's directory, `<data dir>/chain/keystore/`. A wallet kept at the data
/// dir's root by earlier versions is moved there first, so the CLI finds it whether or
/// not a node has started since.
pub fn dir(data_dir: &nodus_core::DataDir) -> Result<PathBuf, ChainError> {
    data_dir
        .adopt_legacy("chain", &[("keystore", "keystore")])
        .map_err(err)?;
    Ok(data_dir.service_dir("chain").join("keystore"))
}

fn file_name(a: &Address) -> String {
    format!("{}.json", a.to_checksum(None))
}

/// Encrypts `key` under `password` into `dir`. Refuses to overwrite an account.
pub fn store(dir: &Path, key: &Key, password: &str) -> Result<PathBuf, ChainError> {
    if password.is_empty() {
        return Err(ChainError::Wallet("the password must not be empty".into()));
    }
    std::fs::create_dir_all(dir).map_err(err)?;
    let name = file_name(&key.address);
    let path = dir.join(&name);
    if path.exists() {
        return Err(ChainError::Wallet(format!(
            "account {} is already in {}",
            key.address,
            dir.display()
        )));
    }
    let mut rng = rand08::rngs::OsRng;
    eth_keystore::encrypt_key(dir, &mut rng, key.secret_bytes(), password, Some(&name))
        .map_err(err)?;
    // Add the address, as geth writes it, so other tools list the account.
    let text = std::fs::read_to_string(&path).map_err(err)?;
    let mut v: serde_json::Value = serde_json::from_str(&text).map_err(err)?;
    v["address"] = serde_json::Value::String(hex::encode(key.address));
    nodus_core::fsutil::write_atomic(&path, v.to_string().as_bytes(), 0o600).map_err(err)?;
    Ok(path)
}

/// Reads a keystore file (ours or another tool's).
pub fn open_file(path: &Path, password: &str) -> Result<Key, ChainError> {
    let secret = eth_keystore::decrypt_key(path, password).map_err(|e| match e {
        eth_keystore::KeystoreError::MacMismatch => {
            ChainError::Wallet(format!("wrong password for {}", path.display()))
        }
        source => err(KeystoreFault::Open {
            path: path.to_path_buf(),
            source,
        }),
    })?;
    let bytes: [u8; 32] = secret
        .try_into()
        .map_err(|_| ChainError::Wallet("the keystore holds a key that is not 32 bytes".into()))?;
    Key::from_bytes(bytes)
}

/// Accounts in `dir`, by address.
pub fn list(dir: &Path) -> Result<Vec<(Address, PathBuf)>, ChainError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(err(e)),
    };
    for e in entries.flatten() {
        let path = e.path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if let Ok(a) = stem.parse::<Address>() {
            out.push((a, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Unlocks the account `address` (or the only one, if there is exactly one).
pub fn unlock(dir: &Path, address: Option<Address>, password: &str) -> Result<Key, ChainError> {
    let accounts = list(dir)?;
    let path = match address {
        Some(a) => accounts
            .iter()
            .find(|(x, _)| *x == a)
            .map(|(_, p)| p.clone())
            .ok_or_else(|| ChainError::Wallet(format!("no account {a} in {}; `nodus wallet list` shows them", dir.display())))?,
        None => match accounts.as_slice() {
            [(_, p)] => p.clone(),
            [] => return Err(ChainError::Wallet("no wallet account yet; create one with `nodus wallet new` or `nodus wallet import`".into())),
            _ => return Err(ChainError::Wallet("several wallet accounts: say which with --from".into())),
        },
    };
    open_file(&path, password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_accounts_unlock_only_with_their_password() {
        let dir = tempfile::tempdir().unwrap();
        let key = Key::random();
        let path = store(dir.path(), &key, "hunter2").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert_eq!(
            unlock(dir.path(), None, "hunter2").unwrap().address,
            key.address
        );
        let e = unlock(dir.path(), Some(key.address), "wrong")
            .unwrap_err()
            .to_string();
        assert!(e.contains("wrong password"), "{e}");
        assert!(
            store(dir.path(), &key, "x").is_err(),
            "never overwrites an account"
        );
        assert_eq!(list(dir.path()).unwrap().len(), 1);
    }
}
