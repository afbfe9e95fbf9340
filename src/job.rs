//! The whole job for one video after it has been judged: segment it, seal every segment,
//! the playlist and a manifest for the data subject, and put them in the blob store.
//!
//! Segments go from FFmpeg's in-memory muxer straight into the sealer; nothing plaintext
//! touches the disk. Each attempt stores under its own prefix (`videos/{id}/a{n}/`), so
//! attempts of one video never overwrite or delete each other's objects: only the
//! manifest of the attempt the catalog records as done is ever referenced. If any step
//! fails, whatever this attempt already stored is deleted and its catalog rows removed.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::config::Limits;
use crate::media::{MediaError, MediaSource, playlist, segment};
use crate::report::ScanReport;
use crate::storage::{BlobStore, StorageError};
use crate::vault::{Vault, VaultError, id_hex};

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Bad input: no retry helps.
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Other(String),
}

impl JobError {
    /// Worth retrying (store, catalog or I/O trouble); media errors other than I/O mean
    /// the input itself is bad.
    pub fn is_transient(&self) -> bool {
        match self {
            JobError::Media(m) => m.is_transient(),
            JobError::Vault(v) => v.is_transient(),
            JobError::Storage(_) | JobError::Other(_) => true,
        }
    }
}

/// Where a job's video comes from (stored as JSON in the catalog; also the `source` of
/// `POST /v1/jobs` and of queue-driven job messages).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum JobSource {
    /// A completed tus upload or PUT body, staged sealed.
    Upload { upload_id: String },
    /// An object in S3 (`s3://bucket/key`), read with the `[s3]` settings.
    S3 { url: String },
}

/// One stored, sealed object.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct StoredObject {
    /// Key in the blob store.
    pub key: String,
    pub object_id: String,
    pub data_key_id: String,
    pub subject_key_version: i64,
    /// KEK version the subject key was wrapped under when this object was sealed.
    pub kek_version: u32,
    pub plaintext_len: i64,
    pub sealed_len: i64,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct StoredSegment {
    pub index: usize,
    pub start: f64,
    pub duration: f64,
    #[serde(flatten)]
    pub object: StoredObject,
}

/// What was stored for one video; itself stored sealed next to the segments.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Manifest {
    pub video_id: String,
    /// Keyed hash of the data subject (never the raw identifier).
    pub subject_hash: String,
    pub store: String,
    pub verdict: crate::policy::Action,
    pub escalate: bool,
    pub policy_version: String,
    pub segment_format: String,
    pub segments: Vec<StoredSegment>,
    pub playlist: StoredObject,
    /// Where the sealed manifest itself is.
    pub manifest_key: String,
}

/// Seals `bytes` for the subject and puts them under `key`; the catalog row is removed
/// again if the store write fails.
async fn put_sealed(
    vault: &Vault,
    store: &dyn BlobStore,
    subject_hash: &str,
    key: &str,
    bytes: &[u8],
) -> Result<StoredObject, JobError> {
    let mut sealed = Vec::with_capacity(bytes.len() + bytes.len() / 4000 + 256);
    let location = format!("{}/{key}", store.describe());
    let (row, header) = vault
        .seal_for_hash(subject_hash, &location, bytes, &mut sealed)
        .await?;
    if let Err(e) = store.put(key, &mut Cursor::new(&sealed)).await {
        vault.forget(&row.object_id).await?;
        return Err(e.into());
    }
    Ok(StoredObject {
        key: key.to_string(),
        object_id: id_hex(&row.object_id),
        data_key_id: id_hex(&row.data_key_id),
        subject_key_version: row.subject_key_version,
        kek_version: header.kek_version,
        plaintext_len: row.plaintext_len,
        sealed_len: row.sealed_len,
    })
}

/// Store keys of one video all start with this.
pub fn video_prefix(video_id: &str) -> String {
    format!("videos/{video_id}/")
}

/// Store keys of one attempt at a video all start with this.
pub fn attempt_prefix(video_id: &str, attempt: i64) -> String {
    format!("videos/{video_id}/a{attempt}/")
}

/// The attempt a store key under `videos/{id}/` belongs to, if it is one of ours.
pub fn attempt_of(key: &str) -> Option<(&str, i64)> {
    let rest = key.strip_prefix("videos/")?;
    let (id, rest) = rest.split_once('/')?;
    let (attempt, _) = rest.strip_prefix('a')?.split_once('/')?;
    Some((id, attempt.parse().ok()?))
}

/// Removes the objects stored under `prefix` (one attempt's, or a whole video's) and the
/// catalog rows of objects sealed for that location.
pub async fn remove_objects(
    vault: &Vault,
    store: &dyn BlobStore,
    prefix: &str,
) -> Result<usize, JobError> {
    let keys = store.list(prefix).await?;
    for key in &keys {
        store.delete(key).await?;
    }
    let location = format!("{}/{prefix}", store.describe());
    let rows = vault
        .catalog()
        .objects_at(&location)
        .await
        .map_err(VaultError::from)?;
    for row in &rows {
        vault.forget(&row.object_id).await?;
    }
    Ok(keys.len().max(rows.len()))
}

/// Where and for whom to store one video.
pub struct StoreTarget<'a> {
    pub handle: &'a tokio::runtime::Handle,
    pub vault: &'a Vault,
    pub store: &'a dyn BlobStore,
    /// Keyed hash of the data subject.
    pub subject_hash: &'a str,
    /// Target segment length, seconds (cut on the next keyframe).
    pub segment_seconds: f64,
    /// The attempt storing (its fencing token): objects go under its own prefix.
    pub attempt: i64,
}

impl StoreTarget<'_> {
    /// Segments, seals and stores `source` (already judged in `report`) as `video_id`.
    /// Blocking: call it from a blocking thread, never from async code.
    pub fn store_video(
        &self,
        video_id: &str,
        source: &MediaSource,
        report: &ScanReport,
        limits: &Limits,
    ) -> Result<Manifest, JobError> {
        let (rt, vault, store, subject) = (self.handle, self.vault, self.store, self.subject_hash);
        let prefix = attempt_prefix(video_id, self.attempt);
        let mut done: Vec<StoredObject> = Vec::new();
        // A store or catalog failure inside the segmenter's callback keeps its type, so
        // that it is retried rather than taken for bad media.
        let mut sealing_failed: Option<JobError> = None;
        let result = (|| {
            let mut segments = Vec::new();
            let infos = segment(source, self.segment_seconds, limits, |seg| {
                let key = format!("{prefix}seg-{:05}.ts.sealed", seg.index);
                let object = rt
                    .block_on(put_sealed(vault, store, subject, &key, &seg.data))
                    .map_err(|e| {
                        let shown = e.to_string();
                        sealing_failed = Some(e);
                        shown
                    })?;
                done.push(object.clone());
                segments.push(StoredSegment {
                    index: seg.index,
                    start: seg.start,
                    duration: seg.duration,
                    object,
                });
                Ok(())
            })
            .map_err(|e| sealing_failed.take().unwrap_or(JobError::Media(e)))?;
            let m3u8 = playlist(&infos, |i| format!("seg-{i:05}.ts"));
            let playlist_key = format!("{prefix}playlist.m3u8.sealed");
            let playlist = rt.block_on(put_sealed(
                vault,
                store,
                subject,
                &playlist_key,
                m3u8.as_bytes(),
            ))?;
            done.push(playlist.clone());
            let manifest = Manifest {
                video_id: video_id.to_string(),
                subject_hash: subject.to_string(),
                store: store.describe(),
                verdict: report.verdict,
                escalate: report.escalate,
                policy_version: report.policy_version.clone(),
                segment_format: "mpegts".into(),
                segments,
                playlist,
                manifest_key: format!("{prefix}manifest.json.sealed"),
            };
            let body =
                serde_json::to_vec_pretty(&manifest).map_err(|e| JobError::Other(e.to_string()))?;
            rt.block_on(put_sealed(
                vault,
                store,
                subject,
                &manifest.manifest_key,
                &body,
            ))?;
            Ok(manifest)
        })();
        if result.is_err() {
            // Leave nothing behind: stored objects and their catalog rows go.
            rt.block_on(async {
                for object in &done {
                    let _ = store.delete(&object.key).await;
                    if let Some(id) = crate::vault::parse_id(&object.object_id) {
                        let _ = vault.forget(&id).await;
                    }
                }
            });
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_sources_have_a_documented_json_form() {
        let s: JobSource = serde_json::from_str(r#"{"upload":{"upload_id":"ab"}}"#).unwrap();
        assert_eq!(
            s,
            JobSource::Upload {
                upload_id: "ab".into()
            }
        );
        let s: JobSource = serde_json::from_str(r#"{"s3":{"url":"s3://b/k"}}"#).unwrap();
        assert_eq!(
            s,
            JobSource::S3 {
                url: "s3://b/k".into()
            }
        );
        assert!(serde_json::from_str::<JobSource>(r#"{"file":{"path":"/etc/passwd"}}"#).is_err());
    }

    #[test]
    fn store_keys_name_their_attempt() {
        let key = format!("{}seg-00001.ts.sealed", attempt_prefix("ab", 3));
        assert_eq!(key, "videos/ab/a3/seg-00001.ts.sealed");
        assert_eq!(attempt_of(&key), Some(("ab", 3)));
        assert!(key.starts_with(&video_prefix("ab")));
        assert_eq!(attempt_of("videos/ab/seg-1.ts"), None);
        assert_eq!(attempt_of("staging/ab/a1/x"), None);
        assert_eq!(attempt_of("videos/ab/ax/x"), None);
    }
}
