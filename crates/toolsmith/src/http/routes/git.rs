//! `GET|POST /v1/{org}/tool/git/{git_path}`: the organization's repository over git's smart HTTP
//! protocol. Reading needs `Tool:AccessRepo`; pushing also needs `Tool:PushRepo`.

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::StreamExt;
use toolsmith_domain::Permission;
use toolsmith_repo::smart_http::{self, GitRequest, Service};

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::operations::GIT;
use crate::http::params::Query;
use crate::service::{self, Caller};

/// Serves one request of a clone, fetch or push.
pub async fn serve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((_org, git_path)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    request: Request,
) -> Result<Response, ApiError> {
    let query = Query::parse(raw.as_deref());
    let wanted = smart_http::route(request.method() == Method::POST, &git_path, query.last("service"))
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "Not Found"))?;
    let to_api = ApiError::from_service(&GIT);
    if wanted.service() == Service::ReceivePack {
        caller.require(Permission::PushRepo).map_err(&to_api)?;
    }
    let org = caller.org.clone();
    service::repo::ensure_repo(&state, &org).await.map_err(&to_api)?;
    let protocol = smart_http::protocol(request.headers().get("git-protocol").and_then(|v| v.to_str().ok()));
    let repos = state.repos();
    let response = match wanted {
        GitRequest::InfoRefs(service) => repos.info_refs(org.as_str(), service, protocol).await,
        GitRequest::Rpc(service) => {
            let gzip =
                request.headers().get(CONTENT_ENCODING).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
            let body = request.into_body().into_data_stream().map(|chunk| chunk.map_err(std::io::Error::other));
            repos.rpc(org.as_str(), service, body, gzip, protocol).await
        }
    }
    .map_err(|e| to_api(service::Error::from_repo(e)))?;

    let body = match response.pushed {
        None => Body::from_stream(response.body),
        Some(pushed) => {
            // The response ends only after the pushed commits are attributed, so that once `git
            // push` returns, the branch endpoint already names the pusher.
            let store = state.store().clone();
            let user = caller.user.clone();
            let attribute = futures_util::stream::once(async move {
                if let Ok(outcome) = pushed.await {
                    if let Err(err) = store.record_pushed_commits(&org, &outcome.new_commits, &user).await {
                        tracing::error!(error = %err, "could not record the pusher of pushed commits");
                    }
                }
                None
            })
            .filter_map(futures_util::future::ready);
            Body::from_stream(response.body.chain(attribute))
        }
    };
    Ok(([(CONTENT_TYPE, response.content_type), (CACHE_CONTROL, "no-cache")], body).into_response())
}
