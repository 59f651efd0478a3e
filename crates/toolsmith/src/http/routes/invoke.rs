//! `POST /tool/{tool_id}/version/{version}/invoke`: runs a published version.

use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::Value;

use toolsmith_domain::ToolId;

use crate::app::AppState;
use crate::http::error::{ApiError, Loc};
use crate::http::extract::{JsonBody, PathParams};
use crate::http::operations::INVOKE_VERSION;
use crate::http::params::Problems;
use crate::http::wire::invoke::{attaches_source, parse_inputs, InvocationResults};
use crate::service::invoke::{Invocation, Surface, VersionSelector};
use crate::service::{self, Caller};
use toolsmith_domain::Permission;

/// The header naming the version that ran, since the path may hold a specifier.
pub const VERSION_HEADER: &str = "x-toolsmith-tool-version";

/// Invokes a published version with 1 to 10 inputs.
pub async fn invoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathParams,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let to_api = ApiError::from_service(&INVOKE_VERSION);
    // The permission to attach a source is decided before the body is validated, as every
    // permission is.
    if attaches_source(&body) {
        caller.require(Permission::AttachInvocationSource).map_err(&to_api)?;
    }
    let tool_id = path.id::<ToolId>("tool_id")?;
    let wanted = path.0.get("version").cloned().unwrap_or_default();
    let mut problems = Problems::default();
    let inputs = parse_inputs(&body, &mut problems);
    let inputs = problems.finish(inputs)?;
    let version = VersionSelector::parse(&wanted).map_err(|why| {
        ApiError::invalid(
            vec![Loc::from("path"), Loc::from("version")],
            "value_error",
            format!("Value error, not a version or a version specifier: {why}"),
            Some(Value::String(wanted.clone())),
        )
    })?;
    let request = Invocation { tool_id, version, inputs, surface: Surface::Api };
    let invoked = service::invoke::invoke(&state, &caller, request).await.map_err(&to_api)?;
    let header = HeaderValue::from_str(&invoked.version.to_string()).unwrap_or(HeaderValue::from_static(""));
    Ok((
        StatusCode::OK,
        [(HeaderName::from_static(VERSION_HEADER), header)],
        Json(InvocationResults::new(invoked.results)),
    )
        .into_response())
}
