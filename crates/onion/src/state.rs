//! Small JSON files the onion service keeps in its directory (`role.json`,
//! `services.json`): read whole, written whole and atomically, mode 0600.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::OnionError;

/// The file's contents, or `None` if there is none. A file that does not parse is an
/// error that says `what_to_do`.
pub fn read<T: DeserializeOwned>(path: &Path, what_to_do: &str) -> Result<Option<T>, OnionError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| OnionError::Key(format!("{}: {e}; {what_to_do}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(OnionError::Key(format!("{}: {e}", path.display()))),
    }
}

pub fn write<T: Serialize>(path: &Path, value: &T) -> Result<(), OnionError> {
    let bytes = serde_json::to_vec_pretty(value).expect("always encodes");
    nodus_core::fsutil::write_atomic(path, &bytes, 0o600)
        .map_err(|e| OnionError::Key(format!("{}: {e}", path.display())))
}
