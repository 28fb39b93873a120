//! Resume state: the journal of pieces verified since torrent.redb last recorded them,
//! and the periodic flush that syncs the files and records the bitfield.

use super::*;

impl Torrent {
    pub(super) fn journal_path(&self) -> PathBuf {
        self.shared.journal_dir.join(&self.id)
    }

    /// The journal set aside while the store records a snapshot.
    pub(super) fn journal_path_prev(&self) -> PathBuf {
        self.shared.journal_dir.join(format!("{}.prev", self.id))
    }

    /// Pieces journaled by an earlier run that the store did not record yet.
    pub(super) fn read_journal(&self) -> Vec<u32> {
        [self.journal_path_prev(), self.journal_path()]
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .flat_map(|b| {
                b.chunks_exact(4)
                    .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    pub(super) fn journal_append(
        &self,
        j: &mut Option<std::fs::File>,
        index: u32,
    ) -> std::io::Result<()> {
        use std::io::Write;
        if j.is_none() {
            *j = Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.journal_path())?,
            );
        }
        match j.as_mut() {
            Some(f) => f.write_all(&index.to_be_bytes()),
            None => Ok(()),
        }
    }

    pub(crate) fn remove_journal(&self) {
        let _ = std::fs::remove_file(self.journal_path());
        let _ = std::fs::remove_file(self.journal_path_prev());
    }

    /// Settings and pieces had, as they are now.
    pub(super) fn snapshot(&self) -> (Settings, Option<Vec<u8>>) {
        let mut g = self.lock();
        g.settings.uploaded = self.uploaded.load(Ordering::Relaxed);
        g.settings.downloaded = self.downloaded.load(Ordering::Relaxed);
        let have = g.picker.as_ref().map(|p| p.have().as_bytes().to_vec());
        (g.settings.clone(), have)
    }

    pub(super) fn save(
        &self,
        (mut settings, have): (Settings, Option<Vec<u8>>),
        metainfo: Option<&[u8]>,
    ) {
        // After the data's sync: what the files look like with the pieces recorded.
        if let Some(storage) = self.storage() {
            settings.stamps = Some(storage.stamps());
        }
        if let Err(e) = self
            .shared
            .store
            .save(&self.id, &settings, metainfo, have.as_deref())
        {
            tracing::error!(target: "nodus::torrent", id = %self.id, "saving resume state: {e}");
        }
    }

    /// Saves settings (and metainfo when given) now.
    pub(crate) fn persist(&self, metainfo: Option<Vec<u8>>) {
        self.save(self.snapshot(), metainfo.as_deref());
    }

    /// Syncs written data, then records the pieces had. The journal is set aside (renamed)
    /// with the snapshot under its lock, and deleted once the store has the snapshot, so
    /// the lock is never held across a disk sync and no journaled piece falls between.
    pub(super) async fn flush(self: &Arc<Self>) {
        let storage = {
            let mut g = self.lock();
            if !g.have_dirty {
                return;
            }
            g.have_dirty = false;
            g.storage.clone()
        };
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(s) = storage
                && let Err(e) = s.sync()
            {
                tracing::error!(target: "nodus::torrent", id = %me.id, "sync: {e}");
                return;
            }
            let snapshot = {
                let mut j = me.journal.lock().unwrap_or_else(|e| e.into_inner());
                if j.take().is_some() {
                    let _ = std::fs::rename(me.journal_path(), me.journal_path_prev());
                }
                me.snapshot()
            };
            me.save(snapshot, None);
            let _ = std::fs::remove_file(me.journal_path_prev());
        })
        .await;
    }
}
