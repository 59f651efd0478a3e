//! `POST|DELETE /v1/{org}/user/{user_id}/tool-repo-access`: grant or revoke a user's read access
//! to the organization's tool repository.

use axum::extract::State;
use axum::{Extension, Json};

use toolsmith_domain::UserId;

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::extract::PathParams;
use crate::http::operations::{Operation, GRANT_REPO_ACCESS, REVOKE_REPO_ACCESS};
use crate::http::wire::users::RepoAccessOut;
use crate::service::{self, Caller};

async fn set(
    state: &AppState,
    caller: &Caller,
    path: &PathParams,
    access: bool,
    op: &'static Operation,
) -> Result<Json<RepoAccessOut>, ApiError> {
    let user_id = path.id::<UserId>("user_id")?;
    service::repo_access::set(state, caller, &user_id, access).await.map_err(ApiError::from_service(op))?;
    Ok(Json(RepoAccessOut { org_id: caller.org.clone(), user_id, tool_repo_access: access }))
}

/// Grants the user read access.
pub async fn grant(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathParams,
) -> Result<Json<RepoAccessOut>, ApiError> {
    set(&state, &caller, &path, true, &GRANT_REPO_ACCESS).await
}

/// Revokes the user's read access.
pub async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathParams,
) -> Result<Json<RepoAccessOut>, ApiError> {
    set(&state, &caller, &path, false, &REVOKE_REPO_ACCESS).await
}
