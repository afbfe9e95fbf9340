//! The catalog's schema and its version. A fresh database gets the current tables; one
//! written by an older vcw is brought up to date one step at a time; one written by a
//! newer vcw is refused, since this build would misread or damage what it does not know.
//!
//! The `SCHEMA` texts always describe the newest tables. Changing one means appending the
//! step that makes the same change to an existing catalog to [`MIGRATIONS`].

use sqlx::{AnyConnection, Connection as _, Executor as _};

use super::CatalogError;

/// The steps since version 1, in order: step `i` takes a catalog from version `i + 1` to
/// `i + 2`. Written with the `{INT}`-style type names of the `SCHEMA` texts.
const MIGRATIONS: &[&str] = &[];

/// Where the version is kept: one row.
const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_version (version {INT} NOT NULL)";

/// Creates or upgrades the schema on `conn`. On PostgreSQL the caller holds a lock that
/// keeps other processes out; on SQLite each step takes the write lock before it reads
/// anything, so two processes opening one catalog at once create or upgrade it once.
pub(super) async fn prepare(conn: &mut AnyConnection, postgres: bool) -> Result<(), CatalogError> {
    prepare_with(conn, postgres, MIGRATIONS).await
}

/// [`prepare`] with the given steps, so that tests can upgrade through steps of their own.
async fn prepare_with(
    conn: &mut AnyConnection,
    postgres: bool,
    migrations: &[&str],
) -> Result<(), CatalogError> {
    let latest = 1 + migrations.len() as i64;
    let mut tx = begin_write(conn, postgres).await?;
    if !has_table(&mut tx, postgres, "schema_version").await? {
        // A catalog made before versions were recorded has the version-1 tables.
        let version = if has_table(&mut tx, postgres, "subject_keys").await? {
            1
        } else {
            tx.execute(sqlx::raw_sql(&tables(postgres))).await?;
            latest
        };
        tx.execute(sqlx::raw_sql(&typed(VERSION_TABLE, postgres)))
            .await?;
        // Another process may have stamped it since the check above.
        sqlx::query(
            "INSERT INTO schema_version (version) SELECT $1 \
             WHERE NOT EXISTS (SELECT 1 FROM schema_version)",
        )
        .bind(version)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;

    loop {
        let mut tx = begin_write(conn, postgres).await?;
        let found: i64 = sqlx::query_scalar("SELECT version FROM schema_version")
            .fetch_one(&mut *tx)
            .await?;
        let step = usize::try_from(found - 1)
            .ok()
            .and_then(|i| migrations.get(i));
        let Some(step) = step else {
            // Up to date, or newer. Ended here, not on drop: a rollback left for later
            // would hold the write lock while the next statement, on another
            // connection, finds the database locked.
            tx.rollback().await?;
            if found > latest {
                return Err(CatalogError::NewerSchema {
                    found,
                    known: latest,
                });
            }
            return Ok(());
        };
        tx.execute(sqlx::raw_sql(&typed(step, postgres))).await?;
        sqlx::query("UPDATE schema_version SET version = $1")
            .bind(found + 1)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(from = found, to = found + 1, "catalog: schema upgraded");
    }
}

/// A transaction that holds the write lock from its start (SQLite's `IMMEDIATE`; a
/// deferred one that read first could not write after another process did).
async fn begin_write(
    conn: &mut AnyConnection,
    postgres: bool,
) -> Result<sqlx::Transaction<'_, sqlx::Any>, sqlx::Error> {
    conn.begin_with(if postgres { "BEGIN" } else { "BEGIN IMMEDIATE" })
        .await
}

async fn has_table(
    conn: &mut AnyConnection,
    postgres: bool,
    name: &str,
) -> Result<bool, sqlx::Error> {
    let sql = if postgres {
        "SELECT COUNT(*) FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_name = $1"
    } else {
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1"
    };
    let count: i64 = sqlx::query_scalar(sql).bind(name).fetch_one(conn).await?;
    Ok(count > 0)
}

/// Every table of the current schema, with the backend's type names.
fn tables(postgres: bool) -> String {
    let sql = [
        super::SCHEMA,
        super::service::SCHEMA,
        super::consent::SCHEMA,
        super::audit::SCHEMA,
        super::subjects::SCHEMA,
        super::nodes::SCHEMA,
        super::reviews::SCHEMA,
    ]
    .concat();
    typed(&sql, postgres)
}

/// `sql` with the `{INT}`, `{BLOB}`, `{REAL}` and `{SERIAL}` placeholders replaced by the
/// backend's type names.
fn typed(sql: &str, postgres: bool) -> String {
    let (int, blob, real, serial) = if postgres {
        (
            "BIGINT",
            "BYTEA",
            "DOUBLE PRECISION",
            "BIGSERIAL PRIMARY KEY",
        )
    } else {
        (
            "INTEGER",
            "BLOB",
            "REAL",
            "INTEGER PRIMARY KEY AUTOINCREMENT",
        )
    };
    sql.replace("{INT}", int)
        .replace("{BLOB}", blob)
        .replace("{REAL}", real)
        .replace("{SERIAL}", serial)
}

#[cfg(test)]
mod tests {
    use sqlx::Connection as _;

    use super::*;

    /// Two steps a later vcw might add; neither may run twice (a second `ADD COLUMN`
    /// fails), which is what the race test relies on.
    const STEPS: &[&str] = &[
        "ALTER TABLE videos ADD COLUMN note TEXT",
        "CREATE TABLE extra (n {INT} NOT NULL)",
    ];

    async fn connect(dir: &std::path::Path) -> AnyConnection {
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}?mode=rwc", dir.join("c.sqlite").display());
        let mut conn = AnyConnection::connect(&url).await.unwrap();
        conn.execute("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000;")
            .await
            .unwrap();
        conn
    }

    async fn version(conn: &mut AnyConnection) -> i64 {
        sqlx::query_scalar("SELECT version FROM schema_version")
            .fetch_one(conn)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_fresh_catalog_gets_the_current_tables_and_version() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = connect(dir.path()).await;
        prepare_with(&mut conn, false, STEPS).await.unwrap();
        assert_eq!(
            version(&mut conn).await,
            3,
            "no step runs on a fresh catalog"
        );
        assert!(has_table(&mut conn, false, "videos").await.unwrap());
        // Opening again changes nothing.
        prepare_with(&mut conn, false, STEPS).await.unwrap();
        assert_eq!(version(&mut conn).await, 3);
    }

    #[tokio::test]
    async fn an_older_catalog_is_upgraded_once_by_two_processes_opening_it_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = connect(dir.path()).await;
        prepare(&mut conn, false).await.unwrap();
        // A catalog from before versions were recorded.
        conn.execute("DROP TABLE schema_version").await.unwrap();

        let (mut a, mut b) = (connect(dir.path()).await, connect(dir.path()).await);
        let (ra, rb) = tokio::join!(
            prepare_with(&mut a, false, STEPS),
            prepare_with(&mut b, false, STEPS)
        );
        ra.unwrap();
        rb.unwrap();
        assert_eq!(version(&mut conn).await, 3);
        sqlx::query("INSERT INTO extra (n) VALUES (1)")
            .execute(&mut conn)
            .await
            .unwrap();
        let notes: i64 = sqlx::query_scalar("SELECT COUNT(note) FROM videos")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(notes, 0);
    }

    #[tokio::test]
    async fn a_catalog_from_a_newer_vcw_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = connect(dir.path()).await;
        prepare_with(&mut conn, false, STEPS).await.unwrap();
        // This build knows one step fewer than the catalog has.
        let err = prepare_with(&mut conn, false, &STEPS[..1])
            .await
            .unwrap_err();
        assert!(
            matches!(err, CatalogError::NewerSchema { found: 3, known: 2 }),
            "{err}"
        );
        assert!(err.to_string().contains("from a newer vcw"), "{err}");
        assert_eq!(version(&mut conn).await, 3);
    }
}
