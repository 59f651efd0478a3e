//! Build records: every publish (and test build) leaves one, with its state and its log, so that
//! a failed publish can be diagnosed after the fact.

use sqlx::any::AnyRow;
use sqlx::Row;
use toolsmith_domain::time::Timestamp;
use toolsmith_domain::{BuildId, OrgId, ToolId};

use crate::db::{get_id, get_optional_id};
use crate::{Store, StoreError, UserRef};

/// Where a build stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildState {
    /// Still running (or its server died; see [`Store::fail_stale_builds`] and
    /// [`Store::lock_tool`], which fail such builds once nothing holds them).
    Running,
    /// Produced a version.
    Succeeded,
    /// Did not; the message says why.
    Failed,
}

impl BuildState {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            BuildState::Running => "running",
            BuildState::Succeeded => "succeeded",
            BuildState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> BuildState {
        match s {
            "succeeded" => BuildState::Succeeded,
            "failed" => BuildState::Failed,
            _ => BuildState::Running,
        }
    }
}

/// One build.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildRecord {
    /// Its id.
    pub id: BuildId,
    /// The organization.
    pub org_id: OrgId,
    /// The tool, for publishes.
    pub tool_id: Option<ToolId>,
    /// `publish` or `test`.
    pub kind: String,
    /// Its state.
    pub state: BuildState,
    /// A one-line summary (the failure reason).
    pub message: String,
    /// The full log.
    pub log: String,
    /// Who started it.
    pub created_by: UserRef,
    /// When it started.
    pub created_at: Timestamp,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
}

impl Store {
    /// Records the start of a build and returns its id.
    pub async fn start_build(
        &self,
        org_id: &OrgId,
        tool_id: Option<&ToolId>,
        kind: &str,
        by: &UserRef,
    ) -> Result<BuildId, StoreError> {
        let id = BuildId::generate();
        sqlx::query(
            "INSERT INTO builds (org_id, id, tool_id, kind, state, message, log, created_by_org, created_by_user, created_at) \
             VALUES ($1, $2, $3, $4, 'running', '', '', $5, $6, $7)",
        )
        .bind(org_id.as_str())
        .bind(id.as_str())
        .bind(tool_id.map(ToolId::as_str))
        .bind(kind)
        .bind(by.org_id.as_str())
        .bind(by.user_id.as_str())
        .bind(Timestamp::now().0)
        .execute(&self.db.write)
        .await?;
        Ok(id)
    }

    /// Records the end of a build.
    pub async fn finish_build(
        &self,
        org_id: &OrgId,
        id: &BuildId,
        state: BuildState,
        message: &str,
        log: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE builds SET state = $3, message = $4, log = $5, finished_at = $6 WHERE org_id = $1 AND id = $2",
        )
        .bind(org_id.as_str())
        .bind(id.as_str())
        .bind(state.as_str())
        .bind(message)
        .bind(log)
        .bind(Timestamp::now().0)
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    /// One build of an organization.
    pub async fn get_build(&self, org_id: &OrgId, id: &BuildId) -> Result<Option<BuildRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT org_id, id, tool_id, kind, state, message, log, created_by_org, created_by_user, created_at, finished_at \
             FROM builds WHERE org_id = $1 AND id = $2",
        )
        .bind(org_id.as_str())
        .bind(id.as_str())
        .fetch_optional(&self.db.read)
        .await?;
        row.map(|r| build_from_row(&r)).transpose()
    }

    /// Marks as failed the builds whose server died while they ran: publish builds whose tool
    /// lock is released or its lease run out (a publish holds the tool's lock, renewed, from
    /// before its build starts until after the build is recorded as finished), and any build
    /// still "running" after `older_than_secs` (test builds hold no lock; a live build is
    /// bounded by its steps' time limits, far below that age). Safe to run at any time and from
    /// any server process.
    pub async fn fail_stale_builds(&self, older_than_secs: i64) -> Result<u64, StoreError> {
        let now = Timestamp::now();
        let done = sqlx::query(
            "UPDATE builds SET state = 'failed', message = $1, finished_at = $2 \
             WHERE state = 'running' AND (created_at < $3 OR (tool_id IS NOT NULL AND NOT EXISTS ( \
                 SELECT 1 FROM tool_operation_locks l \
                 WHERE l.org_id = builds.org_id AND l.tool_id = builds.tool_id AND l.expires_at >= $2)))",
        )
        .bind(INTERRUPTED)
        .bind(now.0)
        .bind(now.plus_secs(-older_than_secs).0)
        .execute(&self.db.write)
        .await?;
        Ok(done.rows_affected())
    }

    /// Marks as failed every build of `tool_id` still "running": called by whoever has just
    /// taken the tool's lock, so no build of the tool can be live (publishes build only while
    /// holding the lock) and those rows were left by a holder that died.
    pub(crate) async fn fail_builds_of_lost_holder(&self, org_id: &OrgId, tool_id: &ToolId) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE builds SET state = 'failed', message = $3, finished_at = $4 \
             WHERE org_id = $1 AND tool_id = $2 AND state = 'running'",
        )
        .bind(org_id.as_str())
        .bind(tool_id.as_str())
        .bind(INTERRUPTED)
        .bind(Timestamp::now().0)
        .execute(&self.db.write)
        .await?;
        Ok(done.rows_affected())
    }
}

/// The message of a build whose server died before it finished.
const INTERRUPTED: &str = "The build was interrupted: the server running it stopped before it finished.";

fn build_from_row(r: &AnyRow) -> Result<BuildRecord, StoreError> {
    Ok(BuildRecord {
        id: get_id(r, "id")?,
        org_id: get_id(r, "org_id")?,
        tool_id: get_optional_id(r, "tool_id")?,
        kind: r.try_get("kind")?,
        state: BuildState::parse(&r.try_get::<String, _>("state")?),
        message: r.try_get("message")?,
        log: r.try_get("log")?,
        created_by: UserRef::from_row(r, "created_by_org", "created_by_user")?,
        created_at: Timestamp(r.try_get("created_at")?),
        finished_at: r.try_get::<Option<i64>, _>("finished_at")?.map(Timestamp),
    })
}
