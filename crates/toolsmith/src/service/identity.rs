//! Signing in: an organization's API key traded for a token.

use toolsmith_domain::time::Timestamp;
use toolsmith_domain::OrgId;

use super::Error;
use crate::app::AppState;
use crate::identity::api_key;

/// The text of every refused sign-in: which part was wrong is not told.
pub const REFUSED: &str = "API key not found, is incorrect, or the requested user is not found.";

/// [`Error::NotFound`] unless the organization exists.
pub async fn organization(state: &AppState, org: &OrgId) -> Result<(), Error> {
    state.store().get_org(org).await?.map(|_| ()).ok_or(Error::NotFound)
}

/// A token for `user_id`, when `secret` is the secret of the organization's live key `key_id`
/// and the user belongs to the organization.
pub async fn sign_in(
    state: &AppState,
    org: &OrgId,
    key_id: &str,
    secret: &str,
    user_id: &str,
) -> Result<(String, Timestamp), Error> {
    let user =
        api_key::verify(state.store(), org, key_id, secret, user_id).await?.ok_or(Error::Unauthenticated(REFUSED))?;
    let ttl = state.settings().token_ttl.as_secs() as i64;
    Ok(state.tokens().issue(org.as_str(), user.user_id.as_str(), ttl))
}
