//! What the ops dashboard shows from the catalog: throughput over time, the verdict mix,
//! job latency, the jobs holding leases, the API nodes' heartbeats and recent consent
//! events. Read-only figures; no subject identifier leaves here but a hash prefix.

use sqlx::Row;

use super::{Catalog, CatalogError};

/// Jobs that ended in one time bucket.
#[derive(Debug, serde::Serialize)]
pub struct Bucket {
    pub at_ms: i64,
    pub done: i64,
    pub failed: i64,
}

/// A job holding a lease now.
#[derive(Debug, serde::Serialize)]
pub struct Lease {
    pub id: String,
    pub attempt: i64,
    pub progress: f64,
    pub lease_left_ms: i64,
    pub heartbeat_ago_ms: i64,
}

/// An API node and when it was last heard from.
#[derive(Debug, serde::Serialize)]
pub struct NodeSeen {
    pub node: String,
    pub seen_ago_ms: i64,
}

/// A consent event, with the subject shown only as a prefix of its keyed hash.
#[derive(Debug, serde::Serialize)]
pub struct ConsentSeen {
    pub kind: String,
    pub at_ms: i64,
    pub subject: String,
    pub actor: String,
}

impl Catalog {
    /// Jobs that ended (done; failed or dead) since `since_ms`, per `bucket_ms`.
    pub async fn throughput(
        &self,
        since_ms: i64,
        bucket_ms: i64,
    ) -> Result<Vec<Bucket>, CatalogError> {
        let rows = sqlx::query(
            "SELECT (updated_at / $2) * $2 AS b,
                    SUM(CASE WHEN state = 'done' THEN 1 ELSE 0 END) AS done,
                    SUM(CASE WHEN state IN ('failed', 'dead') THEN 1 ELSE 0 END) AS failed
             FROM videos WHERE updated_at >= $1 AND state IN ('done', 'failed', 'dead')
             GROUP BY b ORDER BY b",
        )
        .bind(since_ms)
        .bind(bucket_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Bucket {
                    at_ms: r.try_get("b")?,
                    done: r.try_get("done")?,
                    failed: r.try_get("failed")?,
                })
            })
            .collect()
    }

    /// Finished, unerased videos by verdict.
    pub async fn verdict_mix(&self) -> Result<Vec<(String, i64)>, CatalogError> {
        let rows = sqlx::query(
            "SELECT verdict, COUNT(*) AS n FROM videos
             WHERE state = 'done' AND erased_at IS NULL AND verdict IS NOT NULL
             GROUP BY verdict ORDER BY verdict",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("verdict")?, r.try_get("n")?)))
            .collect()
    }

    /// Milliseconds from submission to `done` of the last `limit` jobs that finished
    /// since `since_ms`, ascending.
    pub async fn latencies(&self, since_ms: i64, limit: i64) -> Result<Vec<i64>, CatalogError> {
        let rows = sqlx::query(
            "SELECT updated_at - created_at AS ms FROM videos
             WHERE state = 'done' AND updated_at >= $1
             ORDER BY updated_at DESC LIMIT $2",
        )
        .bind(since_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut ms = rows
            .iter()
            .map(|r| r.try_get("ms"))
            .collect::<Result<Vec<i64>, _>>()?;
        ms.sort_unstable();
        Ok(ms)
    }

    /// Running jobs and their leases (at most `limit`).
    pub async fn leases(&self, limit: i64) -> Result<Vec<Lease>, CatalogError> {
        let rows = sqlx::query(&self.sql(
            "SELECT id, attempts, progress, lease_until - {now} AS left_ms,
                    {now} - updated_at AS ago_ms
             FROM videos WHERE state = 'running' ORDER BY lease_until LIMIT $1",
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Lease {
                    id: r.try_get("id")?,
                    attempt: r.try_get("attempts")?,
                    progress: r.try_get("progress")?,
                    lease_left_ms: r.try_get("left_ms")?,
                    heartbeat_ago_ms: r.try_get("ago_ms")?,
                })
            })
            .collect()
    }

    /// API nodes heard from in the last hour.
    pub async fn nodes(&self) -> Result<Vec<NodeSeen>, CatalogError> {
        let rows = sqlx::query(
            &self.sql("SELECT node, {now} - seen_at AS ago_ms FROM api_nodes ORDER BY node"),
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(NodeSeen {
                    node: r.try_get("node")?,
                    seen_ago_ms: r.try_get("ago_ms")?,
                })
            })
            .collect()
    }

    /// The last `limit` consent events (grants, revocations, expiries), newest first.
    pub async fn recent_consent(&self, limit: i64) -> Result<Vec<ConsentSeen>, CatalogError> {
        let rows = sqlx::query(
            "SELECT kind, at, subject_hash, actor FROM consent_events
             ORDER BY seq DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let subject: String = r.try_get("subject_hash")?;
                Ok(ConsentSeen {
                    kind: r.try_get("kind")?,
                    at_ms: r.try_get("at")?,
                    subject: subject.chars().take(12).collect(),
                    actor: r.try_get("actor")?,
                })
            })
            .collect()
    }
}
