//! Reading invocation records: the listing, the search and the logs of one invocation.
//!
//! None of them refuses a caller outright: each source type of invocation takes its own
//! permission, and a caller sees exactly the records whose source type they may read. Records of
//! toolsmith's own source types come back only when asked for by type, because clients built
//! from the contract fail on a page that holds one.

use toolsmith_domain::{InvocationId, Permission, Specifier, ToolId};
use toolsmith_store::{
    Invocation, InvocationFilter, InvocationLogs, InvocationPage, InvocationQuery, InvocationSearch,
    InvocationSortField, SearchField, SourceType, StoreError, ToolVersions,
};

use super::{Caller, Error};
use crate::app::AppState;

/// The permission that reveals invocations of a source type. A match, so that a new source type
/// cannot be added without deciding who reads it.
pub fn read_permission(source_type: SourceType) -> Permission {
    match source_type {
        SourceType::RegularConversation => Permission::GetInteractionInsights,
        SourceType::SimulationConversation => Permission::GetSimulationUnitTestSetRun,
        // A call through the MCP server is a direct call by another road: whoever may read the
        // API's direct calls reads them.
        SourceType::Direct | SourceType::Mcp => Permission::GetToolInvocation,
    }
}

/// The source types whose invocations the caller may read.
pub fn visible(caller: &Caller) -> Vec<SourceType> {
    SourceType::ALL.into_iter().filter(|t| caller.can(read_permission(*t))).collect()
}

/// The filters the listing and the search share, as asked for.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// Only these tools; with the listing's specifiers, only these versions of each.
    pub tool_ids: Vec<ToolId>,
    /// Only these source types; empty for the contract's own.
    pub source_types: Vec<SourceType>,
    /// Only these conversations.
    pub conversation_ids: Vec<String>,
    /// Only these simulation runs.
    pub simulation_run_ids: Vec<String>,
    /// Only succeeded (`true`) or failed (`false`) ones.
    pub succeeded: Option<bool>,
}

impl Filters {
    /// The store filter: what was asked for, narrowed to the source types the caller may read.
    /// `specifiers` go with `tool_ids`, one each, or are empty.
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

/// A request for one page of the listing.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// What to select.
    pub filters: Filters,
    /// A version specifier per tool of `filters.tool_ids` (`None` for all its versions), or none.
    pub specifiers: Vec<Option<Specifier>>,
    /// Sort keys, each with whether it is descending.
    pub sort: Vec<(InvocationSortField, bool)>,
    /// The page size.
    pub limit: i64,
    /// The continuation token of the previous page; 0 for the first.
    pub after: i64,
}

/// One page of invocations, filtered and sorted.
pub async fn list(state: &AppState, caller: &Caller, request: Listing) -> Result<InvocationPage, Error> {
    if !request.specifiers.is_empty() && request.specifiers.len() != request.filters.tool_ids.len() {
        return Err(Error::Rejected("The `tool_id` and `version` query parameters are not the same length.".into()));
    }
    let filter = request.filters.into_store(caller, request.specifiers);
    let query = InvocationQuery { filter, sort: request.sort, limit: request.limit, after: request.after };
    match state.store().list_invocations(&caller.org, &query).await {
        Ok(page) => Ok(page),
        Err(StoreError::NotFound) => Err(Error::InvalidArgument {
            name: "continuation_token",
            message: "the token does not name a position among this organization's invocations".into(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// The newest invocations whose chosen fields (all when none) contain every word of `text`.
pub async fn search(
    state: &AppState,
    caller: &Caller,
    text: String,
    fields: Vec<SearchField>,
    filters: Filters,
    limit: i64,
) -> Result<Vec<Invocation>, Error> {
    let search = InvocationSearch { query: text, fields, filter: filters.into_store(caller, Vec::new()), limit };
    Ok(state.store().search_invocations(&caller.org, &search).await?)
}

/// What one invocation printed. One the caller may not read is [`Error::NotFound`], like one that
/// does not exist.
pub async fn logs(state: &AppState, caller: &Caller, invocation_id: &InvocationId) -> Result<InvocationLogs, Error> {
    let record = state.store().invocation_logs(&caller.org, invocation_id).await?.ok_or(Error::NotFound)?;
    if !record.source_type.is_some_and(|t| visible(caller).contains(&t)) {
        return Err(Error::NotFound);
    }
    Ok(record)
}
