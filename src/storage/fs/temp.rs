//! Temp files that become objects by an atomic rename.

use std::io;
use std::path::{Path, PathBuf};
use std::process;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::fs::{File, OpenOptions};

/// Name prefix of in-flight uploads. Keys may not have components starting with `.`, so
/// no object can ever be mistaken for a temp file or the other way round.
pub(super) const TEMP_PREFIX: &str = ".tmp-";

/// Objects are sealed data; only the service user should be able to read them.
pub(super) const FILE_MODE: u32 = 0o600;

/// Distinguishes temp files created in the same nanosecond by one process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temp file in the target's directory, removed on drop unless [`TempFile::persist`]
/// succeeded.
///
/// Removing on drop covers both errors and a cancelled `put` future, so the only way to
/// leave a temp file behind is a crash; the reaper's `sweep_incomplete` cleans those up.
pub(super) struct TempFile {
    path: PathBuf,
    persisted: bool,
}

impl TempFile {
    /// Creates a new, empty temp file in `dir` with mode 0600.
    ///
    /// The name only needs to be unique, not secret: `create_new` refuses to reuse an
    /// existing name, so a collision retries instead of clobbering another upload.
    pub(super) async fn create(dir: &Path) -> io::Result<(Self, File)> {
        loop {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let count = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("{TEMP_PREFIX}{}-{nanos}-{count}", process::id()));
            let opened = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .open(&path)
                .await;
            match opened {
                Ok(file) => {
                    let temp = TempFile {
                        path,
                        persisted: false,
                    };
                    return Ok((temp, file));
                }
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(err) => return Err(err),
            }
        }
    }

    /// Atomically renames the temp file over `target`, replacing any previous object.
    pub(super) async fn persist(mut self, target: &Path) -> io::Result<()> {
        tokio::fs::rename(&self.path, target).await?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            // Blocking, but a single unlink; async cleanup cannot run in a destructor.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
