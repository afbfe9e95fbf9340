//! The consent ledger: per data subject, an append-only list of events (grant, renew,
//! revoke, expire). Nothing here updates or deletes a ledger row. A subject's consent is
//! live while a token recorded for it was issued after its last revocation and has not
//! expired; comparing the token's issue time (not the time it was recorded) with the
//! revocation means a token from before a revocation never counts, whatever order two
//! racing transactions commit in.

use sqlx::Row;

use super::{Catalog, CatalogError};
use crate::domain::audit::Entry;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS consent_events (
    seq {SERIAL},
    subject_hash TEXT NOT NULL,
    kind TEXT NOT NULL,
    at {INT} NOT NULL,
    jti TEXT,
    issuer TEXT,
    purposes TEXT,
    issued_at {INT},
    expires_at {INT},
    actor TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS consent_by_subject ON consent_events (subject_hash, at);
CREATE UNIQUE INDEX IF NOT EXISTS consent_by_token ON consent_events (subject_hash, jti)
    WHERE jti IS NOT NULL;
";

/// A verified consent token to record.
pub struct Grant<'a> {
    pub subject_hash: &'a str,
    pub jti: &'a str,
    pub issuer: &'a str,
    pub purposes: &'a [String],
    /// The token's `iat` and `exp`, Unix milliseconds.
    pub issued_at: i64,
    pub expires_at: i64,
    /// Who presented it (the API token's public id).
    pub actor: &'a str,
}

impl<'a> Grant<'a> {
    /// The ledger entry for a verified token of the subject `subject_hash`.
    pub fn of(claims: &'a crate::consent::Claims, subject_hash: &'a str, actor: &'a str) -> Self {
        Grant {
            subject_hash,
            jti: &claims.jti,
            issuer: &claims.iss,
            purposes: &claims.purposes,
            issued_at: claims.iat.saturating_mul(1000),
            expires_at: claims.exp.saturating_mul(1000),
            actor,
        }
    }
}

/// What the ledger says about a subject now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsentState {
    /// Consent until `expires_at` (Unix ms).
    Live { expires_at: i64 },
    /// Revoked at `at`, and no token issued since.
    Revoked { at: i64 },
    /// The latest consent expired at `at`.
    Lapsed { at: i64 },
    /// Nothing recorded.
    None,
}

/// One ledger entry, for data-subject access and the dashboard.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ConsentEvent {
    pub kind: String,
    pub at_ms: i64,
    pub jti: Option<String>,
    pub issuer: Option<String>,
    pub purposes: Option<Vec<String>>,
    pub issued_at_ms: Option<i64>,
    pub expires_at_ms: Option<i64>,
    pub actor: String,
}

/// What a revocation did.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Revocation {
    /// When it took effect, Unix ms (the catalog's clock).
    pub at_ms: i64,
    /// Queued or running jobs of the subject told to stop.
    pub jobs_cancelled: u64,
}

const LAST_REVOKE: &str =
    "(SELECT MAX(at) FROM consent_events WHERE subject_hash = $1 AND kind = 'revoke')";

impl Catalog {
    /// Records a verified token for its subject (`grant`, or `renew` when the subject
    /// already has live consent), in one transaction with the check that the subject has
    /// not revoked consent since the token was issued. Presenting the same token again
    /// records nothing. `Err(at)` inside: revoked at `at`.
    pub async fn record_consent(&self, g: &Grant<'_>) -> Result<Result<(), i64>, CatalogError> {
        let mut tx = self.pool.begin().await?;
        // The audit slot first: its write serialises this transaction from the start (a
        // SQLite transaction that reads first could not write after a concurrent one).
        let slot = super::audit::reserve(&mut tx, &self.now_sql()).await?;
        let row = sqlx::query(&format!(
            "SELECT {LAST_REVOKE} AS revoked_at,
               (SELECT COUNT(*) FROM consent_events WHERE subject_hash = $1
                  AND kind IN ('grant', 'renew')
                  AND issued_at > COALESCE({LAST_REVOKE}, -1)) AS live"
        ))
        .bind(g.subject_hash)
        .fetch_one(&mut *tx)
        .await?;
        let revoked_at: Option<i64> = row.try_get("revoked_at")?;
        if let Some(at) = revoked_at.filter(|at| g.issued_at <= *at) {
            tx.rollback().await?;
            return Ok(Err(at));
        }
        let live: i64 = row.try_get("live")?;
        let kind = if live > 0 { "renew" } else { "grant" };
        let purposes = serde_json::to_string(g.purposes).unwrap_or_else(|_| "[]".into());
        let inserted = sqlx::query(&self.sql(
            "INSERT INTO consent_events
               (subject_hash, kind, at, jti, issuer, purposes, issued_at, expires_at, actor)
             VALUES ($1, $2, {now}, $3, $4, $5, $6, $7, $8)
             ON CONFLICT DO NOTHING",
        ))
        .bind(g.subject_hash)
        .bind(kind)
        .bind(g.jti)
        .bind(g.issuer)
        .bind(purposes)
        .bind(g.issued_at)
        .bind(g.expires_at)
        .bind(g.actor)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            // This token was recorded before: nothing changed, nothing to audit.
            tx.rollback().await?;
            return Ok(Ok(()));
        }
        let action = format!("consent.{kind}");
        let entry = Entry::about_subject(
            g.actor,
            &action,
            g.subject_hash,
            &format!("token {}", g.jti),
        );
        slot.write(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// The subject's consent now, by the catalog's clock.
    pub async fn consent_state(&self, subject_hash: &str) -> Result<ConsentState, CatalogError> {
        let row = sqlx::query(&self.sql(&format!(
            "SELECT {LAST_REVOKE} AS revoked_at,
               (SELECT MAX(expires_at) FROM consent_events WHERE subject_hash = $1
                  AND kind IN ('grant', 'renew')
                  AND issued_at > COALESCE({LAST_REVOKE}, -1)) AS expires_at,
               {{now}} AS now"
        )))
        .bind(subject_hash)
        .fetch_one(&self.pool)
        .await?;
        let revoked_at: Option<i64> = row.try_get("revoked_at")?;
        let expires_at: Option<i64> = row.try_get("expires_at")?;
        let now: i64 = row.try_get("now")?;
        Ok(match (expires_at, revoked_at) {
            (Some(at), _) if at > now => ConsentState::Live { expires_at: at },
            (Some(at), _) => ConsentState::Lapsed { at },
            (None, Some(at)) => ConsentState::Revoked { at },
            (None, None) => ConsentState::None,
        })
    }

    /// Revokes the subject's consent and tells its queued and running jobs to stop, in
    /// one transaction: from its commit on, no token issued before it counts.
    pub async fn revoke_consent(
        &self,
        subject_hash: &str,
        actor: &str,
    ) -> Result<Revocation, CatalogError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&self.sql(
            "INSERT INTO consent_events (subject_hash, kind, at, actor)
             VALUES ($1, 'revoke', {now}, $2) RETURNING at",
        ))
        .bind(subject_hash)
        .bind(actor)
        .fetch_one(&mut *tx)
        .await?;
        let at: i64 = row.try_get("at")?;
        let cancelled = sqlx::query(&self.sql(
            "UPDATE videos SET cancel_requested = 1,
               state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
               error = CASE WHEN state = 'queued' THEN 'consent revoked' ELSE error END,
               updated_at = {now}
             WHERE subject_hash = $1 AND state IN ('queued', 'running')",
        ))
        .bind(subject_hash)
        .execute(&mut *tx)
        .await?;
        let result = format!("{} jobs cancelled", cancelled.rows_affected());
        let entry = Entry::about_subject(actor, "consent.revoke", subject_hash, &result);
        super::audit::append(&mut tx, &self.now_sql(), entry).await?;
        tx.commit().await?;
        Ok(Revocation {
            at_ms: at,
            jobs_cancelled: cancelled.rows_affected(),
        })
    }

    /// Appends an `expire` event for each subject whose consent lapsed since its last
    /// event (at most `limit` per call). Two reapers racing record each lapse once: the
    /// event's `jti` is `expired-<time>`, unique per subject. Returns how many.
    pub async fn record_expiries(&self, limit: i64) -> Result<u64, CatalogError> {
        let rows = sqlx::query(&self.sql(
            "SELECT l.subject_hash, l.lapsed_at FROM (
               SELECT g.subject_hash, MAX(g.expires_at) AS lapsed_at FROM consent_events g
               WHERE g.kind IN ('grant', 'renew')
                 AND g.issued_at > COALESCE((SELECT MAX(r.at) FROM consent_events r
                       WHERE r.subject_hash = g.subject_hash AND r.kind = 'revoke'), -1)
               GROUP BY g.subject_hash) l
             WHERE l.lapsed_at <= {now}
               AND NOT EXISTS (SELECT 1 FROM consent_events e
                     WHERE e.subject_hash = l.subject_hash AND e.kind = 'expire'
                       AND e.expires_at = l.lapsed_at)
             LIMIT $1",
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut recorded = 0;
        for row in rows {
            let subject_hash: String = row.try_get("subject_hash")?;
            let lapsed_at: i64 = row.try_get("lapsed_at")?;
            let mut tx = self.pool.begin().await?;
            let done = sqlx::query(&self.sql(
                "INSERT INTO consent_events (subject_hash, kind, at, jti, expires_at, actor)
                 VALUES ($1, 'expire', {now}, $2, $3, 'reaper')
                 ON CONFLICT DO NOTHING",
            ))
            .bind(&subject_hash)
            .bind(format!("expired-{lapsed_at}"))
            .bind(lapsed_at)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                let result = format!("lapsed at {lapsed_at}");
                let entry =
                    Entry::about_subject("reaper", "consent.expire", &subject_hash, &result);
                super::audit::append(&mut tx, &self.now_sql(), entry).await?;
            }
            tx.commit().await?;
            recorded += done.rows_affected();
        }
        Ok(recorded)
    }

    /// Revocations recorded after ledger position `after`, with their positions: what
    /// each node's cache must forget. `after = None`: only the current position.
    pub async fn revocations_after(
        &self,
        after: Option<i64>,
    ) -> Result<(i64, Vec<String>), CatalogError> {
        let Some(after) = after else {
            let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS seq FROM consent_events")
                .fetch_one(&self.pool)
                .await?;
            return Ok((row.try_get("seq")?, Vec::new()));
        };
        let rows = sqlx::query(
            "SELECT seq, subject_hash FROM consent_events WHERE seq > $1 AND kind = 'revoke'
             ORDER BY seq LIMIT 1000",
        )
        .bind(after)
        .fetch_all(&self.pool)
        .await?;
        let mut last = after;
        let mut subjects = Vec::with_capacity(rows.len());
        for r in &rows {
            last = r.try_get("seq")?;
            subjects.push(r.try_get("subject_hash")?);
        }
        Ok((last, subjects))
    }

    /// The subject's ledger, oldest first.
    pub async fn consent_history(
        &self,
        subject_hash: &str,
    ) -> Result<Vec<ConsentEvent>, CatalogError> {
        let rows = sqlx::query("SELECT * FROM consent_events WHERE subject_hash = $1 ORDER BY seq")
            .bind(subject_hash)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let purposes: Option<String> = r.try_get("purposes")?;
                Ok(ConsentEvent {
                    kind: r.try_get("kind")?,
                    at_ms: r.try_get("at")?,
                    jti: r.try_get("jti")?,
                    issuer: r.try_get("issuer")?,
                    purposes: purposes.and_then(|p| serde_json::from_str(&p).ok()),
                    issued_at_ms: r.try_get("issued_at")?,
                    expires_at_ms: r.try_get("expires_at")?,
                    actor: r.try_get("actor")?,
                })
            })
            .collect()
    }
}
