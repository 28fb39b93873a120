//! The cache: torrents the gateway added itself (a magnet opened through it), with when
//! each was last watched, kept within a disk budget by removing the least recently
//! watched. Torrents added by hand are never in it, so never removed.
//!
//! Invariants: an entry is written (and synced) when the gateway adds the torrent, so
//! after a restart it is still known as the gateway's; a torrent with an open reader is
//! not removed; last-watched times are kept in memory and written every
//! [`crate::CACHE_INTERVAL`] and at shutdown (losing them loses only ordering).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::error::GatewayError;
use crate::source::Content;

/// Torrent id -> when it was last watched (ms since the epoch).
const CACHED: TableDefinition<&str, u64> = TableDefinition::new("cached");

pub struct Cache {
    db: Database,
    budget: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    last: HashMap<String, u64>,
    readers: HashMap<String, usize>,
    dirty: bool,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Cache {
    pub fn open(path: &Path, budget: u64) -> Result<Cache, GatewayError> {
        let db = redb::Builder::new()
            .set_cache_size(nodus_core::datadir::DB_CACHE_BYTES)
            .create(path)
            .map_err(redb::Error::from)?;
        let w = db.begin_write().map_err(redb::Error::from)?;
        w.open_table(CACHED).map_err(redb::Error::from)?;
        w.commit().map_err(redb::Error::from)?;
        let mut last = HashMap::new();
        {
            let r = db.begin_read().map_err(redb::Error::from)?;
            let t = r.open_table(CACHED).map_err(redb::Error::from)?;
            for row in t.iter().map_err(redb::Error::from)? {
                let (k, v) = row.map_err(redb::Error::from)?;
                last.insert(k.value().to_string(), v.value());
            }
        }
        Ok(Cache {
            db,
            budget,
            state: Mutex::new(State {
                last,
                ..Default::default()
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a torrent the gateway added.
    pub fn add(&self, id: &str) -> Result<(), GatewayError> {
        let t = now();
        let w = self.db.begin_write().map_err(redb::Error::from)?;
        w.open_table(CACHED)
            .map_err(redb::Error::from)?
            .insert(id, t)
            .map_err(redb::Error::from)?;
        w.commit().map_err(redb::Error::from)?;
        self.state().last.insert(id.to_string(), t);
        Ok(())
    }

    pub fn contains(&self, id: &str) -> bool {
        self.state().last.contains_key(id)
    }

    /// Ids of the cached torrents, least recently watched first.
    pub fn ids(&self) -> Vec<String> {
        let s = self.state();
        let mut v: Vec<(u64, String)> = s.last.iter().map(|(k, t)| (*t, k.clone())).collect();
        v.sort();
        v.into_iter().map(|(_, k)| k).collect()
    }

    /// A request for one of its files: it was watched now.
    pub fn touch(&self, id: &str) {
        let mut s = self.state();
        if let Some(t) = s.last.get_mut(id) {
            *t = now().max(*t);
            s.dirty = true;
        }
    }

    /// A reader opened on `id`; the guard closes it.
    pub fn reading(self: &std::sync::Arc<Self>, id: &str) -> ReadGuard {
        *self.state().readers.entry(id.to_string()).or_default() += 1;
        ReadGuard {
            cache: self.clone(),
            id: id.to_string(),
        }
    }

    /// Writes the last-watched times if they changed.
    pub fn save(&self) -> Result<(), GatewayError> {
        let last = {
            let mut s = self.state();
            if !s.dirty {
                return Ok(());
            }
            s.dirty = false;
            s.last.clone()
        };
        let w = self.db.begin_write().map_err(redb::Error::from)?;
        {
            let mut t = w.open_table(CACHED).map_err(redb::Error::from)?;
            for (k, v) in &last {
                if t.get(k.as_str()).map_err(redb::Error::from)?.is_some() {
                    t.insert(k.as_str(), *v).map_err(redb::Error::from)?;
                }
            }
        }
        w.commit().map_err(redb::Error::from)?;
        Ok(())
    }

    fn forget(&self, id: &str) -> Result<(), GatewayError> {
        let w = self.db.begin_write().map_err(redb::Error::from)?;
        w.open_table(CACHED)
            .map_err(redb::Error::from)?
            .remove(id)
            .map_err(redb::Error::from)?;
        w.commit().map_err(redb::Error::from)?;
        self.state().last.remove(id);
        Ok(())
    }

    /// Removes the least recently watched cached torrents (not `keep`, none being
    /// read) until the cached ones fit the budget. Returns the ids removed.
    pub async fn enforce(
        &self,
        content: &dyn Content,
        keep: Option<&str>,
    ) -> Result<Vec<String>, GatewayError> {
        let mut sizes = Vec::new();
        for id in self.ids() {
            match content.torrent(&id) {
                Ok(v) => sizes.push((id, v.size)),
                // Removed by hand meanwhile: nothing of it to keep track of.
                Err(crate::source::SourceError::NotFound(_)) => self.forget(&id)?,
                Err(_) => {}
            }
        }
        let mut total: u64 = sizes.iter().map(|(_, s)| s).sum();
        let mut removed = Vec::new();
        for (id, size) in sizes {
            if total <= self.budget {
                break;
            }
            let busy = self.state().readers.get(&id).is_some_and(|n| *n > 0);
            if busy || keep == Some(id.as_str()) {
                continue;
            }
            match content.remove(&id).await {
                Ok(()) | Err(crate::source::SourceError::NotFound(_)) => {}
                Err(e) => {
                    tracing::warn!(target: "nodus::gateway", %id, "evicting from the cache: {e}");
                    continue;
                }
            }
            self.forget(&id)?;
            tracing::info!(target: "nodus::gateway", %id, size, "removed from the cache (least recently watched)");
            total -= size;
            removed.push(id);
        }
        Ok(removed)
    }
}

/// An open reader of a cached torrent (which is not removed meanwhile).
pub struct ReadGuard {
    cache: std::sync::Arc<Cache>,
    id: String,
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        let mut s = self.cache.state();
        if let Some(n) = s.readers.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                s.readers.remove(&self.id);
            }
        }
    }
}
