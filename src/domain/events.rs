//! Events a state change causes, as plain data: they are written to the catalog's outbox
//! in the same transaction as the change itself (see `catalog`), and delivered
//! at least once afterwards by the dispatcher. The event id is the idempotency
//! key: a receiver that has seen an id may drop the repeat.

use serde::Serialize;

use super::clock::now_ms;
use super::state::JobState;

/// What delivering an event means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A signed POST of `body` to the job's callback URL (`target`).
    Webhook,
    /// Announce the video id on the job queue (`target` is unused).
    Publish,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Webhook => "webhook",
            EventKind::Publish => "publish",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "webhook" => Some(EventKind::Webhook),
            "publish" => Some(EventKind::Publish),
            _ => None,
        }
    }
}

/// One row of the outbox, before it is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Unique per event; repeated deliveries carry the same id.
    pub id: String,
    pub kind: EventKind,
    pub video_id: String,
    pub target: String,
    pub body: String,
}

impl OutboxEvent {
    /// The job announcement for a newly recorded (or requeued) video. `round` tells
    /// announcements of the same video apart (0 at creation, the attempt count after a
    /// requeue), so each is delivered once.
    pub fn publish(video_id: &str, round: i64) -> Self {
        Self {
            id: format!("{video_id}-publish-{round}"),
            kind: EventKind::Publish,
            video_id: video_id.to_string(),
            target: String::new(),
            body: String::new(),
        }
    }
}

impl OutboxEvent {
    /// A signed POST of `body` to `url` about `video_id`, delivered as event `id`.
    fn webhook(id: String, video_id: &str, url: &str, body: &impl Serialize) -> Option<Self> {
        Some(Self {
            body: serde_json::to_string(body).ok()?,
            id,
            kind: EventKind::Webhook,
            video_id: video_id.to_string(),
            target: url.to_string(),
        })
    }
}

/// The body a webhook carries (docs/api.md).
#[derive(Serialize)]
struct VideoEvent<'a> {
    event_id: &'a str,
    event: &'static str,
    video_id: &'a str,
    state: JobState,
    verdict: Option<&'a str>,
    escalate: Option<bool>,
    reasons: Option<serde_json::Value>,
    error: Option<&'a str>,
    /// When the event was recorded (Unix ms); the same in every delivery of it.
    at_ms: i64,
}

/// The webhook for a job that ended in `state`, with the verdict and report it ended
/// with; `None` when the video has no callback URL.
pub fn video_ended(
    video_id: &str,
    callback_url: Option<&str>,
    state: JobState,
    verdict: Option<&str>,
    report: Option<&str>,
    error: Option<&str>,
) -> Option<OutboxEvent> {
    let url = callback_url?;
    let report: Option<serde_json::Value> = report.and_then(|r| serde_json::from_str(r).ok());
    // One event per job outcome: a repeated recording of the same end is the same event.
    let id = format!("{video_id}-{}", state.as_str());
    let body = VideoEvent {
        event_id: &id,
        event: if state == JobState::Done {
            "video.completed"
        } else {
            "video.failed"
        },
        video_id,
        state,
        verdict,
        escalate: report
            .as_ref()
            .and_then(|r| r.get("escalate"))
            .and_then(|e| e.as_bool()),
        reasons: report.as_ref().and_then(|r| r.get("reasons")).cloned(),
        error,
        at_ms: now_ms(),
    };
    OutboxEvent::webhook(id.clone(), video_id, url, &body)
}

/// The body of a `video.reviewed` webhook.
#[derive(Serialize)]
struct ReviewEvent<'a> {
    event_id: &'a str,
    event: &'static str,
    video_id: &'a str,
    decision: &'a str,
    verdict: &'a str,
    at_ms: i64,
}

/// The webhook for review decision `seq` of a video (approve, reject, escalate) and the
/// verdict it left; `None` when the video has no callback URL.
pub fn video_reviewed(
    video_id: &str,
    callback_url: Option<&str>,
    seq: i64,
    decision: &str,
    verdict: &str,
) -> Option<OutboxEvent> {
    let url = callback_url?;
    let id = format!("{video_id}-review-{seq}");
    let body = ReviewEvent {
        event_id: &id,
        event: "video.reviewed",
        video_id,
        decision,
        verdict,
        at_ms: now_ms(),
    };
    OutboxEvent::webhook(id.clone(), video_id, url, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_names_its_event_id_in_the_body() {
        let report = r#"{"escalate":false,"reasons":[{"code":"x"}]}"#;
        let e = video_ended(
            "ab",
            Some("http://h/x"),
            JobState::Done,
            Some("allow"),
            Some(report),
            None,
        )
        .unwrap();
        assert_eq!(e.id, "ab-done");
        assert_eq!(e.kind, EventKind::Webhook);
        let body: serde_json::Value = serde_json::from_str(&e.body).unwrap();
        assert_eq!(body["event_id"], "ab-done");
        assert_eq!(body["event"], "video.completed");
        assert_eq!(body["reasons"][0]["code"], "x");
        assert!(video_ended("ab", None, JobState::Done, None, None, None).is_none());
    }

    #[test]
    fn kinds_round_trip() {
        for k in [EventKind::Webhook, EventKind::Publish] {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(OutboxEvent::publish("v", 2).id, "v-publish-2");
    }
}
