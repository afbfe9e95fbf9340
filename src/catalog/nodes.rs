//! API nodes alive in a cluster, by heartbeat: the revocation fan-out waits for each of
//! them to acknowledge (see [`crate::fanout`]).

use sqlx::Row;

use super::{Catalog, CatalogError};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS api_nodes (
    node TEXT PRIMARY KEY,
    seen_at {INT} NOT NULL
);
";

impl Catalog {
    /// Records that `node` is alive now (and forgets nodes silent for an hour).
    pub async fn node_heartbeat(&self, node: &str) -> Result<(), CatalogError> {
        sqlx::query(&self.sql(
            "INSERT INTO api_nodes (node, seen_at) VALUES ($1, {now})
             ON CONFLICT (node) DO UPDATE SET seen_at = excluded.seen_at",
        ))
        .bind(node)
        .execute(&self.pool)
        .await?;
        sqlx::query(&self.sql("DELETE FROM api_nodes WHERE seen_at < {now} - 3600000"))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// How many nodes sent a heartbeat in the last `within_ms`.
    pub async fn live_nodes(&self, within_ms: i64) -> Result<usize, CatalogError> {
        let row = sqlx::query(
            &self.sql("SELECT COUNT(*) AS n FROM api_nodes WHERE seen_at >= {now} - $1"),
        )
        .bind(within_ms)
        .fetch_one(&self.pool)
        .await?;
        let n: i64 = row.try_get("n")?;
        Ok(n as usize)
    }
}
