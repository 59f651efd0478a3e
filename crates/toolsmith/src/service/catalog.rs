//! The organization's tools as an agent sees them: every live tool at the version a call would
//! run (its newest live version, or the one a pin selects), optionally narrowed to tools with
//! certain tags. The MCP server lists and calls tools through this.

use serde_json::Value;
use toolsmith_domain::{Permission, TagFilter, ToolId};
use toolsmith_store::{CatalogEntry, CatalogQuery, ToolVersion};

use super::invoke::VersionSelector;
use super::{Caller, Error};
use crate::app::AppState;

/// Tools per page of a listing: a page of 100 tools with their schemas stays well under a
/// megabyte, and an organization of 1,000 tools is ten requests.
pub const PAGE_SIZE: i64 = 100;

/// What narrows the catalog: tag filters (every one must match, as in the tool listing) and
/// version pins (a tool named here is offered at the highest live version its selector picks,
/// and not at all when none matches).
#[derive(Debug, Clone, Default)]
pub struct Narrowing {
    /// Every filter must match a tool's tags.
    pub tags: Vec<TagFilter>,
    /// Tool names with the selector of the version to offer; one per tool.
    pub pins: Vec<(String, VersionSelector)>,
}

impl Narrowing {
    /// The version of an entry to offer: the pinned one, or else the newest live one.
    fn choose(&self, entry: CatalogEntry) -> Option<CatalogTool> {
        let CatalogEntry { tool_id, name, description, versions } = entry;
        let version = match self.pins.iter().find(|(pinned, _)| *pinned == name) {
            Some((_, selector)) => selector.pick(&versions).cloned(),
            None => versions.into_iter().filter(|v| !v.deprecated).max_by_key(|v| v.version),
        }?;
        Some(CatalogTool { tool_id, name, description, version })
    }
}

/// A tool as offered: what describes it and the version a call runs.
#[derive(Debug, Clone)]
pub struct CatalogTool {
    /// The tool's id.
    pub tool_id: ToolId,
    /// Its name, unique among the organization's live tools.
    pub name: String,
    /// What it does.
    pub description: String,
    /// The version a call runs.
    pub version: ToolVersion,
}

/// The JSON Schema of what a version returns, when its build could derive one from the
/// entrypoint's return annotation.
pub fn output_schema(version: &ToolVersion) -> Option<&Value> {
    version.output_schema.as_ref()
}

/// One page of the catalog, by name.
#[derive(Debug, Clone)]
pub struct CatalogPage {
    /// The tools of the page.
    pub tools: Vec<CatalogTool>,
    /// The name the next page starts after, when tools follow.
    pub next_after: Option<String>,
}

/// A page of up to [`PAGE_SIZE`] tools whose names sort after `after` (from the first when
/// `None`). A page may hold fewer tools while more follow, when pins left some out.
pub async fn page(
    state: &AppState,
    caller: &Caller,
    narrowing: &Narrowing,
    after: Option<String>,
) -> Result<CatalogPage, Error> {
    caller.require(Permission::GetTool)?;
    let query = CatalogQuery { tags: narrowing.tags.clone(), name: None, after_name: after, limit: PAGE_SIZE };
    let page = state.store().live_catalog(&caller.org, &query).await?;
    let next_after = if page.has_more { page.entries.last().map(|e| e.name.clone()) } else { None };
    let tools = page.entries.into_iter().filter_map(|e| narrowing.choose(e)).collect();
    Ok(CatalogPage { tools, next_after })
}

/// The tool of this name as the narrowed catalog offers it, or `None` when it offers none.
pub async fn find(
    state: &AppState,
    caller: &Caller,
    narrowing: &Narrowing,
    name: &str,
) -> Result<Option<CatalogTool>, Error> {
    caller.require(Permission::GetTool)?;
    let query = CatalogQuery { tags: narrowing.tags.clone(), name: Some(name.to_owned()), after_name: None, limit: 1 };
    let page = state.store().live_catalog(&caller.org, &query).await?;
    Ok(page.entries.into_iter().next().and_then(|e| narrowing.choose(e)))
}
