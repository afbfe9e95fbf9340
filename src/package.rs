//! Packaging a judged video: segment it into HLS (fMP4: an init segment and media
//! segments), seal every piece, the playlist and a manifest for the data subject, and put
//! them in the blob store.
//!
//! Segments go from FFmpeg's in-memory muxer straight into the sealer; nothing plaintext
//! touches the disk. Each attempt stores under its own prefix (`videos/{id}/a{n}/`), so
//! attempts of one video never overwrite or delete each other's objects: only the
//! manifest of the attempt the catalog records as done is ever referenced. If any step
//! fails, whatever this attempt already stored is deleted and its catalog rows removed.

use std::io::{Cursor, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::AsyncWriteExt;

use crate::catalog::{ObjectRow, UploadPart};
use crate::config::{Limits, Transcode};
use crate::crypto::Header;
use crate::domain::{Manifest, StoredObject, StoredSegment, attempt_prefix, id_hex, parse_id};
use crate::media::{
    MediaError, MediaSource, NoteFailures, OpenReader, Piece, ReadSeek, Segmented, StreamCount,
    count_packets, playlist, segment,
};
use crate::report::ScanReport;
use crate::staging::{StagedParts, WindowedReader, seal_to_store};
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
    Ok(stored_object(key, &row, &header))
}

/// The manifest's record of an object sealed under `key`.
fn stored_object(key: &str, row: &ObjectRow, header: &Header) -> StoredObject {
    StoredObject {
        key: key.to_string(),
        object_id: id_hex(&row.object_id),
        data_key_id: id_hex(&row.data_key_id),
        subject_key_version: row.subject_key_version,
        kek_version: header.kek_version,
        plaintext_len: row.plaintext_len,
        sealed_len: row.sealed_len,
    }
}

/// Where and for whom to store one video.
pub struct StoreTarget<'a> {
    pub handle: &'a tokio::runtime::Handle,
    pub vault: &'a Arc<Vault>,
    pub store: &'a Arc<dyn BlobStore>,
    /// For the sealed temporary file an original passes through.
    pub tmp_dir: &'a Path,
    /// Keyed hash of the data subject.
    pub subject_hash: &'a str,
    /// Target segment length, seconds (cut on the next keyframe).
    pub segment_seconds: f64,
    /// Whether streams HLS cannot carry are re-encoded (the original is kept as well).
    pub transcode: Transcode,
    /// The attempt storing (its fencing token): objects go under its own prefix.
    pub attempt: i64,
}

impl StoreTarget<'_> {
    /// Segments, seals and stores `source` (already judged in `report`) as `video_id`;
    /// if HLS cannot carry its codecs, keeps the source itself, sealed, instead.
    /// Blocking: call it from a blocking thread, never from async code.
    pub fn store_video(
        &self,
        video_id: &str,
        source: &MediaSource,
        report: &ScanReport,
        limits: &Limits,
    ) -> Result<Manifest, PackageError> {
        let prefix = attempt_prefix(video_id, self.attempt);
        let mut manifest = Manifest {
            video_id: video_id.to_string(),
            subject_hash: self.subject_hash.to_string(),
            store: self.store.describe(),
            verdict: report.verdict,
            escalate: report.escalate,
            policy_version: report.policy_version.clone(),
            segment_format: "fmp4".into(),
            init: None,
            segments: Vec::new(),
            playlist: None,
            original: None,
            not_streamable: None,
            transcoded: None,
            failed_check: None,
            original_because: None,
            manifest_key: format!("{prefix}manifest.json.sealed"),
        };
        let mut done: Vec<StoredObject> = Vec::new();
        let result = self.store_pieces(&prefix, source, limits, &mut manifest, &mut done);
        if result.is_err() {
            // Leave nothing behind.
            self.discard(&done);
        }
        result.map(|()| manifest)
    }

    /// Seals `bytes` for the subject and stores them under `key` (blocking).
    fn put(&self, key: &str, bytes: &[u8]) -> Result<StoredObject, PackageError> {
        let put = put_sealed(self.vault, &**self.store, self.subject_hash, key, bytes);
        self.handle.block_on(put)
    }

    /// Deletes stored objects and their catalog rows (best effort: the reaper sweeps
    /// what is left).
    fn discard(&self, objects: &[StoredObject]) {
        let (vault, store) = (self.vault, self.store);
        self.handle.block_on(async {
            for object in objects {
                let _ = store.delete(&object.key).await;
                if let Some(id) = parse_id(&object.object_id) {
                    let _ = vault.forget(&id).await;
                }
            }
        });
    }

    /// Reads the stored HLS rendition back (init + media segments, decrypted and
    /// verified window by window, in memory) and counts its packets per stream.
    fn read_back(
        &self,
        manifest: &Manifest,
        limits: &Limits,
    ) -> Result<Vec<StreamCount>, PackageError> {
        let mut parts = Vec::new();
        let mut start = 0i64;
        let lost = usize::from(crate::failpoint::fault("lose-last-segment"));
        let kept = manifest.segments.len().saturating_sub(lost);
        let objects = manifest
            .init
            .iter()
            .chain(manifest.segments[..kept].iter().map(|s| &s.object));
        for object in objects {
            let id = parse_id(&object.object_id)
                .ok_or_else(|| PackageError::Other("a malformed object id".into()))?;
            parts.push(UploadPart {
                start,
                len: object.plaintext_len,
                store_key: object.key.clone(),
                object_id: id.to_vec(),
            });
            start += object.plaintext_len;
        }
        let (handle, vault, store) = (self.handle.clone(), self.vault.clone(), self.store.clone());
        let failed = Arc::new(AtomicBool::new(false));
        let noted = failed.clone();
        let open: OpenReader = Arc::new(move || {
            let parts =
                StagedParts::new(handle.clone(), vault.clone(), store.clone(), parts.clone());
            let reader = Box::new(WindowedReader::new(parts));
            Ok(Box::new(NoteFailures::new(reader, noted.clone())) as Box<dyn ReadSeek>)
        });
        let stored =
            MediaSource::reader(format!("stored {}", manifest.video_id), start as u64, open);
        count_packets(&stored, limits).map_err(|e| {
            if failed.load(Ordering::Relaxed) {
                // The store failed us, not the rendition: retry the job.
                PackageError::Other(format!("reading the stored HLS back: {e}"))
            } else {
                e.into()
            }
        })
    }

    /// Stores the HLS rendition (or the original) and then the manifest, recording each
    /// object stored in `done`.
    fn store_pieces(
        &self,
        prefix: &str,
        source: &MediaSource,
        limits: &Limits,
        manifest: &mut Manifest,
        done: &mut Vec<StoredObject>,
    ) -> Result<(), PackageError> {
        let (mut left_out, mut transcoded) = (Vec::new(), Vec::new());
        let no_hls = match self.store_hls(prefix, source, limits, manifest, done) {
            Ok(written) => {
                left_out = written.left_out;
                transcoded = written.transcoded;
                match self.read_back(manifest, limits) {
                    Ok(stored) => same_streams(&written.streams, &stored)
                        .err()
                        .map(NoHls::FailedCheck),
                    Err(e) if e.is_transient() => return Err(e),
                    Err(e) => Some(NoHls::FailedCheck(format!(
                        "the stored HLS did not read back: {e}"
                    ))),
                }
            }
            Err(PackageError::Media(MediaError::NotStreamable { codec, .. })) => {
                Some(NoHls::NotStreamable(format!("HLS cannot carry {codec}")))
            }
            Err(e) => return Err(e),
        };
        if let Some(no_hls) = no_hls {
            // Nothing is lost: the upload itself stays, sealed, and the manifest says why
            // there is no HLS rendition (a rendition that failed its check goes, and the
            // job ends `failed`).
            let hls: Vec<StoredObject> = manifest
                .init
                .take()
                .into_iter()
                .chain(manifest.segments.drain(..).map(|s| s.object))
                .chain(manifest.playlist.take())
                .collect();
            self.discard(&hls);
            done.retain(|o| !hls.iter().any(|h| h.key == o.key));
            manifest.segment_format = "none".into();
            let why = match no_hls {
                NoHls::NotStreamable(why) => {
                    manifest.not_streamable = Some(why.clone());
                    why
                }
                NoHls::FailedCheck(why) => {
                    tracing::error!(video = %manifest.video_id, "{why}");
                    manifest.failed_check = Some(format!("{why}; the original is kept"));
                    why
                }
            };
            manifest.original_because = Some(why);
        } else if !transcoded.is_empty() {
            // A re-encode is lossy: the upload itself is what was given.
            let what = transcoded.join(", ");
            manifest.original_because = Some(format!(
                "the HLS rendition is re-encoded ({what}); the original is kept as uploaded"
            ));
            manifest.transcoded = Some(what);
        } else if !left_out.is_empty() {
            // HLS plays the video and one audio track; the rest stays in the original.
            manifest.original_because = Some(format!(
                "the HLS rendition leaves out {}",
                left_out.join(", ")
            ));
        }
        if let Some(why) = &manifest.original_because {
            tracing::info!(video = %manifest.video_id, "keeping the original: {why}");
            let original = self.store_original(source, &format!("{prefix}original.sealed"))?;
            done.push(original.clone());
            manifest.original = Some(original);
        }
        let body =
            serde_json::to_vec_pretty(&manifest).map_err(|e| PackageError::Other(e.to_string()))?;
        done.push(self.put(&manifest.manifest_key, &body)?);
        Ok(())
    }

    /// Segments `source` into fMP4, sealing and storing each piece as it comes, and the
    /// playlist last. Returns what went in, per stream, and what was left out.
    fn store_hls(
        &self,
        prefix: &str,
        source: &MediaSource,
        limits: &Limits,
        manifest: &mut Manifest,
        done: &mut Vec<StoredObject>,
    ) -> Result<Segmented, PackageError> {
        // A store or catalog failure inside the segmenter's callback keeps its type, so
        // that it is retried rather than taken for bad media.
        let mut sealing_failed: Option<PackageError> = None;
        let written = segment(
            source,
            self.segment_seconds,
            limits,
            self.transcode,
            |piece| {
                let (key, data) = match &piece {
                    Piece::Init(data) => (format!("{prefix}init.mp4.sealed"), data),
                    Piece::Media(seg) => (
                        format!("{prefix}seg-{:05}.m4s.sealed", seg.index),
                        &seg.data,
                    ),
                };
                let object = self.put(&key, data).map_err(|e| {
                    let shown = e.to_string();
                    sealing_failed = Some(e);
                    shown
                })?;
                done.push(object.clone());
                match piece {
                    Piece::Init(_) => manifest.init = Some(object),
                    Piece::Media(seg) => manifest.segments.push(StoredSegment {
                        index: seg.index,
                        start: seg.start,
                        duration: seg.duration,
                        object,
                    }),
                }
                Ok(())
            },
        )
        .map_err(|e| sealing_failed.take().unwrap_or(PackageError::Media(e)))?;
        let m3u8 = playlist(&written.segments, "init.mp4", |i| format!("seg-{i:05}.m4s"));
        let playlist = self.put(&format!("{prefix}playlist.m3u8.sealed"), m3u8.as_bytes())?;
        done.push(playlist.clone());
        manifest.playlist = Some(playlist);
        Ok(written)
    }

    /// Seals the source's bytes, as they are, as one object under `key`, streaming: the
    /// sealer runs on the runtime while this (blocking) thread reads the source.
    fn store_original(
        &self,
        source: &MediaSource,
        key: &str,
    ) -> Result<StoredObject, PackageError> {
        let (mut tx, rx) = tokio::io::duplex(1 << 16);
        let sealing = {
            let (vault, store) = (self.vault.clone(), self.store.clone());
            let (tmp, subject, key) = (
                self.tmp_dir.to_path_buf(),
                self.subject_hash.to_string(),
                key.to_string(),
            );
            self.handle.spawn(async move {
                seal_to_store(&vault, &*store, &tmp, &subject, &key, rx).await
            })
        };
        let fed: std::io::Result<()> = (|| {
            let mut reader = source.bytes()?;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    return self.handle.block_on(tx.shutdown());
                }
                self.handle.block_on(tx.write_all(&buf[..n]))?;
            }
        })();
        drop(tx);
        let sealed = self
            .handle
            .block_on(sealing)
            .map_err(|e| PackageError::Other(format!("sealing the original: {e}")))?;
        // The sealer's own error says more than the broken pipe the reader then sees.
        let (row, header) = sealed.map_err(|e| PackageError::Other(e.to_string()))?;
        if let Err(e) = fed {
            let forget = self.vault.forget(&row.object_id);
            let _ = self
                .handle
                .block_on(async { (self.store.delete(key).await, forget.await) });
            return Err(PackageError::Media(MediaError::Io {
                path: source.name().to_string(),
                source: e,
            }));
        }
        Ok(stored_object(key, &row, &header))
    }
}

/// Why a video has no HLS rendition.
enum NoHls {
    /// HLS cannot carry a codec of the upload (and transcoding is off).
    NotStreamable(String),
    /// The stored rendition did not read back as it was written.
    FailedCheck(String),
}

/// Whether what was read back of a stored rendition is what was written into it: the
/// same streams, in order, with the same codecs and packet (frame) counts.
fn same_streams(written: &[StreamCount], stored: &[StreamCount]) -> Result<(), String> {
    if written == stored {
        return Ok(());
    }
    Err(format!(
        "the stored HLS did not read back as written ({} instead of {})",
        shown(stored),
        shown(written)
    ))
}

/// `h264 × 40, aac × 95` for messages.
fn shown(streams: &[StreamCount]) -> String {
    let parts: Vec<String> = streams
        .iter()
        .map(|s| format!("{} × {}", s.codec, s.packets))
        .collect();
    parts.join(", ")
}
