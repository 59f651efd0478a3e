//! Users: signing in with an API key, and access to the tool repository.

use serde::Serialize;
use toolsmith_domain::{OrgId, UserId};

/// The sign-in response.
#[derive(Debug, Serialize)]
pub struct SignInResponse {
    /// The bearer token.
    pub id_token: String,
    /// When it expires.
    pub expires_at: String,
}

/// `POST|DELETE …/user/{user_id}/tool-repo-access`: the user's access after the change.
#[derive(Debug, Serialize)]
pub struct RepoAccessOut {
    /// The organization.
    pub org_id: OrgId,
    /// The user.
    pub user_id: UserId,
    /// Whether the user may now read the repository.
    pub tool_repo_access: bool,
}
