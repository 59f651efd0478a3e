//! The table of operations: for each endpoint, its rate limit, the permission it needs and the
//! texts it answers with, as the wire contract gives them. Keeping them in one table makes the
//! per-endpoint differences reviewable side by side.

use toolsmith_domain::Permission;

/// What the request guard needs to know about an endpoint.
#[derive(Debug)]
pub struct Operation {
    /// The contract's operationId; also names the rate-limit bucket.
    pub id: &'static str,
    /// Requests per user per minute.
    pub per_minute: u32,
    /// The permission required, when the endpoint requires one for the whole request.
    pub permission: Option<Permission>,
    /// The 404 text for an organization that does not exist (or is not visible to the caller).
    pub org_not_found: &'static str,
    /// Whether a 401 carries a `WWW-Authenticate: Basic` challenge (git clients need it to prompt).
    pub basic_challenge: bool,
}

const fn op(
    id: &'static str,
    per_minute: u32,
    permission: Option<Permission>,
    org_not_found: &'static str,
) -> Operation {
    Operation { id, per_minute, permission, org_not_found, basic_challenge: false }
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
