//! One job's trip, top-down, in the order its data flows. Start here.
//!
//! A worker has claimed the job (see [`super::worker`]); the claim's attempt number is
//! the fencing token every write below carries.
//!
//! 0. **Fence**: whatever earlier, fenced-off attempts stored goes ([`super::cleanup`]).
//! 1. **Ingest**: open the job's source as a reader FFmpeg can use ([`super::ingest`]).
//! 2. **Probe, sample, classify, judge**: [`crate::scan::scan_file`] probes the
//!    container, samples frames ([`crate::media::Sampler`]: keyframes, a minimum rate, a
//!    maximum gap), runs the three models on them in batches ([`crate::inference`]), and
//!    applies the policy ([`crate::policy`]) to get a verdict with reasons.
//! 3. **Segment, seal, store, read back**: [`crate::package`] cuts fMP4 HLS segments in
//!    memory, seals each one, the playlist and a manifest under the data subject's key,
//!    stores them under the attempt's own prefix, and reads them back to check every
//!    packet arrived; where HLS cannot carry the video, it keeps the sealed original.
//! 4. **Record**: the result or the failure goes into the catalog with its webhook, in
//!    one transaction ([`super::record`]).
//!
//! Steps 2 and 3 run on a blocking thread while the lease is held ([`super::lease`]); a
//! cancellation, an erasure or a lost lease stops them at their next read.

use std::sync::Arc;

use crate::catalog::{ClaimedJob, ConsentState};
use crate::domain::{JobSource, JobState, Manifest};
use crate::inference::Classifier;
use crate::package::StoreTarget;
use crate::queue::Settle;
use crate::report::ScanReport;
use crate::scan::scan_file;
use crate::service::Service;

use super::cleanup::remove_earlier_attempts;
use super::failure::Failure;
use super::lease::{self, Signals};
use super::{ingest, record};

/// Runs one claimed attempt to its recorded end. Returns the state recorded (`None` if
/// nothing was) and hands the classifier back for the next job.
pub async fn run(
    svc: &Arc<Service>,
    job: &ClaimedJob,
    classifier: Option<Classifier>,
    settle: &dyn Settle,
) -> (Option<JobState>, Option<Classifier>) {
    let signals = Signals::default();
    let (outcome, classifier) = attempt(svc, job, classifier, settle, &signals).await;
    if signals.lost() {
        tracing::info!(video = %job.video.id, attempt = job.attempt, "lost the claim");
        record::remove_own(svc, job).await;
        return (None, classifier);
    }
    let state = match outcome {
        Ok((report, manifest)) => record::done(svc, job, &report, &manifest).await,
        Err(failure) => record::failed(svc, job, failure).await,
    };
    (state, classifier)
}

type Outcome = Result<(ScanReport, Manifest), Failure>;

/// Why a subject's consent does not allow processing, for the job's error.
fn consent_refusal(state: ConsentState) -> String {
    match state {
        ConsentState::Revoked { at } => crate::consent::ConsentError::Revoked { at }.to_string(),
        ConsentState::Lapsed { at } => crate::consent::ConsentError::Lapsed { at }.to_string(),
        _ => crate::consent::ConsentError::NoConsent.to_string(),
    }
}

async fn attempt(
    svc: &Arc<Service>,
    job: &ClaimedJob,
    classifier: Option<Classifier>,
    settle: &dyn Settle,
    signals: &Signals,
) -> (Outcome, Option<Classifier>) {
    // 0. Fence.
    if let Err(e) = remove_earlier_attempts(svc, &job.video.id, job.attempt).await {
        return (Err(Failure::transient(e)), classifier);
    }
    // 0b. Consent: nothing of a subject whose consent was revoked or has expired is
    // processed (an upload that raced a revocation ends here).
    match svc.catalog().consent_state(&job.video.subject_hash).await {
        Ok(ConsentState::Live { .. }) => {}
        Ok(state) => {
            let refused =
                Failure::Permanent(format!("no live consent: {}", consent_refusal(state)));
            return (Err(refused), classifier);
        }
        Err(e) => return (Err(Failure::transient(e)), classifier),
    }
    // 1. Ingest.
    let source: JobSource = match serde_json::from_str(&job.video.source) {
        Ok(s) => s,
        Err(e) => {
            let bad = Failure::Permanent(format!("bad job source: {e}"));
            return (Err(bad), classifier);
        }
    };
    let media = match ingest::open(svc, &source, signals).await {
        Ok(m) => m,
        Err(f) => return (Err(f), classifier),
    };
    // 2 and 3, off the async runtime, under the lease.
    let work = {
        let (svc, job, signals) = (svc.clone(), job.clone(), signals.clone());
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let mut classifier = match classifier {
                Some(c) => c,
                None => match Classifier::load(&svc.config.inference) {
                    Ok(c) => c,
                    Err(e) => return (Err(Failure::transient(format!("models: {e}"))), None),
                },
            };
            // 2. Probe, sample, classify, judge: the first 80% of the progress.
            let on_progress = |t: f64, end: f64| {
                let done = if end > 0.0 {
                    (t / end).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                signals.set_progress(done * 0.8);
            };
            let config = &svc.config;
            let scanned = scan_file(&media, &mut classifier, config, &svc.policy, &on_progress);
            // 3. Segment, seal, store, read back.
            let outcome = scanned.map_err(Failure::from).and_then(|report| {
                let target = StoreTarget {
                    handle: &handle,
                    vault: &svc.vault,
                    store: &svc.store,
                    tmp_dir: &svc.tmp_dir,
                    subject_hash: &job.video.subject_hash,
                    segment_seconds: config.server.segment_seconds,
                    transcode: config.server.transcode,
                    attempt: job.attempt,
                };
                let stored = target.store_video(&job.video.id, &media, &report, &config.limits);
                Ok((report, stored?))
            });
            (outcome, Some(classifier))
        })
    };
    let (outcome, classifier) = match lease::hold(svc, job, settle, signals, work).await {
        Ok(pair) => pair,
        Err(f) => (Err(f), None),
    };
    // A read that failed because the attempt was stopped is the stop, not bad media; a
    // media error caused by the source's own I/O is worth a retry.
    let outcome = outcome.map_err(|f| match f {
        _ if signals.cancelled() => Failure::Cancelled,
        Failure::Permanent(e) if signals.io_failed() => Failure::Transient(e),
        f => f,
    });
    (outcome, classifier)
}
