//! Push attribution: the toolsmith user behind each commit that arrived through a push.

use std::collections::HashMap;

use sqlx::Row;
use toolsmith_domain::time::Timestamp;

use crate::db::placeholders;
use crate::{Store, StoreError, UserRef};

impl Store {
    /// Records `by` as the pusher of `shas`; a commit keeps the first pusher recorded for it.
    pub async fn record_pushed_commits(&self, org_id: &str, shas: &[String], by: &UserRef) -> Result<(), StoreError> {
        let now = Timestamp::now().0;
        let mut tx = self.db.write.begin().await?;
        for sha in shas {
            sqlx::query(
                "INSERT INTO pushed_commits (org_id, sha, user_org_id, user_id, pushed_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (org_id, sha) DO NOTHING",
            )
            .bind(org_id)
            .bind(sha)
            .bind(&by.org_id)
            .bind(&by.user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The pushers of those of `shas` that arrived through a push.
    pub async fn pushers(&self, org_id: &str, shas: &[String]) -> Result<HashMap<String, UserRef>, StoreError> {
        if shas.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "SELECT sha, user_org_id, user_id FROM pushed_commits WHERE org_id = $1 AND sha IN ({})",
            placeholders(2, shas.len())
        );
        let mut query = sqlx::query(&sql).bind(org_id);
        for sha in shas {
            query = query.bind(sha.as_str());
        }
        let mut out = HashMap::new();
        for row in query.fetch_all(&self.db.read).await? {
            out.insert(
                row.try_get("sha")?,
                UserRef { org_id: row.try_get("user_org_id")?, user_id: row.try_get("user_id")? },
            );
        }
        Ok(out)
    }
}
