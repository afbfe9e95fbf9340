//! How an attempt that produced no result ended, and what becomes of the job. The typed
//! errors of each stage decide, where they arise, whether a retry can help.

use std::time::Duration;

use crate::domain::JobState;
use crate::package::PackageError;
use crate::scan::ScanError;

/// How an attempt ended without a result.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// The input itself is bad: retrying cannot help.
    Permanent(String),
    /// Store, catalog or I/O trouble: worth retrying.
    Transient(String),
    Cancelled,
    /// Another attempt holds the job now; record nothing.
    LostClaim,
}

impl Failure {
    pub fn transient(e: impl std::fmt::Display) -> Self {
        Failure::Transient(e.to_string())
    }

    /// The state the job moves to, the error it records, and the delay before the next
    /// attempt; `None` for a lost claim (another attempt decides).
    ///
    /// A permanent failure records its cause: it is about the input, which its owner
    /// sent. A transient one records [`SERVER_TROUBLE`]: its cause (a store's, catalog's
    /// or source's error) can name internal hosts and paths, and the owner reads the
    /// record and the webhook. The caller logs the cause.
    pub fn end(self, attempt: i64, max_attempts: i64, retry_base: f64) -> Option<End> {
        let (state, error, retry_in) = match self {
            Failure::Permanent(e) => (JobState::Failed, e, Duration::ZERO),
            Failure::Cancelled => (JobState::Cancelled, "cancelled".into(), Duration::ZERO),
            Failure::Transient(_) if attempt >= max_attempts => (
                JobState::Dead,
                format!("gave up after {attempt} attempts: {SERVER_TROUBLE}"),
                Duration::ZERO,
            ),
            Failure::Transient(_) => (
                JobState::Queued,
                SERVER_TROUBLE.into(),
                retry_delay(retry_base, attempt),
            ),
            Failure::LostClaim => return None,
        };
        Some(End {
            state,
            error,
            retry_in,
        })
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Permanent(e) | Failure::Transient(e) => f.write_str(e),
            Failure::Cancelled => f.write_str("cancelled"),
            Failure::LostClaim => f.write_str("another attempt holds the job"),
        }
    }
}

/// What a job records for an attempt that failed on the server's side.
pub const SERVER_TROUBLE: &str = "the server could not finish the attempt (store, catalog or source unavailable; its log has the cause)";

/// What an attempt's failure does to its job.
#[derive(Debug, PartialEq)]
pub struct End {
    pub state: JobState,
    pub error: String,
    pub retry_in: Duration,
}

/// Exponential backoff: `base`, 2 `base`, 4 `base`, ... (capped at 512 `base`).
pub fn retry_delay(base_seconds: f64, attempt: i64) -> Duration {
    Duration::from_secs_f64(base_seconds * f64::from(1u32 << (attempt.clamp(1, 10) - 1)))
}

impl From<ScanError> for Failure {
    fn from(e: ScanError) -> Self {
        match e {
            ScanError::Media(m) if !m.is_transient() => Failure::Permanent(m.to_string()),
            e => Failure::transient(e),
        }
    }
}

impl From<PackageError> for Failure {
    fn from(e: PackageError) -> Self {
        if e.is_transient() {
            Failure::transient(e)
        } else {
            Failure::Permanent(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_failures_retry_with_backoff_until_the_last_attempt() {
        let end = Failure::transient("store down").end(2, 3, 1.0).unwrap();
        assert_eq!(end.state, JobState::Queued);
        assert_eq!(end.retry_in, Duration::from_secs(2));
        let end = Failure::transient("store down").end(3, 3, 1.0).unwrap();
        assert_eq!(end.state, JobState::Dead);
        assert!(
            end.error.contains("gave up after 3 attempts"),
            "{}",
            end.error
        );
        assert!(
            !end.error.contains("store down"),
            "the cause is for the log"
        );
        let end = Failure::Permanent("not a video".into())
            .end(1, 3, 1.0)
            .unwrap();
        assert_eq!(
            (end.state, end.retry_in),
            (JobState::Failed, Duration::ZERO)
        );
        assert_eq!(
            Failure::Cancelled.end(1, 3, 1.0).unwrap().state,
            JobState::Cancelled
        );
        assert_eq!(Failure::LostClaim.end(1, 3, 1.0), None);
        assert_eq!(retry_delay(0.5, 40), Duration::from_secs(256));
    }
}
