//! Atomic file writes with an explicit mode.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::CoreError;

/// Writes `bytes` to `path` atomically: a temp file in the same directory, created with
/// `mode`, fsynced, then renamed over `path`. Readers see the old or the new file, never
/// a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        CoreError::io(path, e)
    })
}

/// Creates `path` with `mode` only if it does not exist yet. Returns false when it did.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<bool, CoreError> {
    let mut f = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(CoreError::io(path, e)),
    };
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| CoreError::io(path, e))?;
    Ok(true)
}

/// Makes `path` readable and writable by its owner only (mode 0600): service stores hold
/// private data.
pub fn restrict(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}
