//! Service tables: videos (each carries its job's state), uploads and their sealed parts,
//! API tokens (hashed) and the outbox of events (webhooks, job announcements).
//!
//! The video row is the single source of truth for a job. Whatever queue delivers the job
//! (the in-process one, or JetStream), a worker must *claim* the row before working on it:
//! the claim bumps `attempts`, which then acts as a fencing token. Only the holder of the
//! latest attempt can record a result, so a redelivered job never records a second one.
//! docs/jobs.md draws the state machine and the lease rules.
//!
//! Every multi-step change is one transaction, and the events it causes are written to
//! the outbox inside it: a crash either loses the change and its events together, or
//! keeps both. Lease deadlines and due times use the database's clock (`{now}` in the
//! SQL below), never a worker's, so workers with skewed clocks cannot steal or keep
//! leases. Times are Unix milliseconds.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Catalog, CatalogError, Hold};
use crate::domain::audit::Entry;
use crate::domain::clock::now_ms;
use crate::domain::{EventKind, JobState, OutboxEvent, UploadState};

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
CREATE TABLE IF NOT EXISTS token_limits (
    hash TEXT PRIMARY KEY,
    expires_at {INT},
    revoked_at {INT}
);
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    video_id TEXT NOT NULL,
    target TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts {INT} NOT NULL DEFAULT 0,
    next_at {INT} NOT NULL,
    delivered_at {INT},
    last_status {INT},
    last_error TEXT,
    created_at {INT} NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (delivered_at, next_at);
CREATE INDEX IF NOT EXISTS outbox_by_video ON outbox (video_id);
CREATE INDEX IF NOT EXISTS uploads_by_state ON uploads (state, created_at);
";

/// Which videos a listing shows (`None`: any).
#[derive(Debug, Default)]
pub struct VideoFilter<'a> {
    pub state: Option<JobState>,
    pub verdict: Option<&'a str>,
    pub owner: Option<&'a str>,
    /// Only escalated ones (probable minor with explicit content).
    pub escalated: bool,
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

/// What an operator's retry did.
#[derive(Debug, PartialEq, Eq)]
pub enum Retry {
    /// Queued; announced by the outbox event `OutboxEvent::publish(id, round)`.
    Queued {
        round: i64,
    },
    Missing,
    /// Why not.
    Refused(&'static str),
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
    pub state: UploadState,
    /// When the catalog stored the row (Unix ms); `None` for a row not stored yet (the
    /// catalog sets it on insert).
    pub created_at_ms: Option<i64>,
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

/// A token as `vcw token list` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub role: String,
    pub label: Option<String>,
    pub created_at_ms: i64,
    /// None: never expires (tokens made before expiry existed, or `--days 0`).
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

/// An outbox event claimed for delivery.
#[derive(Clone, Debug)]
pub struct OutboxRow {
    pub event: OutboxEvent,
    /// Delivery attempts so far, this one included.
    pub attempts: i64,
}

/// One webhook's delivery record, for the video's status.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeliveryRecord {
    pub event_id: String,
    pub attempts: i64,
    pub delivered: bool,
    pub last_status: Option<i64>,
    /// Why the last attempt failed without an answer (a refused address, a timeout).
    pub last_error: Option<String>,
}

/// How recording a new upload went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewUpload {
    Created,
    /// The id is taken, by an upload or a video.
    Exists,
    /// The owner's unfinished uploads already reserve `reserved` bytes.
    OverBudget {
        reserved: i64,
    },
}

/// How adding an upload part went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartAdded {
    /// Bytes received so far; the upload is still open.
    Received(i64),
    /// The last part: the upload is complete and its video queued (in the same step).
    Completed,
    /// The offset no longer matched (a concurrent request won), or the upload is closed.
    Conflict,
}

/// A state column, refusing a name this version does not know.
fn parse_state<T>(r: &AnyRow, parse: fn(&str) -> Option<T>) -> Result<T, CatalogError> {
    let name: String = r.try_get("state")?;
    parse(&name).ok_or_else(|| {
        CatalogError::Query(sqlx::Error::Decode(
            format!("unknown state {name:?}").into(),
        ))
    })
}

fn video_row(r: &AnyRow) -> Result<VideoRow, CatalogError> {
    Ok(VideoRow {
        id: r.try_get("id")?,
        subject_hash: r.try_get("subject_hash")?,
        owner: r.try_get("owner")?,
        source: r.try_get("source")?,
        state: parse_state(r, JobState::parse)?,
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
        state: parse_state(r, UploadState::parse)?,
        created_at_ms: Some(r.try_get("created_at")?),
    })
}

/// How long a fresh job announcement is left to the request that wrote it.
const PUBLISH_GRACE_MS: i64 = 2_000;

/// Inserts an outbox event inside the caller's transaction. Inserting an id that exists
/// is a no-op: recording the same outcome twice causes one event.
pub(super) async fn insert_event(
    conn: &mut sqlx::AnyConnection,
    now_sql: &str,
    e: &OutboxEvent,
) -> Result<(), CatalogError> {
    sqlx::query(&format!(
        "INSERT INTO outbox (id, kind, video_id, target, body, next_at, created_at)
         VALUES ($1, $2, $3, $4, $5, {now_sql} + $6, {now_sql}) ON CONFLICT (id) DO NOTHING"
    ))
    .bind(&e.id)
    .bind(e.kind.as_str())
    .bind(&e.video_id)
    .bind(&e.target)
    .bind(&e.body)
    .bind(match e.kind {
        // The committing request publishes at once; the dispatcher steps in only if that
        // did not go through, so it need not race the fast path.
        EventKind::Publish => PUBLISH_GRACE_MS,
        EventKind::Webhook => 0,
    })
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Commits `tx` with `event` if its fenced update `matched`; otherwise rolls back.
/// Returns `matched`.
async fn commit_with_event(
    mut tx: sqlx::Transaction<'_, sqlx::Any>,
    matched: bool,
    now_sql: &str,
    event: Option<&OutboxEvent>,
) -> Result<bool, CatalogError> {
    if !matched {
        return Ok(false);
    }
    if let Some(e) = event {
        insert_event(&mut tx, now_sql, e).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Appends the audit record of a change to video `id`, its subject read in the same
/// transaction.
async fn audit_video(
    conn: &mut sqlx::AnyConnection,
    now_sql: &str,
    id: &str,
    actor: &str,
    action: &str,
    result: &str,
) -> Result<(), CatalogError> {
    let subject: Option<String> = sqlx::query("SELECT subject_hash FROM videos WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| r.try_get("subject_hash"))
        .transpose()?;
    let entry = Entry {
        actor: actor.to_string(),
        action: action.to_string(),
        object: id.to_string(),
        result: result.to_string(),
        subject,
        request_id: None,
    };
    super::audit::append(conn, now_sql, entry).await
}

/// The statement that ends an attempt, fenced by its attempt number; `extra` narrows it
/// further (the reaper only ends attempts whose lease expired).
const END_ATTEMPT: &str = "UPDATE videos SET state = $3, error = $4, available_at = {now} + $5,
       lease_until = 0, updated_at = {now}
     WHERE id = $1 AND attempts = $2 AND state = 'running'";

impl Catalog {
    /// Records a new queued video, with its announcement on the job queue when `publish`
    /// (a job that arrived on the queue needs none). Returns false if the id exists
    /// already (an idempotent resubmission); then nothing was written.
    pub async fn insert_video(
        &self,
        v: &NewVideo<'_>,
        publish: bool,
    ) -> Result<bool, CatalogError> {
        let mut tx = self.pool.begin().await?;
        let created = insert_video_row(&mut tx, &self.now_sql(), v).await?;
        if created && publish {
            insert_event(&mut tx, &self.now_sql(), &OutboxEvent::publish(v.id, 0)).await?;
        }
        tx.commit().await?;
        Ok(created)
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

    /// The next job that is due, or whose worker's lease ran out (it crashed). A
    /// cancelled job whose worker died is the reaper's to end, not a worker's.
    pub async fn next_due(&self) -> Result<Option<String>, CatalogError> {
        let row = sqlx::query(&self.sql(
            "SELECT id FROM videos
             WHERE (state = 'queued' AND available_at <= {now})
                OR (state = 'running' AND lease_until < {now} AND cancel_requested = 0)
             ORDER BY available_at LIMIT 1",
        ))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("id")).transpose()?)
    }

    /// Takes the job for `lease_ms`, unless it is finished, cancelled or leased by
    /// another worker. The claim bumps `attempts`: the new attempt's fencing token.
    pub async fn claim(&self, id: &str, lease_ms: i64) -> Result<ClaimOutcome, CatalogError> {
        let claimed = sqlx::query(&self.sql(
            "UPDATE videos SET state = 'running', attempts = attempts + 1,
               lease_until = {now} + $2, updated_at = {now}
             WHERE id = $1 AND cancel_requested = 0
               AND ((state = 'queued' AND available_at <= {now})
                 OR (state = 'running' AND lease_until < {now}))
             RETURNING *",
        ))
        .bind(id)
        .bind(lease_ms)
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
        Ok(match self.video(id).await? {
            None => ClaimOutcome::Missing,
            // A cancelled job never runs again: a queued one was ended by the cancel
            // itself, a running one whose worker died is ended by the reaper.
            Some(v) if v.state.is_final() || v.cancel_requested => ClaimOutcome::Finished,
            Some(_) => ClaimOutcome::Busy,
        })
    }

    /// Extends the lease and records progress. Returns `Ok(None)` if the claim was lost
    /// (another attempt took over, or the reaper ended this one), else whether
    /// cancellation was requested.
    pub async fn heartbeat(
        &self,
        id: &str,
        attempt: i64,
        progress: f64,
        lease_ms: i64,
    ) -> Result<Option<bool>, CatalogError> {
        let row = sqlx::query(&self.sql(
            "UPDATE videos SET lease_until = {now} + $3, progress = $4, updated_at = {now}
             WHERE id = $1 AND attempts = $2 AND state = 'running' AND lease_until >= {now}
             RETURNING cancel_requested",
        ))
        .bind(id)
        .bind(attempt)
        .bind(lease_ms)
        .bind(progress)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row
            .map(|r| r.try_get::<i64, _>("cancel_requested"))
            .transpose()?
            .map(|c| c != 0))
    }

    /// Records the result of attempt `attempt`, and its webhook, in one transaction: the
    /// job is `done`, or `failed` with the verdict and manifest kept when its stored
    /// rendition failed its check (the original is what is stored). Returns false if that attempt no longer holds the job or the job was cancelled
    /// (or is being erased): then nothing was recorded.
    pub async fn complete(
        &self,
        id: &str,
        attempt: i64,
        result: &Completion<'_>,
        event: Option<&OutboxEvent>,
    ) -> Result<bool, CatalogError> {
        let (state, error) = match result.failed_check {
            None => (JobState::Done, None),
            Some(e) => (JobState::Failed, Some(e)),
        };
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(&self.sql(
            "UPDATE videos SET state = $3, progress = 1, verdict = $4, report = $5,
               manifest = $6, error = $7, lease_until = 0, updated_at = {now}
             WHERE id = $1 AND attempts = $2 AND state = 'running' AND cancel_requested = 0",
        ))
        .bind(id)
        .bind(attempt)
        .bind(state.as_str())
        .bind(result.verdict)
        .bind(result.report)
        .bind(result.manifest)
        .bind(error)
        .execute(&mut *tx)
        .await?;
        let matched = done.rows_affected() == 1;
        if matched {
            let action = format!("job.{}", state.as_str());
            let outcome = error.unwrap_or("ok");
            audit_video(&mut tx, &self.now_sql(), id, "worker", &action, outcome).await?;
            if let Some(reason) = result.hold {
                let subject: String = sqlx::query("SELECT subject_hash FROM videos WHERE id = $1")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get("subject_hash")?;
                super::subjects::set_hold_in(&mut tx, &self.now_sql(), &subject, reason, "policy")
                    .await?;
            }
        }
        commit_with_event(tx, matched, &self.now_sql(), event).await
    }

    /// Ends attempt `attempt` without a result, with its event, in one transaction:
    /// `Failed`/`Cancelled`/`Dead` are final, `Queued` retries after `retry_in_ms`.
    /// Returns false if the claim was lost (nothing recorded).
    pub async fn fail(
        &self,
        id: &str,
        attempt: i64,
        end: &AttemptEnd<'_>,
        event: Option<&OutboxEvent>,
    ) -> Result<bool, CatalogError> {
        self.end_attempt(id, attempt, end, event, "", "worker")
            .await
    }

    async fn end_attempt(
        &self,
        id: &str,
        attempt: i64,
        end: &AttemptEnd<'_>,
        event: Option<&OutboxEvent>,
        extra: &str,
        actor: &str,
    ) -> Result<bool, CatalogError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(&self.sql(&format!("{END_ATTEMPT}{extra}")))
            .bind(id)
            .bind(attempt)
            .bind(end.state.as_str())
            .bind(end.error)
            .bind(end.retry_in_ms)
            .execute(&mut *tx)
            .await?;
        let matched = done.rows_affected() == 1;
        if matched {
            let action = format!("job.{}", end.state.as_str());
            audit_video(&mut tx, &self.now_sql(), id, actor, &action, end.error).await?;
        }
        commit_with_event(tx, matched, &self.now_sql(), event).await
    }

    /// Running jobs whose lease ran out: their worker died, hangs, or lost its way to
    /// the catalog (the reaper ends or requeues them).
    pub async fn expired_leases(&self) -> Result<Vec<VideoRow>, CatalogError> {
        let rows =
            sqlx::query(&self.sql(
                "SELECT * FROM videos WHERE state = 'running' AND lease_until < {now} LIMIT 100",
            ))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(video_row).collect()
    }

    /// [`Catalog::fail`] for the reaper: only while the attempt's lease is still expired,
    /// so a worker that renewed meanwhile keeps its job.
    pub async fn end_expired(
        &self,
        id: &str,
        attempt: i64,
        end: &AttemptEnd<'_>,
        event: Option<&OutboxEvent>,
    ) -> Result<bool, CatalogError> {
        self.end_attempt(
            id,
            attempt,
            end,
            event,
            " AND lease_until < {now}",
            "reaper",
        )
        .await
    }

    /// Asks for cancellation: a queued job is cancelled at once, a running one at its
    /// next heartbeat (or by the reaper if its worker is gone). Returns the state after
    /// the request.
    pub async fn request_cancel(
        &self,
        id: &str,
        actor: &str,
    ) -> Result<Option<JobState>, CatalogError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(&self.sql(
            "UPDATE videos SET cancel_requested = 1,
               state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
               updated_at = {now}
             WHERE id = $1 AND state IN ('queued', 'running')",
        ))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            audit_video(
                &mut tx,
                &self.now_sql(),
                id,
                actor,
                "job.cancel_requested",
                "ok",
            )
            .await?;
        }
        tx.commit().await?;
        Ok(self.video(id).await?.map(|v| v.state))
    }

    /// First step of an erasure: from now on the video answers 410, no attempt may
    /// record a result, and a queued job is cancelled. Returns the row as it now is
    /// (`None`: no such video), or the legal hold on its subject that suspends erasure
    /// (one that started before the hold goes on: its bytes may be gone already).
    pub async fn begin_erase(
        &self,
        id: &str,
        actor: &str,
    ) -> Result<Result<Option<VideoRow>, Hold>, CatalogError> {
        // A hold set or released in between makes the check below disagree: look again.
        for _ in 0..3 {
            let mut tx = self.pool.begin().await?;
            let done = sqlx::query(&self.sql(
                "UPDATE videos SET cancel_requested = 1,
                   erased_at = COALESCE(erased_at, {now}),
                   state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
                   updated_at = {now}
                 WHERE id = $1 AND (erased_at IS NOT NULL OR NOT EXISTS (SELECT 1
                   FROM legal_holds h
                   WHERE h.subject_hash = videos.subject_hash AND h.released_at IS NULL))",
            ))
            .bind(id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                audit_video(
                    &mut tx,
                    &self.now_sql(),
                    id,
                    actor,
                    "video.erase_started",
                    "ok",
                )
                .await?;
                tx.commit().await?;
                return Ok(Ok(self.video(id).await?));
            }
            tx.rollback().await?;
            let Some(video) = self.video(id).await? else {
                return Ok(Ok(None));
            };
            if let Some(hold) = self.active_hold(&video.subject_hash).await? {
                return Ok(Err(hold));
            }
        }
        Err(CatalogError::Query(sqlx::Error::Protocol(
            "a legal hold kept changing during the erasure; try again".into(),
        )))
    }

    /// Last step of an erasure, once its objects are shredded and deleted: drops the
    /// report and manifest, and ends a job that never came back. The verdict stays, for
    /// the audit trail.
    pub async fn finish_erase(&self, id: &str) -> Result<(), CatalogError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(&self.sql(
            "UPDATE videos SET report = NULL, manifest = NULL, lease_until = 0,
               state = CASE WHEN state IN ('queued', 'running') THEN 'cancelled' ELSE state END,
               updated_at = {now}
             WHERE id = $1 AND erased_at IS NOT NULL",
        ))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            audit_video(
                &mut tx,
                &self.now_sql(),
                id,
                "erasure",
                "video.erased",
                "ok",
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every video of a subject (its keyed hash), oldest first: data-subject access.
    /// Runs a dead or failed job again (an operator's retry), with `attempts` more
    /// attempts: queued and announced in one transaction, and audited. Refused unless
    /// the job is dead or failed, unerased, and its source still exists (an S3 object;
    /// an upload's staged data is gone once its job ended).
    pub async fn retry_job(
        &self,
        id: &str,
        attempts: i64,
        actor: &str,
    ) -> Result<Retry, CatalogError> {
        let Some(video) = self.video(id).await? else {
            return Ok(Retry::Missing);
        };
        if !matches!(video.state, JobState::Dead | JobState::Failed) || video.erased_at.is_some() {
            return Ok(Retry::Refused(
                "only a dead or failed, unerased job can be retried",
            ));
        }
        if !matches!(
            serde_json::from_str(&video.source),
            Ok(crate::domain::JobSource::S3 { .. })
        ) {
            return Ok(Retry::Refused(
                "the upload's staged data is gone once its job ended: upload the video again",
            ));
        }
        let mut tx = self.pool.begin().await?;
        // Only from the state just read: a concurrent retry (or erasure) wins, this one
        // does nothing.
        let done = sqlx::query(&self.sql(
            "UPDATE videos SET state = 'queued', available_at = {now}, lease_until = 0,
               progress = 0, error = NULL, max_attempts = attempts + $2, updated_at = {now}
             WHERE id = $1 AND state = $3 AND attempts = $4 AND erased_at IS NULL",
        ))
        .bind(id)
        .bind(attempts)
        .bind(video.state.as_str())
        .bind(video.attempts)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(Retry::Refused("the job changed meanwhile: look again"));
        }
        let event = OutboxEvent::publish(id, video.attempts);
        insert_event(&mut tx, &self.now_sql(), &event).await?;
        let result = format!("was {}", video.state.as_str());
        audit_video(&mut tx, &self.now_sql(), id, actor, "job.retried", &result).await?;
        tx.commit().await?;
        Ok(Retry::Queued {
            round: video.attempts,
        })
    }

    /// Videos newest first, filtered, before the cursor `(created_at, id)` of a
    /// previous page; at most `limit`.
    pub async fn list_videos(
        &self,
        filter: &VideoFilter<'_>,
        before: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<VideoRow>, CatalogError> {
        let (before_at, before_id) = before.unwrap_or((i64::MAX, ""));
        // The report is the JSON serde writes (compact), so the flag reads as below.
        let rows = sqlx::query(
            "SELECT * FROM videos
             WHERE ($1 = '' OR state = $1) AND ($2 = '' OR verdict = $2)
               AND ($3 = '' OR owner = $3)
               AND ($7 = 0 OR report LIKE '%\"escalate\":true%')
               AND (created_at < $4 OR (created_at = $4 AND ($5 = '' OR id < $5)))
             ORDER BY created_at DESC, id DESC LIMIT $6",
        )
        .bind(filter.state.map_or("", JobState::as_str))
        .bind(filter.verdict.unwrap_or(""))
        .bind(filter.owner.unwrap_or(""))
        .bind(before_at)
        .bind(before_id)
        .bind(limit)
        .bind(i64::from(filter.escalated))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(video_row).collect()
    }

    /// How many jobs are in each state.
    pub async fn job_counts(&self) -> Result<std::collections::HashMap<String, i64>, CatalogError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM videos GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("state")?, r.try_get("n")?)))
            .collect()
    }

    pub async fn videos_of(&self, subject_hash: &str) -> Result<Vec<VideoRow>, CatalogError> {
        let rows =
            sqlx::query("SELECT * FROM videos WHERE subject_hash = $1 ORDER BY created_at, id")
                .bind(subject_hash)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(video_row).collect()
    }

    /// Erasures that started but did not finish (the process died midway).
    pub async fn unfinished_erasures(&self) -> Result<Vec<VideoRow>, CatalogError> {
        let rows = sqlx::query(
            "SELECT * FROM videos WHERE erased_at IS NOT NULL
               AND (manifest IS NOT NULL OR report IS NOT NULL OR state IN ('queued', 'running'))
             LIMIT 100",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(video_row).collect()
    }

    // --- uploads -------------------------------------------------------------------

    /// Records a new upload before any of its bytes are stored. Returns false if the id
    /// is taken, by an upload or by a video.
    /// Records a new upload unless its id is taken (by an upload or a video) or its
    /// owner's unfinished uploads would reserve more than `budget` bytes with it. The
    /// budget holds under concurrent creates: they are serialized per owner.
    pub async fn insert_upload(
        &self,
        u: &UploadRow,
        budget: u64,
    ) -> Result<NewUpload, CatalogError> {
        let mut tx = self.pool.begin().await?;
        if self.postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7612002, hashtext($1))")
                .bind(&u.owner)
                .execute(&mut *tx)
                .await?;
        } else {
            // Takes SQLite's write lock before the sum is read.
            sqlx::query("UPDATE uploads SET owner = owner WHERE id = ''")
                .execute(&mut *tx)
                .await?;
        }
        let reserved: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(length), 0) AS BIGINT) FROM uploads
             WHERE owner = $1 AND state = 'receiving'",
        )
        .bind(&u.owner)
        .fetch_one(&mut *tx)
        .await?;
        if (reserved.max(0) as u64).saturating_add(u.length.max(0) as u64) > budget {
            // Now, not on drop: a rollback left for later keeps SQLite's write lock.
            tx.rollback().await?;
            return Ok(NewUpload::OverBudget { reserved });
        }
        let done = sqlx::query(&self.sql(
            "INSERT INTO uploads (id, subject_hash, owner, length, received, filename,
               callback_url, state, created_at)
             VALUES ($1, $2, $3, $4, 0, $5, $6, 'receiving', {now})
             ON CONFLICT (id) DO NOTHING",
        ))
        .bind(&u.id)
        .bind(&u.subject_hash)
        .bind(&u.owner)
        .bind(u.length)
        .bind(&u.filename)
        .bind(&u.callback_url)
        .execute(&mut *tx)
        .await?;
        let video = sqlx::query("SELECT 1 AS one FROM videos WHERE id = $1")
            .bind(&u.id)
            .fetch_optional(&mut *tx)
            .await?;
        if done.rows_affected() != 1 || video.is_some() {
            tx.rollback().await?;
            return Ok(NewUpload::Exists);
        }
        tx.commit().await?;
        Ok(NewUpload::Created)
    }

    pub async fn upload(&self, id: &str) -> Result<Option<UploadRow>, CatalogError> {
        let row = sqlx::query("SELECT * FROM uploads WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| upload_row(&r)).transpose()
    }

    /// Appends a stored part at `part.start`, which must equal the bytes received so far
    /// (a concurrent PATCH at the same offset loses). When it is the last part, the
    /// upload's video `video` is recorded and announced in the same transaction.
    pub async fn add_upload_part(
        &self,
        upload_id: &str,
        part: &UploadPart,
        video: &NewVideo<'_>,
    ) -> Result<PartAdded, CatalogError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE uploads SET received = received + $3,
               state = CASE WHEN received + $3 = length THEN 'complete' ELSE state END
             WHERE id = $1 AND received = $2 AND state = 'receiving' AND received + $3 <= length
             RETURNING received, length",
        )
        .bind(upload_id)
        .bind(part.start)
        .bind(part.len)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(PartAdded::Conflict);
        };
        insert_part(&mut tx, upload_id, part).await?;
        let received: i64 = row.try_get("received")?;
        if received < row.try_get::<i64, _>("length")? {
            tx.commit().await?;
            return Ok(PartAdded::Received(received));
        }
        if !insert_video_row(&mut tx, &self.now_sql(), video).await? {
            // The id was taken meanwhile (a job by reference): nothing is recorded.
            tx.rollback().await?;
            return Ok(PartAdded::Conflict);
        }
        insert_event(&mut tx, &self.now_sql(), &OutboxEvent::publish(video.id, 0)).await?;
        tx.commit().await?;
        Ok(PartAdded::Completed)
    }

    /// Completes a whole-body upload (PUT) with its only part, and records and announces
    /// its video, in one transaction. False if the upload was not open and empty, or the
    /// video id is taken; then nothing changed.
    pub async fn complete_put(
        &self,
        part: &UploadPart,
        video: &NewVideo<'_>,
    ) -> Result<bool, CatalogError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE uploads SET length = $2, received = $2, state = 'complete'
             WHERE id = $1 AND state = 'receiving' AND received = 0",
        )
        .bind(video.id)
        .bind(part.len)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_part(&mut tx, video.id, part).await?;
        if !insert_video_row(&mut tx, &self.now_sql(), video).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_event(&mut tx, &self.now_sql(), &OutboxEvent::publish(video.id, 0)).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Forgets an upload that never received a byte (a PUT whose body failed): the id is
    /// free again.
    pub async fn drop_empty_upload(&self, id: &str) -> Result<(), CatalogError> {
        sqlx::query("DELETE FROM uploads WHERE id = $1 AND state = 'receiving' AND received = 0")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn upload_parts(&self, upload_id: &str) -> Result<Vec<UploadPart>, CatalogError> {
        let rows = sqlx::query("SELECT * FROM upload_parts WHERE upload_id = $1 ORDER BY start")
            .bind(upload_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(part_row).collect()
    }

    /// Whether any upload part is stored under `store_key` (the orphan sweep).
    pub async fn part_exists(&self, store_key: &str) -> Result<bool, CatalogError> {
        Ok(
            sqlx::query("SELECT 1 AS one FROM upload_parts WHERE store_key = $1")
                .bind(store_key)
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }

    /// Ends an upload (`Terminated` by the client, `Consumed` by its job, `Erased`) if it
    /// is in one of `from`, and takes its parts in the same transaction; the caller
    /// deletes and shreds them (the orphan sweep catches them after a crash). Returns
    /// None if the upload was not in one of `from`.
    pub async fn close_upload(
        &self,
        upload_id: &str,
        from: &[UploadState],
        to: UploadState,
    ) -> Result<Option<Vec<UploadPart>>, CatalogError> {
        let mut tx = self.pool.begin().await?;
        let states: Vec<String> = from.iter().map(|s| format!("'{}'", s.as_str())).collect();
        let done = sqlx::query(&format!(
            "UPDATE uploads SET state = $2 WHERE id = $1 AND state IN ({})",
            states.join(", ")
        ))
        .bind(upload_id)
        .bind(to.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(None);
        }
        let parts = sqlx::query("DELETE FROM upload_parts WHERE upload_id = $1 RETURNING *")
            .bind(upload_id)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(part_row)
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit().await?;
        Ok(Some(parts))
    }

    /// Uploads of a subject not yet closed (receiving, or complete and not consumed).
    pub async fn open_uploads_of(&self, subject_hash: &str) -> Result<Vec<String>, CatalogError> {
        let rows = sqlx::query(
            "SELECT id FROM uploads WHERE subject_hash = $1 AND state IN ('receiving', 'complete')",
        )
        .bind(subject_hash)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get("id").map_err(CatalogError::from))
            .collect()
    }

    /// Uploads still receiving that were created more than `age_ms` ago.
    pub async fn stale_uploads(&self, age_ms: i64) -> Result<Vec<String>, CatalogError> {
        let rows = sqlx::query(&self.sql(
            "SELECT id FROM uploads WHERE state = 'receiving' AND created_at < {now} - $1 LIMIT 100",
        ))
        .bind(age_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(r.try_get("id")?))
            .collect::<Result<_, CatalogError>>()
    }

    /// Complete uploads whose video has ended (a crash came between the job's end and
    /// discarding its staged parts).
    pub async fn finished_uploads(&self) -> Result<Vec<String>, CatalogError> {
        let rows = sqlx::query(
            "SELECT u.id AS id FROM uploads u JOIN videos v ON v.id = u.id
             WHERE u.state = 'complete' AND v.state IN ('done', 'failed', 'dead', 'cancelled')
             LIMIT 100",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(r.try_get("id")?))
            .collect::<Result<_, CatalogError>>()
    }

    // --- tokens --------------------------------------------------------------------

    /// Stores a new token's hash, public id, role and expiry (`None`: never), in one
    /// transaction.
    pub async fn insert_token(
        &self,
        hash: &str,
        id: &str,
        role: &str,
        label: Option<&str>,
        expires_at: Option<i64>,
    ) -> Result<(), CatalogError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO tokens (hash, id, role, label, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hash)
        .bind(id)
        .bind(role)
        .bind(label)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO token_limits (hash, expires_at) VALUES ($1, $2)")
            .bind(hash)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every token, newest first (hashes never leave the catalog).
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, CatalogError> {
        let rows = sqlx::query(
            "SELECT t.id, t.role, t.label, t.created_at, l.expires_at, l.revoked_at
             FROM tokens t LEFT JOIN token_limits l ON l.hash = t.hash
             ORDER BY t.created_at DESC, t.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TokenInfo {
                    id: r.try_get("id")?,
                    role: r.try_get("role")?,
                    label: r.try_get("label")?,
                    created_at_ms: r.try_get("created_at")?,
                    expires_at_ms: r.try_get("expires_at")?,
                    revoked_at_ms: r.try_get("revoked_at")?,
                })
            })
            .collect()
    }

    /// Revokes the tokens whose public id is `id` (from the next request on); how many.
    pub async fn revoke_token(&self, id: &str) -> Result<u64, CatalogError> {
        let mut tx = self.pool.begin().await?;
        let hashes = sqlx::query("SELECT hash FROM tokens WHERE id = $1")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        let mut n = 0;
        for row in &hashes {
            let hash: String = row.try_get("hash")?;
            let done = sqlx::query(&self.sql(
                "INSERT INTO token_limits (hash, revoked_at) VALUES ($1, {now})
                 ON CONFLICT (hash) DO UPDATE SET revoked_at = excluded.revoked_at
                 WHERE token_limits.revoked_at IS NULL",
            ))
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
            n += done.rows_affected();
        }
        tx.commit().await?;
        Ok(n)
    }

    /// The token with this hash, if it is neither expired nor revoked.
    pub async fn token(&self, hash: &str) -> Result<Option<TokenRow>, CatalogError> {
        let row = sqlx::query(&self.sql(
            "SELECT t.id, t.role, t.label FROM tokens t
             LEFT JOIN token_limits l ON l.hash = t.hash
             WHERE t.hash = $1 AND l.revoked_at IS NULL
               AND (l.expires_at IS NULL OR l.expires_at > {now})",
        ))
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

    // --- outbox --------------------------------------------------------------------

    /// Events still to deliver (webhooks that gave up excluded), and when the oldest was
    /// written (Unix ms).
    pub async fn outbox_backlog(
        &self,
        max_webhook_attempts: i64,
    ) -> Result<(i64, Option<i64>), CatalogError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox
             WHERE delivered_at IS NULL AND (attempts < $1 OR kind = 'publish')",
        )
        .bind(max_webhook_attempts)
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("n")?, row.try_get("oldest")?))
    }

    /// Takes one due event, pushing its next attempt `lease_ms` out so that no other
    /// dispatcher delivers it concurrently. Webhooks give up after `max_webhook_attempts`;
    /// job announcements never do (a lost one would strand its job).
    pub async fn claim_event(
        &self,
        max_webhook_attempts: i64,
        lease_ms: i64,
    ) -> Result<Option<OutboxRow>, CatalogError> {
        let row = sqlx::query(&self.sql(
            "UPDATE outbox SET next_at = {now} + $1, attempts = attempts + 1
             WHERE id = (SELECT id FROM outbox
                         WHERE delivered_at IS NULL AND next_at <= {now}
                           AND (attempts < $2 OR kind = 'publish')
                         ORDER BY next_at LIMIT 1)
               AND next_at <= {now}
             RETURNING *",
        ))
        .bind(lease_ms)
        .bind(max_webhook_attempts)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let kind: String = r.try_get("kind")?;
            Ok(OutboxRow {
                event: OutboxEvent {
                    id: r.try_get("id")?,
                    kind: EventKind::parse(&kind).ok_or_else(|| {
                        CatalogError::Query(sqlx::Error::Decode(
                            format!("unknown event kind {kind:?}").into(),
                        ))
                    })?,
                    video_id: r.try_get("video_id")?,
                    target: r.try_get("target")?,
                    body: r.try_get("body")?,
                },
                attempts: r.try_get("attempts")?,
            })
        })
        .transpose()
    }

    /// Records one delivery attempt: delivered, or due again after `retry_in_ms`.
    /// Hands a claimed event back unsent (its receiver was busy): the attempt is not
    /// counted, and it is due again in `retry_in_ms`.
    pub async fn release_event(&self, id: &str, retry_in_ms: i64) -> Result<(), CatalogError> {
        sqlx::query(&self.sql(
            "UPDATE outbox SET attempts = attempts - 1, next_at = {now} + $2
             WHERE id = $1 AND delivered_at IS NULL AND attempts > 0",
        ))
        .bind(id)
        .bind(retry_in_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn record_event(
        &self,
        id: &str,
        status: Option<u16>,
        error: Option<&str>,
        delivered: bool,
        retry_in_ms: i64,
    ) -> Result<(), CatalogError> {
        sqlx::query(&self.sql(
            "UPDATE outbox SET last_status = $2, last_error = $3,
               delivered_at = CASE WHEN $4 THEN {now} ELSE NULL END, next_at = {now} + $5
             WHERE id = $1 AND delivered_at IS NULL",
        ))
        .bind(id)
        .bind(status.map(i64::from))
        .bind(error)
        .bind(delivered)
        .bind(retry_in_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Events not delivered yet, of one kind (readiness, tests, the dashboard).
    pub async fn pending_events(&self, kind: EventKind) -> Result<i64, CatalogError> {
        let n = sqlx::query(
            "SELECT COUNT(*) AS n FROM outbox WHERE kind = $1 AND delivered_at IS NULL",
        )
        .bind(kind.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(n.try_get("n")?)
    }

    /// A video's webhook deliveries, oldest first.
    pub async fn deliveries(&self, video_id: &str) -> Result<Vec<DeliveryRecord>, CatalogError> {
        let rows = sqlx::query(
            "SELECT id, attempts, delivered_at, last_status, last_error FROM outbox
             WHERE video_id = $1 AND kind = 'webhook' ORDER BY created_at, id",
        )
        .bind(video_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeliveryRecord {
                    event_id: r.try_get("id")?,
                    attempts: r.try_get("attempts")?,
                    delivered: r.try_get::<Option<i64>, _>("delivered_at")?.is_some(),
                    last_status: r.try_get("last_status")?,
                    last_error: r.try_get("last_error")?,
                })
            })
            .collect()
    }
}

/// The result of an attempt that scanned and stored its video.
pub struct Completion<'a> {
    pub verdict: &'a str,
    /// The scan report, JSON.
    pub report: &'a str,
    /// The manifest of what was stored, JSON.
    pub manifest: &'a str,
    /// Why the stored rendition failed its read-back check: the job ends `failed`.
    pub failed_check: Option<&'a str>,
    /// Puts the subject under a legal hold, for this reason (a blocked and escalated
    /// upload: evidence that must not be erased).
    pub hold: Option<&'a str>,
}

/// How an attempt ends without a result.
pub struct AttemptEnd<'a> {
    pub state: JobState,
    pub error: &'a str,
    /// For `Queued`: when the job is due again.
    pub retry_in_ms: i64,
}

async fn insert_video_row(
    conn: &mut sqlx::AnyConnection,
    now_sql: &str,
    v: &NewVideo<'_>,
) -> Result<bool, CatalogError> {
    let done = sqlx::query(&format!(
        "INSERT INTO videos (id, subject_hash, owner, source, state, max_attempts, available_at,
           callback_url, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'queued', $5, {now_sql}, $6, {now_sql}, {now_sql})
         ON CONFLICT (id) DO NOTHING"
    ))
    .bind(v.id)
    .bind(v.subject_hash)
    .bind(v.owner)
    .bind(v.source)
    .bind(v.max_attempts)
    .bind(v.callback_url)
    .execute(&mut *conn)
    .await?;
    let created = done.rows_affected() == 1;
    if created {
        let entry = Entry {
            actor: v.owner.to_string(),
            action: "video.queued".into(),
            object: v.id.to_string(),
            result: "ok".into(),
            subject: Some(v.subject_hash.to_string()),
            request_id: None,
        };
        super::audit::append(conn, now_sql, entry).await?;
    }
    Ok(created)
}

async fn insert_part(
    conn: &mut sqlx::AnyConnection,
    upload_id: &str,
    part: &UploadPart,
) -> Result<(), CatalogError> {
    sqlx::query(
        "INSERT INTO upload_parts (upload_id, start, len, store_key, object_id)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(upload_id)
    .bind(part.start)
    .bind(part.len)
    .bind(&part.store_key)
    .bind(&part.object_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn part_row(r: &AnyRow) -> Result<UploadPart, CatalogError> {
    Ok(UploadPart {
        start: r.try_get("start")?,
        len: r.try_get("len")?,
        store_key: r.try_get("store_key")?,
        object_id: r.try_get("object_id")?,
    })
}
