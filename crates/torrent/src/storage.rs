//! Piece data on disk: the piece space mapped onto files, read and written with
//! pread/pwrite (no mmap, so memory stays bounded whatever the torrent's size). Padding
//! and symlinks read as zeros and are never written. A file is created at its full length
//! (sparse) on its first write, so later writes never extend it (which costs ext4 dearly
//! with several writers).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::metainfo::{FileEntry, Info};

pub struct Storage {
    root: PathBuf,
    files: Vec<FileEntry>,
    handles: Mutex<Vec<Option<Arc<File>>>>,
    /// Files written since the last [`Storage::sync`].
    dirty: Mutex<Vec<bool>>,
    piece_length: u64,
    total_length: u64,
}

impl Storage {
    pub fn new(root: &Path, info: &Info) -> Storage {
        Storage {
            root: root.to_path_buf(),
            files: info.files.clone(),
            handles: Mutex::new(vec![None; info.files.len()]),
            dirty: Mutex::new(vec![false; info.files.len()]),
            piece_length: info.piece_length,
            total_length: info.total_length,
        }
    }

    pub fn path_of(&self, file: &FileEntry) -> PathBuf {
        let mut p = self.root.clone();
        for c in &file.path {
            p.push(c);
        }
        p
    }

    fn handle(&self, idx: usize, create: bool) -> std::io::Result<Arc<File>> {
        let mut handles = self.handles.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = &handles[idx] {
            return Ok(h.clone());
        }
        let path = self.path_of(&self.files[idx]);
        let file = if create {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)?;
            // Full length at once (sparse): later writes land inside the file instead of
            // each extending it.
            if f.metadata()?.len() < self.files[idx].length {
                f.set_len(self.files[idx].length)?;
            }
            f
        } else {
            match OpenOptions::new().read(true).write(true).open(&path) {
                Ok(f) => f,
                // Seeding from a read-only file is fine.
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => File::open(&path)?,
                Err(e) => return Err(e),
            }
        };
        let file = Arc::new(file);
        handles[idx] = Some(file.clone());
        Ok(file)
    }

    /// The spans of `[offset, offset+len)` in each file: (file index, file offset,
    /// buffer range).
    fn spans(&self, offset: u64, len: usize) -> Vec<(usize, u64, std::ops::Range<usize>)> {
        let end = offset + len as u64;
        let first = self.files.partition_point(|f| f.end() <= offset);
        let mut out = Vec::new();
        for (i, f) in self.files.iter().enumerate().skip(first) {
            if f.offset >= end {
                break;
            }
            if f.length == 0 {
                continue;
            }
            let s = offset.max(f.offset);
            let e = end.min(f.end());
            if s < e {
                out.push((
                    i,
                    s - f.offset,
                    (s - offset) as usize..(e - offset) as usize,
                ));
            }
        }
        out
    }

    /// Reads `buf.len()` bytes of the piece space at `offset`.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        for (i, at, range) in self.spans(offset, buf.len()) {
            let part = &mut buf[range];
            if !self.files[i].stored() {
                part.fill(0);
                continue;
            }
            self.handle(i, false)?.read_exact_at(part, at)?;
        }
        Ok(())
    }

    pub fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        for (i, at, range) in self.spans(offset, data.len()) {
            if !self.files[i].stored() {
                continue;
            }
            self.handle(i, true)?.write_all_at(&data[range], at)?;
            self.dirty.lock().unwrap_or_else(|e| e.into_inner())[i] = true;
        }
        Ok(())
    }

    pub fn piece_range(&self, index: u32) -> (u64, usize) {
        let start = index as u64 * self.piece_length;
        let len = (self.total_length - start).min(self.piece_length);
        (start, len as usize)
    }

    pub fn read_piece(&self, index: u32) -> std::io::Result<Vec<u8>> {
        let (start, len) = self.piece_range(index);
        let mut buf = vec![0u8; len];
        self.read(start, &mut buf)?;
        Ok(buf)
    }

    /// Flushes written files to disk (before the resume state claims their pieces).
    pub fn sync(&self) -> std::io::Result<()> {
        let dirty: Vec<usize> = {
            let mut d = self.dirty.lock().unwrap_or_else(|e| e.into_inner());
            let idx = d
                .iter()
                .enumerate()
                .filter(|(_, x)| **x)
                .map(|(i, _)| i)
                .collect();
            d.iter_mut().for_each(|x| *x = false);
            idx
        };
        for i in dirty {
            self.handle(i, true)?.sync_data()?;
        }
        Ok(())
    }

    /// Whether every stored file overlapping piece `index` exists and is long enough to
    /// hold it (a cheap check of resume state against the disk).
    pub fn piece_on_disk(&self, index: u32) -> bool {
        let (start, len) = self.piece_range(index);
        self.spans(start, len).into_iter().all(|(i, at, range)| {
            let f = &self.files[i];
            !f.stored()
                || std::fs::metadata(self.path_of(f))
                    .map(|m| m.len() >= at + range.len() as u64)
                    .unwrap_or(false)
        })
    }

    /// Sets every stored file to its full length (sparse), as a download completes.
    /// Gives every finished file its length, creating the empty ones (which no piece
    /// writes). `done(first, last)` says whether pieces `first..=last` are all had; a
    /// file not finished (not selected, say) is left alone.
    pub fn finalize_lengths(&self, done: impl Fn(u32, u32) -> bool) -> std::io::Result<()> {
        let pl = self.piece_length.max(1);
        for (i, f) in self.files.iter().enumerate() {
            let finished = f.length == 0 || {
                let first = (f.offset / pl) as u32;
                let last = ((f.offset + f.length - 1) / pl) as u32;
                done(first, last)
            };
            if f.stored() && finished {
                let h = self.handle(i, true)?;
                if h.metadata()?.len() != f.length {
                    h.set_len(f.length)?;
                }
            }
        }
        Ok(())
    }
}
