//! Ingest, the first stage of a job: its video as FFmpeg will read it, always through a
//! reader (a sealed staged upload is decrypted in memory; an S3 object is read by ranged
//! GETs), never a plaintext file. The reader stops at the next read once the attempt is
//! cancelled, and remembers whether the source itself failed.

use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;

use crate::domain::{JobSource, UploadState};
use crate::media::{MediaSource, NoteFailures, OpenReader, ReadSeek};
use crate::service::Service;
use crate::staging::{StagedParts, StoredObject, WindowedReader};
use crate::storage::{BlobStore, StorageError, open_store};

use super::failure::Failure;
use super::lease::Signals;

/// The job's video as FFmpeg will read it: always through a reader (sealed staging is
/// decrypted in memory; S3 objects are read by ranged GETs), never a plaintext file.
pub async fn open(
    svc: &Service,
    source: &JobSource,
    signals: &Signals,
) -> Result<MediaSource, Failure> {
    let handle = tokio::runtime::Handle::current();
    let (name, len, open): (String, u64, OpenReader) = match source {
        JobSource::Upload { upload_id } => {
            let catalog = svc.catalog();
            let upload = catalog
                .upload(upload_id)
                .await
                .map_err(Failure::transient)?
                .ok_or_else(|| Failure::Permanent(format!("upload {upload_id} does not exist")))?;
            if upload.state != UploadState::Complete {
                return Err(Failure::Permanent(format!(
                    "upload {upload_id} is {} ({} of {} bytes)",
                    upload.state.as_str(),
                    upload.received,
                    upload.length
                )));
            }
            let parts = catalog
                .upload_parts(upload_id)
                .await
                .map_err(Failure::transient)?;
            let (vault, store) = (svc.vault.clone(), svc.store.clone());
            let len = parts.iter().map(|p| p.len.max(0) as u64).sum();
            let open: OpenReader = Arc::new(move || {
                Ok(Box::new(WindowedReader::new(StagedParts::new(
                    handle.clone(),
                    vault.clone(),
                    store.clone(),
                    parts.clone(),
                ))) as Box<dyn ReadSeek>)
            });
            (format!("upload {upload_id}"), len, open)
        }
        JobSource::S3 { url } => {
            // Checked again here: queue-driven jobs never passed the API, and the
            // allow list may have changed since the job was queued.
            let server = &svc.config.server;
            crate::domain::check_s3_source(url, &server.s3_sources, server.store.as_deref())
                .map_err(|why| Failure::Permanent(format!("{url}: {why}")))?;
            let (bucket_uri, key) = split_s3_url(url)
                .ok_or_else(|| Failure::Permanent(format!("{url}: expected s3://BUCKET/KEY")))?;
            let store: Arc<dyn BlobStore> =
                Arc::from(open_store(&bucket_uri, &svc.config.s3).map_err(Failure::transient)?);
            let len = match store.len(&key).await {
                Ok(n) => n,
                Err(StorageError::NotFound { .. }) => {
                    return Err(Failure::Permanent(format!("{url}: no such object")));
                }
                Err(e) => return Err(Failure::transient(e)),
            };
            let open: OpenReader = Arc::new(move || {
                Ok(Box::new(WindowedReader::new(StoredObject {
                    handle: handle.clone(),
                    store: store.clone(),
                    key: key.clone(),
                    len,
                })) as Box<dyn ReadSeek>)
            });
            (url.clone(), len, open)
        }
    };
    let signals = signals.clone();
    let watched: OpenReader = Arc::new(move || {
        Ok(Box::new(Watched {
            inner: NoteFailures::new(open()?, signals.io_failed.clone()),
            signals: signals.clone(),
        }) as Box<dyn ReadSeek>)
    });
    Ok(MediaSource::reader(name, len, watched))
}

/// `s3://bucket/key/with/slashes` -> (`s3://bucket`, `key/with/slashes`).
fn split_s3_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then(|| (format!("s3://{bucket}"), key.to_string()))
}

/// A reader that fails once the job is cancelled, and notes whether the reader under it
/// failed (then a media error is really an I/O error, worth a retry).
struct Watched {
    inner: NoteFailures,
    signals: Signals,
}

impl Read for Watched {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.signals.cancelled() {
            return Err(io::Error::other("job cancelled"));
        }
        self.inner.read(buf)
    }
}

impl Seek for Watched {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.inner.seek(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_split_into_bucket_and_key() {
        assert_eq!(
            split_s3_url("s3://b/dir/v.mp4"),
            Some(("s3://b".into(), "dir/v.mp4".into()))
        );
        assert_eq!(split_s3_url("s3://b"), None);
        assert_eq!(split_s3_url("s3:///k"), None);
        assert_eq!(split_s3_url("http://b/k"), None);
    }
}
