//! The data directory: one per node, holding its identity, config and runtime files.

use std::path::{Path, PathBuf};

use crate::CoreError;

/// The page cache each redb database of the node keeps in memory, at most. redb's
/// default is 1 GiB per database, and a node opens about ten: 1,500 messages of 64 KiB
/// took a 7-node bench process from 0.2 to 1.6 GB and past libp2p's memory limit, which
/// then refused every connection. Pages beyond this are read from the OS's file cache.
pub const DB_CACHE_BYTES: usize = 32 << 20;

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
    /// A service's own directory, `<data dir>/<name>/`: nothing else writes there.
    pub fn service_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("node.lock")
    }

    /// Moves files of the flat layout (before services had directories of their own)
    /// into `service`'s directory: each `(old, new)` pair names a file or directory
    /// relative to the root and to the service's directory. A rename within one
    /// directory tree is atomic, so a crash midway leaves each file in one place or the
    /// other, and the next call moves what is left. Where both exist, the old one is
    /// left alone (and reported): nothing is overwritten. Returns what was moved.
    pub fn adopt_legacy(
        &self,
        service: &str,
        moves: &[(&str, &str)],
    ) -> Result<Vec<PathBuf>, CoreError> {
        let mut moved = Vec::new();
        for (old, new) in moves {
            let from = self.root.join(old);
            if std::fs::symlink_metadata(&from).is_err() {
                continue;
            }
            let to = self.service_dir(service).join(new);
            if std::fs::symlink_metadata(&to).is_ok() {
                tracing::warn!(target: "nodus::core", "{} and {} both exist; keeping the second, the first is left as it is", from.display(), to.display());
                continue;
            }
            create_private_dir(to.parent().unwrap_or(&self.root))?;
            std::fs::rename(&from, &to).map_err(|e| CoreError::io(&from, e))?;
            tracing::info!(target: "nodus::core", "moved {} to {}", from.display(), to.display());
            moved.push(to);
        }
        if !moved.is_empty()
            && let Ok(d) = std::fs::File::open(&self.root)
        {
            let _ = d.sync_all();
        }
        Ok(moved)
    }

    pub fn is_initialised(&self) -> bool {
        self.identity_path().exists()
    }

    /// Creates the directory (mode 0700) if needed.
    pub fn create(&self) -> Result<(), CoreError> {
        create_private_dir(&self.root)
    }
}

/// Creates `dir` and its missing parents with mode 0700.
pub fn create_private_dir(dir: &Path) -> Result<(), CoreError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| CoreError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_files_move_once_and_nothing_is_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        std::fs::write(tmp.path().join("svc.redb"), b"old db").unwrap();
        std::fs::create_dir(tmp.path().join("svc.journal")).unwrap();
        std::fs::write(tmp.path().join("svc.journal/1"), b"j").unwrap();
        std::fs::write(tmp.path().join("svc.wal"), b"old wal").unwrap();
        std::fs::create_dir_all(dir.service_dir("svc")).unwrap();
        std::fs::write(dir.service_dir("svc").join("svc.wal"), b"new wal").unwrap();
        let moves = [
            ("svc.redb", "svc.redb"),
            ("svc.journal", "svc.journal"),
            ("svc.wal", "svc.wal"),
            ("absent", "absent"),
        ];
        let moved = dir.adopt_legacy("svc", &moves).unwrap();
        assert_eq!(moved.len(), 2, "{moved:?}");
        let sd = dir.service_dir("svc");
        assert_eq!(std::fs::read(sd.join("svc.redb")).unwrap(), b"old db");
        assert_eq!(std::fs::read(sd.join("svc.journal/1")).unwrap(), b"j");
        assert_eq!(std::fs::read(sd.join("svc.wal")).unwrap(), b"new wal");
        assert_eq!(
            std::fs::read(tmp.path().join("svc.wal")).unwrap(),
            b"old wal"
        );
        assert!(!tmp.path().join("svc.redb").exists());
        assert!(dir.adopt_legacy("svc", &moves).unwrap().is_empty());
    }
}
