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
//!
//! Deliveries run concurrently, at most [`IN_FLIGHT`] at once and
//! `server.webhook_per_host` per receiver: a receiver that is slow (or hangs until the
//! attempt times out) holds only its own slots. An event for a receiver whose slots are
//! all taken is handed back unsent, its attempt not counted, and tried a moment later.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
    in_flight: Arc<Semaphore>,
    claim_lease: Duration,
    per_host: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// Deliveries in flight at once, all receivers together.
const IN_FLIGHT: usize = 64;
/// How soon an event handed back for a busy receiver is tried again.
const BUSY_RETRY_MS: i64 = 500;

/// What a webhook delivery that got no HTTP answer records, whatever the cause.
pub const WEBHOOK_NO_ANSWER: &str = "no answer: the callback URL could not be reached at an \
     allowed address, or did not answer in time (the server log has the cause)";

/// How long a claimed event is hidden from other dispatchers, at least.
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
        per_host: usize,
        attempt_timeout: Duration,
    ) -> Self {
        Self {
            catalog,
            queue,
            webhooks,
            max_webhook_attempts,
            retry_base,
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
            // Hidden from other dispatchers for longer than an attempt can take.
            claim_lease: CLAIM_LEASE.max(attempt_timeout * 2),
            per_host: per_host.max(1),
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// A delivery slot for `target`'s receiver (host and port), if one is free.
    fn host_slot(&self, target: &str) -> Option<OwnedSemaphorePermit> {
        let uri: Option<hyper::Uri> = target.parse().ok();
        let host = uri
            .as_ref()
            .and_then(|u| u.authority())
            .map_or_else(String::new, |a| a.as_str().to_ascii_lowercase());
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        // Forget idle receivers, so the map does not grow with every callback host.
        if hosts.len() > 1024 {
            hosts.retain(|_, s| s.available_permits() < self.per_host);
        }
        let slots = hosts
            .entry(host)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_host)));
        slots.clone().try_acquire_owned().ok()
    }

    /// Delivers due events until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let slot = tokio::select! {
                slot = self.in_flight.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => return,
                },
                _ = stop.changed() => return,
            };
            match self
                .catalog
                .claim_event(
                    self.max_webhook_attempts,
                    self.claim_lease.as_millis() as i64,
                )
                .await
            {
                Ok(Some(row)) => {
                    let host_slot = match row.event.kind {
                        EventKind::Webhook => match self.host_slot(&row.event.target) {
                            Some(s) => Some(s),
                            None => {
                                let id = &row.event.id;
                                if let Err(e) = self.catalog.release_event(id, BUSY_RETRY_MS).await
                                {
                                    tracing::warn!("dispatcher: handing back {id}: {e}");
                                }
                                continue;
                            }
                        },
                        EventKind::Publish => None,
                    };
                    let me = self.clone();
                    tokio::spawn(async move {
                        me.deliver(&row).await;
                        drop((slot, host_slot));
                    });
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("dispatcher: {e}"),
            }
            drop(slot);
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
            // At the default level: the cause is recorded nowhere else.
            tracing::warn!(
                event = %e.id,
                kind = e.kind.as_str(),
                attempt = row.attempts,
                status = ?status,
                error = error.as_deref().unwrap_or(""),
                "event not delivered; will retry"
            );
        }
        // The cause of a webhook failure can describe the network behind its URL (what a
        // name resolves to, which ports answer), and the video's owner reads the record:
        // it gets the fact, the log above the cause.
        let recorded = match (e.kind, &error) {
            (EventKind::Webhook, Some(_)) => Some(WEBHOOK_NO_ANSWER),
            _ => error.as_deref(),
        };
        if let Err(err) = self
            .catalog
            .record_event(&e.id, status, recorded, delivered, backoff)
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
