//! What FFmpeg reads a video from: a file, or a reader that decrypts sealed bytes on the
//! fly, so that the service never writes plaintext video to disk.

use std::io;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ffmpeg_next::format::context::Input;

pub use super::avio::ReadSeek;
use super::avio::ReaderInput;

/// Opens a fresh reader positioned at the start of the video. A source may be opened
/// more than once (the sampler makes an index pass before decoding).
pub type OpenReader = Arc<dyn Fn() -> io::Result<Box<dyn ReadSeek>> + Send + Sync>;

/// A video to read: a file path, or a reader with a known length.
#[derive(Clone)]
pub struct MediaSource {
    /// Shown in errors: the path, or a name such as `upload 3f2a…`.
    name: String,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    File(PathBuf),
    Reader { len: u64, open: OpenReader },
}

impl MediaSource {
    pub fn file(path: &Path) -> Self {
        Self {
            name: path.display().to_string(),
            kind: Kind::File(path.to_path_buf()),
        }
    }

    pub fn reader(name: impl Into<String>, len: u64, open: OpenReader) -> Self {
        Self {
            name: name.into(),
            kind: Kind::Reader { len, open },
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Size in bytes (file metadata, or the reader's declared length).
    pub(super) fn len(&self) -> io::Result<u64> {
        match &self.kind {
            Kind::File(path) => {
                let meta = std::fs::metadata(path)?;
                if !meta.is_file() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "not a regular file",
                    ));
                }
                Ok(meta.len())
            }
            Kind::Reader { len, .. } => Ok(*len),
        }
    }

    /// The source's bytes, as they are (to keep the original).
    pub fn bytes(&self) -> io::Result<Box<dyn io::Read + Send>> {
        match &self.kind {
            Kind::File(path) => Ok(Box::new(std::fs::File::open(path)?)),
            Kind::Reader { open, .. } => Ok(Box::new(open()?)),
        }
    }

    /// Opens the container (FFmpeg probes the format from the content).
    pub(super) fn open(&self) -> Result<Opened, String> {
        match &self.kind {
            Kind::File(path) => ffmpeg_next::format::input(path)
                .map(Opened::File)
                .map_err(|e| e.to_string()),
            Kind::Reader { open, .. } => {
                let reader = open().map_err(|e| e.to_string())?;
                ReaderInput::open(reader)
                    .map(Opened::Reader)
                    .map_err(|e| e.to_string())
            }
        }
    }
}

impl std::fmt::Debug for MediaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// An open input of either kind; both demux through the same [`Input`] API.
pub(super) enum Opened {
    File(Input),
    Reader(ReaderInput),
}

impl Deref for Opened {
    type Target = Input;
    fn deref(&self) -> &Input {
        match self {
            Opened::File(i) => i,
            Opened::Reader(r) => r,
        }
    }
}

impl DerefMut for Opened {
    fn deref_mut(&mut self) -> &mut Input {
        match self {
            Opened::File(i) => i,
            Opened::Reader(r) => r,
        }
    }
}

/// A reader that raises `failed` when the reader under it fails: a media error after
/// that is really an I/O error (the store, the network), worth a retry, not bad media.
pub struct NoteFailures {
    inner: Box<dyn ReadSeek>,
    failed: Arc<std::sync::atomic::AtomicBool>,
}

impl NoteFailures {
    pub fn new(inner: Box<dyn ReadSeek>, failed: Arc<std::sync::atomic::AtomicBool>) -> Self {
        Self { inner, failed }
    }

    fn note<T>(&self, r: io::Result<T>) -> io::Result<T> {
        if r.is_err() {
            self.failed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        r
    }
}

impl io::Read for NoteFailures {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.inner.read(buf);
        self.note(r)
    }
}

impl io::Seek for NoteFailures {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        let r = self.inner.seek(to);
        self.note(r)
    }
}
