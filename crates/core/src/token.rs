//! The API bearer token: 32 random bytes, hex, in `api.cookie` (mode 0600). A new token
//! is made each time a node starts, so a token leaked from an old run is worthless.

use std::path::Path;

use rand::RngCore;

use crate::{CoreError, fsutil};

pub fn generate() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

pub fn write(path: &Path, token: &str) -> Result<(), CoreError> {
    fsutil::write_atomic(path, token.as_bytes(), 0o600)
}

pub fn read(path: &Path) -> Result<String, CoreError> {
    let s = std::fs::read_to_string(path).map_err(|e| CoreError::io(path, e))?;
    Ok(s.trim().to_string())
}
