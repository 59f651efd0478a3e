//! Tools: `GET|POST /v1/{org}/tool/`, `POST|DELETE /v1/{org}/tool/{tool_id}`.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::Value;
use toolsmith_domain::names::{parse_word_string, NameError};
use toolsmith_domain::{Tag, TagFilter, ToolName};
use toolsmith_store::{SortField, ToolQuery};

use toolsmith_domain::ToolId;

use crate::app::AppState;
use crate::http::error::{ApiError, Loc};
use crate::http::extract::{JsonBody, PathParams};
use crate::http::operations::{CREATE_TOOL, DEPRECATE_TOOL, GET_TOOLS, MODIFY_TOOL};
use crate::http::params::{Fields, Problems, Query};
use crate::http::wire::tools::{CreateToolResponse, GetToolsResponse, ToolFilterValues, ToolInstance};
use crate::service::{self, Caller};

/// The most tags a tool may carry.
const MAX_TAGS: usize = 20;

/// `GET /v1/{org}/tool/`: one page of tools, filtered and sorted.
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<GetToolsResponse>, ApiError> {
    let q = Query::parse(raw.as_deref());
    let mut problems = Problems::default();
    let ids = q.id_list("id", &mut problems);
    let deprecated = q.opt_bool("deprecated", &mut problems);
    let sort = q.sort_by(&[("name", SortField::Name), ("deprecated", SortField::Deprecated)], &mut problems);
    let mut tags = Vec::new();
    for (i, raw) in q.all("tag").iter().enumerate() {
        match TagFilter::parse(raw) {
            Some(filter) => tags.push(filter),
            None => problems.push(
                vec![Loc::from("query"), Loc::from("tag"), Loc::from(i)],
                "value_error",
                "Value error, a tag filter must have the form key:value, key:* or key:",
                Some(Value::String(raw.clone())),
            ),
        }
    }
    let limit = q.int("limit", 10, 1, Some(20), &mut problems);
    let offset = q.int("continuation_token", 0, 0, None, &mut problems);
    problems.finish(())?;

    let query = ToolQuery { ids, deprecated, tags, sort, limit, offset };
    let listing = service::tools::list(&state, &caller, &query).await.map_err(ApiError::from_service(&GET_TOOLS))?;
    let page = listing.page;
    let filter_values = listing.tag_keys.map(|tags| ToolFilterValues { tags });
    let next = offset + page.tools.len() as i64;
    Ok(Json(GetToolsResponse {
        has_more: page.has_more,
        continuation_token: page.has_more.then_some(next),
        tools: page.tools.into_iter().map(ToolInstance::from).collect(),
        filter_values,
    }))
}

/// `POST /v1/{org}/tool/`: creates a tool with no versions.
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<CreateToolResponse>), ApiError> {
    let fields = Fields::new(&body, vec![Loc::from("body")]);
    let mut problems = Problems::default();
    let name = fields.stripped_string("name", &mut problems);
    let description = fields.stripped_string("description", &mut problems);
    // The contract marks `tags` required, yet older clients omit it: absent means no tags.
    let tags = match fields.raw("tags") {
        None => Some(Vec::new()),
        Some(v) => parse_tags(v, fields.loc("tags"), &mut problems),
    };
    let name = match name.as_deref().map(ToolName::parse) {
        Some(Ok(n)) => Some(n),
        Some(Err(NameError::TooLong)) => {
            problems.finish(())?;
            return Err(ApiError::bad_request("The tool name is too long."));
        }
        Some(Err(e)) => {
            problems.push(fields.loc("name"), "string_pattern_mismatch", e.to_string(), fields.raw("name").cloned());
            None
        }
        None => None,
    };
    let (Some(name), Some(description), Some(tags)) = problems.finish((name, description, tags))? else {
        return Err(ApiError::internal());
    };
    let tool = service::tools::create(&state, &caller, name, description, tags)
        .await
        .map_err(ApiError::from_service(&CREATE_TOOL))?;
    Ok((StatusCode::CREATED, Json(CreateToolResponse { id: tool.id })))
}

/// `POST /v1/{org}/tool/{tool_id}`: changes the description and/or replaces the tags.
pub async fn modify(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathParams,
    JsonBody(body): JsonBody,
) -> Result<StatusCode, ApiError> {
    let tool_id = path.id::<ToolId>("tool_id")?;
    let fields = Fields::new(&body, vec![Loc::from("body")]);
    let mut problems = Problems::default();
    let description = fields.opt_stripped_string("description", &mut problems);
    let tags = match fields.raw("tags") {
        None | Some(Value::Null) => None,
        Some(v) => parse_tags(v, fields.loc("tags"), &mut problems),
    };
    problems.finish(())?;
    service::tools::modify(&state, &caller, &tool_id, description, tags)
        .await
        .map_err(ApiError::from_service(&MODIFY_TOOL))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/{org}/tool/{tool_id}`: deprecates the tool, serialized with other operations on
/// it through the tool's operation lock.
pub async fn deprecate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathParams,
) -> Result<StatusCode, ApiError> {
    let tool_id = path.id::<ToolId>("tool_id")?;
    service::tools::deprecate(&state, &caller, &tool_id).await.map_err(ApiError::from_service(&DEPRECATE_TOOL))?;
    Ok(StatusCode::NO_CONTENT)
}

fn parse_tags(value: &Value, loc: Vec<Loc>, problems: &mut Problems) -> Option<Vec<Tag>> {
    let Value::Object(map) = value else {
        problems.push(loc, "dict_type", "Input should be a valid dictionary", Some(value.clone()));
        return None;
    };
    if map.len() > MAX_TAGS {
        problems.push(
            loc,
            "too_long",
            format!("Dictionary should have at most {MAX_TAGS} items after validation, not {}", map.len()),
            None,
        );
        return None;
    }
    let before = problems.len();
    let mut tags: Vec<Tag> = Vec::with_capacity(map.len());
    for (raw_key, raw_value) in map.iter() {
        let mut key_loc = loc.clone();
        key_loc.push(Loc::from(raw_key.as_str()));
        let key = match parse_word_string(raw_key) {
            Ok(k) => Some(k),
            Err(e) => {
                let mut l = key_loc.clone();
                l.push(Loc::from("[key]"));
                problems.push(l, "string_pattern_mismatch", e.to_string(), Some(Value::String(raw_key.clone())));
                None
            }
        };
        let value = match raw_value {
            Value::Null => Some(None),
            Value::String(s) => match parse_word_string(s) {
                Ok(v) => Some(Some(v)),
                Err(e) => {
                    problems.push(key_loc, "string_pattern_mismatch", e.to_string(), Some(raw_value.clone()));
                    None
                }
            },
            other => {
                problems.push(key_loc, "string_type", "Input should be a valid string", Some(other.clone()));
                None
            }
        };
        if let (Some(key), Some(value)) = (key, value) {
            // Two keys that differ only in surrounding white space collapse into one.
            tags.retain(|t| t.key != key);
            tags.push(Tag { key, value });
        }
    }
    (problems.len() == before).then_some(tags)
}
