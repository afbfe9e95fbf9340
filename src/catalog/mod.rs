//! The catalog: wrapped keys and sealed objects; and for the service, videos and their
//! jobs, uploads, API tokens and webhook deliveries (in `service`).
//!
//! One sqlx `Any` pool serves both backends with the same SQL: SQLite (`catalog.sqlite`
//! in the data directory) on one machine, PostgreSQL (a `postgres://` URL) in a cluster.
//! Queries use `$N` placeholders and only types both support; the schema differs only in
//! type names.
//!
//! Every transaction ends explicitly, with a commit or a rollback, on every path that
//! does not fail: a transaction merely dropped is rolled back only when its connection is
//! next used, and until then SQLite's write lock makes other connections fail with
//! "database is locked".
//!
//! Only wrapped keys are stored, never key material in the clear. Subjects appear only as
//! keyed hashes ([`crate::crypto::Kms::subject_hash`]). Shredding overwrites the wrapped
//! key with NULL; `secure_delete` makes SQLite zero the freed bytes on disk, so a
//! shredded key does not survive in free pages.

use std::path::Path;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

use crate::domain::audit::Entry;
use crate::domain::clock::unix_now;

mod audit;
mod consent;
mod nodes;
mod ops;
mod reviews;
mod schema;
mod service;
mod subjects;
pub use audit::REQUEST_ID;

pub use consent::{ConsentEvent, ConsentState, Grant, Revocation};
pub use ops::{Bucket, ConsentSeen, Lease, NodeSeen};
pub use reviews::{Decision, ReviewItem, Reviewed};
pub use service::{
    AttemptEnd, ClaimOutcome, ClaimedJob, Completion, DeliveryRecord, NewUpload, NewVideo,
    OutboxRow, PartAdded, Retry, TokenInfo, TokenRow, UploadPart, UploadRow, VideoFilter, VideoRow,
};
pub use subjects::{ErasureStart, Hold};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog {path}: {source}")]
    Open { path: String, source: sqlx::Error },
    #[error("catalog: {0}")]
    Query(#[from] sqlx::Error),
    /// Abort: running on would misread or damage what the newer version wrote.
    #[error(
        "the catalog has schema version {found}, from a newer vcw; this vcw knows up to \
         version {known}: run the newer vcw, or restore the catalog's backup from before the upgrade"
    )]
    NewerSchema { found: i64, known: i64 },
}

impl CatalogError {
    /// The database did not answer (down, restarting, unreachable, pool exhausted):
    /// retry later. Other errors are about the query or the data.
    pub fn is_unavailable(&self) -> bool {
        let e = match self {
            CatalogError::Open { source, .. } | CatalogError::Query(source) => source,
            CatalogError::NewerSchema { .. } => return false,
        };
        matches!(
            e,
            sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Tls(_)
        ) || matches!(e, sqlx::Error::Database(d) if d.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")))
    }
}

/// `{INT}`, `{BLOB}` and `{REAL}` become the backend's 64-bit integer, byte string and
/// double types; `{SERIAL}` an auto-numbered primary key (append order).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS subject_keys (
    subject_hash TEXT PRIMARY KEY,
    key_id {BLOB} NOT NULL,
    version {INT} NOT NULL,
    wrapped {BLOB},
    kek_version {INT} NOT NULL,
    created_at {INT} NOT NULL,
    shredded_at {INT}
);
CREATE TABLE IF NOT EXISTS objects (
    object_id {BLOB} PRIMARY KEY,
    subject_hash TEXT NOT NULL,
    data_key_id {BLOB} NOT NULL,
    wrapped_data_key {BLOB},
    subject_key_version {INT} NOT NULL,
    header_tag {BLOB} NOT NULL,
    plaintext_len {INT} NOT NULL,
    sealed_len {INT} NOT NULL,
    location TEXT NOT NULL,
    created_at {INT} NOT NULL,
    shredded_at {INT}
);
CREATE INDEX IF NOT EXISTS objects_by_subject ON objects (subject_hash);
CREATE INDEX IF NOT EXISTS objects_by_location ON objects (location);
";

/// A subject's key row.
#[derive(Clone, Debug)]
pub struct SubjectKeyRow {
    pub subject_hash: String,
    pub key_id: Vec<u8>,
    pub version: i64,
    /// None once shredded.
    pub wrapped: Option<Vec<u8>>,
    pub kek_version: i64,
    pub shredded_at: Option<i64>,
}

/// A sealed object's row.
#[derive(Clone, Debug)]
pub struct ObjectRow {
    pub object_id: Vec<u8>,
    pub subject_hash: String,
    pub data_key_id: Vec<u8>,
    /// None once shredded.
    pub wrapped_data_key: Option<Vec<u8>>,
    pub subject_key_version: i64,
    /// The header tag recorded at seal time: an older header replayed in its place fails.
    pub header_tag: Vec<u8>,
    pub plaintext_len: i64,
    pub sealed_len: i64,
    /// Where the sealed bytes are (store key, or a path for `vcw seal`).
    pub location: String,
    pub created_at: i64,
    pub shredded_at: Option<i64>,
}

/// Creates `dir` (and parents) readable only by the owner: it holds wrapped keys.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct Catalog {
    pool: AnyPool,
    /// PostgreSQL rather than SQLite: decides the few spellings that differ.
    postgres: bool,
    /// Set by tests that travel in time; otherwise the database's clock.
    clock: Option<ManualClock>,
}

/// A clock that stands still until moved: lets a test cross a 30-day grace period in no
/// time ([`Catalog::with_clock`]). Only settable from code, never from configuration.
#[derive(Clone, Debug, Default)]
pub struct ManualClock(std::sync::Arc<std::sync::atomic::AtomicI64>);

impl ManualClock {
    pub fn at(ms: i64) -> Self {
        Self(std::sync::Arc::new(ms.into()))
    }

    pub fn now(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The database's clock, Unix milliseconds. Leases and due times are computed here,
/// never from a worker's clock.
const SQLITE_NOW: &str = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)";
const POSTGRES_NOW: &str = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)";

/// A path as the path part of a `sqlite://` URL.
fn sqlite_url(path: &Path) -> String {
    let mut url = String::from("sqlite://");
    for c in path.display().to_string().chars() {
        match c {
            '%' | '?' | '#' | ' ' => url.push_str(&format!("%{:02X}", c as u32)),
            c => url.push(c),
        }
    }
    url + "?mode=rwc"
}

impl Catalog {
    /// Opens (creating if needed) `DIR/catalog.sqlite`.
    pub async fn open(data_dir: &Path) -> Result<Self, CatalogError> {
        let path = data_dir.join("catalog.sqlite");
        create_private_dir(data_dir).map_err(|e| CatalogError::Open {
            path: path.display().to_string(),
            source: sqlx::Error::Io(e),
        })?;
        Self::connect_url(&sqlite_url(&path), &path.display().to_string()).await
    }

    /// Opens the catalog at a `postgres://` (or `sqlite://`) URL, creating the schema if
    /// needed.
    pub async fn connect(url: &str) -> Result<Self, CatalogError> {
        // The URL may hold a password: errors show only its scheme and host part.
        let shown = url
            .split_once('@')
            .map_or_else(|| url.to_string(), |(_, host)| format!("…@{host}"));
        Self::connect_url(url, &shown).await
    }

    async fn connect_url(url: &str, shown: &str) -> Result<Self, CatalogError> {
        sqlx::any::install_default_drivers();
        let open_err = |source| CatalogError::Open {
            path: shown.to_string(),
            source,
        };
        let postgres = url.starts_with("postgres");
        let pool = AnyPoolOptions::new()
            .max_connections(if postgres { 8 } else { 4 })
            // A database that is down answers 503 within seconds, not after sqlx's 30 s.
            .acquire_timeout(std::time::Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if !postgres {
                        // secure_delete: shredded keys do not survive in free pages.
                        conn.execute(
                            "PRAGMA secure_delete = ON; PRAGMA journal_mode = WAL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(open_err)?;
        let mut conn = pool.acquire().await.map_err(open_err)?;
        if postgres {
            // Pods starting together must not race to create or upgrade the schema.
            conn.execute("SELECT pg_advisory_lock(7612001)")
                .await
                .map_err(open_err)?;
        }
        let prepared = schema::prepare(&mut conn, postgres).await;
        if postgres {
            conn.execute("SELECT pg_advisory_unlock(7612001)")
                .await
                .map_err(open_err)?;
        }
        prepared.map_err(|err| match err {
            CatalogError::Query(source) => open_err(source),
            other => other,
        })?;
        drop(conn);
        Ok(Self {
            pool,
            postgres,
            clock: None,
        })
    }

    /// This catalog on `clock` instead of the database's clock (tests).
    pub fn with_clock(self, clock: ManualClock) -> Self {
        Self {
            clock: Some(clock),
            ..self
        }
    }

    /// The SQL expression for the database's current time (Unix ms).
    fn now_sql(&self) -> std::borrow::Cow<'static, str> {
        match (&self.clock, self.postgres) {
            (Some(clock), _) => clock.now().to_string().into(),
            (None, true) => POSTGRES_NOW.into(),
            (None, false) => SQLITE_NOW.into(),
        }
    }

    /// `sql` with `{now}` spelled for this backend.
    fn sql(&self, sql: &str) -> String {
        sql.replace("{now}", &self.now_sql())
    }

    /// The database's current time (Unix ms).
    pub async fn now(&self) -> Result<i64, CatalogError> {
        let row = sqlx::query(&self.sql("SELECT {now} AS now"))
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("now")?)
    }

    pub async fn subject_key(
        &self,
        subject_hash: &str,
    ) -> Result<Option<SubjectKeyRow>, CatalogError> {
        let row = sqlx::query("SELECT * FROM subject_keys WHERE subject_hash = $1")
            .bind(subject_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| subject_row(&r)).transpose()
    }

    /// Creates a subject's key unless one exists: the first key of a subject, or the
    /// next version after `replaces` (the shredded version) was destroyed. Concurrent
    /// callers race on one statement and exactly one wins; everyone then re-reads the
    /// row, so all of them use the winner's key. Returns whether this call created it.
    pub async fn create_subject_key(
        &self,
        row: &SubjectKeyRow,
        replaces: Option<i64>,
    ) -> Result<bool, CatalogError> {
        let query = match replaces {
            None => sqlx::query(
                "INSERT INTO subject_keys (subject_hash, key_id, version, wrapped, kek_version, created_at, shredded_at)
                 VALUES ($1, $2, $3, $4, $5, $6, NULL)
                 ON CONFLICT (subject_hash) DO NOTHING",
            ),
            Some(_) => sqlx::query(
                "UPDATE subject_keys SET key_id = $2, version = $3, wrapped = $4, kek_version = $5,
                   created_at = $6, shredded_at = NULL
                 WHERE subject_hash = $1 AND wrapped IS NULL AND version = $7",
            ),
        };
        let mut query = query
            .bind(&row.subject_hash)
            .bind(&row.key_id)
            .bind(row.version)
            .bind(&row.wrapped)
            .bind(row.kek_version)
            .bind(unix_now());
        if let Some(old) = replaces {
            query = query.bind(old);
        }
        Ok(query.execute(&self.pool).await?.rows_affected() == 1)
    }

    /// Every live (unshredded) subject key, for KEK rotation.
    pub async fn live_subject_keys(&self) -> Result<Vec<SubjectKeyRow>, CatalogError> {
        let rows = sqlx::query("SELECT * FROM subject_keys WHERE wrapped IS NOT NULL")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(subject_row).collect()
    }

    /// Replaces the wrapping of version `key_version` of a subject's key (rotation); the
    /// key itself is unchanged. A key shredded (or shredded and made anew) since it was
    /// read is left alone.
    pub async fn rewrap_subject_key(
        &self,
        subject_hash: &str,
        key_version: i64,
        wrapped: &[u8],
        kek_version: u32,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "UPDATE subject_keys SET wrapped = $1, kek_version = $2
             WHERE subject_hash = $3 AND version = $4 AND wrapped IS NOT NULL",
        )
        .bind(wrapped)
        .bind(i64::from(kek_version))
        .bind(subject_hash)
        .bind(key_version)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// How many live subject keys each KEK version wraps.
    pub async fn kek_versions_in_use(
        &self,
    ) -> Result<std::collections::BTreeMap<u32, i64>, CatalogError> {
        let rows = sqlx::query(
            "SELECT kek_version, COUNT(*) AS n FROM subject_keys
             WHERE wrapped IS NOT NULL GROUP BY kek_version",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let version: i64 = r.try_get("kek_version")?;
                Ok((version as u32, r.try_get("n")?))
            })
            .collect()
    }

    /// Crypto-shreds a subject: its key and every one of its objects' data keys.
    /// Returns the objects that were live, so their bytes can be deleted too.
    pub async fn shred_subject(
        &self,
        subject_hash: &str,
    ) -> Result<(bool, Vec<ObjectRow>), CatalogError> {
        let mut tx = self.pool.begin().await?;
        let now = unix_now();
        let objects =
            sqlx::query("SELECT * FROM objects WHERE subject_hash = $1 AND shredded_at IS NULL")
                .bind(subject_hash)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(object_row)
                .collect::<Result<Vec<_>, _>>()?;
        let key = sqlx::query("UPDATE subject_keys SET wrapped = NULL, shredded_at = $1 WHERE subject_hash = $2 AND shredded_at IS NULL")
            .bind(now)
            .bind(subject_hash)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE objects SET wrapped_data_key = NULL, shredded_at = $1 WHERE subject_hash = $2 AND shredded_at IS NULL")
            .bind(now)
            .bind(subject_hash)
            .execute(&mut *tx)
            .await?;
        let result = format!(
            "key shredded: {}, objects: {}",
            key.rows_affected() > 0,
            objects.len()
        );
        let entry = Entry::about_subject("vault", "keys.shred_subject", subject_hash, &result);
        audit::append(&mut tx, &self.now_sql(), entry).await?;
        tx.commit().await?;
        Ok((key.rows_affected() > 0, objects))
    }

    pub async fn insert_object(&self, row: &ObjectRow) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO objects (object_id, subject_hash, data_key_id, wrapped_data_key, subject_key_version,
               header_tag, plaintext_len, sealed_len, location, created_at, shredded_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL)",
        )
        .bind(&row.object_id)
        .bind(&row.subject_hash)
        .bind(&row.data_key_id)
        .bind(&row.wrapped_data_key)
        .bind(row.subject_key_version)
        .bind(&row.header_tag)
        .bind(row.plaintext_len)
        .bind(row.sealed_len)
        .bind(&row.location)
        .bind(row.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn object(&self, object_id: &[u8]) -> Result<Option<ObjectRow>, CatalogError> {
        let row = sqlx::query("SELECT * FROM objects WHERE object_id = $1")
            .bind(object_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| object_row(&r)).transpose()
    }

    /// Crypto-shreds one object; returns its row if it was live.
    pub async fn shred_object(&self, object_id: &[u8]) -> Result<Option<ObjectRow>, CatalogError> {
        let Some(row) = self.object(object_id).await? else {
            return Ok(None);
        };
        if row.shredded_at.is_some() {
            return Ok(None);
        }
        sqlx::query(
            "UPDATE objects SET wrapped_data_key = NULL, shredded_at = $1 WHERE object_id = $2",
        )
        .bind(unix_now())
        .bind(object_id)
        .execute(&self.pool)
        .await?;
        Ok(Some(row))
    }

    /// Live objects whose location starts with `prefix` (what a crashed job left behind).
    pub async fn objects_at(&self, prefix: &str) -> Result<Vec<ObjectRow>, CatalogError> {
        let rows = sqlx::query("SELECT * FROM objects WHERE substr(location, 1, length($1)) = $1")
            .bind(prefix)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(object_row).collect()
    }

    /// Objects sealed for exactly `location` (indexed; the orphan sweep asks per key).
    pub async fn objects_located(&self, location: &str) -> Result<Vec<ObjectRow>, CatalogError> {
        let rows = sqlx::query("SELECT * FROM objects WHERE location = $1")
            .bind(location)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(object_row).collect()
    }

    /// Whether the catalog answers (readiness).
    pub async fn ping(&self) -> Result<(), CatalogError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Removes an object row (used to roll back a seal whose store write failed).
    pub async fn delete_object(&self, object_id: &[u8]) -> Result<(), CatalogError> {
        sqlx::query("DELETE FROM objects WHERE object_id = $1")
            .bind(object_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

fn subject_row(r: &AnyRow) -> Result<SubjectKeyRow, CatalogError> {
    Ok(SubjectKeyRow {
        subject_hash: r.try_get("subject_hash")?,
        key_id: r.try_get("key_id")?,
        version: r.try_get("version")?,
        wrapped: r.try_get("wrapped")?,
        kek_version: r.try_get("kek_version")?,
        shredded_at: r.try_get("shredded_at")?,
    })
}

fn object_row(r: &AnyRow) -> Result<ObjectRow, CatalogError> {
    Ok(ObjectRow {
        object_id: r.try_get("object_id")?,
        subject_hash: r.try_get("subject_hash")?,
        data_key_id: r.try_get("data_key_id")?,
        wrapped_data_key: r.try_get("wrapped_data_key")?,
        subject_key_version: r.try_get("subject_key_version")?,
        header_tag: r.try_get("header_tag")?,
        plaintext_len: r.try_get("plaintext_len")?,
        sealed_len: r.try_get("sealed_len")?,
        location: r.try_get("location")?,
        created_at: r.try_get("created_at")?,
        shredded_at: r.try_get("shredded_at")?,
    })
}
