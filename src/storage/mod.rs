//! Blob storage for sealed (encrypted + authenticated) video segments and manifests.
//!
//! Everything stored here is already sealed, so this layer never sees plaintext. Its job is
//! to keep objects whole: a reader sees either the complete object or nothing, never a
//! partial upload, and it can fetch exact byte ranges so the decryptor only pulls the chunks
//! a playback range touches.
//!
//! Backends are chosen by URI with [`open_store`]: a plain path or `file://` URI gives an
//! [`FsStore`], `s3://bucket/prefix` gives an [`S3Store`].

mod fs;
mod key;
mod s3;
mod source;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::TryStreamExt as _;
use futures_util::stream::BoxStream;
use tokio::io::AsyncRead;

pub use fs::FsStore;
pub use key::{MAX_KEY_LEN, validate_key, validate_prefix};
pub use s3::{S3Config, S3Store};
pub use source::StoredSource;

/// A streaming reader over a stored object, as returned by [`BlobStore::get`].
pub type BlobReader = Box<dyn AsyncRead + Unpin + Send>;

/// Keys as they are listed, as returned by [`BlobStore::keys`].
pub type KeyStream<'a> = BoxStream<'a, Result<String, StorageError>>;

/// Everything that can go wrong in the storage layer.
///
/// Each variant names the key (or URI) and the operation, because the same failure means
/// very different things for a manifest and for one segment of a multi-GiB video.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The object does not exist.
    #[error("object {key:?} not found")]
    NotFound { key: String },

    /// The key breaks the key rules (see [`validate_key`]).
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },

    /// The store URI could not be understood.
    #[error("invalid store URI {uri:?}: {reason}")]
    InvalidUri { uri: String, reason: String },

    /// The store configuration is incomplete or inconsistent (e.g. missing credentials).
    #[error("invalid storage configuration: {detail}")]
    Config { detail: String },

    /// A byte range reaches past the end of the object.
    #[error("range {offset}+{len} is out of bounds for object {key:?} of {size} bytes")]
    RangeOutOfBounds {
        key: String,
        offset: u64,
        len: u64,
        size: u64,
    },

    /// A local I/O error (filesystem backend, or reading the caller's input stream).
    #[error("I/O error during {op} of {key:?}: {source}")]
    Io {
        op: &'static str,
        key: String,
        #[source]
        source: std::io::Error,
    },

    /// An S3 request failed after the SDK's retries were exhausted.
    #[error("S3 {op} of {key:?} in bucket {bucket:?} failed: {detail}")]
    S3 {
        op: &'static str,
        bucket: String,
        key: String,
        detail: String,
    },
}

/// A flat, key-addressed store of immutable blobs.
///
/// `async_trait` is used (rather than native `async fn` in traits) because callers hold the
/// store as `Box<dyn BlobStore>` chosen at runtime from a URI, and native async trait
/// methods are not dyn-compatible.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores the stream under `key`, replacing any existing object, and returns the number
    /// of bytes written.
    ///
    /// The object becomes visible only once complete: no reader, and no restart after a
    /// crash, ever sees a partial object under `key`.
    async fn put(
        &self,
        key: &str,
        body: &mut (dyn AsyncRead + Unpin + Send),
    ) -> Result<u64, StorageError>;

    /// Stores a complete local file under `key` like `put`, consuming it. Stores that
    /// can move it into place instead of copying it do so (a staged multi-GiB upload is
    /// then written to disk once, not twice).
    async fn put_file(&self, key: &str, file: tempfile::TempPath) -> Result<u64, StorageError> {
        let mut body = tokio::fs::File::open(&file)
            .await
            .map_err(|source| StorageError::Io {
                op: "open staged file",
                key: key.to_owned(),
                source,
            })?;
        self.put(key, &mut body).await
    }

    /// Opens the whole object for streaming, so multi-GiB segments never sit in memory.
    async fn get(&self, key: &str) -> Result<BlobReader, StorageError>;

    /// Reads exactly `len` bytes starting at `offset`.
    ///
    /// Fails with [`StorageError::RangeOutOfBounds`] rather than returning a short read,
    /// because a truncated chunk would only surface later as a confusing decryption error.
    async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, StorageError>;

    /// Size of the object in bytes.
    async fn len(&self, key: &str) -> Result<u64, StorageError>;

    /// Removes the object; removing a missing object succeeds, so retries are safe.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;

    /// Whether a complete object exists under `key`.
    async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        match self.len(key).await {
            Ok(_) => Ok(true),
            Err(StorageError::NotFound { .. }) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// All keys starting with `prefix` (plain string prefix, `""` for everything), sorted.
    /// Meant for a bounded set, such as one video's objects; walk a whole store with
    /// [`BlobStore::keys`].
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let mut keys: Vec<String> = self.keys(prefix).try_collect().await?;
        keys.sort_unstable();
        Ok(keys)
    }

    /// Streams the keys starting with `prefix`, holding at most one page of them, so that
    /// a sweep over millions of objects runs in constant memory.
    ///
    /// The order is the backend's, with one promise: keys under one directory (`a/b/...`)
    /// come together. An error ends the stream.
    fn keys<'a>(&'a self, prefix: &'a str) -> KeyStream<'a>;

    /// Removes what writes interrupted by a crash left behind and returns how many went.
    /// Only leftovers untouched for `older_than` go, since another process may still be
    /// writing them. An [`FsStore`] removes its temp files. An [`S3Store`] has none: a
    /// failed or cancelled `put` aborts its multipart upload, and after a crash the
    /// bucket's lifecycle rule (`AbortIncompleteMultipartUpload`) does.
    async fn sweep_incomplete(&self, older_than: Duration) -> Result<u64, StorageError>;

    /// A human-readable location for logs, e.g. `fs:/data/objects` or `s3://bucket/prefix`.
    /// Never contains credentials.
    fn describe(&self) -> String;
}

/// Opens the store named by `uri`.
///
/// * `/some/path`, `relative/path` or `file:///some/path`: a [`FsStore`] rooted there.
/// * `s3://bucket` or `s3://bucket/prefix`: an [`S3Store`] configured from `s3`; every key
///   is stored under `prefix/`.
///
/// `s3` is ignored for filesystem URIs, so callers can always pass their one config.
pub fn open_store(uri: &str, s3: &S3Config) -> Result<Box<dyn BlobStore>, StorageError> {
    let invalid = |reason: &str| StorageError::InvalidUri {
        uri: uri.to_owned(),
        reason: reason.to_owned(),
    };

    if let Some(rest) = uri.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        return Ok(Box::new(S3Store::new(bucket, prefix, s3)?));
    }

    let path = match uri.strip_prefix("file://") {
        Some(path) => path,
        None if uri.contains("://") => return Err(invalid("unsupported scheme")),
        None => uri,
    };
    if path.is_empty() {
        return Err(invalid("empty path"));
    }
    Ok(Box::new(FsStore::new(PathBuf::from(path))?))
}
