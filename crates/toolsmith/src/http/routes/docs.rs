//! The API's own description: `GET /openapi.json`, a browsable page at `GET /docs`, and a
//! health check.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::app::AppState;

/// The OpenAPI 3.1 document of toolsmith: the compatible endpoints plus toolsmith's extensions,
/// which carry `x-toolsmith-extension: true`.
pub const OPENAPI: &str = include_str!("../../../openapi.json");

const PAGE: &str = include_str!("../../../docs.html");

/// `GET /openapi.json`.
pub async fn openapi() -> Response {
    ([(CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// `GET /docs`: a self-contained page that renders `/openapi.json` (no assets from elsewhere, so
/// it works on machines without internet access).
pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// `GET /healthz`: 200 when the database answers, 503 otherwise.
pub async fn health(State(state): State<AppState>) -> Response {
    match state.store().ping().await {
        Ok(()) => (StatusCode::OK, "ok").into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}
