//! The cluster queue: NATS JetStream, a work-queue stream with one durable pull consumer
//! that every worker shares (KEDA scales workers on its pending count).
//!
//! A message is a [`JobMessage`] (docs/api.md). The API publishes `{"id": ...}` after it
//! recorded the job; any other producer may publish a whole job (source, consent), which
//! the worker records on first delivery. A message without an id gets one derived from
//! its stream sequence, so its redeliveries map to the same job.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer, stream::RetentionPolicy};
use async_trait::async_trait;
use futures_util::StreamExt as _;
use sha2::{Digest, Sha256};

use super::{JobMessage, JobQueue, Message, QueueError, Settle};

/// Where the jobs go; `[cluster]` in the configuration.
#[derive(Clone, Debug)]
pub struct NatsSettings {
    pub url: String,
    pub stream: String,
    pub subject: String,
    pub consumer: String,
    /// Unacknowledged messages come back after this (heartbeats extend it).
    pub ack_wait: Duration,
}

pub struct NatsQueue {
    settings: NatsSettings,
    js: jetstream::Context,
    consumer: PullConsumer,
}

impl NatsQueue {
    /// Connects, and creates the stream and consumer if they do not exist.
    pub async fn connect(settings: NatsSettings) -> Result<Self, QueueError> {
        let err = |detail: String| QueueError::Broker {
            endpoint: settings.url.clone(),
            detail,
        };
        let client = async_nats::connect(&settings.url)
            .await
            .map_err(|e| err(e.to_string()))?;
        let js = jetstream::new(client);
        let stream = js
            .get_or_create_stream(jetstream::stream::Config {
                name: settings.stream.clone(),
                subjects: vec![settings.subject.clone()],
                retention: RetentionPolicy::WorkQueue,
                ..Default::default()
            })
            .await
            .map_err(|e| err(format!("stream {}: {e}", settings.stream)))?;
        let consumer: PullConsumer = stream
            .get_or_create_consumer(
                &settings.consumer,
                jetstream::consumer::pull::Config {
                    durable_name: Some(settings.consumer.clone()),
                    ack_wait: settings.ack_wait,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| err(format!("consumer {}: {e}", settings.consumer)))?;
        Ok(Self {
            settings,
            js,
            consumer,
        })
    }

    fn error(&self, detail: impl std::fmt::Display) -> QueueError {
        QueueError::Broker {
            endpoint: self.settings.url.clone(),
            detail: detail.to_string(),
        }
    }
}

struct NatsSettle(jetstream::Message);

#[async_trait]
impl Settle for NatsSettle {
    async fn ack(&self) {
        if let Err(e) = self.0.ack().await {
            tracing::warn!("nats ack: {e}");
        }
    }
    async fn retry_after(&self, delay: Duration) {
        if let Err(e) = self.0.ack_with(AckKind::Nak(Some(delay))).await {
            tracing::warn!("nats nak: {e}");
        }
    }
    async fn in_progress(&self) {
        let _ = self.0.ack_with(AckKind::Progress).await;
    }
}

#[async_trait]
impl JobQueue for NatsQueue {
    async fn publish(&self, video_id: &str) -> Result<(), QueueError> {
        let body = serde_json::to_vec(&JobMessage {
            id: Some(video_id.to_string()),
            ..JobMessage::default()
        })
        .map_err(|e| self.error(e))?;
        let ack = self
            .js
            .publish(self.settings.subject.clone(), body.into())
            .await
            .map_err(|e| self.error(e))?;
        ack.await.map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn next(&self, wait: Duration) -> Result<Option<Message>, QueueError> {
        let mut batch = self
            .consumer
            .fetch()
            .max_messages(1)
            .expires(wait)
            .messages()
            .await
            .map_err(|e| self.error(e))?;
        let Some(msg) = batch.next().await else {
            return Ok(None);
        };
        let msg = msg.map_err(|e| self.error(e))?;
        let seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
        let job: JobMessage = match serde_json::from_slice(&msg.payload) {
            Ok(job) => job,
            Err(e) => {
                tracing::warn!(seq, "dropping a job message that is not valid JSON: {e}");
                let _ = msg.ack_with(AckKind::Term).await;
                return Ok(None);
            }
        };
        let video_id = match &job.id {
            Some(id) => id.clone(),
            None => {
                let digest = Sha256::digest(format!("{}:{seq}", self.settings.stream));
                crate::hex::encode(&digest[..16])
            }
        };
        Ok(Some(Message {
            video_id,
            job: Some(job),
            settle: Box::new(NatsSettle(msg)),
        }))
    }

    async fn check(&self) -> Result<(), QueueError> {
        self.js
            .get_stream(&self.settings.stream)
            .await
            .map(|_| ())
            .map_err(|e| self.error(e))
    }

    fn describe(&self) -> String {
        format!(
            "nats {} stream {} consumer {}",
            self.settings.url, self.settings.stream, self.settings.consumer
        )
    }
}
