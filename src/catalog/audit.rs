//! The audit trail's storage. A record is appended in the same transaction as the change
//! it records: [`reserve`] takes the next place in the chain first (its `UPDATE` holds the
//! chain's head until commit, so appends are serialised and a rolled-back change leaves no
//! record), and [`Slot::write`] chains the record there. Accesses that change nothing are
//! appended in a transaction of their own ([`Catalog::audit`]).

use sqlx::Row;

use super::{Catalog, CatalogError};
use crate::domain::audit::{Checkpoint, Entry, GENESIS, Record};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_log (
    seq {INT} PRIMARY KEY,
    at {INT} NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    object TEXT NOT NULL,
    result TEXT NOT NULL,
    subject TEXT,
    request_id TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_subject ON audit_log (subject);
CREATE TABLE IF NOT EXISTS audit_head (
    id {INT} PRIMARY KEY,
    seq {INT} NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
    VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000')
    ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    seq {INT} PRIMARY KEY,
    hash TEXT NOT NULL,
    at {INT} NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL
);
";

tokio::task_local! {
    /// The id of the API request being served: stamped on every audit record written
    /// while it runs (set by the API's request middleware).
    pub static REQUEST_ID: String;
}

/// A reserved place in the chain, held until the transaction ends.
pub(super) struct Slot {
    seq: i64,
    prev: [u8; 32],
    at_ms: i64,
}

/// Reserves the next place in the chain inside `conn`'s transaction.
pub(super) async fn reserve(
    conn: &mut sqlx::AnyConnection,
    now_sql: &str,
) -> Result<Slot, CatalogError> {
    let row = sqlx::query(&format!(
        "UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash, {now_sql} AS now"
    ))
    .fetch_one(&mut *conn)
    .await?;
    let hash: String = row.try_get("hash")?;
    Ok(Slot {
        seq: row.try_get("seq")?,
        prev: crate::hex::decode(&hash)
            .and_then(|h| h.try_into().ok())
            .unwrap_or(GENESIS),
        at_ms: row.try_get("now")?,
    })
}

impl Slot {
    /// Chains `entry` into the reserved place.
    pub(super) async fn write(
        self,
        conn: &mut sqlx::AnyConnection,
        entry: Entry,
    ) -> Result<(), CatalogError> {
        let mut entry = entry;
        if entry.request_id.is_none() {
            entry.request_id = REQUEST_ID.try_with(Clone::clone).ok();
        }
        let r = Record::chain(entry, &self.prev, self.seq, self.at_ms);
        sqlx::query(
            "INSERT INTO audit_log
               (seq, at, actor, action, object, result, subject, request_id, prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(r.seq)
        .bind(r.at_ms)
        .bind(&r.actor)
        .bind(&r.action)
        .bind(&r.object)
        .bind(&r.result)
        .bind(&r.subject)
        .bind(&r.request_id)
        .bind(&r.prev_hash)
        .bind(&r.hash)
        .execute(&mut *conn)
        .await?;
        sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
            .bind(&r.hash)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

/// Appends `entry` within `conn`'s transaction.
pub(super) async fn append(
    conn: &mut sqlx::AnyConnection,
    now_sql: &str,
    entry: Entry,
) -> Result<(), CatalogError> {
    reserve(conn, now_sql).await?.write(conn, entry).await
}

fn record_row(r: &sqlx::any::AnyRow) -> Result<Record, CatalogError> {
    Ok(Record {
        seq: r.try_get("seq")?,
        at_ms: r.try_get("at")?,
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        object: r.try_get("object")?,
        result: r.try_get("result")?,
        subject: r.try_get("subject")?,
        request_id: r.try_get("request_id")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

impl Catalog {
    /// Appends one record in a transaction of its own: an access to personal data, or a
    /// change made outside the catalog.
    pub async fn audit(&self, entry: Entry) -> Result<(), CatalogError> {
        let mut tx = self.pool.begin().await?;
        append(&mut tx, &self.now_sql(), entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Up to `limit` records after `after`, in sequence order (storage order, for verify:
    /// nothing is sorted away).
    pub async fn audit_records(&self, after: i64, limit: i64) -> Result<Vec<Record>, CatalogError> {
        let rows = sqlx::query("SELECT * FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(record_row).collect()
    }

    /// The records about one subject (its keyed hash), for data-subject access: at most
    /// `limit`, after sequence number `after`.
    pub async fn audit_records_about(
        &self,
        subject_hash: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Record>, CatalogError> {
        let rows = sqlx::query(
            "SELECT * FROM audit_log WHERE subject = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(subject_hash)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record_row).collect()
    }

    /// The chain's head: the last sequence number and hash.
    pub async fn audit_head(&self) -> Result<(i64, String), CatalogError> {
        let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok((row.try_get("seq")?, row.try_get("hash")?))
    }

    /// Every signed checkpoint, in sequence order.
    pub async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>, CatalogError> {
        let rows = sqlx::query("SELECT * FROM audit_checkpoints ORDER BY seq")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Checkpoint {
                    seq: r.try_get("seq")?,
                    hash: r.try_get("hash")?,
                    at_ms: r.try_get("at")?,
                    key_id: r.try_get("key_id")?,
                    signature: r.try_get("signature")?,
                })
            })
            .collect()
    }

    /// Stores a checkpoint (once per sequence number: racing signers agree anyway).
    pub async fn add_audit_checkpoint(&self, c: &Checkpoint) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO audit_checkpoints (seq, hash, at, key_id, signature)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(c.seq)
        .bind(&c.hash)
        .bind(c.at_ms)
        .bind(&c.key_id)
        .bind(&c.signature)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Replaces the personal fields of records older than `before_ms` by their
    /// commitments (the chain still verifies). Returns how many records changed.
    pub async fn redact_audit(&self, before_ms: i64) -> Result<u64, CatalogError> {
        let mut changed = 0;
        let mut after = 0;
        loop {
            let rows = sqlx::query(
                "SELECT * FROM audit_log WHERE seq > $1 AND at < $2
                   AND NOT (actor LIKE 'redacted:%' AND object LIKE 'redacted:%'
                            AND (subject IS NULL OR subject LIKE 'redacted:%'))
                 ORDER BY seq LIMIT 1000",
            )
            .bind(after)
            .bind(before_ms)
            .fetch_all(&self.pool)
            .await?;
            let Some(last) = rows.last() else {
                return Ok(changed);
            };
            after = last.try_get("seq")?;
            let mut tx = self.pool.begin().await?;
            for row in &rows {
                let mut r = record_row(row)?;
                let before = r.clone();
                r.redact();
                if r != before {
                    sqlx::query(
                        "UPDATE audit_log SET actor = $2, object = $3, subject = $4 WHERE seq = $1",
                    )
                    .bind(r.seq)
                    .bind(&r.actor)
                    .bind(&r.object)
                    .bind(&r.subject)
                    .execute(&mut *tx)
                    .await?;
                    changed += 1;
                }
            }
            tx.commit().await?;
        }
    }

    /// Deletes the records up to and including the latest signed checkpoint older than
    /// `before_ms` (the checkpoint stays and anchors what remains). Returns how many
    /// records went.
    pub async fn prune_audit(&self, before_ms: i64) -> Result<u64, CatalogError> {
        let row = sqlx::query("SELECT MAX(seq) AS seq FROM audit_checkpoints WHERE at < $1")
            .bind(before_ms)
            .fetch_one(&self.pool)
            .await?;
        let Some(upto): Option<i64> = row.try_get("seq")? else {
            return Ok(0);
        };
        let done = sqlx::query("DELETE FROM audit_log WHERE seq <= $1")
            .bind(upto)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
