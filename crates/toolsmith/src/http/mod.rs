//! The HTTP layer: the route list, the request guard, the error envelope and the wire shapes.
//!
//! Architecture invariant: this is the only module that knows HTTP. Handlers translate between
//! wire JSON and domain/store types and call into the inner crates; they never contain SQL.

pub mod auth;
pub mod error;
pub mod extract;
pub mod mcp;
pub mod operations;
pub mod params;
pub mod rate_limit;
pub mod routes;
pub mod wire;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use error::ApiError;
use operations::Operation;
use routes::{docs, envvars, git, health, invocations, invoke, repo, repo_access, signin, test_tool, tools, versions};

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps a method router in the request guard of `op`.
fn guarded(state: &AppState, op: &'static Operation, route: MethodRouter<AppState>) -> MethodRouter<AppState> {
    route.layer(middleware::from_fn_with_state(state.clone(), move |s: State<AppState>, req: Request, next: Next| {
        auth::guard(s, op, req, next)
    }))
}

/// The complete route list of the service.
pub fn router(state: AppState) -> Router {
    use operations::*;
    let tools_collection =
        guarded(&state, &GET_TOOLS, get(tools::list)).merge(guarded(&state, &CREATE_TOOL, post(tools::create)));
    let tool = guarded(&state, &MODIFY_TOOL, post(tools::modify)).merge(guarded(
        &state,
        &DEPRECATE_TOOL,
        delete(tools::deprecate),
    ));
    let body_limit = state.settings().max_body_bytes;

    Router::new()
        .route("/v1/{org}/user/signin_with_api_key", post(signin::sign_in))
        // The contract writes the collection with a trailing slash; clients differ, so both work.
        .route("/v1/{org}/tool/", tools_collection.clone())
        .route("/v1/{org}/tool", tools_collection)
        .route("/v1/{org}/tool/{tool_id}", tool)
        .route("/v1/{org}/tool/{tool_id}/envvar", guarded(&state, &MODIFY_ENVVARS, post(envvars::modify)))
        .route(
            "/v1/{org}/tool/{tool_id}/version",
            guarded(&state, &PUBLISH_VERSION, post(versions::publish)).merge(guarded(
                &state,
                &GET_VERSIONS,
                get(versions::list),
            )),
        )
        .route(
            "/v1/{org}/tool/{tool_id}/version/{versions}",
            guarded(&state, &DEPRECATE_VERSIONS, delete(versions::deprecate)),
        )
        .route(
            "/v1/{org}/tool/{tool_id}/version/{version}/invoke",
            guarded(&state, &INVOKE_VERSION, post(invoke::invoke)),
        )
        .route("/v1/{org}/tool/test", guarded(&state, &TEST_TOOL, post(test_tool::test)))
        .route("/v1/{org}/tool/build/{build_id}", guarded(&state, &GET_BUILD, get(versions::build_log)))
        .route("/v1/{org}/tool/invocation", guarded(&state, &GET_INVOCATIONS, get(invocations::list)))
        .route("/v1/{org}/tool/invocation/search", guarded(&state, &SEARCH_INVOCATIONS, get(invocations::search)))
        .route(
            "/v1/{org}/tool/invocation/{invocation_id}/logs",
            guarded(&state, &GET_INVOCATION_LOGS, get(invocations::logs)),
        )
        .route("/v1/{org}/tool/git/{*git_path}", guarded(&state, &GIT, get(git::serve).post(git::serve)))
        .route("/v1/{org}/tool/amigo_tool_scaffold.tar.gz", guarded(&state, &SCAFFOLD, get(repo::scaffold_archive)))
        .route("/v1/{org}/tool/repo/file", guarded(&state, &REPO_FILE, get(repo::file)))
        .route("/v1/{org}/tool/repo/directory", guarded(&state, &REPO_DIRECTORY, get(repo::directory)))
        .route("/v1/{org}/tool/repo/files", guarded(&state, &REPO_FILES, post(repo::files)))
        .route("/v1/{org}/tool/repo/commits", guarded(&state, &REPO_COMMITS, get(repo::commits)))
        .route("/v1/{org}/tool/repo/branch/{branch_name}", guarded(&state, &REPO_BRANCH, get(repo::branch)))
        .route("/v1/{org}/tool/repo/branches", guarded(&state, &REPO_BRANCHES, get(repo::branches)))
        .route(
            "/v1/{org}/user/{user_id}/tool-repo-access",
            guarded(&state, &GRANT_REPO_ACCESS, post(repo_access::grant)).merge(guarded(
                &state,
                &REVOKE_REPO_ACCESS,
                delete(repo_access::revoke),
            )),
        )
        .route(
            "/v1/{org}/mcp",
            guarded(&state, &MCP, post(mcp::post))
                .merge(get(mcp::not_allowed).delete(mcp::not_allowed).put(mcp::not_allowed).patch(mcp::not_allowed))
                .layer(middleware::from_fn_with_state(state.clone(), mcp::check_origin)),
        )
        .route("/openapi.json", get(docs::openapi))
        .route("/docs", get(docs::page))
        .route("/healthz", get(docs::health))
        .route("/readyz", get(health::ready))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(no_store_on_errors))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
        .with_state(state)
}

/// Times every request into `http_server_request_duration_seconds`, labelled by the route
/// template (never the concrete path, which would make a series per tool id).
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let method = req.method().clone();
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    state.metrics().http_request(
        route.as_deref().unwrap_or("unmatched"),
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "Not Found")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
}

/// Error answers must not be cached by intermediaries (a 404 for a tool created a second later).
async fn no_store_on_errors(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    if response.status().is_client_error() || response.status().is_server_error() {
        response
            .headers_mut()
            .insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    }
    response.into_response()
}
