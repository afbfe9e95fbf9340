//! Removing what a video or an upload stored, for the worker (a failed or superseded
//! attempt), the API (erasure, tus termination) and the reaper (whatever a crash left).
//!
//! Every step here is idempotent, so the reaper can simply run it again after a crash
//! midway: the catalog change that decides the outcome comes first (one transaction),
//! deleting bytes and shredding keys follows.

use std::time::{Duration, Instant};

use crate::audit::SignedStatement;
use crate::catalog::{ErasureStart, Hold};
use crate::domain::{JobSource, JobState, UploadState, attempt_of, attempt_prefix, video_prefix};
use crate::service::Service;
use crate::staging::{StagingError, discard_parts};
use crate::storage::BlobStore;
use crate::vault::Vault;

#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error(transparent)]
    Staging(#[from] StagingError),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    Vault(#[from] crate::vault::VaultError),
    /// No audit signing key to sign an erasure's receipt with (`audit.signing_key`).
    #[error("no audit signing key to sign the erasure receipt (audit.signing_key)")]
    Unsigned,
    /// A legal hold suspends the erasure (the caller's to resolve, not a retry).
    #[error("a legal hold suspends erasure: {} (set by {} at {} ms)", .0.reason, .0.set_by, .0.set_at_ms)]
    Held(Hold),
}

/// Removes one attempt's objects (a failed attempt, or one that lost its claim).
pub async fn remove_attempt(
    svc: &Service,
    video_id: &str,
    attempt: i64,
) -> Result<(), CleanupError> {
    remove_objects(&svc.vault, &*svc.store, &attempt_prefix(video_id, attempt))
        .await
        .map(drop)
}

/// Removes the objects of every attempt before `attempt`: they can never be recorded
/// (the claim fenced them off), and a crash may have left them.
pub async fn remove_earlier_attempts(
    svc: &Service,
    video_id: &str,
    attempt: i64,
) -> Result<(), CleanupError> {
    let mut earlier: Vec<i64> = svc
        .store
        .list(&video_prefix(video_id))
        .await?
        .iter()
        .filter_map(|k| attempt_of(k).map(|(_, a)| a))
        .filter(|a| *a < attempt)
        .collect();
    earlier.sort_unstable();
    earlier.dedup();
    for a in earlier {
        remove_attempt(svc, video_id, a).await?;
    }
    Ok(())
}

/// Ends an upload (if it is in one of `from`) and deletes and shreds its staged parts.
/// Returns how many parts were discarded.
pub async fn close_upload(
    svc: &Service,
    upload_id: &str,
    from: &[UploadState],
    to: UploadState,
) -> Result<Option<usize>, CleanupError> {
    let Some(parts) = svc.catalog().close_upload(upload_id, from, to).await? else {
        return Ok(None);
    };
    discard_parts(&svc.vault, &*svc.store, &parts).await?;
    Ok(Some(parts.len()))
}

/// What an erasure removed.
#[derive(Debug, Default, serde::Serialize)]
pub struct Erasure {
    pub objects_shredded: usize,
    pub objects_deleted: usize,
}

/// Erases a video: stops its job first (and waits, at most `wait`, for the attempt to
/// notice), then crypto-shreds and deletes every object any attempt stored and the staged
/// upload, and finally drops the report and manifest. From the first step on the video
/// answers 410 and no attempt can record a result; an attempt still sealing afterwards
/// removes its own objects when its result is refused (or the reaper does, if it died).
pub async fn erase_video(
    svc: &Service,
    video_id: &str,
    actor: &str,
    wait: Duration,
) -> Result<Erasure, CleanupError> {
    let catalog = svc.catalog();
    let Some(mut video) = catalog
        .begin_erase(video_id, actor)
        .await?
        .map_err(CleanupError::Held)?
    else {
        return Ok(Erasure::default());
    };
    let deadline = Instant::now() + wait;
    while video.state == JobState::Running && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        match catalog.video(video_id).await? {
            Some(v) => video = v,
            None => break,
        }
    }
    let mut erasure = Erasure::default();
    let location = format!("{}/{}", svc.store.describe(), video_prefix(video_id));
    for row in catalog.objects_at(&location).await? {
        if let Ok(id) = <[u8; 16]>::try_from(row.object_id.as_slice())
            && svc.vault.shred_object(&id).await?.objects.len() == 1
        {
            erasure.objects_shredded += 1;
        }
    }
    crate::failpoint::hit("during-erase");
    let keys = svc.store.list(&video_prefix(video_id)).await?;
    for key in &keys {
        svc.store.delete(key).await?;
    }
    erasure.objects_deleted = keys.len();
    if let Ok(JobSource::Upload { upload_id }) = serde_json::from_str(&video.source) {
        let from = [UploadState::Receiving, UploadState::Complete];
        if let Some(n) = close_upload(svc, &upload_id, &from, UploadState::Erased).await? {
            erasure.objects_shredded += n;
        }
    }
    catalog.finish_erase(video_id).await?;
    Ok(erasure)
}

/// What a subject erasure destroyed, and when: the body of its signed receipt.
#[derive(Debug, serde::Serialize)]
pub struct SubjectErasure {
    /// The keyed hash of the subject (the subject itself is never stored).
    pub subject_hash: String,
    pub videos: Vec<String>,
    pub objects_shredded: usize,
    pub objects_deleted: usize,
    /// The subject key is destroyed: every object ever sealed for the subject, wherever
    /// a copy is, can no longer be decrypted (see docs/consent.md for backups).
    pub subject_key_shredded: bool,
    /// Keys of further objects of the subject destroyed with it (e.g. `vcw seal` ones).
    pub other_objects_shredded: usize,
    pub erased_at_ms: i64,
}

/// Erases a data subject: refused while a legal hold is active; otherwise every video of
/// the subject is erased (jobs stopped, objects shredded and deleted, reports dropped),
/// consent is revoked, and the subject key is crypto-shredded. Returns the receipt, signed
/// with the deployment's key and recorded. Idempotent: the reaper runs it again for an
/// erasure a crash interrupted.
pub async fn erase_subject(
    svc: &Service,
    subject_hash: &str,
    actor: &str,
) -> Result<SignedStatement, CleanupError> {
    let signer = svc.audit.as_ref().ok_or(CleanupError::Unsigned)?;
    let catalog = svc.catalog();
    let videos = match catalog.begin_subject_erasure(subject_hash, actor).await? {
        ErasureStart::Held(hold) => return Err(CleanupError::Held(hold)),
        ErasureStart::Started { videos } => videos,
    };
    if let Some(cache) = &svc.cache {
        cache.revoke(subject_hash);
    }
    let mut erased = SubjectErasure {
        subject_hash: subject_hash.to_string(),
        videos: videos.clone(),
        objects_shredded: 0,
        objects_deleted: 0,
        subject_key_shredded: false,
        other_objects_shredded: 0,
        erased_at_ms: 0,
    };
    for id in &videos {
        let e = erase_video(svc, id, actor, Duration::from_secs(10)).await?;
        erased.objects_shredded += e.objects_shredded;
        erased.objects_deleted += e.objects_deleted;
    }
    for upload_id in catalog.open_uploads_of(subject_hash).await? {
        let from = [UploadState::Receiving, UploadState::Complete];
        if let Some(n) = close_upload(svc, &upload_id, &from, UploadState::Erased).await? {
            erased.objects_shredded += n;
        }
    }
    crate::failpoint::hit("during-subject-erasure");
    let (_, others) = catalog.shred_subject(subject_hash).await?;
    // Destroyed now, or by the run a crash interrupted.
    erased.subject_key_shredded = catalog
        .subject_key(subject_hash)
        .await?
        .is_none_or(|k| k.wrapped.is_none());
    erased.other_objects_shredded = others.len();
    erased.erased_at_ms = catalog.now().await?;
    let body = serde_json::json!({ "erasure": erased });
    let receipt = signer.sign_statement(body);
    let text = serde_json::to_string(&receipt).unwrap_or_default();
    catalog.finish_subject_erasure(subject_hash, &text).await?;
    Ok(receipt)
}

/// Removes the objects stored under `prefix` (one attempt's, or a whole video's) and the
/// catalog rows of objects sealed for that location.
pub async fn remove_objects(
    vault: &Vault,
    store: &dyn BlobStore,
    prefix: &str,
) -> Result<usize, CleanupError> {
    let keys = store.list(prefix).await?;
    for key in &keys {
        store.delete(key).await?;
    }
    let location = format!("{}/{prefix}", store.describe());
    let rows = vault.catalog().objects_at(&location).await?;
    for row in &rows {
        vault.forget(&row.object_id).await?;
    }
    Ok(keys.len().max(rows.len()))
}
