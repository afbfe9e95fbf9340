//! Holding a job's lease while its attempt runs (docs/jobs.md, "Leases and fencing").
//!
//! Every `lease_seconds / 3` the holder renews the lease in the catalog (whose clock
//! decides when it expires) and reports progress. A renewal also brings news back: a
//! cancellation, or that the claim is gone. Either raises [`Signals::cancel`], and the
//! attempt stops at its next read. A holder that cannot renew for a whole lease period
//! stops too: by then the reaper may have handed the job to another worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::catalog::ClaimedJob;
use crate::queue::Settle;
use crate::service::Service;

use super::failure::Failure;

/// Shared between the lease holder and the attempt's blocking thread.
#[derive(Clone, Default)]
pub struct Signals {
    /// Raised to stop the attempt: cancelled, erased, or the lease is lost.
    pub cancel: Arc<AtomicBool>,
    /// Raised when reading the source failed: a media error is then really an I/O
    /// error, worth a retry.
    pub io_failed: Arc<AtomicBool>,
    /// Raised when the lease is lost: nothing of this attempt may be recorded.
    lost: Arc<AtomicBool>,
    /// Progress 0..1, as f64 bits.
    progress: Arc<AtomicU64>,
}

impl Signals {
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    pub fn io_failed(&self) -> bool {
        self.io_failed.load(Ordering::Relaxed)
    }

    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    fn lose(&self) {
        self.lost.store(true, Ordering::Relaxed);
        self.cancel.store(true, Ordering::Relaxed);
    }

    pub fn set_progress(&self, p: f64) {
        self.progress.store(p.to_bits(), Ordering::Relaxed);
    }

    fn progress(&self) -> f64 {
        f64::from_bits(self.progress.load(Ordering::Relaxed))
    }
}

/// Waits for `work` while holding the job's lease; if the lease is lost meanwhile,
/// [`Signals::lost`] says so and whatever `work` returned must not be recorded.
pub async fn hold<T>(
    svc: &Service,
    job: &ClaimedJob,
    settle: &dyn Settle,
    signals: &Signals,
    work: tokio::task::JoinHandle<T>,
) -> Result<T, Failure> {
    let id = &job.video.id;
    let lease_ms = (svc.config.server.lease_seconds * 1000.0) as i64;
    let lease = Duration::from_millis(lease_ms as u64);
    let beat = Duration::from_secs_f64((svc.config.server.lease_seconds / 3.0).max(0.05));
    let mut renewed = Instant::now();
    tokio::pin!(work);
    let joined = loop {
        tokio::select! {
            joined = &mut work => break joined,
            _ = tokio::time::sleep(beat), if !signals.lost() => {
                let renewal = svc.catalog().heartbeat(id, job.attempt, signals.progress(), lease_ms);
                match renewal.await {
                    Ok(Some(cancel_requested)) => {
                        renewed = Instant::now();
                        if cancel_requested {
                            signals.cancel.store(true, Ordering::Relaxed);
                        }
                    }
                    Ok(None) => signals.lose(),
                    Err(e) => {
                        tracing::warn!(video = %id, "heartbeat: {e}");
                        if renewed.elapsed() >= lease {
                            signals.lose();
                        }
                    }
                }
                settle.in_progress().await;
            }
        }
    };
    joined.map_err(|e| Failure::transient(format!("worker panicked: {e}")))
}
