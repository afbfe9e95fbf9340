//! Service tables: videos (each carries its job's state), uploads and their sealed parts,
//! API tokens (hashed) and webhook deliveries.
//!
//! The video row is the single source of truth for a job. Whatever queue delivers the job
//! (the in-process one, or JetStream), a worker must *claim* the row before working on it:
//! the claim bumps `attempts`, which then acts as a fencing token. Only the holder of the
//! latest attempt can record a result, so a redelivered job never records a second one.
//! Times are Unix milliseconds.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Catalog, CatalogError};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS videos (
    id TEXT PRIMARY KEY,
    subject_hash TEXT NOT NULL,
    owner TEXT NOT NULL,
    source TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts {INT} NOT NULL DEFAULT 0,
    max_attempts {INT} NOT NULL,
    available_at {INT} NOT NULL,
    lease_until {INT} NOT NULL DEFAULT 0,
    progress {REAL} NOT NULL DEFAULT 0,
    verdict TEXT,
    report TEXT,
    manifest TEXT,
    error TEXT,
    callback_url TEXT,
    cancel_requested {INT} NOT NULL DEFAULT 0,
    created_at {INT} NOT NULL,
    updated_at {INT} NOT NULL,
    erased_at {INT}
);
CREATE INDEX IF NOT EXISTS videos_by_state ON videos (state, available_at);
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    subject_hash TEXT NOT NULL,
    owner TEXT NOT NULL,
    length {INT} NOT NULL,
    received {INT} NOT NULL DEFAULT 0,
    filename TEXT,
    callback_url TEXT,
    state TEXT NOT NULL,
    created_at {INT} NOT NULL
);
CREATE TABLE IF NOT EXISTS upload_parts (
    upload_id TEXT NOT NULL,
    start {INT} NOT NULL,
    len {INT} NOT NULL,
    store_key TEXT NOT NULL,
    object_id {BLOB} NOT NULL,
    PRIMARY KEY (upload_id, start)
);
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    role TEXT NOT NULL,
    label TEXT,
    created_at {INT} NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id TEXT PRIMARY KEY,
    video_id TEXT NOT NULL,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts {INT} NOT NULL DEFAULT 0,
    next_at {INT} NOT NULL,
    delivered_at {INT},
    last_status {INT},
    last_error TEXT,
    created_at {INT} NOT NULL
);
";

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Where a job stands. `Dead` means it failed transiently too many times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
    Dead,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Result<Self, CatalogError> {
        Ok(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "done" => JobState::Done,
            "failed" => JobState::Failed,
            "dead" => JobState::Dead,
            "cancelled" => JobState::Cancelled,
            other => {
                return Err(CatalogError::Query(sqlx::Error::Decode(
                    format!("unknown job state {other:?}").into(),
                )));
            }
        })
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Dead | JobState::Cancelled
        )
    }
}

/// A new video and its job.
pub struct NewVideo<'a> {
    pub id: &'a str,
    pub subject_hash: &'a str,
    pub owner: &'a str,
    /// JSON of the job source.
    pub source: &'a str,
    pub max_attempts: i64,
    pub callback_url: Option<&'a str>,
}

#[derive(Clone, Debug)]
pub struct VideoRow {
    pub id: String,
    pub subject_hash: String,
    pub owner: String,
    pub source: String,
    pub state: JobState,
    pub attempts: i64,
    pub max_attempts: i64,
    pub progress: f64,
    pub verdict: Option<String>,
    pub report: Option<String>,
    pub manifest: Option<String>,
    pub error: Option<String>,
    pub callback_url: Option<String>,
    pub cancel_requested: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub erased_at: Option<i64>,
}

/// A job a worker now holds; `attempt` is its fencing token.
#[derive(Clone, Debug)]
pub struct ClaimedJob {
    pub video: VideoRow,
    pub attempt: i64,
}

pub enum ClaimOutcome {
    Claimed(Box<ClaimedJob>),
    /// Already finished: a redelivery to acknowledge and drop.
    Finished,
    /// Another worker holds a live lease.
    Busy,
    Missing,
}

#[derive(Clone, Debug)]
pub struct UploadRow {
    pub id: String,
    pub subject_hash: String,
    pub owner: String,
    pub length: i64,
    pub received: i64,
    pub filename: Option<String>,
    pub callback_url: Option<String>,
    /// receiving, complete or terminated.
    pub state: String,
}

#[derive(Clone, Debug)]
pub struct UploadPart {
    pub start: i64,
    pub len: i64,
    pub store_key: String,
    pub object_id: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct TokenRow {
    pub id: String,
    pub role: String,
    pub label: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: String,
    pub video_id: String,
    pub url: String,
    pub body: String,
    pub attempts: i64,
}

fn video_row(r: &AnyRow) -> Result<VideoRow, CatalogError> {
    Ok(VideoRow {
        id: r.try_get("id")?,
        subject_hash: r.try_get("subject_hash")?,
        owner: r.try_get("owner")?,
        source: r.try_get("source")?,
        state: JobState::parse(r.try_get("state")?)?,
        attempts: r.try_get("attempts")?,
        max_attempts: r.try_get("max_attempts")?,
        progress: r.try_get("progress")?,
        verdict: r.try_get("verdict")?,
        report: r.try_get("report")?,
        manifest: r.try_get("manifest")?,
        error: r.try_get("error")?,
        callback_url: r.try_get("callback_url")?,
        cancel_requested: r.try_get::<i64, _>("cancel_requested")? != 0,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        erased_at: r.try_get("erased_at")?,
    })
}

fn upload_row(r: &AnyRow) -> Result<UploadRow, CatalogError> {
    Ok(UploadRow {
        id: r.try_get("id")?,
        subject_hash: r.try_get("subject_hash")?,
        owner: r.try_get("owner")?,
        length: r.try_get("length")?,
        received: r.try_get("received")?,
        filename: r.try_get("filename")?,
        callback_url: r.try_get("callback_url")?,
        state: r.try_get("state")?,
    })
}

impl Catalog {
    /// Records a new queued video. Returns false if the id exists already (an idempotent
    /// resubmission).
    pub async fn insert_video(&self, v: &NewVideo<'_>) -> Result<bool, CatalogError> {
        let now = now_ms();
        let done = sqlx::query(
            "INSERT INTO videos (id, subject_hash, owner, source, state, max_attempts, available_at,
               callback_url, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $6, $6)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(v.id)
        .bind(v.subject_hash)
        .bind(v.owner)
        .bind(v.source)
        .bind(v.max_attempts)
        .bind(now)
        .bind(v.callback_url)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn video(&self, id: &str) -> Result<Option<VideoRow>, CatalogError> {
        let row = sqlx::query("SELECT * FROM videos WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| video_row(&r)).transpose()
    }

    /// Videos waiting to run (for queue-full checks and readiness).
    pub async fn queued_count(&self) -> Result<i64, CatalogError> {
        let n = sqlx::query("SELECT COUNT(*) AS n FROM videos WHERE state = 'queued'")
            .fetch_one(&self.pool)
            .await?;
        Ok(n.try_get("n")?)
    }

    /// The next job that is due, or whose worker's lease ran out (it crashed).
    pub async fn next_due(&self) -> Result<Option<String>, CatalogError> {
        let now = now_ms();
        let row = sqlx::query(
            "SELECT id FROM videos
             WHERE (state = 'queued' AND available_at <= $1) OR (state = 'running' AND lease_until < $1)
             ORDER BY available_at LIMIT 1",
        )
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("id")).transpose()?)
    }

    /// Takes the job for `lease_ms`, unless it is finished or leased by another worker.
    pub async fn claim(&self, id: &str, lease_ms: i64) -> Result<ClaimOutcome, CatalogError> {
        let now = now_ms();
        let claimed = sqlx::query(
            "UPDATE videos SET state = 'running', attempts = attempts + 1, lease_until = $2,
               updated_at = $3
             WHERE id = $1 AND cancel_requested = 0
               AND ((state = 'queued' AND available_at <= $3) OR (state = 'running' AND lease_until < $3))
             RETURNING *",
        )
        .bind(id)
        .bind(now + lease_ms)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = claimed {
            let video = video_row(&row)?;
            let attempt = video.attempts;
            return Ok(ClaimOutcome::Claimed(Box::new(ClaimedJob {
                video,
                attempt,
            })));
        }
        // A cancelled job that was still queued ends here, without running.
        sqlx::query(
            "UPDATE videos SET state = 'cancelled', updated_at = $2
             WHERE id = $1 AND cancel_requested = 1 AND state = 'queued'",
        )
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(match self.video(id).await? {
            None => ClaimOutcome::Missing,
            Some(v) if v.state.is_final() => ClaimOutcome::Finished,
            Some(_) => ClaimOutcome::Busy,
        })
    }

    /// Extends the lease and records progress. Returns `Ok(None)` if the claim was lost
    /// (another attempt took over), else whether cancellation was requested.
    pub async fn heartbeat(
        &self,
        id: &str,
        attempt: i64,
        progress: f64,
        lease_ms: i64,
    ) -> Result<Option<bool>, CatalogError> {
        let now = now_ms();
        let row = sqlx::query(
            "UPDATE videos SET lease_until = $3, progress = $4, updated_at = $5
             WHERE id = $1 AND attempts = $2 AND state = 'running'
             RETURNING cancel_requested",
        )
        .bind(id)
        .bind(attempt)
        .bind(now + lease_ms)
        .bind(progress)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row
            .map(|r| r.try_get::<i64, _>("cancel_requested"))
            .transpose()?
            .map(|c| c != 0))
    }

    /// Records the result of attempt `attempt`. Returns false if that attempt no longer
    /// holds the job, in which case nothing was recorded.
    pub async fn complete(
        &self,
        id: &str,
        attempt: i64,
        verdict: &str,
        report: &str,
        manifest: &str,
    ) -> Result<bool, CatalogError> {
        let done = sqlx::query(
            "UPDATE videos SET state = 'done', progress = 1, verdict = $3, report = $4, manifest = $5,
               error = NULL, updated_at = $6
             WHERE id = $1 AND attempts = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(attempt)
        .bind(verdict)
        .bind(report)
        .bind(manifest)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends attempt `attempt` without a result: `Failed`/`Cancelled`/`Dead` are final,
    /// `Queued` retries after `retry_in_ms`. Returns false if the claim was lost.
    pub async fn fail(
        &self,
        id: &str,
        attempt: i64,
        state: JobState,
        error: &str,
        retry_in_ms: i64,
    ) -> Result<bool, CatalogError> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE videos SET state = $3, error = $4, available_at = $5, lease_until = 0,
               updated_at = $6
             WHERE id = $1 AND attempts = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(attempt)
        .bind(state.as_str())
        .bind(error)
        .bind(now + retry_in_ms)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Asks for cancellation: a queued job is cancelled at once, a running one at its
    /// next heartbeat. Returns the state after the request.
    pub async fn request_cancel(&self, id: &str) -> Result<Option<JobState>, CatalogError> {
        let now = now_ms();
        sqlx::query(
            "UPDATE videos SET cancel_requested = 1,
               state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END, updated_at = $2
             WHERE id = $1 AND state IN ('queued', 'running')",
        )
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(self.video(id).await?.map(|v| v.state))
    }

    /// Marks a video erased and drops its report and manifest (its objects are shredded
    /// by the caller). The verdict stays, for the audit trail.
    pub async fn mark_erased(&self, id: &str) -> Result<(), CatalogError> {
        let now = now_ms();
        sqlx::query(
            "UPDATE videos SET erased_at = $2, report = NULL, manifest = NULL, cancel_requested = 1,
               state = CASE WHEN state IN ('queued', 'running') THEN 'cancelled' ELSE state END,
               updated_at = $2
             WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // --- uploads -------------------------------------------------------------------

    pub async fn insert_upload(&self, u: &UploadRow) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO uploads (id, subject_hash, owner, length, received, filename, callback_url,
               state, created_at)
             VALUES ($1, $2, $3, $4, 0, $5, $6, 'receiving', $7)",
        )
        .bind(&u.id)
        .bind(&u.subject_hash)
        .bind(&u.owner)
        .bind(u.length)
        .bind(&u.filename)
        .bind(&u.callback_url)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn upload(&self, id: &str) -> Result<Option<UploadRow>, CatalogError> {
        let row = sqlx::query("SELECT * FROM uploads WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| upload_row(&r)).transpose()
    }

    /// Appends a stored part at `part.start`, which must equal the bytes received so far
    /// (a concurrent PATCH at the same offset loses). Returns the new received count, or
    /// None if the offset no longer matched.
    pub async fn add_upload_part(
        &self,
        upload_id: &str,
        part: &UploadPart,
    ) -> Result<Option<i64>, CatalogError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE uploads SET received = received + $3,
               state = CASE WHEN received + $3 = length THEN 'complete' ELSE state END
             WHERE id = $1 AND received = $2 AND state = 'receiving'
             RETURNING received",
        )
        .bind(upload_id)
        .bind(part.start)
        .bind(part.len)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        sqlx::query(
            "INSERT INTO upload_parts (upload_id, start, len, store_key, object_id)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(upload_id)
        .bind(part.start)
        .bind(part.len)
        .bind(&part.store_key)
        .bind(&part.object_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(row.try_get("received")?))
    }

    pub async fn upload_parts(&self, upload_id: &str) -> Result<Vec<UploadPart>, CatalogError> {
        let rows = sqlx::query("SELECT * FROM upload_parts WHERE upload_id = $1 ORDER BY start")
            .bind(upload_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(UploadPart {
                    start: r.try_get("start")?,
                    len: r.try_get("len")?,
                    store_key: r.try_get("store_key")?,
                    object_id: r.try_get("object_id")?,
                })
            })
            .collect()
    }

    /// Ends an upload (terminated by the client, or consumed by its job) and forgets its
    /// parts; the caller deletes and shreds the part objects.
    pub async fn close_upload(&self, upload_id: &str, state: &str) -> Result<(), CatalogError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE uploads SET state = $2 WHERE id = $1")
            .bind(upload_id)
            .bind(state)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM upload_parts WHERE upload_id = $1")
            .bind(upload_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    // --- tokens --------------------------------------------------------------------

    pub async fn insert_token(
        &self,
        hash: &str,
        id: &str,
        role: &str,
        label: Option<&str>,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO tokens (hash, id, role, label, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hash)
        .bind(id)
        .bind(role)
        .bind(label)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn token(&self, hash: &str) -> Result<Option<TokenRow>, CatalogError> {
        let row = sqlx::query("SELECT id, role, label FROM tokens WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(TokenRow {
                id: r.try_get("id")?,
                role: r.try_get("role")?,
                label: r.try_get("label")?,
            })
        })
        .transpose()
    }

    // --- webhook deliveries --------------------------------------------------------

    pub async fn insert_delivery(
        &self,
        id: &str,
        video_id: &str,
        url: &str,
        body: &str,
    ) -> Result<(), CatalogError> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, video_id, url, body, next_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(video_id)
        .bind(url)
        .bind(body)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes one due delivery, pushing its next attempt `lease_ms` out so that no other
    /// dispatcher sends it concurrently.
    pub async fn claim_delivery(
        &self,
        max_attempts: i64,
        lease_ms: i64,
    ) -> Result<Option<Delivery>, CatalogError> {
        let now = now_ms();
        let row = sqlx::query(
            "UPDATE webhook_deliveries SET next_at = $2, attempts = attempts + 1
             WHERE id = (SELECT id FROM webhook_deliveries
                         WHERE delivered_at IS NULL AND attempts < $3 AND next_at <= $1
                         ORDER BY next_at LIMIT 1)
               AND next_at <= $1
             RETURNING id, video_id, url, body, attempts",
        )
        .bind(now)
        .bind(now + lease_ms)
        .bind(max_attempts)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Delivery {
                id: r.try_get("id")?,
                video_id: r.try_get("video_id")?,
                url: r.try_get("url")?,
                body: r.try_get("body")?,
                attempts: r.try_get("attempts")?,
            })
        })
        .transpose()
    }

    /// Records one delivery attempt: delivered, or due again after `retry_in_ms`.
    pub async fn record_delivery(
        &self,
        id: &str,
        status: Option<u16>,
        error: Option<&str>,
        delivered: bool,
        retry_in_ms: i64,
    ) -> Result<(), CatalogError> {
        let now = now_ms();
        sqlx::query(
            "UPDATE webhook_deliveries SET last_status = $2, last_error = $3,
               delivered_at = CASE WHEN $4 THEN $5 ELSE NULL END, next_at = $6
             WHERE id = $1",
        )
        .bind(id)
        .bind(status.map(i64::from))
        .bind(error)
        .bind(delivered)
        .bind(now)
        .bind(now + retry_in_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Delivery attempts for a video: (attempts, delivered, last status).
    pub async fn deliveries(
        &self,
        video_id: &str,
    ) -> Result<Vec<(i64, bool, Option<i64>)>, CatalogError> {
        let rows = sqlx::query(
            "SELECT attempts, delivered_at, last_status FROM webhook_deliveries
             WHERE video_id = $1 ORDER BY created_at",
        )
        .bind(video_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("attempts")?,
                    r.try_get::<Option<i64>, _>("delivered_at")?.is_some(),
                    r.try_get("last_status")?,
                ))
            })
            .collect()
    }
}
