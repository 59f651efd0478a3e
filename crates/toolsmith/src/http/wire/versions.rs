//! Versions: the version instance, the listing, publishing's answer and build records.

use serde::Serialize;
use toolsmith_domain::{BuildId, OrgId, ToolId, UserId, VersionId};
use toolsmith_store::{BuildRecord, ToolVersion, UserRef};

use super::VersionOut;
use crate::service::versions::{VersionPage, VersionQuery};

/// `UserInfo` of versions: `{user_id, user_org_id}` (the contract names it differently from the
/// tools' `UserInfo`).
#[derive(Debug, Serialize)]
pub struct VersionUserInfo {
    /// The user's id.
    pub user_id: UserId,
    /// The user's organization.
    pub user_org_id: OrgId,
}

impl From<&UserRef> for VersionUserInfo {
    fn from(u: &UserRef) -> Self {
        VersionUserInfo { user_id: u.user_id.clone(), user_org_id: u.org_id.clone() }
    }
}

/// `ToolVersionInstance`, plus toolsmith's `content_digest` extension.
#[derive(Debug, Serialize)]
pub struct ToolVersionInstance {
    /// The version record's id.
    pub id: VersionId,
    /// The organization.
    pub org_id: OrgId,
    /// Publication time.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
    /// The tool.
    pub tool_id: ToolId,
    /// `{major, minor, patch}`.
    pub version: VersionOut,
    /// Non-secret env vars it needs.
    pub required_envvars: Vec<String>,
    /// Secret env vars it needs.
    pub required_secret_envvars: Vec<String>,
    /// Its input schema.
    pub input_schema: serde_json::Value,
    /// The source commit.
    pub tool_commit_hash: String,
    /// The scaffold archive hash.
    pub amigo_scaffold_commit_hash: String,
    /// The project directory.
    pub project_directory: String,
    /// The artifact revision.
    pub lambda_version: i64,
    /// Publisher.
    pub creator: VersionUserInfo,
    /// Last modifier.
    pub updated_by: VersionUserInfo,
    /// Whether it is deprecated.
    pub deprecated: bool,
    /// Extension: SHA-256 over (source tree, lock, schema), to pin exactly what was tested.
    pub content_digest: String,
}

impl From<toolsmith_store::ToolVersion> for ToolVersionInstance {
    fn from(v: toolsmith_store::ToolVersion) -> Self {
        ToolVersionInstance {
            created_at: v.created_at.to_rfc3339(),
            updated_at: v.updated_at.to_rfc3339(),
            version: v.version.into(),
            creator: (&v.creator).into(),
            updated_by: (&v.updated_by).into(),
            id: v.id,
            org_id: v.org_id,
            tool_id: v.tool_id,
            required_envvars: v.required_envvars,
            required_secret_envvars: v.required_secret_envvars,
            input_schema: v.input_schema,
            tool_commit_hash: v.tool_commit_hash,
            amigo_scaffold_commit_hash: v.scaffold_hash,
            project_directory: v.project_directory,
            lambda_version: v.lambda_version,
            deprecated: v.deprecated,
            content_digest: v.content_digest,
        }
    }
}

/// The version listing's filter values: everyone who published a version.
#[derive(Debug, Serialize)]
pub struct VersionFilterValues {
    /// The publishers.
    pub creators: Vec<VersionUserInfo>,
}

/// `GetToolVersionsResponse`.
#[derive(Debug, Serialize)]
pub struct VersionsPage {
    /// This page.
    pub tool_versions: Vec<ToolVersionInstance>,
    /// Whether more pages follow.
    pub has_more: bool,
    /// The token of the next page, `null` on the last.
    pub continuation_token: Option<i64>,
    /// Filter values, on the first page only.
    pub filter_values: Option<VersionFilterValues>,
}

impl VersionsPage {
    /// The answer for a page of the listing `query` asked for.
    pub fn new(page: VersionPage, query: &VersionQuery) -> Self {
        let filter_values =
            page.creators.map(|creators| VersionFilterValues { creators: creators.iter().map(Into::into).collect() });
        let tool_versions: Vec<ToolVersionInstance> = page.versions.into_iter().map(Into::into).collect();
        let next = query.offset.saturating_add(tool_versions.len());
        let has_more = next < page.total && query.limit > 0;
        VersionsPage {
            tool_versions,
            has_more,
            continuation_token: has_more.then(|| i64::try_from(next).unwrap_or(i64::MAX)),
            filter_values,
        }
    }
}

/// `CreateToolVersionResponse`.
#[derive(Debug, Serialize)]
pub struct NewVersionOut {
    /// The new version, `X.Y.Z`.
    pub new_version: String,
}

impl NewVersionOut {
    /// The answer for a published version.
    pub fn new(version: &ToolVersion) -> Self {
        NewVersionOut { new_version: version.version.to_string() }
    }
}

/// A build record (toolsmith's extension).
#[derive(Debug, Serialize)]
pub struct BuildOut {
    /// Its id.
    pub id: BuildId,
    /// The tool, for publishes.
    pub tool_id: Option<ToolId>,
    /// `publish` or `test`.
    pub kind: String,
    /// `running`, `succeeded` or `failed`.
    pub state: &'static str,
    /// A one-line summary.
    pub message: String,
    /// The whole log.
    pub log: String,
    /// When it started.
    pub created_at: String,
    /// When it ended.
    pub finished_at: Option<String>,
}

impl From<BuildRecord> for BuildOut {
    fn from(b: BuildRecord) -> Self {
        BuildOut {
            state: b.state.as_str(),
            created_at: b.created_at.to_rfc3339(),
            finished_at: b.finished_at.map(|t| t.to_rfc3339()),
            id: b.id,
            tool_id: b.tool_id,
            kind: b.kind,
            message: b.message,
            log: b.log,
        }
    }
}
