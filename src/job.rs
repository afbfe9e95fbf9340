//! The whole job for one video after it has been judged: segment it, seal every segment,
//! the playlist and a manifest for the data subject, and put them in the blob store.
//!
//! Segments go from FFmpeg's in-memory muxer straight into the sealer; nothing plaintext
//! touches the disk. If any step fails, whatever this job already stored is deleted and
//! its catalog rows removed, so a failed job leaves no orphan objects behind.

use std::io::Cursor;

use serde::Serialize;

use crate::config::Limits;
use crate::media::{MediaError, MediaSource, playlist, segment};
use crate::report::ScanReport;
use crate::storage::{BlobStore, StorageError};
use crate::vault::{Vault, VaultError, id_hex};

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Other(String),
}

/// One stored, sealed object.
#[derive(Clone, Debug, Serialize)]
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

#[derive(Clone, Debug, Serialize)]
pub struct StoredSegment {
    pub index: usize,
    pub start: f64,
    pub duration: f64,
    #[serde(flatten)]
    pub object: StoredObject,
}

/// What was stored for one video; itself stored sealed next to the segments.
#[derive(Clone, Debug, Serialize)]
pub struct Manifest {
    pub video_id: String,
    /// Keyed hash of the data subject (never the raw identifier).
    pub subject_hash: String,
    pub store: String,
    pub verdict: crate::policy::Action,
    pub escalate: bool,
    pub policy_version: String,
    pub segment_format: &'static str,
    pub segments: Vec<StoredSegment>,
    pub playlist: StoredObject,
    /// Where the sealed manifest itself is.
    pub manifest_key: String,
}

/// Seals `bytes` for `subject` and puts them under `key`; the catalog row is removed
/// again if the store write fails.
async fn put_sealed(
    vault: &Vault,
    store: &dyn BlobStore,
    subject: &str,
    key: &str,
    bytes: &[u8],
) -> Result<StoredObject, JobError> {
    let mut sealed = Vec::with_capacity(bytes.len() + bytes.len() / 4000 + 256);
    let location = format!("{}/{key}", store.describe());
    let (row, header) = vault.seal(subject, &location, bytes, &mut sealed).await?;
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

/// Where and for whom `vcw scan --store` stores videos; opened once for all files.
pub struct StoreTarget {
    pub rt: tokio::runtime::Runtime,
    pub vault: Vault,
    pub store: Box<dyn BlobStore>,
    pub subject: String,
    /// Target segment length, seconds (cut on the next keyframe).
    pub segment_seconds: f64,
}

impl StoreTarget {
    /// Segments, seals and stores `source` (already judged in `report`).
    pub fn store_video(
        &self,
        source: &MediaSource,
        report: &ScanReport,
        limits: &Limits,
    ) -> Result<Manifest, JobError> {
        let (rt, vault, store, subject) = (&self.rt, &self.vault, &*self.store, &*self.subject);
        let video_id = id_hex(
            crate::crypto::random::<16>()
                .map_err(VaultError::from)?
                .as_ref(),
        );
        let prefix = format!("videos/{video_id}");
        let mut done: Vec<StoredObject> = Vec::new();
        let result = (|| {
            let mut segments = Vec::new();
            let infos = segment(source, self.segment_seconds, limits, |seg| {
                let key = format!("{prefix}/seg-{:05}.ts.sealed", seg.index);
                let object = rt
                    .block_on(put_sealed(vault, store, subject, &key, &seg.data))
                    .map_err(|e| e.to_string())?;
                done.push(object.clone());
                segments.push(StoredSegment {
                    index: seg.index,
                    start: seg.start,
                    duration: seg.duration,
                    object,
                });
                Ok(())
            })?;
            let m3u8 = playlist(&infos, |i| format!("seg-{i:05}.ts"));
            let playlist_key = format!("{prefix}/playlist.m3u8.sealed");
            let playlist = rt.block_on(put_sealed(
                vault,
                store,
                subject,
                &playlist_key,
                m3u8.as_bytes(),
            ))?;
            done.push(playlist.clone());
            let manifest = Manifest {
                video_id: video_id.clone(),
                subject_hash: vault.kms_subject_hash(subject)?,
                store: store.describe(),
                verdict: report.verdict,
                escalate: report.escalate,
                policy_version: report.policy_version.clone(),
                segment_format: "mpegts",
                segments,
                playlist,
                manifest_key: format!("{prefix}/manifest.json.sealed"),
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
