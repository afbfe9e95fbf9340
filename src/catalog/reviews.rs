//! The review lane in the catalog: flagged videos waiting for a person, and their
//! decisions (approve, reject, escalate), each recorded with the verdict it left, its
//! audit record and its webhook in one transaction.

use sqlx::Row;

use super::{Catalog, CatalogError};
use crate::domain::audit::Entry;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS reviews (
    seq {SERIAL},
    video_id TEXT NOT NULL,
    decision TEXT NOT NULL,
    reason TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    verdict_before TEXT NOT NULL,
    verdict_after TEXT NOT NULL,
    at {INT} NOT NULL
);
CREATE INDEX IF NOT EXISTS reviews_by_video ON reviews (video_id);
";

/// A reviewer's decision on a flagged video.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Nothing wrong: the verdict becomes `allow`.
    Approve,
    /// Confirmed: the verdict becomes `block`.
    Reject,
    /// For a senior reviewer or the legal team: the verdict stays, the subject goes
    /// under legal hold (the video is evidence), and the item leaves the lane.
    Escalate,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
            Decision::Escalate => "escalate",
        }
    }
}

/// A flagged video waiting for review.
#[derive(Debug, serde::Serialize)]
pub struct ReviewItem {
    pub id: String,
    pub verdict: String,
    /// Probable minor with explicit content: shown first.
    pub escalate: bool,
    pub reasons: serde_json::Value,
    pub created_at_ms: i64,
}

/// What a decision did.
#[derive(Debug, serde::Serialize)]
pub struct Reviewed {
    pub seq: i64,
    pub decision: Decision,
    pub verdict_before: String,
    pub verdict: String,
}

const FLAGGED: &str = "state = 'done' AND erased_at IS NULL
    AND verdict IN ('review', 'restrict', 'block')";

impl Catalog {
    /// Flagged videos no one has decided on yet: escalated first, then oldest first (at
    /// most `limit`).
    pub async fn review_queue(&self, limit: i64) -> Result<Vec<ReviewItem>, CatalogError> {
        let rows = sqlx::query(&format!(
            "SELECT id, verdict, report, created_at FROM videos
             WHERE {FLAGGED}
               AND NOT EXISTS (SELECT 1 FROM reviews r WHERE r.video_id = videos.id)
             ORDER BY created_at, id LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut items = rows
            .iter()
            .map(|r| {
                let report: Option<String> = r.try_get("report")?;
                let report: serde_json::Value = report
                    .and_then(|r| serde_json::from_str(&r).ok())
                    .unwrap_or_default();
                Ok(ReviewItem {
                    id: r.try_get("id")?,
                    verdict: r.try_get("verdict")?,
                    escalate: report["escalate"].as_bool().unwrap_or(false),
                    reasons: report["reasons"].clone(),
                    created_at_ms: r.try_get("created_at")?,
                })
            })
            .collect::<Result<Vec<_>, CatalogError>>()?;
        // Stable: oldest first within each group.
        items.sort_by_key(|i| !i.escalate);
        Ok(items)
    }

    /// Records a decision on a flagged video: the new verdict, the review row, the audit
    /// record and the `video.reviewed` webhook, in one transaction. `None` if the video is
    /// not a flagged, finished, unerased one.
    pub async fn record_review(
        &self,
        id: &str,
        decision: Decision,
        reason: &str,
        reviewer: &str,
    ) -> Result<Option<Reviewed>, CatalogError> {
        let mut tx = self.pool.begin().await?;
        let slot = super::audit::reserve(&mut tx, &self.now_sql()).await?;
        // Locks the row: two reviewers deciding at once are recorded one after the other.
        let Some(row) = sqlx::query(&format!(
            "UPDATE videos SET updated_at = {} WHERE id = $1 AND {FLAGGED}
             RETURNING verdict, subject_hash, callback_url",
            self.now_sql()
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            tx.rollback().await?;
            return Ok(None);
        };
        let before: String = row.try_get("verdict")?;
        let subject: String = row.try_get("subject_hash")?;
        let callback: Option<String> = row.try_get("callback_url")?;
        let after = match decision {
            Decision::Approve => "allow".to_string(),
            Decision::Reject => "block".to_string(),
            Decision::Escalate => before.clone(),
        };
        sqlx::query("UPDATE videos SET verdict = $2 WHERE id = $1")
            .bind(id)
            .bind(&after)
            .execute(&mut *tx)
            .await?;
        let seq: i64 = sqlx::query(&self.sql(
            "INSERT INTO reviews
               (video_id, decision, reason, reviewer, verdict_before, verdict_after, at)
             VALUES ($1, $2, $3, $4, $5, $6, {now}) RETURNING seq",
        ))
        .bind(id)
        .bind(decision.as_str())
        .bind(reason)
        .bind(reviewer)
        .bind(&before)
        .bind(&after)
        .fetch_one(&mut *tx)
        .await?
        .try_get("seq")?;
        if decision == Decision::Escalate {
            let why = "escalated by a reviewer";
            super::subjects::set_hold_in(&mut tx, &self.now_sql(), &subject, why, reviewer).await?;
        }
        let event =
            crate::domain::video_reviewed(id, callback.as_deref(), seq, decision.as_str(), &after);
        if let Some(event) = &event {
            super::service::insert_event(&mut tx, &self.now_sql(), event).await?;
        }
        let entry = Entry {
            actor: reviewer.to_string(),
            action: "video.reviewed".into(),
            object: id.to_string(),
            result: format!("{}: {before} -> {after}", decision.as_str()),
            subject: Some(subject),
            request_id: None,
        };
        slot.write(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(Some(Reviewed {
            seq,
            decision,
            verdict_before: before,
            verdict: after,
        }))
    }
}
