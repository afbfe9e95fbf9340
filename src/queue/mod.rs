//! Job queues: how a worker learns that a job may be run.
//!
//! The queue only carries video ids; the job itself (source, attempts, state) lives in
//! the catalog, and a worker claims it there before running it (see
//! [`crate::catalog::Catalog::claim`]). A queue may therefore deliver a job twice, or
//! after it finished: the claim turns that into a no-op. Embedded mode uses
//! [`LocalQueue`], which is the catalog itself polled for due jobs.

mod local;
mod nats;

use std::time::Duration;

use async_trait::async_trait;

pub use local::LocalQueue;
pub use nats::{NatsQueue, NatsSettings};

/// A job message on the queue (JSON; docs/api.md). The API publishes only `id` (the job
/// is recorded already); other producers publish `source` and `consent` too.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobMessage {
    /// Video id, 32 hex digits: the idempotency key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<crate::domain::JobSource>,
    /// The data subject's consent token (JWT), as `Vcw-Consent` carries it on upload:
    /// verified and recorded on receipt; its subject is hashed, never stored raw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue: {0}")]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error("queue {endpoint}: {detail}")]
    Broker { endpoint: String, detail: String },
}

/// One delivery of a job id, to be settled with the queue once handled.
pub struct Message {
    pub video_id: String,
    /// The message's job, when the queue carries one (the local queue does not).
    pub job: Option<JobMessage>,
    pub settle: Box<dyn Settle>,
}

/// Settling a delivery with the broker (no-ops for the local queue, whose state is in the
/// catalog).
#[async_trait]
pub trait Settle: Send + Sync {
    /// Handled (done, failed for good, or a stale redelivery): never deliver again.
    async fn ack(&self);
    /// Deliver again after `delay` (a retry with backoff, or a job another worker holds).
    async fn retry_after(&self, delay: Duration);
    /// Still working: extends the broker's ack deadline for long jobs.
    async fn in_progress(&self);
}

#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Announces a job whose catalog row exists.
    async fn publish(&self, video_id: &str) -> Result<(), QueueError>;
    /// The next job to try, waiting at most `wait`.
    async fn next(&self, wait: Duration) -> Result<Option<Message>, QueueError>;
    /// Readiness: the queue answers.
    async fn check(&self) -> Result<(), QueueError>;
    fn describe(&self) -> String;
}
