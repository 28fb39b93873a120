//! `endpoints.json`: written by a running node at start, read by every command that
//! talks to it. Later services add their own entries (JSON-RPC, SOCKS, ...) to `extra`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{CoreError, fsutil};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Endpoints {
    /// Base URL of the HTTP API, e.g. `http://127.0.0.1:43117`.
    pub api: String,
    pub peer_id: String,
    /// Every P2P multiaddr the node listens on, each ending in `/p2p/<peer_id>`.
    pub p2p: Vec<String>,
    pub pid: u32,
    #[serde(default)]
    pub extra: BTreeMap<String, String>,
}

impl Endpoints {
    pub fn write(&self, path: &Path) -> Result<(), CoreError> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| CoreError::BadFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        fsutil::write_atomic(path, &json, 0o644)
    }

    pub fn read(path: &Path) -> Result<Self, CoreError> {
        let bytes = std::fs::read(path).map_err(|e| CoreError::io(path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| CoreError::BadFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }
}
