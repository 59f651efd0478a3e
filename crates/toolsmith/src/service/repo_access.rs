//! Granting and revoking a user's read access to the organization's tool repository (the
//! `repo-reader` role). Access that comes with another role (a developer's) is not affected by
//! a revoke.

use toolsmith_domain::{Permission, Role, UserId};

use toolsmith_store::UserRef;

use super::{Caller, Error};
use crate::app::AppState;

/// Grants (`true`) or revokes (`false`) a user's read access; the user must belong to the
/// organization.
pub async fn set(state: &AppState, caller: &Caller, user_id: &UserId, access: bool) -> Result<(), Error> {
    caller.require(Permission::UpdateUserInfo)?;
    let store = state.store();
    if store.get_user(&caller.org, user_id).await?.is_none() {
        return Err(Error::NotFound);
    }
    let member = UserRef { org_id: caller.org.clone(), user_id: user_id.clone() };
    if access {
        store.grant_role(&caller.org, &member, Role::RepoReader).await?;
    } else {
        store.revoke_role(&caller.org, &member, Role::RepoReader).await?;
    }
    Ok(())
}
