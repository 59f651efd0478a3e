//! The table of operations: for each endpoint, its rate limit, the permission it needs and the
//! texts it answers with, as the wire contract gives them. Keeping them in one table makes the
//! per-endpoint differences reviewable side by side.

use toolsmith_domain::Permission;

/// What the request guard needs to know about an endpoint.
#[derive(Debug)]
pub struct Operation {
    /// The contract's operationId; also names the rate-limit bucket.
    pub id: &'static str,
    /// Requests per user per minute; 0 for no limit.
    pub per_minute: u32,
    /// The permission required, when the endpoint requires one for the whole request.
    pub permission: Option<Permission>,
    /// The 404 text for an organization that does not exist (or is not visible to the caller).
    pub org_not_found: &'static str,
    /// The challenge a 401 carries in `WWW-Authenticate`.
    pub challenge: Challenge,
    /// Whether an organization's API key (`x-api-key`, `x-api-key-id`, `x-user-id`) is accepted in
    /// place of a token, for clients that can send fixed headers but cannot sign in.
    pub api_key_headers: bool,
}

/// What a 401 asks the client for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// No `WWW-Authenticate` header.
    None,
    /// `Basic`: git clients need it to prompt for credentials.
    Basic,
    /// `Bearer`, as RFC 6750 and the MCP authorization specification ask of a protected resource.
    Bearer,
}

const fn op(
    id: &'static str,
    per_minute: u32,
    permission: Option<Permission>,
    org_not_found: &'static str,
) -> Operation {
    Operation { id, per_minute, permission, org_not_found, challenge: Challenge::None, api_key_headers: false }
}

/// `POST /v1/{org}/user/signin_with_api_key`.
pub const SIGN_IN: Operation = op("sign-in-with-api-key", 5, None, "Specified organization is not found.");
/// `GET /v1/{org}/tool/`.
pub const GET_TOOLS: Operation = op("get-tools", 50, Some(Permission::GetTool), "Specified organization is not found.");
/// `POST /v1/{org}/tool/`.
pub const CREATE_TOOL: Operation =
    op("create-tool", 20, Some(Permission::CreateTool), "The specified organization does not exist.");
/// `POST /v1/{org}/tool/{tool_id}`.
pub const MODIFY_TOOL: Operation =
    op("modify-tool", 20, Some(Permission::ModifyTool), "The specified organization or tool does not exist.");
/// `DELETE /v1/{org}/tool/{tool_id}`.
pub const DEPRECATE_TOOL: Operation =
    op("deprecate-tool", 20, Some(Permission::DeleteTool), "The specified organization or tool does not exist.");
/// `POST /v1/{org}/tool/{tool_id}/envvar`.
pub const MODIFY_ENVVARS: Operation =
    op("modify-tool-envvars", 20, Some(Permission::ModifyTool), "The specified organization or tool does not exist.");

/// The 429 text of an operation.
pub fn rate_limit_message(per_minute: u32) -> String {
    let unit = if per_minute == 1 { "request" } else { "requests" };
    format!("The user has exceeded the rate limit of {per_minute} {unit} per minute for this endpoint.")
}

/// `GET|POST /v1/{org}/tool/git/{git_path}`: no rate limit (a clone is several requests), and a
/// Basic challenge so that git prompts for credentials. Pushing also needs `Tool:PushRepo`.
pub const GIT: Operation = Operation {
    id: "access-git-interface",
    per_minute: 0,
    permission: Some(Permission::AccessRepo),
    org_not_found: "Specified organization is not found.",
    challenge: Challenge::Basic,
    api_key_headers: false,
};
/// `GET /v1/{org}/tool/amigo_tool_scaffold.tar.gz`.
pub const SCAFFOLD: Operation = op("get-tool-scaffold-release", 50, None, "Specified organization is not found.");
/// `GET /v1/{org}/tool/repo/file`.
pub const REPO_FILE: Operation =
    op("get-tool-repo-file", 50, Some(Permission::AccessRepo), "Specified organization, file, or ref is not found.");
/// `GET /v1/{org}/tool/repo/directory`.
pub const REPO_DIRECTORY: Operation = op(
    "get-tool-repo-directory",
    60,
    Some(Permission::AccessRepo),
    "The specified organization, directory, or ref does not exist.",
);
/// `POST /v1/{org}/tool/repo/files`.
pub const REPO_FILES: Operation = op(
    "get-tool-repo-files",
    60,
    Some(Permission::AccessRepo),
    "The specified organization, file, or ref does not exist.",
);
/// `GET /v1/{org}/tool/repo/commits`.
pub const REPO_COMMITS: Operation =
    op("get-tool-repo-commits", 60, Some(Permission::AccessRepo), "The specified organization does not exist.");
/// `GET /v1/{org}/tool/repo/branch/{branch_name}`.
pub const REPO_BRANCH: Operation = op(
    "get-tool-repo-branch",
    60,
    Some(Permission::AccessRepo),
    "The specified organization or branch does not exist.",
);
/// `GET /v1/{org}/tool/repo/branches`.
pub const REPO_BRANCHES: Operation =
    op("get-tool-repo-branches", 60, Some(Permission::AccessRepo), "The specified organization does not exist.");
/// `POST /v1/{org}/user/{user_id}/tool-repo-access`.
pub const GRANT_REPO_ACCESS: Operation = op(
    "grant-tool-repo-access",
    20,
    Some(Permission::UpdateUserInfo),
    "The specified organization or user does not exist.",
);
/// `DELETE /v1/{org}/user/{user_id}/tool-repo-access`.
pub const REVOKE_REPO_ACCESS: Operation = op(
    "revoke-tool-repo-access",
    20,
    Some(Permission::UpdateUserInfo),
    "The specified organization or user does not exist.",
);
/// `POST /v1/{org}/tool/{tool_id}/version`.
pub const PUBLISH_VERSION: Operation = op(
    "publish-tool-version",
    10,
    Some(Permission::ModifyTool),
    "The specified organization, tool, commit, or project directory does not exist.",
);
/// `GET /v1/{org}/tool/{tool_id}/version`.
pub const GET_VERSIONS: Operation =
    op("get-tool-versions", 50, Some(Permission::GetTool), "Specified organization or tool is not found.");
/// `DELETE /v1/{org}/tool/{tool_id}/version/{versions}`.
pub const DEPRECATE_VERSIONS: Operation = op(
    "deprecate-tool-version",
    20,
    Some(Permission::ModifyTool),
    "The specified organization or tool does not exist.",
);
/// `GET /v1/{org}/tool/build/{build_id}` (extension).
pub const GET_BUILD: Operation =
    op("get-tool-build", 60, Some(Permission::GetTool), "The specified organization or build does not exist.");
/// `POST /v1/{org}/tool/{tool_id}/version/{version}/invoke`. An input that carries an
/// `invocation_source` also needs `Tool:AttachInvocationSource`, which the handler checks, since
/// only the body says so.
pub const INVOKE_VERSION: Operation = op(
    "invoke-tool-version",
    10,
    Some(Permission::InvokeTool),
    "The specified organization, tool, or tool version does not exist.",
);
/// `POST /v1/{org}/tool/test`: builds and runs an unpublished commit.
pub const TEST_TOOL: Operation =
    op("test-tool", 1, Some(Permission::TestTool), "The specified organization or tool commit does not exist.");
/// `GET /v1/{org}/tool/invocation`: no permission for the request as a whole; each row needs the
/// permission of its source type.
pub const GET_INVOCATIONS: Operation = op("get-tool-invocations", 50, None, "Specified organization does not exist.");
/// `GET /v1/{org}/tool/invocation/search`: rows filtered like the listing's.
pub const SEARCH_INVOCATIONS: Operation = op("search-tool-invocations", 50, None, "The organization is not found.");
/// `GET /v1/{org}/tool/invocation/{invocation_id}/logs` (extension): the row's own permission.
pub const GET_INVOCATION_LOGS: Operation =
    op("get-tool-invocation-logs", 50, None, "The specified organization or invocation does not exist.");
/// `POST /v1/{org}/mcp` (extension): the organization's MCP server. Listing tools needs
/// `Tool:GetTool` (so the endpoint as a whole does); `tools/call` also needs `Tool:InvokeTool`,
/// which the handler and the invoke use case check. One limit for every message, with room for an
/// agent's handshake, listings and a call every second.
pub const MCP: Operation = Operation {
    id: "mcp",
    per_minute: 120,
    permission: Some(Permission::GetTool),
    org_not_found: "Specified organization is not found.",
    challenge: Challenge::Bearer,
    api_key_headers: true,
};
