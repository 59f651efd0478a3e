//! A tool's versions: listing with filters and sorting, deprecating by specifier, and the build
//! records publishing and testing leave.

use std::collections::BTreeSet;

use toolsmith_domain::{BuildId, OrgId, Permission, Specifier, ToolId, UserId, VersionId};
use toolsmith_store::{BuildRecord, ToolVersion, UserRef};

use super::{Caller, Error};
use crate::app::AppState;

/// What a version list can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSort {
    /// When it was published.
    Created,
    /// The major part of its version.
    Major,
    /// The minor part.
    Minor,
    /// The patch part.
    Patch,
    /// Whether it is deprecated.
    Deprecated,
}

/// Which versions of a tool to list, and how.
#[derive(Debug, Clone, Default)]
pub struct VersionQuery {
    /// Only deprecated (`true`) or live (`false`) ones.
    pub deprecated: Option<bool>,
    /// Only those the specifier matches.
    pub specifier: Option<Specifier>,
    /// Only those these users published; `None` for all.
    pub creators: Option<Vec<UserRef>>,
    /// Sort keys, each with whether it is descending; ties go to the oldest first.
    pub sort: Vec<(VersionSort, bool)>,
    /// The page size.
    pub limit: usize,
    /// How many matching versions precede the page.
    pub offset: usize,
}

/// A page of versions.
#[derive(Debug, Clone)]
pub struct VersionPage {
    /// The versions of the page.
    pub versions: Vec<ToolVersion>,
    /// How many versions match in all.
    pub total: usize,
    /// Everyone who published a version of the tool, for the first page's filter values.
    pub creators: Option<Vec<UserRef>>,
}

/// Lists a tool's versions. A tool has few versions (a handful live, the rest deprecated), so
/// they are filtered and sorted here rather than in SQL.
pub async fn list(state: &AppState, caller: &Caller, tool_id: &ToolId, q: &VersionQuery) -> Result<VersionPage, Error> {
    caller.require(Permission::GetTool)?;
    let store = state.store();
    if store.get_tool(&caller.org, tool_id).await?.is_none() {
        return Err(Error::NotFound);
    }
    let all = store.versions_of(&caller.org, tool_id).await?;
    let creators = (q.offset == 0).then(|| {
        let seen: BTreeSet<(&OrgId, &UserId)> = all.iter().map(|v| (&v.creator.org_id, &v.creator.user_id)).collect();
        seen.into_iter().map(|(org_id, user_id)| UserRef { org_id: org_id.clone(), user_id: user_id.clone() }).collect()
    });
    let mut selected: Vec<ToolVersion> = all
        .into_iter()
        .filter(|v| q.deprecated.is_none_or(|d| v.deprecated == d))
        .filter(|v| q.specifier.as_ref().is_none_or(|s| s.matches(&v.version)))
        .filter(|v| q.creators.as_ref().is_none_or(|c| c.contains(&v.creator)))
        .collect();
    selected.sort_by(|a, b| {
        for (key, desc) in &q.sort {
            let ord = match key {
                VersionSort::Created => a.created_at.cmp(&b.created_at),
                VersionSort::Major => a.version.major.cmp(&b.version.major),
                VersionSort::Minor => a.version.minor.cmp(&b.version.minor),
                VersionSort::Patch => a.version.patch.cmp(&b.version.patch),
                VersionSort::Deprecated => a.deprecated.cmp(&b.deprecated),
            };
            let ord = if *desc { ord.reverse() } else { ord };
            if ord.is_ne() {
                return ord;
            }
        }
        (a.created_at, &a.id).cmp(&(b.created_at, &b.id))
    });
    let total = selected.len();
    let versions = selected.into_iter().skip(q.offset).take(q.limit).collect();
    Ok(VersionPage { versions, total, creators })
}

/// Deprecates every live version the specifier matches; they stop running on this server at
/// once, and on the others at their next invoke.
pub async fn deprecate(
    state: &AppState,
    caller: &Caller,
    tool_id: &ToolId,
    specifier: &Specifier,
) -> Result<(), Error> {
    caller.require(Permission::ModifyTool)?;
    let store = state.store();
    if store.get_tool(&caller.org, tool_id).await?.is_none() {
        return Err(Error::NotFound);
    }
    let ids: Vec<VersionId> = store
        .versions_of(&caller.org, tool_id)
        .await?
        .into_iter()
        .filter(|v| !v.deprecated && specifier.matches(&v.version))
        .map(|v| v.id)
        .collect();
    store.deprecate_versions(&caller.org, tool_id, &ids, &caller.user).await?;
    if let Some(pool) = state.runtime() {
        pool.evict(&ids.iter().map(ToString::to_string).collect::<Vec<_>>());
    }
    Ok(())
}

/// A build record: its state, summary and whole log.
pub async fn build(state: &AppState, caller: &Caller, build_id: &BuildId) -> Result<BuildRecord, Error> {
    caller.require(Permission::GetTool)?;
    state.store().get_build(&caller.org, build_id).await?.ok_or(Error::NotFound)
}
