//! The reaper: finishes what crashed or vanished processes left, on a timer, in every
//! process that runs workers (embedded and cluster alike; any number may run at once,
//! since every step it takes is a fenced catalog transaction or idempotent cleanup).
//!
//! Each pass:
//! 1. **Expired leases.** A running job whose lease ran out (its worker died, hangs, or
//!    lost the catalog) is requeued and announced again, or declared `dead` after
//!    `server.max_attempts`; a cancelled one becomes `cancelled`. Its attempt's objects
//!    are removed, and the webhook is written with the state change.
//! 2. **Stale uploads.** Uploads left `receiving` longer than
//!    `server.upload_expiry_seconds` become `expired`; their staged parts are shredded.
//! 3. **Unfinished work**: staged uploads of videos that ended are discarded, and
//!    interrupted erasures (of videos and of subjects) are run again to the end;
//!    consent that lapsed gets its `expire` event in the ledger, and a subject whose
//!    consent lapsed `consent.erase_after_lapse_days` ago is erased (unless held).
//! 4. **Orphans** (every `server.orphan_sweep_seconds`): store objects no catalog row
//!    references, older than `server.orphan_grace_seconds` (staged parts without an
//!    upload, objects of attempts that can never be recorded, objects of erased or
//!    unknown videos), walked as a stream so a store of any size costs constant memory;
//!    the temp files of store writes a crash interrupted, untouched for the same grace;
//!    and the temporary directories of cluster processes that are gone (this process's
//!    own staging files are removed at its start, never while it runs).
//!
//! 5. **Audit trail** (every `audit.checkpoint_seconds`): a signed checkpoint of the
//!    chain's head; redaction and pruning of old records.
//!
//! What it did is logged and counted (`vcw_reaper_actions_total`, by action).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::TryStreamExt as _;

use crate::catalog::{AttemptEnd, VideoRow};
use crate::domain::attempt_of;
use crate::domain::{JobState, UploadState};
use crate::domain::{OutboxEvent, video_ended};
use crate::jobs::cleanup::{
    CleanupError, close_upload, erase_subject, erase_video, remove_attempt,
};
use crate::metrics::reaper;
use crate::service::Service;

/// Runs passes every `server.reaper_seconds` until `stop` turns true.
pub async fn run(svc: Arc<Service>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let every = Duration::from_secs_f64(svc.config.server.reaper_seconds);
    let sweep_every = Duration::from_secs_f64(svc.config.server.orphan_sweep_seconds);
    let audit_every = Duration::from_secs_f64(svc.config.audit.checkpoint_seconds);
    let mut last_sweep: Option<Instant> = None;
    let mut last_audit = Instant::now();
    loop {
        let sweep = last_sweep.is_none_or(|t| t.elapsed() >= sweep_every);
        if sweep {
            last_sweep = Some(Instant::now());
        }
        if let Err(e) = pass(&svc, sweep).await {
            reaper("errors", 1);
            tracing::warn!("reaper: {e}");
        }
        if last_audit.elapsed() >= audit_every {
            last_audit = Instant::now();
            if let Err(e) = audit_maintenance(&svc).await {
                reaper("errors", 1);
                tracing::warn!("reaper: audit trail: {e}");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One pass; `sweep` includes the (costlier) orphan sweep.
pub async fn pass(svc: &Service, sweep: bool) -> Result<(), CleanupError> {
    reaper("passes", 1);
    for video in svc.catalog().expired_leases().await? {
        reap_lease(svc, &video).await?;
    }
    let expiry_ms = (svc.config.server.upload_expiry_seconds * 1000.0) as i64;
    for id in svc.catalog().stale_uploads(expiry_ms).await? {
        let from = [UploadState::Receiving];
        if let Some(parts) = close_upload(svc, &id, &from, UploadState::Expired).await? {
            tracing::info!(upload = %id, parts, "reaper: upload expired unfinished");
            reaper("uploads_expired", 1);
        }
    }
    for id in svc.catalog().finished_uploads().await? {
        let from = [UploadState::Complete];
        close_upload(svc, &id, &from, UploadState::Consumed).await?;
    }
    let lapsed = svc.catalog().record_expiries(100).await?;
    if lapsed > 0 {
        tracing::info!(subjects = lapsed, "reaper: recorded lapsed consent");
        reaper("consents_expired", lapsed);
    }
    let grace_ms = (svc.config.consent.erase_after_lapse_days * 86_400_000.0) as i64;
    let mut subjects = svc.catalog().unfinished_subject_erasures().await?;
    subjects.extend(svc.catalog().lapsed_for_erasure(grace_ms, 20).await?);
    for subject_hash in subjects {
        match erase_subject(svc, &subject_hash, "reaper").await {
            Ok(_) => {
                tracing::info!(subject = %crate::domain::audit::subject_prefix(&subject_hash), "reaper: erased a subject");
                reaper("subjects_erased", 1);
            }
            // A hold set after the erasure started, or on a lapsed subject: it waits.
            Err(CleanupError::Held(_)) => {}
            Err(e) => return Err(e),
        }
    }
    for video in svc.catalog().unfinished_erasures().await? {
        erase_video(svc, &video.id, "reaper", Duration::ZERO).await?;
        tracing::info!(video = %video.id, "reaper: finished an interrupted erasure");
        reaper("erasures_finished", 1);
    }
    if sweep {
        let n = sweep_orphans(svc).await?;
        reaper("orphans_swept", n);
        let grace = Duration::from_secs_f64(svc.config.server.orphan_grace_seconds);
        let n = sweep_temp_files(svc) + svc.store.sweep_incomplete(grace).await?;
        reaper("temp_files_removed", n);
    }
    Ok(())
}

/// Signs a checkpoint of the audit chain's head, then redacts and prunes old records
/// (`[audit]`); pruning stops at a signed checkpoint, which anchors what remains.
pub async fn audit_maintenance(svc: &Service) -> Result<(), CleanupError> {
    let Some(signer) = &svc.audit else {
        return Ok(());
    };
    let catalog = svc.catalog();
    if crate::audit::checkpoint(catalog, signer).await?.is_some() {
        reaper("audit_checkpoints", 1);
    }
    let day_ms = 86_400_000.0;
    let now = crate::domain::clock::now_ms();
    let config = &svc.config.audit;
    if config.redact_after_days > 0.0 {
        let before = now - (config.redact_after_days * day_ms) as i64;
        let n = catalog.redact_audit(before).await?;
        if n > 0 {
            tracing::info!(records = n, "reaper: redacted old audit records");
        }
    }
    let pruned = catalog
        .prune_audit(now - (config.retention_days * day_ms) as i64)
        .await?;
    if pruned > 0 {
        tracing::info!(
            records = pruned,
            "reaper: pruned audit records past retention"
        );
    }
    Ok(())
}

/// Ends or requeues one job whose lease expired.
async fn reap_lease(svc: &Service, video: &VideoRow) -> Result<(), CleanupError> {
    let attempt = video.attempts;
    let (state, error, counter) = if video.cancel_requested {
        (JobState::Cancelled, "cancelled".to_string(), "cancelled")
    } else if attempt >= video.max_attempts {
        let error = format!("gave up after {attempt} attempts: the worker's lease expired");
        (JobState::Dead, error, "dead")
    } else {
        let error = "the worker's lease expired; requeued".to_string();
        (JobState::Queued, error, "requeued")
    };
    let event = match state {
        JobState::Queued => Some(OutboxEvent::publish(&video.id, attempt)),
        _ => video_ended(
            &video.id,
            video.callback_url.as_deref(),
            state,
            None,
            None,
            Some(&error),
        ),
    };
    let end = AttemptEnd {
        state,
        error: &error,
        retry_in_ms: 0,
    };
    if !svc
        .catalog()
        .end_expired(&video.id, attempt, &end, event.as_ref())
        .await?
    {
        return Ok(()); // the worker renewed, or another reaper got there first
    }
    tracing::info!(video = %video.id, attempt, state = state.as_str(), "reaper: lease expired");
    reaper(counter, 1);
    remove_attempt(svc, &video.id, attempt).await?;
    if matches!(state, JobState::Cancelled | JobState::Dead)
        && let Ok(crate::domain::JobSource::Upload { upload_id }) =
            serde_json::from_str(&video.source)
    {
        let from = [UploadState::Complete];
        close_upload(svc, &upload_id, &from, UploadState::Consumed).await?;
    }
    Ok(())
}

/// Whether the object stored under `key` was sealed more than the grace period ago (or
/// has no catalog row at all, so nothing can open it).
async fn past_grace(svc: &Service, key: &str, grace_s: i64) -> Result<bool, CleanupError> {
    let location = format!("{}/{key}", svc.store.describe());
    let rows = svc.catalog().objects_located(&location).await?;
    let now = crate::domain::clock::unix_now();
    Ok(rows.iter().all(|r| r.created_at < now - grace_s))
}

/// Deletes store objects nothing references. Returns how many.
async fn sweep_orphans(svc: &Service) -> Result<u64, CleanupError> {
    let grace_s = svc.config.server.orphan_grace_seconds as i64;
    let catalog = svc.catalog();
    let mut swept = 0;
    let mut keys = svc.store.keys("staging/");
    while let Some(key) = keys.try_next().await? {
        if catalog.part_exists(&key).await? || !past_grace(svc, &key, grace_s).await? {
            continue;
        }
        forget_and_delete(svc, &key).await?;
        swept += 1;
    }
    // The video last looked up: a video's objects (tens of segments) are listed together
    // and cost one catalog query, not one each.
    let mut last: Option<(String, Option<VideoRow>)> = None;
    let mut keys = svc.store.keys("videos/");
    while let Some(key) = keys.try_next().await? {
        let id = key.strip_prefix("videos/").and_then(|k| k.split_once('/'));
        let video = match id {
            Some((id, _)) => {
                if last.as_ref().is_none_or(|(cached, _)| cached != id) {
                    last = Some((id.to_string(), catalog.video(id).await?));
                }
                last.as_ref().and_then(|(_, v)| v.as_ref())
            }
            None => None,
        };
        let referenced = match attempt_of(&key) {
            Some((_, attempt)) => video.is_some_and(|v| {
                // A recorded manifest references its attempt's objects whatever the
                // state (`failed` keeps the original of a rendition that failed its check).
                v.erased_at.is_none()
                    && v.attempts == attempt
                    && (v.state == JobState::Running || v.manifest.is_some())
            }),
            // Stored before objects were kept per attempt (`videos/{id}/seg-…`): kept
            // while its video is done and not erased.
            None => video.is_some_and(|v| v.erased_at.is_none() && v.state == JobState::Done),
        };
        if referenced || !past_grace(svc, &key, grace_s).await? {
            continue;
        }
        forget_and_delete(svc, &key).await?;
        swept += 1;
    }
    if swept > 0 {
        tracing::info!(objects = swept, "reaper: swept orphaned store objects");
    }
    Ok(swept)
}

/// Deletes an unreferenced object's bytes, then its catalog rows.
async fn forget_and_delete(svc: &Service, key: &str) -> Result<(), CleanupError> {
    svc.store.delete(key).await?;
    let location = format!("{}/{key}", svc.store.describe());
    for row in svc.catalog().objects_located(&location).await? {
        svc.vault.forget(&row.object_id).await?;
    }
    Ok(())
}

/// Removes the temporary directories of cluster processes that no longer run. Returns
/// how many went. This process's own staging files are never swept while it runs: each
/// is removed when its upload ends, and a crash's leftovers at the next start
/// ([`remove_old_parts`]); sweeping by age would delete the file of an upload that is
/// merely slow or paused.
fn sweep_temp_files(svc: &Service) -> u64 {
    let mut removed = 0;
    // Cluster processes keep theirs in the system temporary directory as `vcw-PID`.
    let per_process = svc
        .tmp_dir
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("vcw-"));
    if per_process
        && let Some(parent) = svc.tmp_dir.parent()
        && let Ok(entries) = std::fs::read_dir(parent)
    {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let gone = name
                .strip_prefix("vcw-")
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
            if gone && std::fs::remove_dir_all(entry.path()).is_ok() {
                removed += 1;
            }
        }
    }
    if removed > 0 {
        tracing::info!(removed, "reaper: removed stale temporary files");
    }
    removed
}

/// Removes `.vcw-part-*` files in `dir` not modified within `grace` (a live upload
/// writes to its file all the time). Returns how many.
pub fn remove_old_parts(dir: &Path, grace: Duration) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age >= grace);
        if old
            && entry
                .file_name()
                .to_string_lossy()
                .starts_with(".vcw-part-")
            && std::fs::remove_file(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}
