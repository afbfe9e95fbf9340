//! The embedded queue: due jobs are found in the catalog (durable across restarts, with
//! crashed workers' jobs coming back when their lease expires); a notification wakes idle
//! workers as soon as a job is published.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{JobQueue, Message, QueueError, Settle};
use crate::catalog::Catalog;

pub struct LocalQueue {
    catalog: Catalog,
    notify: Notify,
}

impl LocalQueue {
    pub fn new(catalog: Catalog) -> Self {
        Self {
            catalog,
            notify: Notify::new(),
        }
    }
}

/// Retries and acknowledgements are recorded in the catalog by the worker.
struct NoSettle;

#[async_trait]
impl Settle for NoSettle {
    async fn ack(&self) {}
    async fn retry_after(&self, _: Duration) {}
    async fn in_progress(&self) {}
}

/// Longest sleep between catalog polls: bounds how late a retry (whose backoff expired
/// without any notification) or a crashed worker's job is picked up.
const POLL: Duration = Duration::from_millis(250);

#[async_trait]
impl JobQueue for LocalQueue {
    async fn publish(&self, _video_id: &str) -> Result<(), QueueError> {
        self.notify.notify_waiters();
        Ok(())
    }

    async fn next(&self, wait: Duration) -> Result<Option<Message>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(video_id) = self.catalog.next_due().await? {
                return Ok(Some(Message {
                    video_id,
                    job: None,
                    settle: Box::new(NoSettle),
                }));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let nap = POLL.min(deadline - now);
            let _ = tokio::time::timeout(nap, self.notify.notified()).await;
        }
    }

    async fn check(&self) -> Result<(), QueueError> {
        Ok(self.catalog.ping().await?)
    }

    fn describe(&self) -> String {
        "local (catalog)".into()
    }
}
