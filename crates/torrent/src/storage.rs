//! Piece data on disk: the piece space mapped onto files, read and written with
//! pread/pwrite (no mmap, so memory stays bounded whatever the torrent's size). Padding
//! and symlinks read as zeros and are never written. A file is created at its full length
//! (sparse) on its first write, so later writes never extend it (which costs ext4 dearly
//! with several writers).
//!
//! Whole pages of a piece go to disk with O_DIRECT when the filesystem allows it (the
//! piece buffers are page-aligned for this: [`crate::piecebuf`]); the unaligned head and
//! tail of a span, and every write to a filesystem that refuses O_DIRECT, go through the
//! page cache. Why: a buffered write of a download copies every byte into page-cache
//! pages the download will not read again, and each of those pages has to be found
//! first; on a VM that hands freed memory back to its host (as this project's CI
//! machines do), each such page is also a fault on the host. Measured there with `dd`,
//! 2 GiB: buffered into a new file 260-370 MB/s, O_DIRECT 1 MiB writes 970 MB/s.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::metainfo::{FileEntry, Info};
use crate::piecebuf::ALIGN;

/// A file's O_DIRECT handle.
#[derive(Clone)]
enum Direct {
    Untried,
    Open(Arc<File>),
    /// The filesystem refused O_DIRECT: the page cache it is.
    Refused,
}

pub struct Storage {
    root: PathBuf,
    files: Vec<FileEntry>,
    handles: Mutex<Vec<Option<Arc<File>>>>,
    direct: Mutex<Vec<Direct>>,
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
            direct: Mutex::new(vec![Direct::Untried; info.files.len()]),
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

    /// The path of file `idx`, refused when a link on the way (a directory or the file
    /// itself) leads out of the root: a link planted in the download directory must not
    /// get its target overwritten with torrent data.
    fn checked_path(&self, idx: usize) -> std::io::Result<PathBuf> {
        let mut p = self.root.clone();
        for c in &self.files[idx].path {
            p.push(c);
            match std::fs::symlink_metadata(&p) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => return Err(e),
                Ok(m) if m.file_type().is_symlink() => {
                    let inside =
                        match (std::fs::canonicalize(&p), std::fs::canonicalize(&self.root)) {
                            (Ok(target), Ok(root)) => target.starts_with(root),
                            _ => false,
                        };
                    if !inside {
                        return Err(std::io::Error::other(format!(
                            "{} is a link that leads out of the download directory; nodus \
                             does not write through it: remove the link, or download elsewhere",
                            p.display()
                        )));
                    }
                }
                Ok(_) => {}
            }
        }
        Ok(self.path_of(&self.files[idx]))
    }

    fn handle(&self, idx: usize, create: bool) -> std::io::Result<Arc<File>> {
        let mut handles = self.handles.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = &handles[idx] {
            return Ok(h.clone());
        }
        let path = self.checked_path(idx)?;
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
            self.write_span(i, at, &data[range])?;
            self.dirty.lock().unwrap_or_else(|e| e.into_inner())[i] = true;
        }
        Ok(())
    }

    /// Writes `part` at `at` in file `i`: its whole aligned pages with O_DIRECT where
    /// possible, the rest through the page cache.
    fn write_span(&self, i: usize, at: u64, part: &[u8]) -> std::io::Result<()> {
        let buffered = self.handle(i, true)?;
        let (head, middle) = aligned_middle(at, part);
        if middle.is_empty() {
            return buffered.write_all_at(part, at);
        }
        let Some(direct) = self.direct_handle(i) else {
            return buffered.write_all_at(part, at);
        };
        buffered.write_all_at(&part[..head], at)?;
        let mid_at = at + head as u64;
        match direct.write_all_at(&part[middle.clone()], mid_at) {
            Ok(()) => {}
            // Some filesystems accept the flag at open and refuse the write.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                self.direct.lock().unwrap_or_else(|e| e.into_inner())[i] = Direct::Refused;
                buffered.write_all_at(&part[middle.clone()], mid_at)?;
            }
            Err(e) => return Err(e),
        }
        buffered.write_all_at(&part[middle.end..], at + middle.end as u64)
    }

    /// File `i` opened with O_DIRECT (after [`Storage::handle`] created it), or None
    /// where the filesystem refuses it.
    fn direct_handle(&self, i: usize) -> Option<Arc<File>> {
        let mut direct = self.direct.lock().unwrap_or_else(|e| e.into_inner());
        match &direct[i] {
            Direct::Open(f) => return Some(f.clone()),
            Direct::Refused => return None,
            Direct::Untried => {}
        }
        let opened = self.checked_path(i).and_then(|path| {
            OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_DIRECT)
                .open(path)
        });
        match opened {
            Ok(f) => {
                let f = Arc::new(f);
                direct[i] = Direct::Open(f.clone());
                Some(f)
            }
            Err(e) => {
                tracing::debug!(target: "nodus::torrent", "no O_DIRECT for file {i}: {e}");
                direct[i] = Direct::Refused;
                None
            }
        }
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

    /// Each file's size and modification time now (None for padding and absent files).
    pub fn stamps(&self) -> Vec<Option<crate::store::FileStamp>> {
        use std::os::unix::fs::MetadataExt;
        self.files
            .iter()
            .map(|f| {
                if !f.stored() {
                    return None;
                }
                let m = std::fs::metadata(self.path_of(f)).ok()?;
                Some(crate::store::FileStamp {
                    len: m.len(),
                    mtime_secs: m.mtime(),
                    mtime_nanos: m.mtime_nsec() as u32,
                })
            })
            .collect()
    }

    /// The pieces that hold bytes of file `idx`.
    pub fn pieces_of_file(&self, idx: usize) -> std::ops::RangeInclusive<u32> {
        let f = &self.files[idx];
        let first = (f.offset / self.piece_length) as u32;
        let last = ((f.offset + f.length.max(1) - 1) / self.piece_length) as u32;
        first..=last
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

/// Splits a write of `part` at file offset `at` into a head to skip to the next aligned
/// offset and the range of whole aligned pages after it (empty when the buffer and the
/// offset are not aligned alike, so O_DIRECT cannot take any of it).
fn aligned_middle(at: u64, part: &[u8]) -> (usize, std::ops::Range<usize>) {
    let align = ALIGN as u64;
    let head = ((align - at % align) % align).min(part.len() as u64) as usize;
    let ptr_aligned = (part.as_ptr() as usize + head).is_multiple_of(ALIGN);
    let whole = (part.len() - head) / ALIGN * ALIGN;
    if !ptr_aligned || whole == 0 {
        return (head, head..head);
    }
    (head, head..head + whole)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::Version;
    use crate::piecebuf::PieceBuf;

    /// Issue 17 point 9: a link planted where a file or directory of the torrent goes,
    /// leading out of the download directory, is refused and its target left alone; a
    /// link that stays inside is fine.
    #[test]
    fn links_out_of_the_download_directory_are_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let (root, outside) = (dir.path().join("downloads"), dir.path().join("outside"));
        std::fs::create_dir_all(root.join("t")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("victim"), b"precious").unwrap();
        let info = |files: Vec<FileEntry>| {
            let total = files.iter().map(|f| f.length).sum::<u64>();
            Info {
                name: "t".into(),
                piece_length: 16384,
                files,
                total_length: total,
                num_pieces: 1,
                v1_pieces: Vec::new(),
                version: Version::V1,
                private: false,
                multi_file: true,
            }
        };
        std::os::unix::fs::symlink(outside.join("victim"), root.join("t/a")).unwrap();
        let s = Storage::new(&root, &info(vec![file("a", 0, 8)]));
        let err = s.write(0, b"torrent!").unwrap_err();
        assert!(
            err.to_string()
                .contains("leads out of the download directory"),
            "{err}"
        );
        // A directory of the torrent that is a link out: the same.
        std::fs::remove_file(root.join("t/a")).unwrap();
        std::fs::remove_dir(root.join("t")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("t")).unwrap();
        let s = Storage::new(&root, &info(vec![file("victim", 0, 8)]));
        assert!(s.write(0, b"torrent!").is_err());
        assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"precious");
        // Inside is fine.
        std::fs::remove_file(root.join("t")).unwrap();
        std::fs::create_dir_all(root.join("real")).unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("t")).unwrap();
        let s = Storage::new(&root, &info(vec![file("a", 0, 8)]));
        s.write(0, b"torrent!").unwrap();
        assert_eq!(std::fs::read(root.join("real/a")).unwrap(), b"torrent!");
    }

    fn file(name: &str, offset: u64, length: u64) -> FileEntry {
        FileEntry {
            path: vec!["t".into(), name.into()],
            length,
            offset,
            pad: false,
            executable: false,
            symlink: false,
            pieces_root: None,
        }
    }

    /// Two files, the second starting mid-page, and a last piece ending mid-page: pieces
    /// written from aligned buffers read back byte for byte, whole pages went through
    /// O_DIRECT where the filesystem takes it, the rest through the page cache.
    #[test]
    fn pieces_read_back_whichever_way_each_part_was_written() {
        // Where downloads go in the bench: ext4 here (tmpfs before Linux 6.6 refuses O_DIRECT).
        let dir = tempfile::tempdir_in("/var/tmp").expect("tempdir");
        let pl = 4 * ALIGN as u64;
        let a = 5 * ALIGN as u64 + 123;
        let b = 6 * ALIGN as u64 + 77;
        let info = Info {
            name: "t".into(),
            piece_length: pl,
            files: vec![file("a", 0, a), file("b", a, b)],
            total_length: a + b,
            num_pieces: (a + b).div_ceil(pl) as u32,
            v1_pieces: Vec::new(),
            version: Version::V1,
            private: false,
            multi_file: true,
        };
        let content: Vec<u8> = (0..a + b).map(|i| (i * 7 % 251) as u8).collect();
        let s = Storage::new(dir.path(), &info);
        // Backwards, so every write lands in the middle of sparse files.
        for index in (0..info.num_pieces).rev() {
            let (start, len) = s.piece_range(index);
            let mut buf = PieceBuf::new(pl as usize, len);
            buf.copy_from_slice(&content[start as usize..start as usize + len]);
            s.write(start, &buf).expect("write");
        }
        s.sync().expect("sync");
        let mut back = vec![0u8; content.len()];
        s.read(0, &mut back).expect("read");
        assert!(back == content, "what was written reads back");
        let on_disk = [
            std::fs::read(dir.path().join("t/a")).expect("a"),
            std::fs::read(dir.path().join("t/b")).expect("b"),
        ]
        .concat();
        assert!(
            on_disk == content,
            "the files hold it, read by another handle"
        );
        let direct = s.direct.lock().expect("lock");
        assert!(
            matches!(direct[0], Direct::Open(_)),
            "file a's aligned pages went through O_DIRECT (ext4 takes it)"
        );
        assert!(
            matches!(direct[1], Direct::Untried),
            "file b starts mid-page in the piece buffers: none of it can go direct"
        );
    }

    #[test]
    fn only_pages_aligned_in_buffer_and_file_go_direct() {
        let buf = PieceBuf::new(4 * ALIGN, 4 * ALIGN);
        assert_eq!(aligned_middle(0, &buf), (0, 0..4 * ALIGN));
        assert_eq!(
            aligned_middle(ALIGN as u64, &buf[..ALIGN + 5]),
            (0, 0..ALIGN)
        );
        // Offset and buffer both 100 bytes past a page: the head skips to it.
        let off = ALIGN as u64 + 100;
        assert_eq!(
            aligned_middle(off, &buf[100..]),
            (ALIGN - 100, ALIGN - 100..4 * ALIGN - 100)
        );
        // Offset aligned, buffer not: nothing direct.
        assert_eq!(aligned_middle(0, &buf[1..]).1.len(), 0);
        // Shorter than a page: nothing direct.
        assert_eq!(aligned_middle(0, &buf[..100]), (0, 0..0));
    }
}
