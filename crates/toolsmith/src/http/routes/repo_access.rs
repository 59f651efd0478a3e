//! `POST|DELETE /v1/{org}/user/{user_id}/tool-repo-access`: grant or revoke a user's read access
//! to the organization's tool repository (the `repo-reader` role). Access that comes with
//! another role (a developer's) is not affected by a revoke.

use axum::extract::State;
use axum::{Extension, Json};
use serde_json::{json, Value};
use toolsmith_domain::Role;

use crate::app::AppState;
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::extract::PathParams;
use crate::http::operations::GRANT_REPO_ACCESS;

async fn target_user(state: &AppState, caller: &Caller, path: &PathParams) -> Result<String, ApiError> {
    let user = path.object_id("user_id")?;
    if state.store().get_user(&caller.org_id, &user).await?.is_none() {
        return Err(ApiError::not_found(GRANT_REPO_ACCESS.org_not_found));
    }
    Ok(user)
}

/// Grants read access to the repository.
pub async fn grant(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathParams,
) -> Result<Json<Value>, ApiError> {
    let user = target_user(&state, &caller, &path).await?;
    state.store().grant_role(&caller.org_id, &caller.org_id, &user, Role::RepoReader).await?;
    Ok(Json(json!({"org_id": caller.org_id, "user_id": user, "tool_repo_access": true})))
}

/// Revokes the read access granted by [`grant`].
pub async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathParams,
) -> Result<Json<Value>, ApiError> {
    let user = target_user(&state, &caller, &path).await?;
    state.store().revoke_role(&caller.org_id, &caller.org_id, &user, Role::RepoReader).await?;
    Ok(Json(json!({"org_id": caller.org_id, "user_id": user, "tool_repo_access": false})))
}
