//! Revocation fan-out across API nodes (cluster mode), over a core NATS subject.
//!
//! The node that records a revocation announces the subject's keyed hash on
//! `cluster.revocation_subject` with a reply inbox; every API node's cache task evicts the
//! subject's decrypted segments, bumps its generation and acknowledges with its node id;
//! the announcer waits until every live node (heartbeats in the catalog) has acknowledged,
//! or `ACK_WAIT`, and reports who did.
//!
//! What serving relies on is not this but the ledger: each request checks the subject's
//! consent in the catalog, so nothing of a revoked subject is served from the commit on,
//! acknowledged or not. The fan-out bounds how long plaintext stays in other nodes'
//! memory (milliseconds, instead of the ledger poll's second). Core NATS does not keep
//! messages for a disconnected or slow subscriber, so a node that loses the channel stops
//! using its cache (emptied, nothing cached) until it is connected again and has read
//! the ledger since: fail closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::{Event, Subscriber};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};

/// How long an announcer waits for the nodes' acknowledgements.
pub const ACK_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum FanoutError {
    /// The broker cannot be reached (retry; revocation itself is already durable).
    #[error("revocation fan-out via {endpoint}: {detail}")]
    Broker { endpoint: String, detail: String },
}

/// What travels: the subject's keyed hash (never the raw subject).
#[derive(Serialize, Deserialize)]
struct Notice {
    subject_hash: String,
}

#[derive(Serialize, Deserialize)]
struct Ack {
    node: String,
}

/// The outcome of one announcement.
#[derive(Debug, Serialize)]
pub struct Delivery {
    /// API nodes alive (a heartbeat in the last few seconds) when it was announced.
    pub nodes: usize,
    /// Those that evicted the subject and said so.
    pub acknowledged: Vec<String>,
    /// From the announcement to the last acknowledgement (or the wait's end).
    pub ms: f64,
}

/// The NATS side of the fan-out: this node's id, its connection, and whether it may
/// have missed an announcement.
pub struct Fanout {
    client: async_nats::Client,
    endpoint: String,
    subject: String,
    node: String,
    lost: Arc<AtomicBool>,
    lost_notify: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fanout({} on {})", self.node, self.subject)
    }
}

/// This process's node id: the host (the pod's name in Kubernetes) and the process id.
pub fn node_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "node".into());
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
        .take(63)
        .collect();
    format!("{host}-{}", std::process::id())
}

impl Fanout {
    /// Connects. A disconnection or a slow-consumer drop marks the channel lost.
    pub async fn connect(url: &str, subject: &str) -> Result<Self, FanoutError> {
        let lost = Arc::new(AtomicBool::new(false));
        let lost_notify = Arc::new(tokio::sync::Notify::new());
        let (flag, notify) = (lost.clone(), lost_notify.clone());
        let client = async_nats::ConnectOptions::new()
            .event_callback(move |event| {
                let (flag, notify) = (flag.clone(), notify.clone());
                async move {
                    if matches!(
                        event,
                        Event::Disconnected | Event::SlowConsumer(_) | Event::Closed
                    ) {
                        flag.store(true, Ordering::SeqCst);
                        notify.notify_one();
                    }
                }
            })
            .connect(url)
            .await
            .map_err(|e| FanoutError::Broker {
                endpoint: url.to_string(),
                detail: e.to_string(),
            })?;
        Ok(Fanout {
            client,
            endpoint: url.to_string(),
            subject: subject.to_string(),
            node: node_id(),
            lost,
            lost_notify,
        })
    }

    fn error(&self, detail: impl std::fmt::Display) -> FanoutError {
        FanoutError::Broker {
            endpoint: self.endpoint.clone(),
            detail: detail.to_string(),
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Announcements to follow (this node's cache task).
    pub async fn subscribe(&self) -> Result<Subscriber, FanoutError> {
        if !self.connected() {
            return Err(self.error("not connected"));
        }
        let sub = (self.client.subscribe(self.subject.clone()).await).map_err(|e| self.error(e))?;
        // Subscribed once the server has it: flushed (bounded, the broker may be gone).
        match tokio::time::timeout(ACK_WAIT, self.client.flush()).await {
            Ok(Ok(())) => Ok(sub),
            Ok(Err(e)) => Err(self.error(e)),
            Err(_) => Err(self.error("no answer from the broker")),
        }
    }

    /// The subject hash an announcement names, acknowledged once `evict` has run on it.
    pub async fn handle(&self, message: async_nats::Message, evict: impl FnOnce(&str)) {
        let Ok(notice) = serde_json::from_slice::<Notice>(&message.payload) else {
            tracing::warn!("revocation fan-out: ignored a malformed announcement");
            return;
        };
        evict(&notice.subject_hash);
        if let Some(reply) = message.reply {
            let ack = Ack {
                node: self.node.clone(),
            };
            let body = serde_json::to_vec(&ack).unwrap_or_default();
            if let Err(e) = self.client.publish(reply, body.into()).await {
                tracing::warn!("revocation fan-out: cannot acknowledge: {e}");
            }
        }
    }

    /// True (once) if the channel was lost since the last call: the caller empties its
    /// cache and keeps it off until [`Fanout::connected`] and the ledger is read again.
    pub fn take_lost(&self) -> bool {
        self.lost.swap(false, Ordering::SeqCst)
    }

    /// Woken when the channel is lost.
    pub async fn lost_changed(&self) {
        self.lost_notify.notified().await
    }

    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Announces a revocation to every live API node (heartbeats in `catalog`) and
    /// reports who acknowledged. A broker that cannot be reached is reported, not an
    /// error: the revocation is committed, and the nodes read it from the ledger within a
    /// second.
    pub async fn announce_revocation(
        &self,
        catalog: &crate::catalog::Catalog,
        subject_hash: &str,
    ) -> serde_json::Value {
        let nodes = catalog.live_nodes(5_000).await.unwrap_or(0);
        match self.announce(subject_hash, nodes).await {
            Ok(delivery) => serde_json::json!(delivery),
            Err(e) => {
                tracing::warn!("{e}");
                serde_json::json!({
                    "nodes": nodes,
                    "error": "the broker could not be reached; nodes read the ledger within a second",
                })
            }
        }
    }

    /// Announces a revocation and waits (at most [`ACK_WAIT`]) for `nodes` acks.
    pub async fn announce(
        &self,
        subject_hash: &str,
        nodes: usize,
    ) -> Result<Delivery, FanoutError> {
        let started = Instant::now();
        let inbox = self.client.new_inbox();
        let mut acks = (self.client.subscribe(inbox.clone()).await).map_err(|e| self.error(e))?;
        let notice = Notice {
            subject_hash: subject_hash.to_string(),
        };
        let body = serde_json::to_vec(&notice).map_err(|e| self.error(e))?;
        (self
            .client
            .publish_with_reply(self.subject.clone(), inbox, body.into())
            .await)
            .map_err(|e| self.error(e))?;
        self.client.flush().await.map_err(|e| self.error(e))?;
        let mut acknowledged = Vec::new();
        let deadline = tokio::time::Instant::now() + ACK_WAIT;
        while acknowledged.len() < nodes {
            match tokio::time::timeout_at(deadline, acks.next()).await {
                Ok(Some(m)) => {
                    if let Ok(ack) = serde_json::from_slice::<Ack>(&m.payload)
                        && !acknowledged.contains(&ack.node)
                    {
                        acknowledged.push(ack.node);
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        let _ = acks.unsubscribe().await;
        (crate::metrics::metrics().fanout).observe(started.elapsed().as_secs_f64());
        Ok(Delivery {
            nodes,
            acknowledged,
            ms: started.elapsed().as_secs_f64() * 1000.0,
        })
    }
}
