//! Record, the last stage of a job: its outcome goes into the catalog in one transaction
//! with the webhook it causes, fenced by the attempt number, so exactly one attempt's
//! outcome is ever recorded. Whatever an attempt stored that is not recorded is removed.

use crate::catalog::{AttemptEnd, ClaimedJob, Completion};
use crate::domain::{JobSource, JobState, Manifest, UploadState, video_ended};
use crate::report::ScanReport;
use crate::service::Service;

use super::cleanup::{close_upload, remove_attempt};
use super::failure::Failure;

/// Records a finished attempt's result; returns `Done` (or `Failed`, see
/// [`Manifest::failed_check`]), or `None` if the result was
/// refused (the job moved on: cancelled, erased, taken over) or could not be recorded.
pub async fn done(
    svc: &Service,
    job: &ClaimedJob,
    report: &ScanReport,
    manifest: &Manifest,
) -> Option<JobState> {
    let id = &job.video.id;
    let verdict = report.verdict.as_str();
    let (report_json, manifest_json) = match (
        serde_json::to_string(report),
        serde_json::to_string(manifest),
    ) {
        (Ok(r), Ok(m)) => (r, m),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(video = %id, "serialising the result: {e}");
            remove_own(svc, job).await;
            return None;
        }
    };
    // A rendition that failed its read-back check ends the job `failed` (with the
    // verdict, and the original kept): never a silent `done` with less than was given.
    let failed_check = manifest.failed_check.as_deref();
    let state = match failed_check {
        None => JobState::Done,
        Some(_) => JobState::Failed,
    };
    let event = video_ended(
        id,
        job.video.callback_url.as_deref(),
        state,
        Some(verdict),
        Some(&report_json),
        failed_check,
    );
    // Probable minor together with blocked content is evidence: it must not be erased
    // until a privacy officer releases it.
    let hold = (report.verdict == crate::policy::Action::Block && report.escalate)
        .then(|| format!("video {id} was blocked and escalated"));
    let result = Completion {
        verdict,
        report: &report_json,
        manifest: &manifest_json,
        failed_check,
        hold: hold.as_deref(),
    };
    crate::failpoint::hit("before-complete");
    let completed = svc
        .catalog()
        .complete(id, job.attempt, &result, event.as_ref())
        .await;
    match completed {
        Ok(true) => {
            crate::failpoint::hit("after-complete");
            tracing::info!(video = %id, verdict, state = state.as_str(), "job ended");
            finish_source(svc, job).await;
            Some(state)
        }
        Ok(false) => {
            tracing::info!(video = %id, "result refused: the job moved on");
            remove_own(svc, job).await;
            None
        }
        Err(e) => {
            // Whether it committed is unknown: the objects stay until the reaper decides
            // from the catalog whether they are referenced.
            tracing::warn!(video = %id, "recording result: {e}");
            None
        }
    }
}

/// Records a failed attempt; returns the state the job is now in (`Queued` for a retry),
/// or `None` if nothing was recorded.
pub async fn failed(svc: &Service, job: &ClaimedJob, failure: Failure) -> Option<JobState> {
    let id = &job.video.id;
    remove_own(svc, job).await;
    let server = &svc.config.server;
    let cause = failure.to_string();
    let end = failure.end(
        job.attempt,
        job.video.max_attempts,
        server.retry_base_seconds,
    )?;
    tracing::info!(video = %id, attempt = job.attempt, state = end.state.as_str(), "job ended: {cause}");
    let event = match end.state {
        JobState::Queued => None,
        state => video_ended(
            id,
            job.video.callback_url.as_deref(),
            state,
            None,
            None,
            Some(&end.error),
        ),
    };
    let row = AttemptEnd {
        state: end.state,
        error: &end.error,
        retry_in_ms: end.retry_in.as_millis() as i64,
    };
    match svc
        .catalog()
        .fail(id, job.attempt, &row, event.as_ref())
        .await
    {
        Ok(true) => {
            if end.state.is_final() {
                finish_source(svc, job).await;
            }
            Some(end.state)
        }
        Ok(false) => None,
        Err(e) => {
            tracing::warn!(video = %id, "recording failure: {e}");
            None
        }
    }
}

/// Removes this attempt's own objects (never another attempt's).
pub async fn remove_own(svc: &Service, job: &ClaimedJob) {
    if let Err(e) = remove_attempt(svc, &job.video.id, job.attempt).await {
        tracing::warn!(video = %job.video.id, "removing the attempt's objects (the reaper retries): {e}");
    }
}

/// The job's staged upload is no longer needed: end it and shred its parts.
async fn finish_source(svc: &Service, job: &ClaimedJob) {
    let Ok(JobSource::Upload { upload_id }) = serde_json::from_str(&job.video.source) else {
        return;
    };
    let from = [UploadState::Complete];
    if let Err(e) = close_upload(svc, &upload_id, &from, UploadState::Consumed).await {
        tracing::warn!(upload = %upload_id, "discarding staged upload (the reaper sweeps it): {e}");
    }
}
