//! Tools: the listing, creation and the tool instance.

use serde::Serialize;
use toolsmith_domain::{OrgId, ToolId};
use toolsmith_store::Tool;

use super::ToolUserInfo;

/// `Tag`: `{key, value}` with a nullable value.
#[derive(Debug, Serialize)]
pub struct TagOut {
    /// The key.
    pub key: String,
    /// The value, `null` for a tag without one.
    pub value: Option<String>,
}

/// `ToolInstance`.
#[derive(Debug, Serialize)]
pub struct ToolInstance {
    /// The tool's id.
    pub id: ToolId,
    /// Its organization.
    pub org_id: OrgId,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
    /// Its name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// Whether it is deprecated.
    pub deprecated: bool,
    /// Names of ordinary env vars.
    pub envvars: Vec<String>,
    /// Names of secret env vars.
    pub secret_envvars: Vec<String>,
    /// Tags.
    pub tags: Vec<TagOut>,
    /// Creator.
    pub creator: ToolUserInfo,
    /// Last modifier.
    pub updated_by: ToolUserInfo,
}

impl From<Tool> for ToolInstance {
    fn from(t: Tool) -> Self {
        ToolInstance {
            created_at: t.created_at.to_rfc3339(),
            updated_at: t.updated_at.to_rfc3339(),
            creator: (&t.creator).into(),
            updated_by: (&t.updated_by).into(),
            tags: t.tags.into_iter().map(|tag| TagOut { key: tag.key, value: tag.value }).collect(),
            id: t.id,
            org_id: t.org_id,
            name: t.name,
            description: t.description,
            deprecated: t.deprecated,
            envvars: t.envvars,
            secret_envvars: t.secret_envvars,
        }
    }
}

/// `filter_values` of the tool listing.
#[derive(Debug, Serialize)]
pub struct ToolFilterValues {
    /// The tag keys in use.
    pub tags: Vec<String>,
}

/// The tool listing's response.
#[derive(Debug, Serialize)]
pub struct GetToolsResponse {
    /// This page.
    pub tools: Vec<ToolInstance>,
    /// Whether more pages follow.
    pub has_more: bool,
    /// The token of the next page, `null` on the last.
    pub continuation_token: Option<i64>,
    /// Filter values, on the first page only.
    pub filter_values: Option<ToolFilterValues>,
}

/// The create-tool response.
#[derive(Debug, Serialize)]
pub struct CreateToolResponse {
    /// The new tool's id.
    pub id: ToolId,
}
