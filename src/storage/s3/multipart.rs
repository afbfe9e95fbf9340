//! Streaming multipart upload with guaranteed abort.
//!
//! S3 only makes a multipart object visible on `CompleteMultipartUpload`, which gives the
//! "never partial" guarantee for free; what needs care is not leaking the invisible,
//! billed parts when an upload fails or is cancelled.

use aws_sdk_s3::Client;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use tokio::io::{AsyncRead, AsyncReadExt as _};

use super::S3Store;
use crate::storage::StorageError;

/// Part size: S3's minimum is 5 MiB; 8 MiB keeps memory per upload constant and small
/// while allowing objects up to 10 000 parts = 78 GiB.
pub(super) const PART_SIZE: usize = 8 << 20;

/// S3's maximum number of parts in one upload.
const MAX_PARTS: i32 = 10_000;

/// Reads until `size` bytes are buffered or the input ends; a short buffer means EOF.
pub(super) async fn read_part(
    body: &mut (dyn AsyncRead + Unpin + Send),
    size: usize,
) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; size];
    let mut filled = 0;
    while filled < size {
        let n = body.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    Ok(buf)
}

impl S3Store {
    /// Uploads `first` (a full part) and the rest of `body` as a multipart upload, one part
    /// in memory at a time. Any failure aborts the upload before returning.
    pub(super) async fn put_multipart(
        &self,
        key: &str,
        first: Vec<u8>,
        body: &mut (dyn AsyncRead + Unpin + Send),
    ) -> Result<u64, StorageError> {
        let full_key = self.full_key(key);
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&full_key)
            .send()
            .await
            .map_err(|err| self.s3_error("create multipart upload", key, err))?;
        let upload_id = created.upload_id().ok_or_else(|| StorageError::S3 {
            op: "create multipart upload",
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            detail: "response has no upload id".to_owned(),
        })?;

        let guard = AbortGuard {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: full_key.clone(),
            upload_id: Some(upload_id.to_owned()),
        };
        match self
            .upload_parts(key, &full_key, upload_id, first, body)
            .await
        {
            Ok(total) => {
                guard.disarm();
                Ok(total)
            }
            Err(err) => {
                guard.abort().await;
                Err(err)
            }
        }
    }

    async fn upload_parts(
        &self,
        key: &str,
        full_key: &str,
        upload_id: &str,
        first: Vec<u8>,
        body: &mut (dyn AsyncRead + Unpin + Send),
    ) -> Result<u64, StorageError> {
        let mut parts = Vec::new();
        let mut total = 0u64;
        let mut part = first;
        let mut part_number = 1;
        while !part.is_empty() {
            if part_number > MAX_PARTS {
                return Err(StorageError::S3 {
                    op: "upload part",
                    bucket: self.bucket.clone(),
                    key: key.to_owned(),
                    detail: format!("object exceeds {MAX_PARTS} parts of {PART_SIZE} bytes"),
                });
            }
            let len = part.len();
            let uploaded = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(full_key)
                .upload_id(upload_id)
                .part_number(part_number)
                .content_length(len as i64)
                .body(part.into())
                .send()
                .await
                .map_err(|err| self.s3_error("upload part", key, err))?;
            parts.push(
                CompletedPart::builder()
                    .set_e_tag(uploaded.e_tag().map(str::to_owned))
                    .part_number(part_number)
                    .build(),
            );
            total += len as u64;
            part_number += 1;
            part = read_part(body, PART_SIZE)
                .await
                .map_err(|source| StorageError::Io {
                    op: "read input",
                    key: key.to_owned(),
                    source,
                })?;
        }

        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(full_key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|err| self.s3_error("complete multipart upload", key, err))?;
        Ok(total)
    }
}

/// Aborts a multipart upload that did not complete.
///
/// Errors are handled by awaiting [`AbortGuard::abort`]; the `Drop` impl covers the case
/// where the `put` future itself is dropped mid-upload, by spawning the abort on the
/// current Tokio runtime. (An upload that still leaks, e.g. on a crash, is invisible and
/// should be reaped by a bucket lifecycle rule `AbortIncompleteMultipartUpload`.)
struct AbortGuard {
    client: Client,
    bucket: String,
    key: String,
    upload_id: Option<String>,
}

impl AbortGuard {
    fn disarm(mut self) {
        self.upload_id = None;
    }

    /// Best effort: the original error is what the caller needs to see.
    async fn abort(mut self) {
        if let Some(upload_id) = self.upload_id.take() {
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(upload_id)
                .send()
                .await;
        }
    }
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        let Some(upload_id) = self.upload_id.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let request = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id);
        runtime.spawn(async move {
            let _ = request.send().await;
        });
    }
}
