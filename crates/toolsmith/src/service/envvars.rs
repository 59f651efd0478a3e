//! A tool's environment variables: inserts, updates and deletes applied together or not at all.

use toolsmith_domain::{Permission, ToolId};
use toolsmith_store::{EnvVarChanges, StoreError};

use super::{Caller, Error};
use crate::app::AppState;

/// The most changes one request may make.
pub const MAX_CHANGES: usize = 100;

const INVALID: &str =
    "The specified environment variables to update or delete do not exist, or the environment variables to \
                       delete are used by non-deprecated tool versions.";
const CONFLICT: &str =
    "An environment variable with the same name as the one to insert exists or has been recently deleted.";

/// Applies the changes; a deleted name stays blocked from being inserted again for the
/// tombstone period, so that a version still starting never sees it come back with another value.
pub async fn modify(state: &AppState, caller: &Caller, tool_id: &ToolId, changes: &EnvVarChanges) -> Result<(), Error> {
    caller.require(Permission::ModifyTool)?;
    let tombstone = state.settings().envvar_tombstone.as_secs() as i64;
    match state.store().modify_envvars(&caller.org, tool_id, changes, tombstone, &caller.user).await {
        Ok(()) => Ok(()),
        Err(StoreError::NotFound) => Err(Error::NotFound),
        Err(StoreError::EnvVarsInvalid) => Err(Error::Rejected(INVALID.into())),
        Err(StoreError::EnvVarConflict) => Err(Error::Conflict(CONFLICT.into())),
        Err(e) => Err(e.into()),
    }
}
