//! The worker pool: take jobs from the queue, claim them in the catalog, run them off
//! the async runtime, and record exactly one outcome per job.
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

use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::catalog::{AttemptEnd, ClaimOutcome, ClaimedJob, JobState, UploadState};
use crate::cleanup::{close_upload, remove_attempt, remove_earlier_attempts};
use crate::events::video_ended;
use crate::inference::Classifier;
use crate::job::{JobError, JobSource, Manifest, StoreTarget};
use crate::media::{MediaSource, ReadSeek};
use crate::queue::{JobMessage, Message};
use crate::report::ScanReport;
use crate::scan::{ScanError, scan_file};
use crate::service::Service;
use crate::staging::{StagedParts, StoredObject, WindowedReader};
use crate::storage::open_store;

/// How an attempt ended.
#[derive(Debug)]
enum Failure {
    /// The input itself is bad: retrying cannot help.
    Permanent(String),
    /// Store, catalog or I/O trouble: worth retrying.
    Transient(String),
    Cancelled,
    /// Another attempt holds the job now; record nothing.
    LostClaim,
}

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
    let (outcome, classifier) = run_attempt(svc, &job, classifier, &*message.settle).await;
    let id = &job.video.id;
    let recorded = match outcome {
        Ok((report, manifest)) => record_result(svc, &job, &report, &manifest, slot).await,
        Err(Failure::LostClaim) => {
            tracing::info!(worker = slot, video = %id, attempt = job.attempt, "lost the claim");
            remove_own(svc, &job).await;
            None
        }
        Err(failure) => record_failure(svc, &job, failure).await,
    };
    match recorded {
        Some(JobState::Queued) => {
            let delay = retry_delay(svc, job.attempt);
            message.settle.retry_after(delay).await;
        }
        _ => message.settle.ack().await,
    }
    classifier
}

/// Records a finished attempt's result with its webhook (one transaction); returns the
/// state recorded, or None if the result was refused or could not be recorded.
async fn record_result(
    svc: &Service,
    job: &ClaimedJob,
    report: &ScanReport,
    manifest: &Manifest,
    slot: usize,
) -> Option<JobState> {
    let id = &job.video.id;
    let verdict = serde_json::to_value(report.verdict)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
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
    let event = video_ended(
        &job.video,
        JobState::Done,
        Some(&verdict),
        Some(&report_json),
        None,
    );
    crate::failpoint::hit("before-complete");
    match svc
        .catalog()
        .complete(
            id,
            job.attempt,
            &verdict,
            &report_json,
            &manifest_json,
            event.as_ref(),
        )
        .await
    {
        Ok(true) => {
            crate::failpoint::hit("after-complete");
            tracing::info!(worker = slot, video = %id, verdict, "job done");
            finish_source(svc, job).await;
            Some(JobState::Done)
        }
        Ok(false) => {
            // Cancelled, erased or taken over meanwhile: what this attempt stored goes.
            tracing::info!(worker = slot, video = %id, "result refused: the job moved on");
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

/// Removes this attempt's own objects (never another attempt's).
async fn remove_own(svc: &Service, job: &ClaimedJob) {
    if let Err(e) = remove_attempt(svc, &job.video.id, job.attempt).await {
        tracing::warn!(video = %job.video.id, "removing the attempt's objects (the reaper retries): {e}");
    }
}

/// Records a job that arrived whole on the queue (from another producer), once.
/// Refused (`Permanent`) if the message is malformed; `Transient` if the catalog failed.
async fn record_job(svc: &Service, id: &str, job: &JobMessage) -> Result<(), Failure> {
    let bad = |e: &str| Failure::Permanent(e.to_string());
    let id = crate::vault::parse_id(id)
        .map(|b| crate::vault::id_hex(&b))
        .ok_or_else(|| bad("id must be 32 hex digits"))?;
    let source = job.source.as_ref().ok_or_else(|| bad("no source"))?;
    let subject = job
        .subject
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("subject required"))?;
    let subject_hash = svc
        .vault
        .kms_subject_hash(subject)
        .map_err(|e| bad(&e.to_string()))?;
    let source = serde_json::to_string(source).map_err(|e| bad(&e.to_string()))?;
    svc.catalog()
        .insert_video(
            &crate::catalog::NewVideo {
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
        .map_err(|e| Failure::Transient(e.to_string()))?;
    Ok(())
}

fn retry_delay(svc: &Service, attempt: i64) -> Duration {
    let base = svc.config.server.retry_base_seconds;
    Duration::from_secs_f64(base * f64::from(1u32 << (attempt.clamp(1, 10) - 1)))
}

/// Records a failed attempt with its webhook (one transaction); returns the state the
/// job is now in.
async fn record_failure(svc: &Service, job: &ClaimedJob, failure: Failure) -> Option<JobState> {
    let id = &job.video.id;
    remove_own(svc, job).await;
    let (state, error, retry_ms) = match failure {
        Failure::Permanent(e) => (JobState::Failed, e, 0),
        Failure::Cancelled => (JobState::Cancelled, "cancelled".to_string(), 0),
        Failure::Transient(e) if job.attempt >= job.video.max_attempts => (
            JobState::Dead,
            format!("gave up after {} attempts: {e}", job.attempt),
            0,
        ),
        Failure::Transient(e) => (
            JobState::Queued,
            e,
            retry_delay(svc, job.attempt).as_millis() as i64,
        ),
        Failure::LostClaim => return None,
    };
    tracing::info!(video = %id, attempt = job.attempt, state = state.as_str(), "job ended: {error}");
    let event = match state {
        JobState::Queued => None,
        _ => video_ended(&job.video, state, None, None, Some(&error)),
    };
    let end = AttemptEnd {
        state,
        error: &error,
        retry_in_ms: retry_ms,
    };
    match svc
        .catalog()
        .fail(id, job.attempt, &end, event.as_ref())
        .await
    {
        Ok(true) => {
            if matches!(
                state,
                JobState::Failed | JobState::Cancelled | JobState::Dead
            ) {
                finish_source(svc, job).await;
            }
            Some(state)
        }
        Ok(false) => None,
        Err(e) => {
            tracing::warn!(video = %id, "recording failure: {e}");
            None
        }
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

/// A reader that fails once the job is cancelled, and remembers whether the underlying
/// reader failed (then a media error is really an I/O error, worth a retry).
struct Watched {
    inner: Box<dyn ReadSeek>,
    cancel: Arc<AtomicBool>,
    io_failed: Arc<AtomicBool>,
}

impl Watched {
    fn check<T>(&self, r: io::Result<T>) -> io::Result<T> {
        if r.is_err() {
            self.io_failed.store(true, Ordering::Relaxed);
        }
        r
    }
}

impl Read for Watched {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(io::Error::other("job cancelled"));
        }
        let r = self.inner.read(buf);
        self.check(r)
    }
}

impl Seek for Watched {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let r = self.inner.seek(to);
        self.check(r)
    }
}

/// Runs one claimed attempt with heartbeats; hands the classifier back.
async fn run_attempt(
    svc: &Arc<Service>,
    job: &ClaimedJob,
    classifier: Option<Classifier>,
    settle: &dyn crate::queue::Settle,
) -> (Result<(ScanReport, Manifest), Failure>, Option<Classifier>) {
    let id = job.video.id.clone();
    if let Err(e) = remove_earlier_attempts(svc, &id, job.attempt).await {
        return (Err(Failure::Transient(e.to_string())), classifier);
    }
    let source: JobSource = match serde_json::from_str(&job.video.source) {
        Ok(s) => s,
        Err(e) => {
            return (
                Err(Failure::Permanent(format!("bad job source: {e}"))),
                classifier,
            );
        }
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let io_failed = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0f64.to_bits()));
    let media = match open_source(svc, &source, &cancel, &io_failed).await {
        Ok(m) => m,
        Err(f) => return (Err(f), classifier),
    };

    let handle = tokio::runtime::Handle::current();
    let work = {
        let (svc, id, cancel, progress) =
            (svc.clone(), id.clone(), cancel.clone(), progress.clone());
        let subject_hash = job.video.subject_hash.clone();
        let attempt = job.attempt;
        tokio::task::spawn_blocking(move || {
            let mut classifier = match classifier {
                Some(c) => c,
                None => match Classifier::load(&svc.config.inference) {
                    Ok(c) => c,
                    Err(e) => return (Err(Failure::Transient(format!("models: {e}"))), None),
                },
            };
            let on_progress = |t: f64, end: f64| {
                // Scanning is the first 80%, segmenting and sealing the rest.
                let p = if end > 0.0 {
                    (t / end).clamp(0.0, 1.0) * 0.8
                } else {
                    0.0
                };
                progress.store(p.to_bits(), Ordering::Relaxed);
            };
            let report = scan_file(
                &media,
                &mut classifier,
                &svc.config,
                &svc.policy,
                &on_progress,
            );
            let result = report.map_err(scan_failure).and_then(|report| {
                let target = StoreTarget {
                    handle: &handle,
                    vault: &svc.vault,
                    store: &*svc.store,
                    subject_hash: &subject_hash,
                    segment_seconds: svc.config.server.segment_seconds,
                    attempt,
                };
                target
                    .store_video(&id, &media, &report, &svc.config.limits)
                    .map(|m| (report, m))
                    .map_err(job_failure)
            });
            let result = result.map_err(|f| {
                if cancel.load(Ordering::Relaxed) {
                    Failure::Cancelled
                } else {
                    f
                }
            });
            (result, Some(classifier))
        })
    };
    tokio::pin!(work);
    let beat = Duration::from_secs_f64((svc.config.server.lease_seconds / 3.0).max(0.05));
    let lease_ms = (svc.config.server.lease_seconds * 1000.0) as i64;
    let lease = Duration::from_millis(lease_ms as u64);
    let mut renewed = std::time::Instant::now();
    let mut lost = false;
    let joined = loop {
        tokio::select! {
            joined = &mut work => break joined,
            _ = tokio::time::sleep(beat), if !lost => {
                let p = f64::from_bits(progress.load(Ordering::Relaxed));
                match svc.catalog().heartbeat(&id, job.attempt, p, lease_ms).await {
                    Ok(Some(cancelled)) => {
                        renewed = std::time::Instant::now();
                        if cancelled { cancel.store(true, Ordering::Relaxed); }
                    }
                    Ok(None) => { lost = true; cancel.store(true, Ordering::Relaxed); }
                    Err(e) => {
                        tracing::warn!(video = %id, "heartbeat: {e}");
                        // Unrenewed for a whole lease: the reaper may have handed the job
                        // on already, so this attempt must stop.
                        if renewed.elapsed() >= lease {
                            lost = true;
                            cancel.store(true, Ordering::Relaxed);
                        }
                    }
                }
                settle.in_progress().await;
            }
        }
    };
    let (result, classifier) = match joined {
        Ok(pair) => pair,
        Err(e) => (
            Err(Failure::Transient(format!("worker panicked: {e}"))),
            None,
        ),
    };
    if lost {
        return (Err(Failure::LostClaim), classifier);
    }
    let result = result.map_err(|f| match f {
        Failure::Permanent(e) if io_failed.load(Ordering::Relaxed) => Failure::Transient(e),
        f => f,
    });
    (result, classifier)
}

/// The job's video as FFmpeg will read it: always through a reader (sealed staging is
/// decrypted in memory; S3 objects are read by ranged GETs), never a plaintext file.
async fn open_source(
    svc: &Arc<Service>,
    source: &JobSource,
    cancel: &Arc<AtomicBool>,
    io_failed: &Arc<AtomicBool>,
) -> Result<MediaSource, Failure> {
    let handle = tokio::runtime::Handle::current();
    let transient = |e: &dyn std::fmt::Display| Failure::Transient(e.to_string());
    let (name, len, open): (String, u64, crate::media::OpenReader) = match source {
        JobSource::Upload { upload_id } => {
            let catalog = svc.catalog();
            let upload = catalog
                .upload(upload_id)
                .await
                .map_err(|e| transient(&e))?
                .ok_or_else(|| Failure::Permanent(format!("upload {upload_id} does not exist")))?;
            if upload.state != UploadState::Complete {
                return Err(Failure::Permanent(format!(
                    "upload {upload_id} is {} ({} of {} bytes)",
                    upload.state.as_str(),
                    upload.received,
                    upload.length
                )));
            }
            let parts = catalog
                .upload_parts(upload_id)
                .await
                .map_err(|e| transient(&e))?;
            let (vault, store) = (svc.vault.clone(), svc.store.clone());
            let len = parts.iter().map(|p| p.len.max(0) as u64).sum();
            let open: crate::media::OpenReader = Arc::new(move || {
                Ok(Box::new(WindowedReader::new(StagedParts::new(
                    handle.clone(),
                    vault.clone(),
                    store.clone(),
                    parts.clone(),
                ))) as Box<dyn ReadSeek>)
            });
            (format!("upload {upload_id}"), len, open)
        }
        JobSource::S3 { url } => {
            let (bucket_uri, key) = split_s3_url(url)
                .ok_or_else(|| Failure::Permanent(format!("{url}: expected s3://BUCKET/KEY")))?;
            let store: Arc<dyn crate::storage::BlobStore> =
                Arc::from(open_store(&bucket_uri, &svc.config.s3).map_err(|e| transient(&e))?);
            let len = match store.len(&key).await {
                Ok(n) => n,
                Err(crate::storage::StorageError::NotFound { .. }) => {
                    return Err(Failure::Permanent(format!("{url}: no such object")));
                }
                Err(e) => return Err(transient(&e)),
            };
            let open: crate::media::OpenReader = Arc::new(move || {
                Ok(Box::new(WindowedReader::new(StoredObject {
                    handle: handle.clone(),
                    store: store.clone(),
                    key: key.clone(),
                    len,
                })) as Box<dyn ReadSeek>)
            });
            (url.clone(), len, open)
        }
    };
    let (cancel, io_failed) = (cancel.clone(), io_failed.clone());
    let watched: crate::media::OpenReader = Arc::new(move || {
        Ok(Box::new(Watched {
            inner: open()?,
            cancel: cancel.clone(),
            io_failed: io_failed.clone(),
        }) as Box<dyn ReadSeek>)
    });
    Ok(MediaSource::reader(name, len, watched))
}

/// `s3://bucket/key/with/slashes` -> (`s3://bucket`, `key/with/slashes`).
fn split_s3_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then(|| (format!("s3://{bucket}"), key.to_string()))
}

fn scan_failure(e: ScanError) -> Failure {
    match e {
        ScanError::Media(m) if !m.is_transient() => Failure::Permanent(m.to_string()),
        e => Failure::Transient(e.to_string()),
    }
}

fn job_failure(e: JobError) -> Failure {
    if e.is_transient() {
        Failure::Transient(e.to_string())
    } else {
        Failure::Permanent(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_split_into_bucket_and_key() {
        assert_eq!(
            split_s3_url("s3://b/dir/v.mp4"),
            Some(("s3://b".into(), "dir/v.mp4".into()))
        );
        assert_eq!(split_s3_url("s3://b"), None);
        assert_eq!(split_s3_url("s3:///k"), None);
        assert_eq!(split_s3_url("http://b/k"), None);
    }
}
