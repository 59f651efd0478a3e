//! Retention: records older than a cutoff are deleted in small batches, and the highest
//! number deleted in each organization is kept so that a token naming a deleted record still
//! has a place in orders led by `created_at`.

use sqlx::Row;
use toolsmith_domain::time::Timestamp;
use toolsmith_domain::OrgId;

use crate::db::{get_id, Dialect};
use crate::{Store, StoreError};

impl Store {
    /// Deletes up to `batch` invocation records created before `cutoff`, oldest first in each
    /// organization, with their logs and their search-index entries; returns how many, fewer
    /// than `batch` once no older record is left. Each organization's share is one transaction,
    /// short enough that the invocation writer (on SQLite the same single connection) waits at
    /// most that long; a caller deleting many calls again, pausing between calls.
    pub async fn delete_invocations_before(&self, cutoff: Timestamp, batch: u32) -> Result<u64, StoreError> {
        let batch = u64::from(batch);
        let mut deleted = 0;
        for org_id in self.invocation_orgs().await? {
            if deleted >= batch {
                break;
            }
            deleted += self.delete_org_invocations_before(&org_id, cutoff, batch - deleted).await?;
        }
        Ok(deleted)
    }

    /// The organizations that have invocation records, found by skipping through the
    /// `(org_id, …)` index from one organization to the next rather than reading its rows.
    async fn invocation_orgs(&self) -> Result<Vec<OrgId>, StoreError> {
        let rows = sqlx::query(
            "WITH RECURSIVE orgs(org_id) AS ( \
               SELECT (SELECT min(org_id) FROM invocations) \
               UNION ALL \
               SELECT (SELECT min(i.org_id) FROM invocations i WHERE i.org_id > orgs.org_id) \
               FROM orgs WHERE orgs.org_id IS NOT NULL) \
             SELECT org_id FROM orgs WHERE org_id IS NOT NULL",
        )
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(|r| get_id(r, "org_id")).collect()
    }

    /// One transaction deleting up to `limit` of an organization's records created before
    /// `cutoff`, and noting the highest number deleted (see [`Store::anchor`]).
    async fn delete_org_invocations_before(
        &self,
        org_id: &OrgId,
        cutoff: Timestamp,
        limit: u64,
    ) -> Result<u64, StoreError> {
        // Several PostgreSQL servers may delete at once: each skips the rows another has locked.
        let lock = match self.db.dialect {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let sql = format!(
            "DELETE FROM invocations WHERE seq IN (SELECT seq FROM invocations \
             WHERE org_id = $1 AND created_at < $2 ORDER BY created_at, seq LIMIT $3{lock}) RETURNING seq"
        );
        let mut tx = self.db.write.begin().await?;
        let rows = sqlx::query(&sql)
            .bind(org_id.as_str())
            .bind(cutoff.0)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await?;
        let seqs: Vec<i64> = rows.iter().map(|r| r.try_get::<i64, _>("seq")).collect::<Result<_, _>>()?;
        let Some(highest) = seqs.iter().max().copied() else {
            return Ok(0);
        };
        if self.db.dialect == Dialect::Sqlite {
            // The contentless index keeps no text, only which words each row id has; PostgreSQL
            // keeps the words in the row itself.
            let list = serde_json::to_string(&seqs).unwrap_or_else(|_| "[]".into());
            sqlx::query("DELETE FROM invocations_fts WHERE rowid IN (SELECT value FROM json_each($1))")
                .bind(list)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO invocation_retention (org_id, deleted_through) VALUES ($1, $2) \
             ON CONFLICT (org_id) DO UPDATE SET deleted_through = CASE \
             WHEN excluded.deleted_through > invocation_retention.deleted_through \
             THEN excluded.deleted_through ELSE invocation_retention.deleted_through END",
        )
        .bind(org_id.as_str())
        .bind(highest)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(seqs.len() as u64)
    }

    /// The highest record number retention has deleted in the organization; 0 when none.
    pub(super) async fn deleted_through(&self, org_id: &OrgId) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT deleted_through FROM invocation_retention WHERE org_id = $1")
            .bind(org_id.as_str())
            .fetch_optional(&self.db.read)
            .await?;
        Ok(match row {
            Some(row) => row.try_get("deleted_through")?,
            None => 0,
        })
    }
}
