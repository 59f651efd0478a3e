//! Per-tool operation locks that hold across server processes.
//!
//! Publishing and deprecating the same tool must not interleave. The lock is a row in the
//! database with a lease: the holder renews it while it works, and a holder that crashed stops
//! renewing, so the lease runs out and the next operation takes the lock over instead of waiting
//! for a release that will never come. Taking a lock over also fails the build records its dead
//! holder left "running" (see [`Store::lock_tool`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use toolsmith_domain::time::Timestamp;
use toolsmith_domain::{ObjectId, OrgId, ToolId};

use crate::{Store, StoreError};

/// A held tool lock. Dropping it releases the lock in the background; call
/// [`ToolLock::release`] to release it before going on.
pub struct ToolLock {
    store: Store,
    org_id: OrgId,
    tool_id: ToolId,
    holder: ObjectId,
    released: Arc<AtomicBool>,
}

impl Store {
    /// Tries to take the operation lock of a tool for `lease`; `None` when another live holder
    /// has it. The lease is renewed in the background for as long as the returned guard lives.
    ///
    /// A publish builds only while it holds its tool's lock, so once the lock is taken no build
    /// of the tool can be running: builds still recorded as running were left by a holder that
    /// died, and are marked failed here.
    pub async fn lock_tool(
        &self,
        org_id: &OrgId,
        tool_id: &ToolId,
        operation: &str,
        lease: Duration,
    ) -> Result<Option<ToolLock>, StoreError> {
        // Which attempt took the lock; a fresh id per attempt, so a holder never mistakes
        // another's row for its own.
        let holder = ObjectId::generate();
        let now = Timestamp::now();
        let lease_secs = lease.as_secs().max(1) as i64;
        let row = sqlx::query(
            "INSERT INTO tool_operation_locks (org_id, tool_id, holder, operation, expires_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (org_id, tool_id) DO UPDATE SET holder = excluded.holder, operation = excluded.operation, \
             expires_at = excluded.expires_at WHERE tool_operation_locks.expires_at < $6 RETURNING holder",
        )
        .bind(org_id.as_str())
        .bind(tool_id.as_str())
        .bind(holder.as_str())
        .bind(operation)
        .bind(now.plus_secs(lease_secs).0)
        .bind(now.0)
        .fetch_optional(&self.db.write)
        .await?;
        let acquired = match row {
            Some(r) => r.try_get::<String, _>("holder")? == holder.as_str(),
            None => false,
        };
        if !acquired {
            return Ok(None);
        }
        let released = Arc::new(AtomicBool::new(false));
        let guard = ToolLock {
            store: self.clone(),
            org_id: org_id.clone(),
            tool_id: tool_id.clone(),
            holder: holder.clone(),
            released: released.clone(),
        };
        spawn_renewal(self.clone(), org_id.clone(), tool_id.clone(), holder, lease_secs, released);
        match self.fail_builds_of_lost_holder(org_id, tool_id).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(%tool_id, count = n, "failed the builds a dead lock holder left running"),
            // The lock is held either way; the rows are failed by the next sweep.
            Err(err) => tracing::warn!(%tool_id, error = %err, "could not fail the builds of a dead lock holder"),
        }
        Ok(Some(guard))
    }

    async fn renew_tool_lock(
        &self,
        org_id: &OrgId,
        tool_id: &ToolId,
        holder: &ObjectId,
        lease_secs: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tool_operation_locks SET expires_at = $4 WHERE org_id = $1 AND tool_id = $2 AND holder = $3",
        )
        .bind(org_id.as_str())
        .bind(tool_id.as_str())
        .bind(holder.as_str())
        .bind(Timestamp::now().plus_secs(lease_secs).0)
        .execute(&self.db.write)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn release_tool_lock(&self, org_id: &OrgId, tool_id: &ToolId, holder: &ObjectId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM tool_operation_locks WHERE org_id = $1 AND tool_id = $2 AND holder = $3")
            .bind(org_id.as_str())
            .bind(tool_id.as_str())
            .bind(holder.as_str())
            .execute(&self.db.write)
            .await?;
        Ok(())
    }
}

fn spawn_renewal(
    store: Store,
    org_id: OrgId,
    tool_id: ToolId,
    holder: ObjectId,
    lease_secs: i64,
    released: Arc<AtomicBool>,
) {
    let period = Duration::from_millis((lease_secs as u64 * 1000 / 3).max(200));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(period).await;
            if released.load(Ordering::Acquire) {
                return;
            }
            match store.renew_tool_lock(&org_id, &tool_id, &holder, lease_secs).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(%tool_id, "tool operation lock was lost before it was released");
                    return;
                }
                Err(err) => tracing::warn!(%tool_id, error = %err, "could not renew tool operation lock"),
            }
        }
    });
}

impl ToolLock {
    /// Releases the lock now.
    pub async fn release(self) -> Result<(), StoreError> {
        self.released.store(true, Ordering::Release);
        self.store.release_tool_lock(&self.org_id, &self.tool_id, &self.holder).await
    }
}

impl Drop for ToolLock {
    fn drop(&mut self) {
        if self.released.swap(true, Ordering::AcqRel) {
            return;
        }
        // Dropped without an explicit release (an error path or a cancelled request): release in
        // the background; if even that fails the lease runs out.
        let (store, org_id, tool_id, holder) =
            (self.store.clone(), self.org_id.clone(), self.tool_id.clone(), self.holder.clone());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(err) = store.release_tool_lock(&org_id, &tool_id, &holder).await {
                    tracing::warn!(%tool_id, error = %err, "could not release tool operation lock");
                }
            });
        }
    }
}
