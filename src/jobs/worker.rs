//! The worker pool: take jobs from the queue, claim them in the catalog, run each claimed
//! attempt through the [pipeline](super::pipeline), and settle the queue message.
//!
//! - Bounded concurrency: `server.workers` tasks, each with its own models loaded once.
//! - Heartbeats renew the job's lease and report progress; they also carry cancellation
//!   (and notice a lost claim) to the running job, which then stops at its next read.
//! - Bad input (not a video, corrupt, over a limit) fails the job at once; anything else
//!   (store, catalog, I/O) is retried with exponential backoff, and after
//!   `server.max_attempts` the job is dead.
//! - Each attempt stores under its own prefix. A new attempt first removes what earlier,
//!   fenced-off attempts stored; a result is recorded only by the attempt that holds the
//!   claim, in one transaction with its webhook; an attempt whose result is refused (it
//!   lost the claim, or the job was cancelled or erased) removes only its own objects.
//! - A worker that cannot renew its lease for a whole lease period stops the attempt:
//!   by then the reaper may have given the job to another worker.
//! - Drain: when `stop` turns true, workers take no new jobs and finish the ones they hold.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use tracing::Instrument;

use crate::catalog::{ClaimOutcome, Grant, NewVideo};
use crate::consent::ConsentError;
use crate::domain::{JobState, id_hex, parse_id};
use crate::inference::Classifier;
use crate::queue::{JobMessage, Message};
use crate::service::Service;

use super::failure::{Failure, retry_delay};
use super::pipeline;

/// Runs `workers` worker tasks until `stop` turns true and their jobs are done.
pub async fn run_pool(svc: Arc<Service>, stop: watch::Receiver<bool>) {
    let n = svc.config.server.workers;
    let mut tasks = Vec::with_capacity(n);
    for slot in 0..n {
        tasks.push(tokio::spawn(worker_loop(svc.clone(), stop.clone(), slot)));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn worker_loop(svc: Arc<Service>, stop: watch::Receiver<bool>, slot: usize) {
    let mut classifier: Option<Classifier> = None;
    while !*stop.borrow() {
        let message = match svc.queue.next(Duration::from_millis(500)).await {
            Ok(Some(m)) => m,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(worker = slot, "queue: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        classifier = handle(&svc, message, classifier, slot).await;
    }
}

/// Settles one delivery; hands the classifier back for the next job.
async fn handle(
    svc: &Arc<Service>,
    message: Message,
    classifier: Option<Classifier>,
    slot: usize,
) -> Option<Classifier> {
    let lease_ms = (svc.config.server.lease_seconds * 1000.0) as i64;
    if let Some(job) = message.job.as_ref().filter(|j| j.source.is_some()) {
        match record_job(svc, &message.video_id, job).await {
            Ok(()) => {}
            Err(Failure::Transient(e)) => {
                // The catalog is down: the message stays on the queue, nothing is lost.
                tracing::warn!(worker = slot, video = %message.video_id, "recording job message: {e}");
                message.settle.retry_after(Duration::from_secs(1)).await;
                return classifier;
            }
            Err(e) => {
                tracing::warn!(worker = slot, video = %message.video_id, "refusing job message: {e:?}");
                message.settle.ack().await;
                return classifier;
            }
        }
    }
    let claim = match svc.catalog().claim(&message.video_id, lease_ms).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(worker = slot, "claim: {e}");
            message.settle.retry_after(Duration::from_secs(1)).await;
            return classifier;
        }
    };
    let job = match claim {
        ClaimOutcome::Claimed(job) => job,
        ClaimOutcome::Finished | ClaimOutcome::Missing => {
            message.settle.ack().await;
            return classifier;
        }
        ClaimOutcome::Busy => {
            message
                .settle
                .retry_after(Duration::from_millis(lease_ms as u64))
                .await;
            return classifier;
        }
    };
    tracing::info!(worker = slot, video = %job.video.id, attempt = job.attempt, "job started");
    let started = std::time::Instant::now();
    // Every line the attempt logs carries the video id and attempt (never the subject).
    let span = tracing::info_span!("job", video = %job.video.id, attempt = job.attempt);
    let (recorded, classifier) = pipeline::run(svc, &job, classifier, &*message.settle)
        .instrument(span)
        .await;
    let ended = recorded.map_or("unrecorded", JobState::as_str);
    let m = crate::metrics::metrics();
    m.jobs_finished.with_label_values(&[ended]).inc();
    (m.job_duration.with_label_values(&[ended])).observe(started.elapsed().as_secs_f64());
    match recorded {
        Some(JobState::Queued) => {
            let base = svc.config.server.retry_base_seconds;
            message
                .settle
                .retry_after(retry_delay(base, job.attempt))
                .await;
        }
        _ => message.settle.ack().await,
    }
    classifier
}

/// Records a job that arrived whole on the queue (from another producer), once.
/// Refused (`Permanent`) if the message is malformed; `Transient` if the catalog failed.
async fn record_job(svc: &Service, id: &str, job: &JobMessage) -> Result<(), Failure> {
    let bad = |e: &str| Failure::Permanent(e.to_string());
    let id = parse_id(id)
        .map(|b| id_hex(&b))
        .ok_or_else(|| bad("id must be 32 hex digits"))?;
    let source = job.source.as_ref().ok_or_else(|| bad("no source"))?;
    let token = job
        .consent
        .as_deref()
        .ok_or_else(|| bad("consent (the subject's token) required"))?;
    let consent = svc
        .consent
        .verify(token, &svc.config.consent.purpose)
        .map_err(|e| bad(&e.to_string()))?;
    let claims = &consent.claims;
    let subject_hash = svc
        .vault
        .kms_subject_hash(&claims.sub)
        .map_err(|e| bad(&e.to_string()))?;
    if let Err(at) = svc
        .catalog()
        .record_consent(&Grant::of(claims, &subject_hash, "queue"))
        .await
        .map_err(Failure::transient)?
    {
        return Err(bad(&ConsentError::Revoked { at }.to_string()));
    }
    let source = serde_json::to_string(source).map_err(|e| bad(&e.to_string()))?;
    svc.catalog()
        .insert_video(
            &NewVideo {
                id: &id,
                subject_hash: &subject_hash,
                owner: "queue",
                source: &source,
                max_attempts: svc.config.server.max_attempts,
                callback_url: job.callback_url.as_deref(),
            },
            false,
        )
        .await
        .map_err(Failure::transient)?;
    Ok(())
}
