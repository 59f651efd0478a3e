//! Tool versions: publish (`POST /tool/{id}/version`), list (`GET /tool/{id}/version`),
//! deprecate (`DELETE /tool/{id}/version/{versions}`), and the build log extension.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::Value;
use toolsmith_builder::pipeline::FailureKind;
use toolsmith_domain::{BumpType, Specifier};
use toolsmith_store::UserRef;

use toolsmith_domain::{BuildId, OrgId, ToolId, UserId};

use crate::app::AppState;
use crate::http::error::{ApiError, Loc};
use crate::http::extract::{JsonBody, PathParams};
use crate::http::operations::{Operation, DEPRECATE_VERSIONS, GET_BUILD, GET_VERSIONS, PUBLISH_VERSION};
use crate::http::params::{Fields, Problems, Query};
use crate::http::wire::versions::{BuildOut, NewVersionOut, VersionsPage};
use crate::service::publish::{Publish, PublishError};
use crate::service::versions::{VersionQuery, VersionSort};
use crate::service::{self, Caller};

/// `X-Toolsmith-Build-Id`: the build record of a publish or test, whether it succeeded or not.
pub(crate) fn build_header(id: &BuildId) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static("x-toolsmith-build-id"),
        HeaderValue::from_str(id.as_str()).unwrap_or(HeaderValue::from_static("")),
    )
}

/// Reads `project_path`: relative, matching the contract's `^[-\w\d_/]+$`, without empty parts.
pub(crate) fn project_path(fields: &Fields<'_>, problems: &mut Problems) -> Option<String> {
    let path = fields.stripped_string("project_path", problems)?;
    let valid = path.chars().all(|c| c.is_alphanumeric() || "-_/".contains(c))
        && !path.starts_with('/')
        && !path.split('/').any(str::is_empty);
    if !valid {
        problems.push(
            fields.loc("project_path"),
            "string_pattern_mismatch",
            "String should match pattern '^[-\\w\\d_/]+$' (relative, without empty parts)",
            fields.raw("project_path").cloned(),
        );
        return None;
    }
    Some(path)
}

/// The answer of an operation that builds to a failed publish or test: a failed build carries
/// `X-Toolsmith-Build-Id`, and failing tests start with the operation's `ci_failed` text.
pub(crate) fn publish_error(op: &'static Operation, ci_failed: &'static str) -> impl Fn(PublishError) -> ApiError {
    move |err| match err {
        PublishError::Other(e) => ApiError::from_service(op)(e),
        PublishError::Build(failed) => {
            let see = format!("(build log: GET /v1/{}/tool/build/{})", failed.org_id, failed.build_id);
            let err = match failed.kind {
                FailureKind::ProjectNotFound => ApiError::not_found(op.org_not_found),
                FailureKind::TestsFailed => ApiError::bad_request(format!("{ci_failed} {} {see}", failed.message)),
                FailureKind::Internal => ApiError::internal(),
                _ => ApiError::bad_request(format!("Tool build has failed: {} {see}", failed.message)),
            };
            let (name, value) = build_header(&failed.build_id);
            err.with_header(name, value)
        }
    }
}

/// Publishes a new version of a tool from the tip of `main`.
pub async fn publish(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathParams,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let tool_id = path.id::<ToolId>("tool_id")?;
    let fields = Fields::new(&body, vec![Loc::from("body")]);
    let mut problems = Problems::default();
    let project_path = project_path(&fields, &mut problems);
    let bump = match fields.required("bump_type", &mut problems) {
        Some(Value::String(s)) => match BumpType::parse(s) {
            Some(b) => Some(b),
            None => {
                problems.push(
                    fields.loc("bump_type"),
                    "enum",
                    "Input should be 'major', 'minor' or 'patch'",
                    Some(Value::String(s.clone())),
                );
                None
            }
        },
        Some(other) => {
            problems.push(
                fields.loc("bump_type"),
                "enum",
                "Input should be 'major', 'minor' or 'patch'",
                Some(other.clone()),
            );
            None
        }
        None => None,
    };
    // Older clients name the branch (`main` or `team`); there is one release branch, so both
    // mean it.
    if let Some(branch) = fields.raw("branch").filter(|b| !b.is_null()) {
        if !matches!(branch.as_str(), Some("main" | "team")) {
            problems.push(fields.loc("branch"), "enum", "Input should be 'main' or 'team'", Some(branch.clone()));
        }
    }
    let (Some(project_path), Some(bump)) = problems.finish((project_path, bump))? else {
        return Err(ApiError::internal());
    };

    let request = Publish { tool_id, project_path, bump };
    let published = service::publish::publish(&state, &caller, request)
        .await
        .map_err(publish_error(&PUBLISH_VERSION, "The tool build has failed CI checks:"))?;
    let (name, value) = build_header(&published.build_id);
    Ok((StatusCode::CREATED, [(name, value)], Json(NewVersionOut::new(&published.version))).into_response())
}

/// Lists a tool's versions.
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathParams,
    RawQuery(raw): RawQuery,
) -> Result<Json<VersionsPage>, ApiError> {
    let tool_id = path.id::<ToolId>("tool_id")?;
    let q = Query::parse(raw.as_deref());
    let mut problems = Problems::default();
    let deprecated = q.opt_bool("deprecated", &mut problems);
    let specifier = match q.last("versions").filter(|s| !s.trim().is_empty()) {
        None => None,
        Some(raw) => match Specifier::parse(raw) {
            Ok(s) => Some(s),
            Err(why) => {
                problems.push(
                    vec![Loc::from("query"), Loc::from("versions")],
                    "value_error",
                    format!("Value error, invalid version specifier: {why}"),
                    Some(Value::String(raw.to_owned())),
                );
                None
            }
        },
    };
    let mut creators = Vec::new();
    let creator_filter = !q.all("creator").is_empty();
    for (i, raw) in q.all("creator").iter().enumerate() {
        match raw.split_once(',') {
            Some((org, user)) if !org.is_empty() && !user.is_empty() => {
                // A creator that is no user this server could have made matches no version.
                if let (Ok(org_id), Ok(user_id)) = (OrgId::parse(org), user.parse::<UserId>()) {
                    creators.push(UserRef { org_id, user_id });
                }
            }
            _ => problems.push(
                vec![Loc::from("query"), Loc::from("creator"), Loc::from(i)],
                "value_error",
                "Value error, a creator must have the form org_id,user_id",
                Some(Value::String(raw.clone())),
            ),
        }
    }
    let sort = q.sort_by(
        &[
            ("created_at", VersionSort::Created),
            ("version.major", VersionSort::Major),
            ("version.minor", VersionSort::Minor),
            ("version.patch", VersionSort::Patch),
            ("deprecated", VersionSort::Deprecated),
        ],
        &mut problems,
    );
    let limit = q.int("limit", 50, 0, Some(50), &mut problems);
    let offset = q.int("continuation_token", 0, 0, None, &mut problems);
    problems.finish(())?;
    let query = VersionQuery {
        deprecated,
        specifier,
        creators: creator_filter.then_some(creators),
        sort,
        limit: usize::try_from(limit).unwrap_or(0),
        offset: usize::try_from(offset).unwrap_or(usize::MAX),
    };
    let page = service::versions::list(&state, &caller, &tool_id, &query)
        .await
        .map_err(ApiError::from_service(&GET_VERSIONS))?;
    Ok(Json(VersionsPage::new(page, &query)))
}

/// Deprecates every live version matching a PEP 440 specifier (percent-encoded in the path).
pub async fn deprecate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathParams,
) -> Result<StatusCode, ApiError> {
    let tool_id = path.id::<ToolId>("tool_id")?;
    let raw = path.0.get("versions").cloned().unwrap_or_default();
    let specifier = Specifier::parse(&raw).map_err(|why| {
        ApiError::invalid(
            vec![Loc::from("path"), Loc::from("versions")],
            "value_error",
            format!("Value error, invalid version specifier: {why}"),
            Some(Value::String(raw.clone())),
        )
    })?;
    service::versions::deprecate(&state, &caller, &tool_id, &specifier)
        .await
        .map_err(ApiError::from_service(&DEPRECATE_VERSIONS))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/{org}/tool/build/{build_id}`: a build's state, summary and full log.
pub async fn build_log(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathParams,
) -> Result<Json<BuildOut>, ApiError> {
    let id = path.id::<BuildId>("build_id")?;
    let build = service::versions::build(&state, &caller, &id).await.map_err(ApiError::from_service(&GET_BUILD))?;
    Ok(Json(BuildOut::from(build)))
}
