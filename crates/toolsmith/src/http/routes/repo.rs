//! Browsing the organization's repository (`/v1/{org}/tool/repo/…`) and the tool scaffold.
//!
//! These endpoints are not in the compatible API's OpenAPI document (Amigo removed them); their
//! paths and shapes are toolsmith's, documented in docs/API.md and in `/openapi.json`.

use axum::extract::{RawQuery, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::Value;
use toolsmith_domain::time::Timestamp;
use toolsmith_repo::browse::CommitQuery;
use toolsmith_repo::names::{check_ref, normalize_path, MAX_REF_LEN};
use toolsmith_repo::{scaffold, RepoError};

use crate::app::AppState;
use crate::http::error::{ApiError, Loc};
use crate::http::extract::{JsonBody, PathParams};
use crate::http::operations::{REPO_BRANCH, REPO_BRANCHES, REPO_COMMITS, REPO_DIRECTORY, REPO_FILE, REPO_FILES};
use crate::http::params::{string_value, Fields, Problems, Query};
use crate::http::wire::repo::{BranchOut, BranchesOut, CommitOut, CommitsOut, DirectoryOut, FilesOut};
use crate::service::{self, Caller};

/// The most paths one `repo/files` request may ask for.
const MAX_PATHS: usize = 100;

fn qloc(name: &str) -> Vec<Loc> {
    vec![Loc::from("query"), Loc::from(name)]
}

fn required(q: &Query, name: &str, problems: &mut Problems) -> Option<String> {
    let value = q.last(name).map(str::to_owned);
    if value.is_none() {
        problems.push(qloc(name), "missing", "Field required", None);
    }
    value
}

/// Checks a ref where it arrived (`loc`), recording a FastAPI-shaped problem with the input when
/// it cannot name a branch or commit: empty (`minLength` 1), longer than [`MAX_REF_LEN`]
/// characters, or against the rules of [`check_ref`].
fn checked_ref(raw: &str, loc: Vec<Loc>, problems: &mut Problems) -> String {
    let input = Some(Value::String(raw.to_owned()));
    if raw.is_empty() {
        problems.push(loc, "string_too_short", "String should have at least 1 character", input);
    } else if raw.chars().count() > MAX_REF_LEN {
        problems.push(loc, "string_too_long", format!("String should have at most {MAX_REF_LEN} characters"), input);
    } else if let Err(RepoError::InvalidRef(why)) = check_ref(raw) {
        problems.push(loc, "value_error", format!("Value error, {why}"), input);
    }
    raw.to_owned()
}

/// The `ref` query parameter, `main` when absent.
fn query_ref(q: &Query, problems: &mut Problems) -> String {
    checked_ref(q.last("ref").unwrap_or("main"), qloc("ref"), problems)
}

/// Checks a repository path where it arrived, as [`checked_ref`] does for refs.
fn checked_path(raw: &str, loc: Vec<Loc>, problems: &mut Problems) -> String {
    if let Err(RepoError::InvalidPath(why)) = normalize_path(raw) {
        problems.push(loc, "value_error", format!("Value error, {why}"), Some(Value::String(raw.to_owned())));
    }
    raw.to_owned()
}

/// `GET /v1/{org}/tool/repo/file?path=&ref=main`: the raw bytes of a file.
pub async fn file(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw.as_deref());
    let mut problems = Problems::default();
    let path = required(&q, "path", &mut problems).map(|p| checked_path(&p, qloc("path"), &mut problems));
    let reference = query_ref(&q, &mut problems);
    let path = problems.finish(path)?.unwrap_or_default();
    let file = service::repo::read_file(&state, &caller, &reference, &path)
        .await
        .map_err(ApiError::from_service(&REPO_FILE))?;
    let content_type =
        if std::str::from_utf8(&file.bytes).is_ok() { "text/plain; charset=utf-8" } else { "application/octet-stream" };
    Ok(([(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")], file.bytes).into_response())
}

/// `GET /v1/{org}/tool/repo/directory?path=&ref=main&include_last_commit=false`.
pub async fn directory(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<DirectoryOut>, ApiError> {
    let q = Query::parse(raw.as_deref());
    let mut problems = Problems::default();
    let path = required(&q, "path", &mut problems).map(|p| checked_path(&p, qloc("path"), &mut problems));
    let reference = query_ref(&q, &mut problems);
    let with_last = q.opt_bool("include_last_commit", &mut problems).unwrap_or(false);
    let path = problems.finish(path)?.unwrap_or_default();
    let (entries, pushers) = service::repo::list_directory(&state, &caller, &reference, &path, with_last)
        .await
        .map_err(ApiError::from_service(&REPO_DIRECTORY))?;
    Ok(Json(DirectoryOut::new(entries, &pushers)))
}

/// `POST /v1/{org}/tool/repo/files` with `{"ref": "main", "paths": [...]}`: several files at once,
/// text as UTF-8 and anything else as base64.
pub async fn files(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody,
) -> Result<Json<FilesOut>, ApiError> {
    let fields = Fields::new(&body, vec![Loc::from("body")]);
    let mut problems = Problems::default();
    // `ref` is a string with a default, as in FastAPI: absent means `main`, `null` is refused.
    let reference = match fields.raw("ref") {
        None => "main".to_owned(),
        Some(v) => string_value(v, fields.loc("ref"), false, &mut problems)
            .map(|r| checked_ref(&r, fields.loc("ref"), &mut problems))
            .unwrap_or_default(),
    };
    let mut paths = Vec::new();
    match fields.raw("paths") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let mut loc = fields.loc("paths");
                loc.push(Loc::from(i));
                if let Some(path) = string_value(item, loc.clone(), false, &mut problems) {
                    paths.push(checked_path(&path, loc, &mut problems));
                }
            }
            if items.len() > MAX_PATHS {
                problems.push(
                    fields.loc("paths"),
                    "too_long",
                    format!("List should have at most {MAX_PATHS} items"),
                    None,
                );
            }
        }
        Some(other) => {
            problems.push(fields.loc("paths"), "list_type", "Input should be a valid list", Some(other.clone()))
        }
    }
    let reference = problems.finish(reference)?;
    let files = service::repo::read_files(&state, &caller, &reference, &paths)
        .await
        .map_err(ApiError::from_service(&REPO_FILES))?;
    Ok(Json(FilesOut::new(files)))
}

/// `GET /v1/{org}/tool/repo/commits`: history from a ref, newest first, with an optional path
/// filter, time window, changed files and line counts. Pages are numbered from 1.
pub async fn commits(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<CommitsOut>, ApiError> {
    let q = Query::parse(raw.as_deref());
    let mut problems = Problems::default();
    let time = |name: &str, problems: &mut Problems| -> Option<i64> {
        let raw = q.last(name)?;
        match Timestamp::parse_rfc3339(raw) {
            Some(t) => Some(t.as_secs()),
            None => {
                problems.push(
                    vec![Loc::from("query"), Loc::from(name)],
                    "datetime_parsing",
                    "Input should be a valid datetime",
                    Some(Value::String(raw.to_owned())),
                );
                None
            }
        }
    };
    let since = time("since", &mut problems);
    let until = time("until", &mut problems);
    let query = CommitQuery {
        reference: query_ref(&q, &mut problems),
        path: q.last("path").filter(|p| !p.is_empty()).map(|p| checked_path(p, qloc("path"), &mut problems)),
        since,
        until,
        limit: q.count("limit", 20, 1, Some(100), &mut problems),
        page: q.count("continuation_token", 1, 1, None, &mut problems),
        changed_files: q.opt_bool("include_changed_files", &mut problems).unwrap_or(false),
        stats: q.opt_bool("include_stats", &mut problems).unwrap_or(false),
    };
    problems.finish(())?;
    let (page, pushers) =
        service::repo::commits(&state, &caller, &query).await.map_err(ApiError::from_service(&REPO_COMMITS))?;
    Ok(Json(CommitsOut {
        commits: page.items.into_iter().map(|c| CommitOut::new(c, &pushers, query.stats)).collect(),
        has_more: page.has_more,
        continuation_token: page.has_more.then(|| query.page.saturating_add(1)),
    }))
}

/// `GET /v1/{org}/tool/repo/branch/{branch_name}`: a branch's newest commit and who pushed it
/// (`null` when it did not arrive through toolsmith).
pub async fn branch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathParams,
) -> Result<Json<BranchOut>, ApiError> {
    let name = path.0.get("branch_name").cloned().unwrap_or_default();
    let (info, pushers) =
        service::repo::branch(&state, &caller, &name).await.map_err(ApiError::from_service(&REPO_BRANCH))?;
    Ok(Json(BranchOut::new(info, &pushers)))
}

/// `GET /v1/{org}/tool/repo/branches?limit=20&continuation_token=1`.
pub async fn branches(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<BranchesOut>, ApiError> {
    let q = Query::parse(raw.as_deref());
    let mut problems = Problems::default();
    let limit = q.count("limit", 20, 1, Some(100), &mut problems);
    let page = q.count("continuation_token", 1, 1, None, &mut problems);
    problems.finish(())?;
    let (listed, pushers) =
        service::repo::branches(&state, &caller, limit, page).await.map_err(ApiError::from_service(&REPO_BRANCHES))?;
    Ok(Json(BranchesOut {
        branches: listed.items.into_iter().map(|b| BranchOut::new(b, &pushers)).collect(),
        has_more: listed.has_more,
        continuation_token: listed.has_more.then(|| page.saturating_add(1)),
    }))
}

/// `GET /v1/{org}/tool/amigo_tool_scaffold.tar.gz`: the tool project template.
pub async fn scaffold_archive() -> Response {
    ([(CONTENT_TYPE, "application/gzip"), (CACHE_CONTROL, "public, max-age=3600")], scaffold::tar_gz()).into_response()
}
