//! Rate-limit counters shared by every server process on one database.

use sqlx::Row;

use crate::{Store, StoreError};

impl Store {
    /// Counts one request in `bucket` for the fixed window starting at `window_start` (seconds)
    /// and returns the number of requests in that window so far, this one included.
    pub async fn rate_limit_hit(&self, bucket: &str, window_start: i64) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO rate_limit_hits (bucket, window_start, hits) VALUES ($1, $2, 1) \
             ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limit_hits.hits + 1 RETURNING hits",
        )
        .bind(bucket)
        .bind(window_start)
        .fetch_one(&self.db.write)
        .await?;
        Ok(row.try_get("hits")?)
    }

    /// Forgets the counters of windows that started before `before` (seconds).
    pub async fn prune_rate_limits(&self, before: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM rate_limit_hits WHERE window_start < $1")
            .bind(before)
            .execute(&self.db.write)
            .await?;
        Ok(done.rows_affected())
    }
}
