//! Data-subject requests in the catalog: legal holds, which suspend erasure, and subject
//! erasures, started in one transaction (every video of the subject marked erased, consent
//! revoked, the hold checked) and finished once the bytes are gone, with their receipt.

use sqlx::Row;

use super::{Catalog, CatalogError};
use crate::domain::audit::Entry;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS legal_holds (
    seq {SERIAL},
    subject_hash TEXT NOT NULL,
    reason TEXT NOT NULL,
    set_by TEXT NOT NULL,
    set_at {INT} NOT NULL,
    released_by TEXT,
    released_at {INT}
);
CREATE INDEX IF NOT EXISTS holds_by_subject ON legal_holds (subject_hash);
CREATE UNIQUE INDEX IF NOT EXISTS one_active_hold ON legal_holds (subject_hash)
    WHERE released_at IS NULL;
CREATE TABLE IF NOT EXISTS subject_erasures (
    subject_hash TEXT PRIMARY KEY,
    started_at {INT} NOT NULL,
    finished_at {INT},
    actor TEXT NOT NULL,
    receipt TEXT
);
";

/// An active legal hold.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Hold {
    pub reason: String,
    pub set_by: String,
    pub set_at_ms: i64,
}

/// How a subject erasure started.
#[derive(Debug)]
pub enum ErasureStart {
    /// Started (or resumed): the subject's videos, every one now marked erased.
    Started { videos: Vec<String> },
    /// A legal hold suspends it.
    Held(Hold),
}

/// The clause that finds a subject's active hold (the subject hash bound as `$1`).
const ACTIVE_HOLD: &str = "SELECT reason, set_by, set_at FROM legal_holds
     WHERE subject_hash = $1 AND released_at IS NULL ORDER BY seq LIMIT 1";

fn hold_row(r: &sqlx::any::AnyRow) -> Result<Hold, CatalogError> {
    Ok(Hold {
        reason: r.try_get("reason")?,
        set_by: r.try_get("set_by")?,
        set_at_ms: r.try_get("set_at")?,
    })
}

/// Sets a hold within `conn`'s transaction unless one is active. True if set. The
/// partial unique index decides, not a `NOT EXISTS` check: under READ COMMITTED two
/// transactions would both see no active hold and both insert one.
pub(super) async fn set_hold_in(
    conn: &mut sqlx::AnyConnection,
    now_sql: &str,
    subject_hash: &str,
    reason: &str,
    actor: &str,
) -> Result<bool, CatalogError> {
    let done = sqlx::query(&format!(
        "INSERT INTO legal_holds (subject_hash, reason, set_by, set_at)
         VALUES ($1, $2, $3, {now_sql})
         ON CONFLICT (subject_hash) WHERE released_at IS NULL DO NOTHING"
    ))
    .bind(subject_hash)
    .bind(reason)
    .bind(actor)
    .execute(&mut *conn)
    .await?;
    let set = done.rows_affected() == 1;
    if set {
        let e = Entry::about_subject(actor, "subject.hold_set", subject_hash, reason);
        super::audit::append(conn, now_sql, e).await?;
    }
    Ok(set)
}

impl Catalog {
    /// The subject's active legal hold, if any.
    pub async fn active_hold(&self, subject_hash: &str) -> Result<Option<Hold>, CatalogError> {
        sqlx::query(ACTIVE_HOLD)
            .bind(subject_hash)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(hold_row)
            .transpose()
    }

    /// Puts the subject under a legal hold (a no-op if one is active). True if set.
    pub async fn set_hold(
        &self,
        subject_hash: &str,
        reason: &str,
        actor: &str,
    ) -> Result<bool, CatalogError> {
        let mut tx = self.pool.begin().await?;
        let set = set_hold_in(&mut tx, &self.now_sql(), subject_hash, reason, actor).await?;
        tx.commit().await?;
        Ok(set)
    }

    /// Releases the subject's active hold. True if there was one.
    pub async fn release_hold(
        &self,
        subject_hash: &str,
        actor: &str,
    ) -> Result<bool, CatalogError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(&self.sql(
            "UPDATE legal_holds SET released_by = $2, released_at = {now}
             WHERE subject_hash = $1 AND released_at IS NULL",
        ))
        .bind(subject_hash)
        .bind(actor)
        .execute(&mut *tx)
        .await?;
        let released = done.rows_affected() > 0;
        if released {
            let e = Entry::about_subject(actor, "subject.hold_released", subject_hash, "ok");
            super::audit::append(&mut tx, &self.now_sql(), e).await?;
        }
        tx.commit().await?;
        Ok(released)
    }

    /// Starts (or resumes) erasing a subject, in one transaction: refused while a legal
    /// hold is active; otherwise every video of the subject is marked erased (410 from
    /// now on, jobs told to stop), consent is revoked, and the erasure is recorded so
    /// that the reaper finishes it if this process dies.
    pub async fn begin_subject_erasure(
        &self,
        subject_hash: &str,
        actor: &str,
    ) -> Result<ErasureStart, CatalogError> {
        let mut tx = self.pool.begin().await?;
        let slot = super::audit::reserve(&mut tx, &self.now_sql()).await?;
        if let Some(row) = sqlx::query(ACTIVE_HOLD)
            .bind(subject_hash)
            .fetch_optional(&mut *tx)
            .await?
        {
            tx.rollback().await?;
            return Ok(ErasureStart::Held(hold_row(&row)?));
        }
        sqlx::query(&self.sql(
            "INSERT INTO subject_erasures (subject_hash, started_at, actor)
             VALUES ($1, {now}, $2)
             ON CONFLICT (subject_hash) DO UPDATE
               SET started_at = excluded.started_at, actor = excluded.actor,
                   finished_at = NULL, receipt = NULL
               WHERE subject_erasures.finished_at IS NOT NULL",
        ))
        .bind(subject_hash)
        .bind(actor)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&self.sql(
            "UPDATE videos SET cancel_requested = 1,
               erased_at = COALESCE(erased_at, {now}),
               state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
               updated_at = {now}
             WHERE subject_hash = $1",
        ))
        .bind(subject_hash)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&self.sql(
            "INSERT INTO consent_events (subject_hash, kind, at, actor)
             VALUES ($1, 'revoke', {now}, $2)",
        ))
        .bind(subject_hash)
        .bind(actor)
        .execute(&mut *tx)
        .await?;
        let videos: Vec<String> =
            sqlx::query("SELECT id FROM videos WHERE subject_hash = $1 ORDER BY created_at, id")
                .bind(subject_hash)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get("id"))
                .collect::<Result<_, _>>()?;
        let result = format!("{} videos", videos.len());
        slot.write(
            &mut tx,
            Entry::about_subject(actor, "subject.erase_started", subject_hash, &result),
        )
        .await?;
        tx.commit().await?;
        Ok(ErasureStart::Started { videos })
    }

    /// Records the end of a subject erasure with its signed receipt (JSON).
    pub async fn finish_subject_erasure(
        &self,
        subject_hash: &str,
        receipt: &str,
    ) -> Result<(), CatalogError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(&self.sql(
            "UPDATE subject_erasures SET finished_at = {now}, receipt = $2
             WHERE subject_hash = $1 AND finished_at IS NULL",
        ))
        .bind(subject_hash)
        .bind(receipt)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            let e =
                Entry::about_subject("erasure", "subject.erased", subject_hash, "receipt issued");
            super::audit::append(&mut tx, &self.now_sql(), e).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The receipt of a finished subject erasure.
    pub async fn erasure_receipt(
        &self,
        subject_hash: &str,
    ) -> Result<Option<String>, CatalogError> {
        let row = sqlx::query("SELECT receipt FROM subject_erasures WHERE subject_hash = $1")
            .bind(subject_hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("receipt")).transpose()?.flatten())
    }

    /// Subjects whose consent lapsed more than `grace_ms` ago, with no consent granted
    /// since, not under a legal hold and not erased since: the expiry sweeper erases them.
    pub async fn lapsed_for_erasure(
        &self,
        grace_ms: i64,
        limit: i64,
    ) -> Result<Vec<String>, CatalogError> {
        let rows = sqlx::query(&self.sql(
            "SELECT DISTINCT e.subject_hash FROM consent_events e
             WHERE e.kind = 'expire' AND e.at < {now} - $1
               AND NOT EXISTS (SELECT 1 FROM consent_events g
                     WHERE g.subject_hash = e.subject_hash AND g.kind IN ('grant', 'renew')
                       AND g.expires_at > e.expires_at)
               AND NOT EXISTS (SELECT 1 FROM legal_holds h
                     WHERE h.subject_hash = e.subject_hash AND h.released_at IS NULL)
               AND NOT EXISTS (SELECT 1 FROM subject_erasures x
                     WHERE x.subject_hash = e.subject_hash AND x.started_at > e.at)
             LIMIT $2",
        ))
        .bind(grace_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get("subject_hash").map_err(CatalogError::from))
            .collect()
    }

    /// Subject erasures that started and did not finish (a crash midway).
    pub async fn unfinished_subject_erasures(&self) -> Result<Vec<String>, CatalogError> {
        let rows = sqlx::query(
            "SELECT subject_hash FROM subject_erasures WHERE finished_at IS NULL LIMIT 100",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get("subject_hash").map_err(CatalogError::from))
            .collect()
    }
}
