//! Sealed staging of uploads, and reading them back for FFmpeg without plaintext on disk.
//!
//! Each upload request body (a tus PATCH, or a whole PUT) becomes one *part*: a sealed
//! object for the video's data subject. The body is sealed as it streams in, through a
//! temporary file that only ever holds ciphertext, then put in the blob store. A worker
//! reads the parts back through a [`StagedReader`], which decrypts and verifies ranges on
//! demand and gives FFmpeg a seekable plaintext view held only in memory.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use tokio::io::AsyncRead;
use tokio::runtime::Handle;

use crate::catalog::{ObjectRow, UploadPart};
use crate::crypto::Header;
use crate::storage::{BlobStore, StorageError, StoredSource};
use crate::vault::{Vault, VaultError};

#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("staging file: {0}")]
    Io(#[from] io::Error),
}

/// Plaintext bytes fetched and verified per store read: large enough that a worker
/// reading an S3-staged upload makes few requests, small enough to keep memory flat.
const WINDOW: u64 = 1 << 20;

/// Seals `body` for the subject `subject_hash` and stores it under `key`. Returns the
/// stored part (plaintext length and object id). The temporary file in `tmp_dir` holds
/// only sealed bytes and is removed in every case.
pub async fn stage_part(
    vault: &Vault,
    store: &dyn BlobStore,
    tmp_dir: &Path,
    subject_hash: &str,
    key: &str,
    start: i64,
    body: impl AsyncRead + Unpin,
) -> Result<UploadPart, StagingError> {
    let (row, _) = seal_to_store(vault, store, tmp_dir, subject_hash, key, body).await?;
    Ok(UploadPart {
        start,
        len: row.plaintext_len,
        store_key: key.to_string(),
        object_id: row.object_id,
    })
}

/// Seals a stream of any length for the subject through a sealed temporary file in
/// `tmp_dir` (memory stays flat) and puts it under `key` (moved there when the store is
/// on the same filesystem); the catalog row is removed again if the store write fails.
pub async fn seal_to_store(
    vault: &Vault,
    store: &dyn BlobStore,
    tmp_dir: &Path,
    subject_hash: &str,
    key: &str,
    body: impl AsyncRead + Unpin,
) -> Result<(ObjectRow, Header), StagingError> {
    let tmp = tempfile::Builder::new()
        .prefix(".vcw-part-")
        .suffix(".sealed")
        .tempfile_in(tmp_dir)?;
    let location = format!("{}/{key}", store.describe());
    let sealed = {
        let file = tokio::fs::File::from_std(tmp.reopen()?);
        let mut out = tokio::io::BufWriter::with_capacity(1 << 16, file);
        let sealed = vault
            .seal_for_hash(subject_hash, &location, body, &mut out)
            .await?;
        tokio::io::AsyncWriteExt::flush(&mut out).await?;
        sealed
    };
    if let Err(e) = store.put_file(key, tmp.into_temp_path()).await {
        vault.forget(&sealed.0.object_id).await?;
        return Err(e.into());
    }
    Ok(sealed)
}

/// Deletes the parts' sealed bytes and shreds their keys (an upload consumed by its job,
/// or terminated by the client). Missing objects are not an error: this is retried.
pub async fn discard_parts(
    vault: &Vault,
    store: &dyn BlobStore,
    parts: &[UploadPart],
) -> Result<(), StagingError> {
    for part in parts {
        store.delete(&part.store_key).await?;
        if let Ok(id) = <[u8; 16]>::try_from(part.object_id.as_slice()) {
            match vault.shred_object(&id).await {
                Ok(_) | Err(VaultError::UnknownObject(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Something read in windows: a length, and the bytes of the window holding a position.
pub trait Windows: Send {
    /// Total length in bytes.
    fn size(&self) -> u64;
    /// Loads the window that holds `pos` (< `size()`): its start offset and its bytes.
    fn load(&mut self, pos: u64) -> io::Result<(u64, Vec<u8>)>;
}

/// `Read + Seek` over [`Windows`], keeping one window in memory.
pub struct WindowedReader<W> {
    inner: W,
    pos: u64,
    window: (u64, Vec<u8>),
}

impl<W: Windows> WindowedReader<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            pos: 0,
            window: (0, Vec::new()),
        }
    }

    pub fn len(&self) -> u64 {
        self.inner.size()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<W: Windows> Read for WindowedReader<W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.inner.size() || buf.is_empty() {
            return Ok(0);
        }
        let (start, bytes) = &self.window;
        if self.pos < *start || self.pos >= start + bytes.len() as u64 {
            self.window = self.inner.load(self.pos)?;
        }
        let (start, bytes) = &self.window;
        let at = (self.pos - start) as usize;
        let n = buf.len().min(bytes.len().saturating_sub(at));
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "empty window"));
        }
        buf[..n].copy_from_slice(&bytes[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl<W: Windows> Seek for WindowedReader<W> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.inner.size().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

/// An upload's sealed parts, verified and decrypted a window at a time.
///
/// Blocking: loading a window fetches and verifies it through `handle`. Use it only on a
/// blocking thread (the FFmpeg sampler).
pub struct StagedParts {
    handle: Handle,
    vault: Arc<Vault>,
    store: Arc<dyn BlobStore>,
    parts: Vec<UploadPart>,
    len: u64,
}

/// A plaintext view of an upload's sealed parts for FFmpeg.
pub type StagedReader = WindowedReader<StagedParts>;

impl StagedParts {
    pub fn new(
        handle: Handle,
        vault: Arc<Vault>,
        store: Arc<dyn BlobStore>,
        parts: Vec<UploadPart>,
    ) -> Self {
        let len = parts.iter().map(|p| p.len.max(0) as u64).sum();
        Self {
            handle,
            vault,
            store,
            parts,
            len,
        }
    }
}

impl Windows for StagedParts {
    fn size(&self) -> u64 {
        self.len
    }

    fn load(&mut self, pos: u64) -> io::Result<(u64, Vec<u8>)> {
        let part = self
            .parts
            .iter()
            .find(|p| (p.start as u64) <= pos && pos < (p.start + p.len) as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "past the last part"))?;
        let part_start = part.start as u64;
        let within = pos - part_start;
        let from = within - within % WINDOW;
        let to = (from + WINDOW).min(part.len as u64) - 1;
        let (vault, store, key) = (&self.vault, &*self.store, part.store_key.clone());
        let expected = <[u8; 16]>::try_from(part.object_id.as_slice()).ok();
        let bytes = self.handle.block_on(async move {
            let source = StoredSource::new(store, &key)
                .await
                .map_err(io::Error::other)?;
            let mut out = Vec::with_capacity((to - from + 1) as usize);
            vault
                .open_range(&source, expected.as_ref(), from, to, &mut out)
                .await
                .map_err(io::Error::other)?;
            Ok::<_, io::Error>(out)
        })?;
        Ok((part_start + from, bytes))
    }
}

/// A plaintext object in a blob store (an S3 source), read by ranged GETs.
pub struct StoredObject {
    pub handle: Handle,
    pub store: Arc<dyn BlobStore>,
    pub key: String,
    pub len: u64,
}

impl Windows for StoredObject {
    fn size(&self) -> u64 {
        self.len
    }

    fn load(&mut self, pos: u64) -> io::Result<(u64, Vec<u8>)> {
        let n = WINDOW.min(self.len - pos);
        let bytes = self
            .handle
            .block_on(self.store.get_range(&self.key, pos, n))
            .map_err(io::Error::other)?;
        Ok((pos, bytes))
    }
}

/// Whether `head` (the first bytes of an upload) looks like a video container FFmpeg
/// reads: MP4/MOV (ISO BMFF), Matroska/WebM, MPEG-TS, MPEG-PS, AVI, FLV, Ogg or ASF.
/// Cheap early rejection; FFmpeg still has the last word when the job runs.
pub fn looks_like_video(head: &[u8]) -> bool {
    const BMFF: [&[u8; 4]; 8] = [
        b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"styp",
    ];
    if head.len() < 12 {
        return false;
    }
    BMFF.iter().any(|b| &head[4..8] == *b)
        || head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3])
        || (head[0] == 0x47 && (head.len() < 189 || head[188] == 0x47))
        || head.starts_with(&[0, 0, 1, 0xBA])
        || (head.starts_with(b"RIFF") && &head[8..12] == b"AVI ")
        || head.starts_with(b"FLV")
        || head.starts_with(b"OggS")
        || head.starts_with(&[0x30, 0x26, 0xB2, 0x75])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10 000 bytes in windows of 3 000.
    struct Mem(Vec<u8>, u32);
    impl Windows for Mem {
        fn size(&self) -> u64 {
            self.0.len() as u64
        }
        fn load(&mut self, pos: u64) -> io::Result<(u64, Vec<u8>)> {
            self.1 += 1;
            let start = pos - pos % 3000;
            let end = (start + 3000).min(self.size());
            Ok((start, self.0[start as usize..end as usize].to_vec()))
        }
    }

    #[test]
    fn windowed_reads_and_seeks_match_the_bytes() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut r = WindowedReader::new(Mem(data.clone(), 0));
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all, data);
        assert_eq!(r.inner.1, 4, "each window loaded once");
        let mut buf = [0u8; 100];
        r.seek(SeekFrom::End(-50)).unwrap();
        assert_eq!(r.read(&mut buf).unwrap(), 50);
        assert_eq!(&buf[..50], &data[9950..]);
        r.seek(SeekFrom::Start(2990)).unwrap();
        r.read_exact(&mut buf[..20]).unwrap();
        assert_eq!(&buf[..20], &data[2990..3010], "across a window boundary");
        assert!(r.seek(SeekFrom::Current(-5000)).is_err());
        r.seek(SeekFrom::Start(20_000)).unwrap();
        assert_eq!(r.read(&mut buf).unwrap(), 0, "past the end reads nothing");
    }

    #[test]
    fn sniffs_containers_and_rejects_others() {
        let mut mp4 = vec![0, 0, 0, 0x20];
        mp4.extend_from_slice(b"ftypisom\0\0\0\0");
        assert!(looks_like_video(&mp4));
        assert!(looks_like_video(&[
            0x1A, 0x45, 0xDF, 0xA3, 0, 0, 0, 0, 0, 0, 0, 0
        ]));
        let mut ts = vec![0u8; 376];
        ts[0] = 0x47;
        ts[188] = 0x47;
        assert!(looks_like_video(&ts));
        ts[188] = 0;
        assert!(!looks_like_video(&ts));
        assert!(!looks_like_video(b"hello world, not a video"));
        assert!(!looks_like_video(b"%PDF-1.7 blah blah"));
        assert!(!looks_like_video(b"short"));
    }
}
