//! Push attribution: the toolsmith user behind each commit that arrived through a push.

use std::collections::HashMap;

use sqlx::Row;
use toolsmith_domain::time::Timestamp;
use toolsmith_domain::OrgId;

use crate::db::placeholders;
use crate::{Store, StoreError, UserRef};

impl Store {
    /// Records `by` as the pusher of `shas`; a commit keeps the first pusher recorded for it.
    pub async fn record_pushed_commits(&self, org_id: &OrgId, shas: &[String], by: &UserRef) -> Result<(), StoreError> {
        let now = Timestamp::now().0;
        let mut tx = self.db.write.begin().await?;
        for sha in shas {
            sqlx::query(
                "INSERT INTO pushed_commits (org_id, sha, user_org_id, user_id, pushed_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (org_id, sha) DO NOTHING",
            )
            .bind(org_id.as_str())
            .bind(sha)
            .bind(by.org_id.as_str())
            .bind(by.user_id.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The pushers of those of `shas` that arrived through a push.
    pub async fn pushers(&self, org_id: &OrgId, shas: &[String]) -> Result<HashMap<String, UserRef>, StoreError> {
        if shas.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "SELECT sha, user_org_id, user_id FROM pushed_commits WHERE org_id = $1 AND sha IN ({})",
            placeholders(2, shas.len())
        );
        let mut query = sqlx::query(&sql).bind(org_id.as_str());
        for sha in shas {
            query = query.bind(sha.as_str());
        }
        let mut out = HashMap::new();
        for row in query.fetch_all(&self.db.read).await? {
            out.insert(row.try_get("sha")?, UserRef::from_row(&row, "user_org_id", "user_id")?);
        }
        Ok(out)
    }
}
