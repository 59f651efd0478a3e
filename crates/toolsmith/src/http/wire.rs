//! The JSON shapes of the compatible API, exactly as the wire contract names their fields.
//!
//! Architecture invariant: only the HTTP layer knows these shapes; the store and the domain speak
//! their own types, and conversion happens here.

use serde::Serialize;
use serde_json::Value;
use toolsmith_domain::InvocationSource;
use toolsmith_store::{Invocation, Tool, UserRef};

/// `UserInfo` of tools: `{org_id, user_id}`.
#[derive(Debug, Serialize)]
pub struct ToolUserInfo {
    /// The user's organization.
    pub org_id: String,
    /// The user's id.
    pub user_id: String,
}

impl From<&UserRef> for ToolUserInfo {
    fn from(u: &UserRef) -> Self {
        ToolUserInfo { org_id: u.org_id.clone(), user_id: u.user_id.clone() }
    }
}

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
    pub id: String,
    /// Its organization.
    pub org_id: String,
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
    pub id: String,
}

/// The sign-in response.
#[derive(Debug, Serialize)]
pub struct SignInResponse {
    /// The bearer token.
    pub id_token: String,
    /// When it expires.
    pub expires_at: String,
}

/// `UserInfo` of versions: `{user_id, user_org_id}` (the contract names it differently from the
/// tools' `UserInfo`).
#[derive(Debug, Serialize)]
pub struct VersionUserInfo {
    /// The user's id.
    pub user_id: String,
    /// The user's organization.
    pub user_org_id: String,
}

impl From<&UserRef> for VersionUserInfo {
    fn from(u: &UserRef) -> Self {
        VersionUserInfo { user_id: u.user_id.clone(), user_org_id: u.org_id.clone() }
    }
}

/// `Version`.
#[derive(Debug, Serialize)]
pub struct VersionOut {
    /// Major.
    pub major: u64,
    /// Minor.
    pub minor: u64,
    /// Patch.
    pub patch: u64,
}

/// `ToolVersionInstance`, plus toolsmith's `content_digest` extension.
#[derive(Debug, Serialize)]
pub struct ToolVersionInstance {
    /// The version record's id.
    pub id: String,
    /// The organization.
    pub org_id: String,
    /// Publication time.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
    /// The tool.
    pub tool_id: String,
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
            version: VersionOut { major: v.version.major, minor: v.version.minor, patch: v.version.patch },
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

/// `InvocationStatus`: what the tool returned or raised.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum InvocationStatus {
    /// The tool returned.
    Succeeded {
        /// Always true.
        succeeded: bool,
        /// The output.
        output: String,
    },
    /// The tool raised.
    Failed {
        /// Always false.
        succeeded: bool,
        /// The exception's message.
        exception_message: String,
        /// The exception's type.
        exception_type: String,
        /// The stack trace lines.
        exception_stack_trace: Vec<String>,
    },
}

/// `ToolInvocationInstance`, plus toolsmith's `caller` extension. Clients built from the contract
/// ignore the extra field; the source is the contract's `InvocationSource` except for toolsmith's
/// own kinds, which the listing and search return only when asked for.
#[derive(Debug, Serialize)]
pub struct ToolInvocationInstance {
    /// The invocation's id.
    pub id: String,
    /// The organization.
    pub org_id: String,
    /// When it was invoked.
    pub created_at: String,
    /// When the record last changed.
    pub updated_at: String,
    /// What happened.
    pub invocation_status: InvocationStatus,
    /// Where the call came from, as the caller said.
    pub invocation_source: InvocationSource,
    /// How long it ran.
    pub duration_ms: i64,
    /// The tool.
    pub tool_id: String,
    /// The version.
    pub tool_version: VersionOut,
    /// The input parameters.
    pub inputs: Value,
    /// Extension: who really called, whatever source they attached; `null` for records made
    /// before callers were recorded.
    pub caller: Option<ToolUserInfo>,
}

impl From<Invocation> for ToolInvocationInstance {
    fn from(i: Invocation) -> Self {
        let invocation_status = if i.succeeded {
            InvocationStatus::Succeeded { succeeded: true, output: i.output.unwrap_or_default() }
        } else {
            InvocationStatus::Failed {
                succeeded: false,
                exception_message: i.exception_message.unwrap_or_default(),
                exception_type: i.exception_type.unwrap_or_default(),
                exception_stack_trace: i.exception_stack_trace,
            }
        };
        ToolInvocationInstance {
            created_at: i.created_at.to_rfc3339(),
            updated_at: i.updated_at.to_rfc3339(),
            tool_version: VersionOut { major: i.version.major, minor: i.version.minor, patch: i.version.patch },
            caller: i.caller.as_ref().map(Into::into),
            id: i.id,
            org_id: i.org_id,
            invocation_status,
            invocation_source: i.source,
            duration_ms: i.duration_ms,
            tool_id: i.tool_id,
            inputs: i.inputs,
        }
    }
}
