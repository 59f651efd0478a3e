//! `POST /v1/{org}/user/signin_with_api_key`: trade an organization's API key for a token.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use toolsmith_domain::OrgId;

use crate::app::AppState;
use crate::http::error::{ApiError, FieldError, Loc};
use crate::http::operations::{rate_limit_message, SIGN_IN};
use crate::http::wire::users::SignInResponse;
use crate::service;

/// Issues a token for `x-user-id` when `x-api-key-id`/`x-api-key` name a live key of the
/// organization.
pub async fn sign_in(
    State(state): State<AppState>,
    Path(org): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (key, key_id, user_id) = (header("x-api-key"), header("x-api-key-id"), header("x-user-id"));
    let missing: Vec<FieldError> = [("x-api-key", &key), ("x-api-key-id", &key_id), ("x-user-id", &user_id)]
        .into_iter()
        .filter(|(_, v)| v.is_none())
        .map(|(name, _)| FieldError::new(vec![Loc::from("header"), Loc::from(name)], "missing", "Field required", None))
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::validation(missing));
    }
    let (key, key_id, user_id) = (key.unwrap_or_default(), key_id.unwrap_or_default(), user_id.unwrap_or_default());

    let to_api = ApiError::from_service(&SIGN_IN);
    let org = OrgId::parse(&org).map_err(|_| ApiError::not_found(SIGN_IN.org_not_found))?;
    service::identity::organization(&state, &org).await.map_err(&to_api)?;
    // Throttled per key id: guessing a key's secret is limited to a handful of tries a minute.
    let rate = state.limiter().hit(&format!("{}|{}|{}", SIGN_IN.id, org, key_id), SIGN_IN.per_minute).await;
    if let Some(status) = rate.filter(|s| s.exceeded) {
        let mut err = ApiError::new(StatusCode::TOO_MANY_REQUESTS, rate_limit_message(SIGN_IN.per_minute));
        for (name, value) in status.headers().iter() {
            err = err.with_header(name.clone(), value.clone());
        }
        return Err(err);
    }

    let (id_token, expires_at) =
        service::identity::sign_in(&state, &org, &key_id, &key, &user_id).await.map_err(&to_api)?;
    let mut response = Json(SignInResponse { id_token, expires_at: expires_at.to_rfc3339() }).into_response();
    if let Some(status) = rate {
        response.headers_mut().extend(status.headers());
    }
    Ok(response)
}
