//! Packaging a judged video: segment it into HLS (fMP4: an init segment and media
//! segments), seal every piece, the playlist and a manifest for the data subject, and put
//! them in the blob store.
//!
//! Segments go from FFmpeg's in-memory muxer straight into the sealer; nothing plaintext
//! touches the disk. Each attempt stores under its own prefix (`videos/{id}/a{n}/`), so
//! attempts of one video never overwrite or delete each other's objects: only the
//! manifest of the attempt the catalog records as done is ever referenced. If any step
//! fails, whatever this attempt already stored is deleted and its catalog rows removed.

use std::io::Cursor;

use crate::config::Limits;
use crate::domain::{Manifest, StoredObject, StoredSegment, attempt_prefix, id_hex, parse_id};
use crate::media::{MediaError, MediaSource, Piece, playlist, segment};
use crate::report::ScanReport;
use crate::storage::{BlobStore, StorageError};
use crate::vault::{Vault, VaultError};

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
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

impl PackageError {
    /// Worth retrying (store, catalog or I/O trouble); media errors other than I/O mean
    /// the input itself is bad.
    pub fn is_transient(&self) -> bool {
        match self {
            PackageError::Media(m) => m.is_transient(),
            PackageError::Vault(v) => v.is_transient(),
            PackageError::Storage(_) | PackageError::Other(_) => true,
        }
    }
}

/// Seals `bytes` for the subject and puts them under `key`; the catalog row is removed
/// again if the store write fails.
async fn put_sealed(
    vault: &Vault,
    store: &dyn BlobStore,
    subject_hash: &str,
    key: &str,
    bytes: &[u8],
) -> Result<StoredObject, PackageError> {
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
    ) -> Result<Manifest, PackageError> {
        let (rt, vault, store, subject) = (self.handle, self.vault, self.store, self.subject_hash);
        let prefix = attempt_prefix(video_id, self.attempt);
        let mut done: Vec<StoredObject> = Vec::new();
        // A store or catalog failure inside the segmenter's callback keeps its type, so
        // that it is retried rather than taken for bad media.
        let mut sealing_failed: Option<PackageError> = None;
        let result = (|| {
            let mut segments = Vec::new();
            let mut init = None;
            let infos = segment(source, self.segment_seconds, limits, |piece| {
                let (key, data) = match &piece {
                    Piece::Init(data) => (format!("{prefix}init.mp4.sealed"), data),
                    Piece::Media(seg) => (
                        format!("{prefix}seg-{:05}.m4s.sealed", seg.index),
                        &seg.data,
                    ),
                };
                let object = rt
                    .block_on(put_sealed(vault, store, subject, &key, data))
                    .map_err(|e| {
                        let shown = e.to_string();
                        sealing_failed = Some(e);
                        shown
                    })?;
                done.push(object.clone());
                match piece {
                    Piece::Init(_) => init = Some(object),
                    Piece::Media(seg) => segments.push(StoredSegment {
                        index: seg.index,
                        start: seg.start,
                        duration: seg.duration,
                        object,
                    }),
                }
                Ok(())
            })
            .map_err(|e| sealing_failed.take().unwrap_or(PackageError::Media(e)))?;
            let m3u8 = playlist(&infos, "init.mp4", |i| format!("seg-{i:05}.m4s"));
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
                segment_format: "fmp4".into(),
                init,
                segments,
                playlist,
                manifest_key: format!("{prefix}manifest.json.sealed"),
            };
            let body = serde_json::to_vec_pretty(&manifest)
                .map_err(|e| PackageError::Other(e.to_string()))?;
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
                    if let Some(id) = parse_id(&object.object_id) {
                        let _ = vault.forget(&id).await;
                    }
                }
            });
        }
        result
    }
}
