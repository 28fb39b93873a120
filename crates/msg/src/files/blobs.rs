//! The file store: `files/` beside msg.redb, one file per content, named by the hex
//! SHA-256 of its bytes. Files being fetched are `<hash>.part`; files being taken in
//! from the API are `upload-<random>.tmp` until hashed, synced and renamed. A name
//! without a suffix therefore always holds exactly the bytes its name says.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};

use crate::wire::FileHash;

/// Why a file could not be taken in.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the file is empty: there is nothing to send")]
    Empty,
    #[error(
        "the file is larger than {limit} bytes, the [msg] max_file_mib limit of this node; raise it in config.toml to send it"
    )]
    TooLarge { limit: u64 },
    #[error("file store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the upload broke off: {0}")]
    Body(String),
}

/// Free space a download leaves on the disk of the file store.
pub const RESERVE: u64 = 256 << 20;

/// The file store's disk cannot take a file and keep [`RESERVE`] free.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} has {} MiB free; this file needs {} MiB and {} MiB stay free: make room and it goes on",
    dir.display(),
    free >> 20,
    needed.div_ceil(1 << 20),
    RESERVE >> 20
)]
pub struct NoRoom {
    pub dir: PathBuf,
    pub free: u64,
    pub needed: u64,
}

pub struct Blobs {
    dir: PathBuf,
}

/// Opens `path` for writing, made 0600 if new (what others sent this node is theirs
/// and its user's only); emptied if `fresh`.
pub(crate) fn create_private(path: &Path, fresh: bool) -> Result<std::fs::File, ImportError> {
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(fresh)
        .mode(0o600)
        .open(path)
        .map_err(io_at(path))
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> ImportError + '_ {
    move |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Blobs {
    /// Opens (making it if needed) the store at `dir`, removing uploads a crash cut short.
    pub fn open(dir: &Path) -> std::io::Result<Blobs> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(Blobs {
            dir: dir.to_path_buf(),
        })
    }

    /// Where the complete file with this hash is (whether or not it is there).
    pub fn path(&self, hash: &FileHash) -> PathBuf {
        self.dir.join(hex::encode(hash))
    }

    pub fn part_path(&self, hash: &FileHash) -> PathBuf {
        self.dir.join(format!("{}.part", hex::encode(hash)))
    }

    /// The size of the complete file with this hash, if the store has it.
    pub fn size(&self, hash: &FileHash) -> Option<u64> {
        std::fs::metadata(self.path(hash)).ok().map(|m| m.len())
    }

    /// Takes in a file from a stream of bytes (an upload): hashed as it is written,
    /// synced, then named by its hash. At most `limit` bytes.
    pub async fn import<S, B, E>(
        &self,
        mut body: S,
        limit: u64,
    ) -> Result<(FileHash, u64), ImportError>
    where
        S: Stream<Item = Result<B, E>> + Unpin,
        B: AsRef<[u8]>,
        E: std::fmt::Display,
    {
        let tmp = self.dir.join(format!(
            "upload-{}.tmp",
            hex::encode(rand::random::<[u8; 8]>())
        ));
        let mut file = std::io::BufWriter::with_capacity(1 << 20, create_private(&tmp, true)?);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let result = async {
            while let Some(piece) = body.next().await {
                let piece = piece.map_err(|e| ImportError::Body(e.to_string()))?;
                let piece = piece.as_ref();
                size += piece.len() as u64;
                if size > limit {
                    return Err(ImportError::TooLarge { limit });
                }
                hasher.update(piece);
                file.write_all(piece).map_err(io_at(&tmp))?;
            }
            if size == 0 {
                return Err(ImportError::Empty);
            }
            let file = file.into_inner().map_err(|e| io_at(&tmp)(e.into_error()))?;
            // A large file's sync takes a while: other tasks move off this thread.
            crate::store::blocking(|| file.sync_all()).map_err(io_at(&tmp))?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let hash: FileHash = hasher.finalize().into();
        let dest = self.path(&hash);
        std::fs::rename(&tmp, &dest).map_err(io_at(&dest))?;
        self.sync_dir().map_err(io_at(&self.dir))?;
        Ok((hash, size))
    }

    /// Finishes a download whose bytes (synced already) hash to `digest`: if the partial
    /// file is `size` bytes and `digest` is `hash`, it is renamed to its hash
    /// (`Ok(true)`); else it is removed (`Ok(false)`).
    pub fn complete(&self, hash: &FileHash, size: u64, digest: &FileHash) -> std::io::Result<bool> {
        let part = self.part_path(hash);
        if std::fs::metadata(&part)?.len() != size || digest != hash {
            std::fs::remove_file(&part)?;
            return Ok(false);
        }
        std::fs::rename(&part, self.path(hash))?;
        self.sync_dir()?;
        Ok(true)
    }

    /// Whether the store's disk can take `bytes` more and keep [`RESERVE`] free (a
    /// download waits for room rather than fill the disk).
    pub fn room_for(&self, bytes: u64) -> Result<(), NoRoom> {
        let Ok(s) = rustix::fs::statvfs(&self.dir) else {
            return Ok(());
        };
        let free = s.f_bavail.saturating_mul(s.f_frsize);
        if free >= bytes.saturating_add(RESERVE) {
            return Ok(());
        }
        Err(NoRoom {
            dir: self.dir.clone(),
            free,
            needed: bytes,
        })
    }

    /// Forgets a partial download (one that will start again from the beginning).
    pub fn drop_part(&self, hash: &FileHash) {
        let _ = std::fs::remove_file(self.part_path(hash));
    }

    fn sync_dir(&self) -> std::io::Result<()> {
        std::fs::File::open(&self.dir)?.sync_all()
    }
}

/// A hasher that has read the first `len` bytes of `path` (the part of a download
/// that was here before a restart); a file shorter than that is an error.
pub fn hash_prefix(path: &Path, len: u64) -> std::io::Result<Sha256> {
    let mut hasher = Sha256::new();
    if len == 0 {
        return Ok(hasher);
    }
    let file = std::fs::File::open(path)?;
    let read = std::io::copy(&mut std::io::Read::take(file, len), &mut hasher)?;
    if read != len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("{} holds {read} of {len} bytes", path.display()),
        ));
    }
    Ok(hasher)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(
        pieces: &[&'static [u8]],
    ) -> impl Stream<Item = Result<&'static [u8], std::convert::Infallible>> + Unpin {
        futures::stream::iter(pieces.iter().map(|p| Ok(*p)).collect::<Vec<_>>())
    }

    #[tokio::test]
    async fn an_upload_is_named_by_its_hash_and_limits_hold() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("files");
        let b = Blobs::open(&dir).unwrap();
        let (hash, size) = b.import(body(&[b"hello ", b"world"]), 100).await.unwrap();
        assert_eq!(size, 11);
        assert_eq!(
            hex::encode(hash),
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(std::fs::read(b.path(&hash)).unwrap(), b"hello world");
        assert_eq!(b.size(&hash), Some(11));
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&b.path(&hash)), 0o600, "a stored file is private");
        assert!(matches!(
            b.import(body(&[b"0123456789", b"x"]), 10).await,
            Err(ImportError::TooLarge { limit: 10 })
        ));
        assert!(matches!(
            b.import(body(&[]), 10).await,
            Err(ImportError::Empty)
        ));
        assert_eq!(mode(&dir), 0o700);
        // Nothing half-written is left behind.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn a_part_that_does_not_hash_to_its_name_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let b = Blobs::open(dir.path()).unwrap();
        let hash: FileHash = Sha256::digest(b"abc").into();
        std::fs::write(b.part_path(&hash), b"abd").unwrap();
        let digest: FileHash = hash_prefix(&b.part_path(&hash), 3)
            .unwrap()
            .finalize()
            .into();
        assert!(!b.complete(&hash, 3, &digest).unwrap());
        assert!(!b.part_path(&hash).exists() && b.size(&hash).is_none());
        std::fs::write(b.part_path(&hash), b"abcd").unwrap();
        assert!(!b.complete(&hash, 3, &hash).unwrap(), "one byte too many");
        std::fs::write(b.part_path(&hash), b"abc").unwrap();
        assert!(
            hash_prefix(&b.part_path(&hash), 4).is_err(),
            "shorter than asked"
        );
        let digest: FileHash = hash_prefix(&b.part_path(&hash), 3)
            .unwrap()
            .finalize()
            .into();
        assert!(b.complete(&hash, 3, &digest).unwrap());
        assert_eq!(b.size(&hash), Some(3));
        // A stale upload from a crash is cleared at open.
        std::fs::write(dir.path().join("upload-1.tmp"), b"x").unwrap();
        Blobs::open(dir.path()).unwrap();
        assert!(!dir.path().join("upload-1.tmp").exists());
        // Room for a small file; none for more than any disk has.
        assert!(b.room_for(1).is_ok());
        let no = b.room_for(u64::MAX / 2).unwrap_err();
        assert_eq!(no.needed, u64::MAX / 2);
        assert!(no.to_string().contains("make room"), "{no}");
    }
}
