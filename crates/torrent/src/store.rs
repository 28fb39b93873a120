//! torrent.redb: what the node must remember across restarts. For each torrent: its
//! settings, its metainfo (or magnet link while metadata is missing), and the pieces it
//! has verified. A piece is recorded only after its data was written and synced, so a
//! restart trusts the record without re-hashing.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::TorrentError;

const SETTINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("settings");
const METAINFO: TableDefinition<&str, &[u8]> = TableDefinition::new("metainfo");
const HAVE: TableDefinition<&str, &[u8]> = TableDefinition::new("have");

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub save_dir: String,
    /// The magnet link it was added by (used until metadata arrives).
    pub magnet: Option<String>,
    pub paused: bool,
    pub sequential: bool,
    /// Indices of the files to download (all when None).
    pub files: Option<Vec<usize>>,
    pub uploaded: u64,
    pub downloaded: u64,
    pub added_at: u64,
    /// Peers the user named (`--peer`), tried again after every restart.
    #[serde(default)]
    pub peers: Vec<String>,
    /// Each file's size and modification time when the pieces had were last recorded
    /// (one entry per file of the metainfo, None for padding and absent files). A file
    /// that differs at resume had its pieces checked again, as libtorrent's resume data
    /// does. None: recorded before nodus kept them (trusted as before).
    #[serde(default)]
    pub stamps: Option<Vec<Option<FileStamp>>>,
}

/// A file's size and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    pub len: u64,
    pub mtime_secs: i64,
    pub mtime_nanos: u32,
}

impl Settings {
    /// A torrent saved to `save_dir`, added now, running, everything wanted.
    pub fn new(save_dir: &Path) -> Settings {
        Settings {
            save_dir: save_dir.display().to_string(),
            magnet: None,
            paused: false,
            sequential: false,
            files: None,
            uploaded: 0,
            downloaded: 0,
            added_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            peers: Vec::new(),
            stamps: None,
        }
    }
}

pub struct Stored {
    pub id: String,
    pub settings: Settings,
    pub metainfo: Option<Vec<u8>>,
    pub have: Option<Vec<u8>>,
}

pub struct Store {
    db: Database,
}

fn err(e: impl Into<redb::Error>) -> TorrentError {
    TorrentError::Store(e.into())
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, TorrentError> {
        let db = redb::Builder::new()
            .set_cache_size(nodus_core::datadir::DB_CACHE_BYTES)
            .create(path)
            .map_err(err)?;
        let _ = nodus_core::fsutil::restrict(path);
        let txn = db.begin_write().map_err(err)?;
        for t in [SETTINGS, METAINFO, HAVE] {
            txn.open_table(t).map_err(err)?;
        }
        txn.commit().map_err(err)?;
        Ok(Store { db })
    }

    pub fn load_all(&self) -> Result<Vec<Stored>, TorrentError> {
        let txn = self.db.begin_read().map_err(err)?;
        let settings = txn.open_table(SETTINGS).map_err(err)?;
        let meta = txn.open_table(METAINFO).map_err(err)?;
        let have = txn.open_table(HAVE).map_err(err)?;
        let mut out = Vec::new();
        for row in settings.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            let id = k.value().to_string();
            let Ok(s) = serde_json::from_slice::<Settings>(v.value()) else {
                tracing::warn!(target: "nodus::torrent", %id, "unreadable settings skipped");
                continue;
            };
            out.push(Stored {
                metainfo: meta
                    .get(id.as_str())
                    .map_err(err)?
                    .map(|v| v.value().to_vec()),
                have: have
                    .get(id.as_str())
                    .map_err(err)?
                    .map(|v| v.value().to_vec()),
                id,
                settings: s,
            });
        }
        Ok(out)
    }

    pub fn save(
        &self,
        id: &str,
        settings: &Settings,
        metainfo: Option<&[u8]>,
        have: Option<&[u8]>,
    ) -> Result<(), TorrentError> {
        let txn = self.db.begin_write().map_err(err)?;
        {
            let json = serde_json::to_vec(settings).map_err(|e| TorrentError::Io(e.into()))?;
            txn.open_table(SETTINGS)
                .map_err(err)?
                .insert(id, json.as_slice())
                .map_err(err)?;
            if let Some(m) = metainfo {
                txn.open_table(METAINFO)
                    .map_err(err)?
                    .insert(id, m)
                    .map_err(err)?;
            }
            if let Some(h) = have {
                txn.open_table(HAVE)
                    .map_err(err)?
                    .insert(id, h)
                    .map_err(err)?;
            }
        }
        txn.commit().map_err(err)
    }

    pub fn remove(&self, id: &str) -> Result<(), TorrentError> {
        let txn = self.db.begin_write().map_err(err)?;
        for t in [SETTINGS, METAINFO, HAVE] {
            txn.open_table(t).map_err(err)?.remove(id).map_err(err)?;
        }
        txn.commit().map_err(err)
    }
}
