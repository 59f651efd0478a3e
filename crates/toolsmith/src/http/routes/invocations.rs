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
use toolsmith_domain::{Permission, Specifier};
use toolsmith_store::{
    InvocationFilter, InvocationQuery, InvocationSearch, InvocationSortField, SearchField, SourceType, StoreError,
    ToolVersions,
};

use crate::app::AppState;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, Loc};
use crate::http::extract::PathParams;
use crate::http::operations::GET_INVOCATION_LOGS;
use crate::http::params::{Problems, Query};
use crate::http::wire::ToolInvocationInstance;

/// The permission that reveals invocations of a source type. A match, so that a new source type
/// cannot be added without deciding who reads it.
fn read_permission(source_type: SourceType) -> Permission {
    match source_type {
        SourceType::RegularConversation => Permission::GetInteractionInsights,
        SourceType::SimulationConversation => Permission::GetSimulationUnitTestSetRun,
        SourceType::Direct => Permission::GetToolInvocation,
    }
}

/// The source types whose invocations the caller may read.
fn visible(caller: &Caller) -> Vec<SourceType> {
    SourceType::ALL.into_iter().filter(|t| caller.can(read_permission(*t))).collect()
}

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

/// The filters the listing and search share, as asked for.
struct Filters {
    tool_ids: Vec<String>,
    source_types: Vec<SourceType>,
    conversation_ids: Vec<String>,
    simulation_run_ids: Vec<String>,
    succeeded: Option<bool>,
}

impl Filters {
    fn parse(q: &Query, problems: &mut Problems) -> Filters {
        Filters {
            tool_ids: q.id_list("tool_id", problems),
            source_types: enum_list(q, "invocation_source_type", &source_type_values(), problems),
            conversation_ids: q.id_list("conversation_id", problems),
            simulation_run_ids: q.id_list("simulation_unit_test_set_run_id", problems),
            succeeded: q.opt_bool("succeeded", problems),
        }
    }

    /// The store filter: what was asked for, narrowed to the source types the caller may read.
    /// Without `invocation_source_type`, only the contract's kinds: what compatible clients can
    /// parse.
    fn into_store(self, caller: &Caller, specifiers: Vec<Option<Specifier>>) -> InvocationFilter {
        let visible = visible(caller);
        let source_types = if self.source_types.is_empty() {
            visible.into_iter().filter(|t| t.in_contract()).collect()
        } else {
            self.source_types.into_iter().filter(|t| visible.contains(t)).collect()
        };
        let mut specifiers = specifiers.into_iter();
        let tools = self
            .tool_ids
            .into_iter()
            .map(|tool_id| ToolVersions { tool_id, versions: specifiers.next().flatten() })
            .collect();
        InvocationFilter {
            tools,
            source_types: Some(source_types),
            conversation_ids: self.conversation_ids,
            simulation_run_ids: self.simulation_run_ids,
            succeeded: self.succeeded,
        }
    }
}

/// `GET /v1/{org}/tool/invocation`: one page of invocations, filtered and sorted.
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = Query::parse(raw.as_deref());
    let mut problems = Problems::default();
    let filters = Filters::parse(&q, &mut problems);
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
    if !specifiers.is_empty() && specifiers.len() != filters.tool_ids.len() {
        return Err(ApiError::bad_request("The `tool_id` and `version` query parameters are not the same length."));
    }

    let query = InvocationQuery { filter: filters.into_store(&caller, specifiers), sort, limit, after };
    let page = match state.store().list_invocations(&caller.org_id, &query).await {
        Ok(page) => page,
        Err(StoreError::NotFound) => {
            return Err(ApiError::invalid(
                qloc("continuation_token"),
                "value_error",
                "Value error, the token does not name a position among this organization's invocations",
                Some(json!(after)),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let invocations: Vec<ToolInvocationInstance> = page.invocations.into_iter().map(Into::into).collect();
    Ok(Json(json!({
        "tool_invocations": invocations,
        "has_more": page.has_more,
        "continuation_token": page.next,
    })))
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
) -> Result<Json<Value>, ApiError> {
    let q = Query::parse(raw.as_deref());
    let mut problems = Problems::default();
    let text = q.last("query").map(str::to_owned);
    if text.is_none() {
        problems.push(qloc("query"), "missing", "Field required", None);
    }
    // The contract marks `query_against` required yet says all fields are searched by default:
    // absent means all of them.
    let fields = enum_list(&q, "query_against", &SEARCH_FIELDS, &mut problems);
    let filters = Filters::parse(&q, &mut problems);
    let limit = q.int("limit", 100, 1, Some(100), &mut problems);
    let text = problems.finish(text)?.unwrap_or_default();

    let search = InvocationSearch { query: text, fields, filter: filters.into_store(&caller, Vec::new()), limit };
    let hits = state.store().search_invocations(&caller.org_id, &search).await?;
    let invocations: Vec<ToolInvocationInstance> = hits.into_iter().map(Into::into).collect();
    Ok(Json(json!({ "tool_invocations": invocations })))
}

/// `GET /v1/{org}/tool/invocation/{invocation_id}/logs` (extension): what the tool printed.
/// An invocation the caller may not read answers like one that does not exist.
pub async fn logs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathParams,
) -> Result<Json<Value>, ApiError> {
    let id = path.object_id("invocation_id")?;
    let not_found = || ApiError::not_found(GET_INVOCATION_LOGS.org_not_found);
    let record = state.store().invocation_logs(&caller.org_id, &id).await?.ok_or_else(not_found)?;
    let readable = record.source_type.is_some_and(|t| visible(&caller).contains(&t));
    if !readable {
        return Err(not_found());
    }
    Ok(Json(json!({ "invocation_id": record.id, "logs": record.logs })))
}
