//! The data directory: one per node, holding its identity, config and runtime files.

use std::path::{Path, PathBuf};

use crate::CoreError;

/// A node's data directory. All file names a node uses are defined here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    /// `explicit` (from `--data-dir` or `NODUS_DATA_DIR`), else `$XDG_DATA_HOME/nodus`
    /// (`~/.local/share/nodus`).
    pub fn resolve(explicit: Option<&Path>) -> Result<Self, CoreError> {
        if let Some(p) = explicit {
            return Ok(DataDir::new(p));
        }
        dirs::data_dir()
            .map(|d| DataDir::new(d.join("nodus")))
            .ok_or(CoreError::NoDataDir)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn identity_path(&self) -> PathBuf {
        self.root.join("identity.key")
    }
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    pub fn endpoints_path(&self) -> PathBuf {
        self.root.join("endpoints.json")
    }
    pub fn cookie_path(&self) -> PathBuf {
        self.root.join("api.cookie")
    }
    /// The overlay's redb file (DHT records).
    pub fn net_store_path(&self) -> PathBuf {
        self.root.join("net.redb")
    }
    /// The messaging service's database (keys, sessions, contacts, outbox, mailbox).
    pub fn msg_store_path(&self) -> PathBuf {
        self.root.join("msg.redb")
    }
    pub fn chain_store_path(&self) -> PathBuf {
        self.root.join("chain.redb")
    }
    pub fn torrent_store_path(&self) -> PathBuf {
        self.root.join("torrent.redb")
    }
    /// Default download directory.
    pub fn downloads_dir(&self) -> PathBuf {
        self.root.join("downloads")
    }
    /// Where `nodus share` writes the .torrent files it makes.
    pub fn torrents_dir(&self) -> PathBuf {
        self.root.join("torrents")
    }
    /// Ethereum keystore v3 files, one per wallet account.
    pub fn keystore_dir(&self) -> PathBuf {
        self.root.join("keystore")
    }
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("node.lock")
    }

    pub fn is_initialised(&self) -> bool {
        self.identity_path().exists()
    }

    /// Creates the directory (mode 0700) if needed.
    pub fn create(&self) -> Result<(), CoreError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(|e| CoreError::io(&self.root, e))
    }
}
