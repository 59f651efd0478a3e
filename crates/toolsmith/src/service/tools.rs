//! Tools: listing with filters, creating, modifying and deprecating.

use toolsmith_domain::{Permission, Tag, ToolId, ToolName};
use toolsmith_store::{NewTool, StoreError, Tool, ToolPage, ToolQuery};

use super::publish::with_tool_lock;
use super::{Caller, Error};
use crate::app::AppState;

/// A page of tools, with the tag keys in use on the first page.
#[derive(Debug, Clone)]
pub struct ToolListing {
    /// The page.
    pub page: ToolPage,
    /// Every tag key of the organization's tools, for the first page's filter values.
    pub tag_keys: Option<Vec<String>>,
}

/// Lists the organization's tools.
pub async fn list(state: &AppState, caller: &Caller, query: &ToolQuery) -> Result<ToolListing, Error> {
    caller.require(Permission::GetTool)?;
    let store = state.store();
    let page = store.list_tools(&caller.org, query).await?;
    let tag_keys = if query.offset == 0 { Some(store.tag_keys(&caller.org).await?) } else { None };
    Ok(ToolListing { page, tag_keys })
}

/// A NUL cannot be stored by PostgreSQL, and no client means one; it is kept as U+FFFD, the
/// character that marks an unrepresentable one.
fn storable(description: String) -> String {
    if description.contains('\0') {
        description.replace('\0', "\u{fffd}")
    } else {
        description
    }
}

/// Creates a tool; its name is unique in the organization.
pub async fn create(
    state: &AppState,
    caller: &Caller,
    name: ToolName,
    description: String,
    tags: Vec<Tag>,
) -> Result<Tool, Error> {
    caller.require(Permission::CreateTool)?;
    let new = NewTool {
        org_id: caller.org.clone(),
        name,
        description: storable(description),
        tags,
        creator: caller.user.clone(),
    };
    match state.store().create_tool(new).await {
        Ok(tool) => Ok(tool),
        Err(StoreError::AlreadyExists) => Err(Error::Conflict("A tool with the same name already exists.".into())),
        Err(e) => Err(e.into()),
    }
}

/// Changes a tool's description and/or tags (`None` leaves one as it is).
pub async fn modify(
    state: &AppState,
    caller: &Caller,
    tool_id: &ToolId,
    description: Option<String>,
    tags: Option<Vec<Tag>>,
) -> Result<(), Error> {
    caller.require(Permission::ModifyTool)?;
    let description = description.map(storable);
    match state.store().modify_tool(&caller.org, tool_id, description.as_deref(), tags.as_deref(), &caller.user).await {
        Ok(()) => Ok(()),
        Err(StoreError::NotFound) => Err(Error::NotFound),
        Err(e) => Err(e.into()),
    }
}

/// Deprecates a tool, under its operation lock so that no publish interleaves; its versions stop
/// running on this server at once.
pub async fn deprecate(state: &AppState, caller: &Caller, tool_id: &ToolId) -> Result<(), Error> {
    caller.require(Permission::DeleteTool)?;
    let store = state.store();
    if store.get_tool(&caller.org, tool_id).await?.is_none() {
        return Err(Error::NotFound);
    }
    let versions = with_tool_lock(state, caller, tool_id, "deprecate", async {
        let versions = store.versions_of(&caller.org, tool_id).await?;
        match store.deprecate_tool(&caller.org, tool_id, &caller.user).await {
            Ok(()) => Ok(versions),
            Err(StoreError::NotFound) => Err(Error::NotFound),
            Err(e) => Err(e.into()),
        }
    })
    .await?;
    if let Some(pool) = state.runtime() {
        pool.evict(&versions.into_iter().map(|v| v.id.to_string()).collect::<Vec<_>>());
    }
    Ok(())
}
