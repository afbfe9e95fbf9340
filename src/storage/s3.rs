//! S3 backend on `aws-sdk-s3`, for AWS and S3-compatible servers.

mod config;
mod multipart;

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;
use aws_sdk_s3::primitives::ByteStream;
use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use tokio::io::AsyncRead;

use super::{BlobReader, BlobStore, KeyStream, StorageError, validate_key, validate_prefix};
pub use config::S3Config;
use multipart::{PART_SIZE, read_part};

/// Stores each object as `<prefix><key>` in one bucket.
///
/// Atomicity comes from S3 itself: a `PutObject` or a multipart upload becomes visible
/// only when it completes.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    /// `""` or ends with `/`; prepended to every key and stripped from listings.
    prefix: String,
}

impl S3Store {
    /// Creates a store for `bucket`, keeping all keys under `prefix` (may be empty).
    ///
    /// Makes no request; a wrong endpoint or bucket shows up on first use.
    pub fn new(bucket: &str, prefix: &str, config: &S3Config) -> Result<Self, StorageError> {
        validate_bucket(bucket)?;
        let prefix = prefix.trim_end_matches('/');
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            validate_key(prefix)?;
            format!("{prefix}/")
        };
        Ok(S3Store {
            client: config.client()?,
            bucket: bucket.to_owned(),
            prefix,
        })
    }

    /// Creates the bucket if it does not exist yet (for setup scripts and tests).
    pub async fn ensure_bucket(&self) -> Result<(), StorageError> {
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err)
                if err.as_service_error().is_some_and(|e| {
                    e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists()
                }) =>
            {
                Ok(())
            }
            Err(err) => Err(self.s3_error("create bucket", "", err)),
        }
    }

    /// The keys of one listing page, without our prefix.
    fn keys_of(&self, page: &ListObjectsV2Output) -> Vec<String> {
        page.contents()
            .iter()
            .filter_map(|object| object.key()?.strip_prefix(&self.prefix))
            // Objects written by other tools may break the key rules; they could not be
            // read through this API anyway.
            .filter(|key| validate_key(key).is_ok())
            .map(str::to_owned)
            .collect()
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Wraps any SDK error with the bucket, key and operation; `DisplayErrorContext` keeps
    /// the whole cause chain (HTTP status, S3 error code, connection error, ...).
    fn s3_error(&self, op: &'static str, key: &str, err: impl std::error::Error) -> StorageError {
        StorageError::S3 {
            op,
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            detail: DisplayErrorContext(err).to_string(),
        }
    }
}

#[async_trait]
impl BlobStore for S3Store {
    /// Bodies shorter than one part go up as a single `PutObject`; larger ones as a
    /// multipart upload in 8 MiB parts. Either way only one part is held in memory.
    async fn put(
        &self,
        key: &str,
        body: &mut (dyn AsyncRead + Unpin + Send),
    ) -> Result<u64, StorageError> {
        validate_key(key)?;
        let first = read_part(body, PART_SIZE)
            .await
            .map_err(|source| StorageError::Io {
                op: "read input",
                key: key.to_owned(),
                source,
            })?;
        if first.len() == PART_SIZE {
            return self.put_multipart(key, first, body).await;
        }

        let len = first.len();
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .content_length(len as i64)
            .body(ByteStream::from(first))
            .send()
            .await
            .map_err(|err| self.s3_error("put", key, err))?;
        Ok(len as u64)
    }

    async fn get(&self, key: &str) -> Result<BlobReader, StorageError> {
        validate_key(key)?;
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|err| match err.as_service_error() {
                Some(e) if e.is_no_such_key() => not_found(key),
                _ => self.s3_error("get", key, err),
            })?;
        Ok(Box::new(Box::pin(output.body.into_async_read())))
    }

    async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, StorageError> {
        validate_key(key)?;
        let out_of_bounds = |size| StorageError::RangeOutOfBounds {
            key: key.to_owned(),
            offset,
            len,
            size,
        };
        let Some(end) = offset.checked_add(len) else {
            return Err(out_of_bounds(self.len(key).await?));
        };
        // An empty range cannot be expressed as an HTTP Range; only check the bounds.
        if len == 0 {
            let size = self.len(key).await?;
            return if offset <= size {
                Ok(Vec::new())
            } else {
                Err(out_of_bounds(size))
            };
        }

        let result = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .range(format!("bytes={offset}-{}", end - 1))
            .send()
            .await;
        let output = match result {
            Ok(output) => output,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Err(not_found(key));
            }
            // 416: the range starts at or past the end of the object.
            Err(err) if is_invalid_range(&err) => {
                return Err(out_of_bounds(self.len(key).await?));
            }
            Err(err) => return Err(self.s3_error("get_range", key, err)),
        };

        // S3 clips a range that starts inside the object but ends past it; decide from
        // the headers so an oversized request does not download the clipped tail first.
        let content_range = output.content_range().and_then(parse_content_range);
        match content_range {
            Some((_, size)) if end > size => return Err(out_of_bounds(size)),
            Some((start, _)) if start != offset => {
                let detail = format!("asked for offset {offset}, got {start}");
                return Err(self.s3_error("get_range", key, UnexpectedResponse(detail)));
            }
            _ => {}
        }
        let data = output
            .body
            .collect()
            .await
            .map_err(|err| self.s3_error("get_range", key, err))?
            .into_bytes();
        match content_range {
            Some(_) if data.len() as u64 == len => Ok(Vec::from(data)),
            Some(_) => {
                let detail = format!("expected {len} bytes, got {}", data.len());
                Err(self.s3_error("get_range", key, UnexpectedResponse(detail)))
            }
            // No Content-Range: the server ignored the Range header and sent everything.
            None if end > data.len() as u64 => Err(out_of_bounds(data.len() as u64)),
            // Lossless casts: both bounds are within `data`.
            None => Ok(data[offset as usize..end as usize].to_vec()),
        }
    }

    async fn len(&self, key: &str) -> Result<u64, StorageError> {
        validate_key(key)?;
        let output = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|err| match err.as_service_error() {
                Some(e) if e.is_not_found() => not_found(key),
                _ => self.s3_error("head", key, err),
            })?;
        output
            .content_length()
            .and_then(|len| u64::try_from(len).ok())
            .ok_or_else(|| {
                self.s3_error(
                    "head",
                    key,
                    UnexpectedResponse("response has no valid Content-Length".to_owned()),
                )
            })
    }

    /// S3 already answers 204 for a missing key; `NoSuchKey`/404 from stricter
    /// compatible servers is treated the same way.
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        validate_key(key)?;
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if err.code() == Some("NoSuchKey") || http_status(&err) == Some(404) => Ok(()),
            Err(err) => Err(self.s3_error("delete", key, err)),
        }
    }

    fn keys<'a>(&'a self, prefix: &'a str) -> KeyStream<'a> {
        if let Err(err) = validate_prefix(prefix) {
            return stream::once(async { Err(err) }).boxed();
        }
        let pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.full_key(prefix))
            .into_paginator()
            .send();
        let pages = stream::unfold(Some(pages), move |pages| async move {
            let mut pages = pages?;
            Some(match pages.next().await? {
                Ok(page) => (Ok(self.keys_of(&page)), Some(pages)),
                Err(err) => (Err(self.s3_error("list", prefix, err)), None),
            })
        });
        pages
            .map_ok(|keys| stream::iter(keys.into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }

    async fn sweep_incomplete(&self, _older_than: Duration) -> Result<u64, StorageError> {
        // See the trait: S3 leaves nothing for us to sweep.
        Ok(0)
    }

    fn describe(&self) -> String {
        match self.prefix.strip_suffix('/') {
            Some(prefix) => format!("s3://{}/{prefix}", self.bucket),
            None => format!("s3://{}", self.bucket),
        }
    }
}

/// Error detail for responses that are well-formed HTTP but not what S3 promises.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UnexpectedResponse(String);

/// Parses `bytes <start>-<end>/<size>` into `(start, size)`.
fn parse_content_range(value: &str) -> Option<(u64, u64)> {
    let (range, size) = value.strip_prefix("bytes ")?.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    Some((start.parse().ok()?, size.parse().ok()?))
}

fn http_status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response()
        .map(|response| response.status().as_u16())
}

fn is_invalid_range<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    err.code() == Some("InvalidRange") || http_status(err) == Some(416)
}

/// S3 bucket naming rules (3-63 chars, lowercase letters, digits, `.` and `-`, starting and
/// ending with a letter or digit), checked early so a typo in the URI fails at startup.
fn validate_bucket(bucket: &str) -> Result<(), StorageError> {
    let valid_chars = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let valid_ends = bucket
        .bytes()
        .next()
        .zip(bucket.bytes().last())
        .is_some_and(|(first, last)| first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric());
    if (3..=63).contains(&bucket.len()) && valid_chars && valid_ends {
        Ok(())
    } else {
        Err(StorageError::InvalidUri {
            uri: format!("s3://{bucket}"),
            reason: "bucket names are 3-63 characters of a-z 0-9 . - starting and ending \
                     with a letter or digit"
                .to_owned(),
        })
    }
}

fn not_found(key: &str) -> StorageError {
    StorageError::NotFound {
        key: key.to_owned(),
    }
}
