//! Browsing the organization's repository (`/v1/{org}/tool/repo/…`) and the tool scaffold.
//!
//! These endpoints are not in the compatible API's OpenAPI document (Amigo removed them); their
//! paths and shapes are toolsmith's, documented in docs/API.md and in `/openapi.json`.

use std::collections::HashMap;

use axum::extract::{RawQuery, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Serialize;
use serde_json::Value;
use toolsmith_domain::time::Timestamp;
use toolsmith_repo::browse::{BranchInfo, CommitInfo, CommitQuery, DirEntry};
use toolsmith_repo::names::{check_ref, normalize_path, MAX_REF_LEN};
use toolsmith_repo::{scaffold, RepoError};

use crate::app::AppState;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, Loc};
use crate::http::extract::{JsonBody, PathParams};
use crate::http::operations::{REPO_BRANCH, REPO_BRANCHES, REPO_COMMITS, REPO_DIRECTORY, REPO_FILE, REPO_FILES};
use crate::http::params::{string_value, Fields, Problems, Query};
use crate::http::wire::ToolUserInfo;

/// The most paths one `repo/files` request may ask for.
const MAX_PATHS: usize = 100;

/// Creates the organization's repository on first use (organizations made before it existed,
/// or whose creation-time attempt failed).
pub async fn ensure_repo(state: &AppState, org: &str) -> Result<(), ApiError> {
    if state.repos().exists(org) {
        return Ok(());
    }
    state.repos().create(org).await.map_err(|e| repo_error(e, ""))
}

/// Maps a repository error to a response; `not_found` is the endpoint's 404 text.
pub fn repo_error(err: RepoError, not_found: &str) -> ApiError {
    match err {
        RepoError::NoRepository | RepoError::RefNotFound | RepoError::PathNotFound | RepoError::IsADirectory => {
            ApiError::not_found(not_found)
        }
        RepoError::IsAFile => ApiError::bad_request("The specified path is a file, not a directory."),
        RepoError::TooLarge { limit } => ApiError::bad_request(format!(
            "The file is larger than {limit} bytes, the most this endpoint returns; clone the repository to read it."
        )),
        // The handlers check refs and paths where they arrive (with their location and input);
        // these are what a check inside the repository store found beyond that.
        RepoError::InvalidRef(why) => ApiError::invalid(
            vec![Loc::from("query"), Loc::from("ref")],
            "value_error",
            format!("Value error, {why}"),
            None,
        ),
        RepoError::InvalidPath(why) => ApiError::invalid(
            vec![Loc::from("query"), Loc::from("path")],
            "value_error",
            format!("Value error, {why}"),
            None,
        ),
        RepoError::UnknownService => ApiError::new(StatusCode::NOT_FOUND, "Not Found"),
        other => {
            tracing::error!(error = %other, "repository error");
            ApiError::internal()
        }
    }
}

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
    ensure_repo(&state, &caller.org_id).await?;
    let file = state
        .repos()
        .read_file(&caller.org_id, &reference, &path)
        .await
        .map_err(|e| repo_error(e, REPO_FILE.org_not_found))?;
    let content_type =
        if std::str::from_utf8(&file.bytes).is_ok() { "text/plain; charset=utf-8" } else { "application/octet-stream" };
    Ok(([(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")], file.bytes).into_response())
}

#[derive(Serialize)]
struct CommitSummary {
    sha: String,
    message: String,
    timestamp: String,
    committer: Option<ToolUserInfo>,
}

#[derive(Serialize)]
struct EntryOut {
    name: String,
    path: String,
    #[serde(rename = "type")]
    kind: &'static str,
    size: Option<u64>,
    last_commit: Option<CommitSummary>,
}

#[derive(Serialize)]
struct DirectoryOut {
    entries: Vec<EntryOut>,
}

/// `GET /v1/{org}/tool/repo/directory?path=&ref=main&include_last_commit=false`.
pub async fn directory(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = Query::parse(raw.as_deref());
    let mut problems = Problems::default();
    let path = required(&q, "path", &mut problems).map(|p| checked_path(&p, qloc("path"), &mut problems));
    let reference = query_ref(&q, &mut problems);
    let with_last = q.opt_bool("include_last_commit", &mut problems).unwrap_or(false);
    let path = problems.finish(path)?.unwrap_or_default();
    ensure_repo(&state, &caller.org_id).await?;
    let entries = state
        .repos()
        .list_directory(&caller.org_id, &reference, &path, with_last)
        .await
        .map_err(|e| repo_error(e, REPO_DIRECTORY.org_not_found))?;
    let shas: Vec<String> = entries.iter().filter_map(|e| e.last_commit.as_ref().map(|c| c.sha.clone())).collect();
    let pushers = state.store().pushers(&caller.org_id, &shas).await?;
    let entries = entries
        .into_iter()
        .map(|e: DirEntry| EntryOut {
            last_commit: e.last_commit.map(|c| CommitSummary {
                committer: pushers.get(&c.sha).map(Into::into),
                timestamp: secs_to_rfc3339(c.timestamp),
                sha: c.sha,
                message: c.message,
            }),
            name: e.name,
            path: e.path,
            kind: e.kind.as_str(),
            size: e.size,
        })
        .collect();
    Ok(Json(serde_json::to_value(DirectoryOut { entries }).map_err(|_| ApiError::internal())?))
}

#[derive(Serialize)]
struct FileOut {
    path: String,
    content: String,
    encoding: &'static str,
    size: usize,
}

/// `POST /v1/{org}/tool/repo/files` with `{"ref": "main", "paths": [...]}`: several files at once,
/// text as UTF-8 and anything else as base64.
pub async fn files(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
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
    ensure_repo(&state, &caller.org_id).await?;
    let files = state.repos().read_files(&caller.org_id, &reference, &paths).await.map_err(|e| match e {
        RepoError::IsADirectory => ApiError::bad_request("One or more specified paths are not files."),
        other => repo_error(other, REPO_FILES.org_not_found),
    })?;
    let files: Vec<FileOut> = files
        .into_iter()
        .map(|f| {
            let size = f.bytes.len();
            match String::from_utf8(f.bytes) {
                Ok(text) => FileOut { path: f.path, content: text, encoding: "utf-8", size },
                Err(e) => FileOut { path: f.path, content: STANDARD.encode(e.as_bytes()), encoding: "base64", size },
            }
        })
        .collect();
    Ok(Json(serde_json::json!({ "files": serde_json::to_value(files).map_err(|_| ApiError::internal())? })))
}

#[derive(Serialize)]
struct Author {
    name: String,
    email: String,
}

#[derive(Serialize)]
struct ChangedFileOut {
    path: String,
    change_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    additions: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deletions: Option<u64>,
}

#[derive(Serialize)]
struct Stats {
    additions: u64,
    deletions: u64,
}

#[derive(Serialize)]
struct CommitOut {
    sha: String,
    message: String,
    timestamp: String,
    author: Author,
    committer: Option<ToolUserInfo>,
    parents: Vec<String>,
    changed_files: Option<Vec<ChangedFileOut>>,
    stats: Option<Stats>,
}

/// `GET /v1/{org}/tool/repo/commits`: history from a ref, newest first, with an optional path
/// filter, time window, changed files and line counts. Pages are numbered from 1.
pub async fn commits(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
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
    ensure_repo(&state, &caller.org_id).await?;
    let page =
        state.repos().commits(&caller.org_id, &query).await.map_err(|e| repo_error(e, REPO_COMMITS.org_not_found))?;
    let shas: Vec<String> = page.items.iter().map(|c| c.sha.clone()).collect();
    let pushers = state.store().pushers(&caller.org_id, &shas).await?;
    let commits: Vec<CommitOut> = page.items.into_iter().map(|c| commit_out(c, &pushers, query.stats)).collect();
    Ok(Json(serde_json::json!({
        "commits": serde_json::to_value(commits).map_err(|_| ApiError::internal())?,
        "has_more": page.has_more,
        "continuation_token": page.has_more.then(|| query.page.saturating_add(1)),
    })))
}

fn commit_out(c: CommitInfo, pushers: &HashMap<String, toolsmith_store::UserRef>, with_stats: bool) -> CommitOut {
    let stats = with_stats.then(|| {
        let files = c.changed_files.as_deref().unwrap_or_default();
        Stats {
            additions: files.iter().filter_map(|f| f.additions).fold(0, u64::saturating_add),
            deletions: files.iter().filter_map(|f| f.deletions).fold(0, u64::saturating_add),
        }
    });
    CommitOut {
        committer: pushers.get(&c.sha).map(Into::into),
        timestamp: secs_to_rfc3339(c.timestamp),
        author: Author { name: c.author_name, email: c.author_email },
        parents: c.parents,
        changed_files: c.changed_files.map(|files| {
            files
                .into_iter()
                .map(|f| ChangedFileOut {
                    path: f.path,
                    change_type: f.change,
                    additions: f.additions,
                    deletions: f.deletions,
                })
                .collect()
        }),
        stats,
        sha: c.sha,
        message: c.message,
    }
}

#[derive(Serialize)]
struct BranchOut {
    name: String,
    latest_commit_sha: String,
    latest_commit_message: String,
    latest_commit_timestamp: String,
    latest_commit_committer: Option<ToolUserInfo>,
}

async fn branch_out(state: &AppState, org: &str, branches: Vec<BranchInfo>) -> Result<Vec<BranchOut>, ApiError> {
    let shas: Vec<String> = branches.iter().map(|b| b.sha.clone()).collect();
    let pushers = state.store().pushers(org, &shas).await?;
    Ok(branches
        .into_iter()
        .map(|b| BranchOut {
            latest_commit_committer: pushers.get(&b.sha).map(Into::into),
            latest_commit_timestamp: secs_to_rfc3339(b.timestamp),
            name: b.name,
            latest_commit_sha: b.sha,
            latest_commit_message: b.message,
        })
        .collect())
}

/// `GET /v1/{org}/tool/repo/branch/{branch_name}`: a branch's newest commit and who pushed it
/// (`null` when it did not arrive through toolsmith).
pub async fn branch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathParams,
) -> Result<Json<Value>, ApiError> {
    let name = path.0.get("branch_name").cloned().unwrap_or_default();
    ensure_repo(&state, &caller.org_id).await?;
    let info = state.repos().branch(&caller.org_id, &name).await.map_err(|e| match e {
        RepoError::InvalidRef(_) => ApiError::not_found(REPO_BRANCH.org_not_found),
        other => repo_error(other, REPO_BRANCH.org_not_found),
    })?;
    let mut out = branch_out(&state, &caller.org_id, vec![info]).await?;
    let one = out.pop().ok_or_else(ApiError::internal)?;
    Ok(Json(serde_json::to_value(one).map_err(|_| ApiError::internal())?))
}

/// `GET /v1/{org}/tool/repo/branches?limit=20&continuation_token=1`.
pub async fn branches(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = Query::parse(raw.as_deref());
    let mut problems = Problems::default();
    let limit = q.count("limit", 20, 1, Some(100), &mut problems);
    let page = q.count("continuation_token", 1, 1, None, &mut problems);
    problems.finish(())?;
    ensure_repo(&state, &caller.org_id).await?;
    let listed = state
        .repos()
        .branches(&caller.org_id, limit, page)
        .await
        .map_err(|e| repo_error(e, REPO_BRANCHES.org_not_found))?;
    let branches = branch_out(&state, &caller.org_id, listed.items).await?;
    Ok(Json(serde_json::json!({
        "branches": serde_json::to_value(branches).map_err(|_| ApiError::internal())?,
        "has_more": listed.has_more,
        "continuation_token": listed.has_more.then(|| page.saturating_add(1)),
    })))
}

/// `GET /v1/{org}/tool/amigo_tool_scaffold.tar.gz`: the tool project template.
pub async fn scaffold_archive() -> Response {
    ([(CONTENT_TYPE, "application/gzip"), (CACHE_CONTROL, "public, max-age=3600")], scaffold::tar_gz()).into_response()
}

fn secs_to_rfc3339(secs: i64) -> String {
    Timestamp(secs.saturating_mul(1_000_000)).to_rfc3339()
}
