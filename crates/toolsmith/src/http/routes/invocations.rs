//! Invocation records: the listing (`GET /v1/{org}/tool/invocation`), search
//! (`GET /v1/{org}/tool/invocation/search`) and the logs extension
//! (`GET /v1/{org}/tool/invocation/{invocation_id}/logs`).
//!
//! None of them refuses a caller outright: each source type of invocation takes its own
//! permission, and a caller sees exactly the rows whose source type they may read (the contract
//! says these endpoints "may require" the permissions, per kind of invocation).
//!
//! The listing and search answer in the contract's shapes, which clients built from it parse a
//! whole page at a time: one record of a source kind outside the contract's union fails the page.
//! So records of toolsmith's own kinds (`direct`) come back only when `invocation_source_type`
//! names them.

use axum::extract::{RawQuery, State};
use axum::{Extension, Json};
use serde_json::{json, Value};
use toolsmith_domain::{InvocationId, ObjectId, Specifier};
use toolsmith_store::{InvocationSortField, SearchField, SourceType};

use crate::app::AppState;
use crate::http::error::{ApiError, Loc};
use crate::http::extract::PathParams;
use crate::http::operations::{GET_INVOCATIONS, GET_INVOCATION_LOGS, SEARCH_INVOCATIONS};
use crate::http::params::{Problems, Query};
use crate::http::wire::invocations::{InvocationLogsOut, InvocationsPage, SearchHits};
use crate::service::invocations::{Filters, Listing};
use crate::service::{self, Caller};

/// The values `invocation_source_type` accepts: the contract's two and toolsmith's own.
fn source_type_values() -> Vec<(&'static str, SourceType)> {
    SourceType::ALL.into_iter().map(|t| (t.as_str(), t)).collect()
}

fn qloc(name: &str) -> Vec<Loc> {
    vec![Loc::from("query"), Loc::from(name)]
}

/// Reads a list of enumerated values (repeated keys, no repeats allowed).
fn enum_list<T: Copy>(q: &Query, name: &str, allowed: &[(&str, T)], problems: &mut Problems) -> Vec<T> {
    let values = q.all(name);
    let mut out = Vec::with_capacity(values.len());
    for (i, raw) in values.iter().enumerate() {
        match allowed.iter().find(|(n, _)| n == raw) {
            Some((_, t)) => out.push(*t),
            None => {
                let names: Vec<String> = allowed.iter().map(|(n, _)| format!("'{n}'")).collect();
                let (last, rest) = names.split_last().expect("allowed values");
                problems.push(
                    vec![Loc::from("query"), Loc::from(name), Loc::from(i)],
                    "enum",
                    format!("Input should be {} or {last}", rest.join(", ")),
                    Some(Value::String(raw.clone())),
                );
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    if values.iter().any(|v| !seen.insert(v)) {
        problems.push(qloc(name), "set_item_not_hashable", "List items should be unique", None);
    }
    out
}

fn object_ids(q: &Query, name: &str, problems: &mut Problems) -> Vec<String> {
    q.id_list::<ObjectId>(name, problems).into_iter().map(String::from).collect()
}

fn parse_filters(q: &Query, problems: &mut Problems) -> Filters {
    Filters {
        tool_ids: q.id_list("tool_id", problems),
        source_types: enum_list(q, "invocation_source_type", &source_type_values(), problems),
        // Conversations and simulation runs are other services' objects: their ids are checked
        // for shape and kept as text.
        conversation_ids: object_ids(q, "conversation_id", problems),
        simulation_run_ids: object_ids(q, "simulation_unit_test_set_run_id", problems),
        succeeded: q.opt_bool("succeeded", problems),
    }
}

/// `GET /v1/{org}/tool/invocation`: one page of invocations, filtered and sorted.
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<InvocationsPage>, ApiError> {
    let q = Query::parse(raw.as_deref());
    let mut problems = Problems::default();
    let filters = parse_filters(&q, &mut problems);
    let mut specifiers = Vec::new();
    for (i, raw) in q.all("version").iter().enumerate() {
        // An empty entry selects every version of its tool, as `null` did in older clients.
        if raw.trim().is_empty() {
            specifiers.push(None);
            continue;
        }
        match Specifier::parse(raw) {
            Ok(s) => specifiers.push(Some(s)),
            Err(why) => problems.push(
                vec![Loc::from("query"), Loc::from("version"), Loc::from(i)],
                "value_error",
                format!("Value error, invalid version specifier: {why}"),
                Some(Value::String(raw.clone())),
            ),
        }
    }
    use InvocationSortField as F;
    let sort = q.sort_by(
        &[
            ("created_at", F::CreatedAt),
            ("version.major", F::Major),
            ("version.minor", F::Minor),
            ("version.patch", F::Patch),
            ("tool_id", F::ToolId),
            ("invocation_source.type", F::SourceType),
            ("invocation_status.succeeded", F::Succeeded),
        ],
        &mut problems,
    );
    let limit = q.int("limit", 100, 0, Some(100), &mut problems);
    let after = q.int("continuation_token", 0, 0, None, &mut problems);
    problems.finish(())?;
    let listing = Listing { filters, specifiers, sort, limit, after };
    let page = service::invocations::list(&state, &caller, listing).await.map_err(|e| match e {
        // The token is the one argument only the store can check; its input is shown back.
        service::Error::InvalidArgument { name, message } => ApiError::invalid(
            vec![Loc::from("query"), Loc::from(name)],
            "value_error",
            format!("Value error, {message}"),
            Some(json!(after)),
        ),
        other => ApiError::from_service(&GET_INVOCATIONS)(other),
    })?;
    Ok(Json(InvocationsPage::new(page)))
}

const SEARCH_FIELDS: [(&str, SearchField); 4] = [
    ("invocation_status.exception_message", SearchField::ExceptionMessage),
    ("invocation_status.exception_type", SearchField::ExceptionType),
    ("invocation_status.exception_stack_trace", SearchField::ExceptionStackTrace),
    ("invocation_status.output", SearchField::Output),
];

/// `GET /v1/{org}/tool/invocation/search`: the newest invocations whose chosen fields contain
/// every word of the query.
pub async fn search(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<SearchHits>, ApiError> {
    let q = Query::parse(raw.as_deref());
    let mut problems = Problems::default();
    let text = q.last("query").map(str::to_owned);
    if text.is_none() {
        problems.push(qloc("query"), "missing", "Field required", None);
    }
    // The contract marks `query_against` required yet says all fields are searched by default:
    // absent means all of them.
    let fields = enum_list(&q, "query_against", &SEARCH_FIELDS, &mut problems);
    let filters = parse_filters(&q, &mut problems);
    let limit = q.int("limit", 100, 1, Some(100), &mut problems);
    let text = problems.finish(text)?.unwrap_or_default();

    let hits = service::invocations::search(&state, &caller, text, fields, filters, limit)
        .await
        .map_err(ApiError::from_service(&SEARCH_INVOCATIONS))?;
    Ok(Json(SearchHits::new(hits)))
}

/// `GET /v1/{org}/tool/invocation/{invocation_id}/logs` (extension): what the tool printed.
/// An invocation the caller may not read answers like one that does not exist.
pub async fn logs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathParams,
) -> Result<Json<InvocationLogsOut>, ApiError> {
    let id = path.id::<InvocationId>("invocation_id")?;
    let record =
        service::invocations::logs(&state, &caller, &id).await.map_err(ApiError::from_service(&GET_INVOCATION_LOGS))?;
    Ok(Json(InvocationLogsOut { invocation_id: record.id, logs: record.logs }))
}
