//! The outbox dispatcher: delivers every event a state change wrote to the outbox, at
//! least once, with the event id as the receiver's idempotency key.
//!
//! - `publish`: announce a video id on the job queue. A failed publish (the broker is
//!   down) is retried until it goes through: a job is never lost between the catalog and
//!   the queue. The API also publishes right after its commit ([`publish_now`]), so the
//!   dispatcher only picks up what that fast path could not send.
//! - `webhook`: a signed POST to the job's callback URL, retried with exponential backoff
//!   `server.webhook_attempts` times; every attempt is recorded.
//!
//! Any number of dispatchers may run (one per process): a claim leases the event, so two
//! never send it at once, and a dispatcher that dies mid-send leaves it to be sent again.

use std::sync::Arc;
use std::time::Duration;

use crate::catalog::{Catalog, CatalogError, OutboxRow};
use crate::domain::{EventKind, OutboxEvent};
use crate::queue::JobQueue;
use crate::webhook::WebhookClient;

pub struct Dispatcher {
    catalog: Catalog,
    queue: Arc<dyn JobQueue>,
    /// None without `server.webhook_secret`: webhook events then wait for one.
    webhooks: Option<WebhookClient>,
    max_webhook_attempts: i64,
    retry_base: Duration,
}

/// How long a claimed event is hidden from other dispatchers.
const CLAIM_LEASE: Duration = Duration::from_secs(30);
/// How long a request waits for the broker before leaving its announcement to the
/// dispatcher.
const PUBLISH_NOW_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait between retries of a job announcement.
const MAX_PUBLISH_BACKOFF_MS: i64 = 30_000;

impl Dispatcher {
    pub fn new(
        catalog: Catalog,
        queue: Arc<dyn JobQueue>,
        webhooks: Option<WebhookClient>,
        max_webhook_attempts: i64,
        retry_base: Duration,
    ) -> Self {
        Self {
            catalog,
            queue,
            webhooks,
            max_webhook_attempts,
            retry_base,
        }
    }

    /// Delivers due events until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            match self
                .catalog
                .claim_event(self.max_webhook_attempts, CLAIM_LEASE.as_millis() as i64)
                .await
            {
                Ok(Some(row)) => {
                    self.deliver(&row).await;
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("dispatcher: {e}"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = stop.changed() => return,
            }
        }
    }

    async fn deliver(&self, row: &OutboxRow) {
        let e = &row.event;
        let (status, error) = match e.kind {
            EventKind::Publish => match self.queue.publish(&e.video_id).await {
                Ok(()) => {
                    crate::failpoint::hit("after-publish");
                    (None, None)
                }
                Err(err) => (None, Some(err.to_string())),
            },
            EventKind::Webhook => match &self.webhooks {
                Some(client) => match client.send(&e.target, &e.id, &e.body).await {
                    Ok(s) => (Some(s), None),
                    Err(err) => (None, Some(err)),
                },
                None => (None, Some("no server.webhook_secret configured".into())),
            },
        };
        let delivered = match e.kind {
            EventKind::Publish => error.is_none(),
            EventKind::Webhook => status.is_some_and(|s| (200..300).contains(&s)),
        };
        let step = 1i64 << (row.attempts.clamp(1, 16) - 1);
        let mut backoff = self.retry_base.as_millis() as i64 * step;
        if e.kind == EventKind::Publish {
            backoff = backoff.min(MAX_PUBLISH_BACKOFF_MS);
        }
        if !delivered {
            tracing::info!(
                event = %e.id,
                kind = e.kind.as_str(),
                attempt = row.attempts,
                status = ?status,
                error = error.as_deref().unwrap_or(""),
                "event not delivered; will retry"
            );
        }
        if let Err(err) = self
            .catalog
            .record_event(&e.id, status, error.as_deref(), delivered, backoff)
            .await
        {
            tracing::warn!("dispatcher: recording delivery: {err}");
        }
    }
}

/// The fast path after a commit that wrote `event` (a job announcement): publish it now
/// and mark it delivered. If the broker or the catalog fails, the event stays in the
/// outbox and a dispatcher delivers it later; the caller's request still succeeded.
pub async fn publish_now(catalog: &Catalog, queue: &dyn JobQueue, event: &OutboxEvent) {
    let result: Result<(), String> = async {
        // Bounded: with the broker down, the request answers now and the dispatcher
        // publishes later.
        tokio::time::timeout(PUBLISH_NOW_TIMEOUT, queue.publish(&event.video_id))
            .await
            .map_err(|_| "the queue did not answer in time".to_string())?
            .map_err(|e| e.to_string())?;
        crate::failpoint::hit("after-publish");
        catalog
            .record_event(&event.id, None, None, true, 0)
            .await
            .map_err(|e: CatalogError| e.to_string())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(video = %event.video_id, "publishing the job (the dispatcher retries): {e}");
    }
}
