//! First start: an empty installation gets an organization, an admin user and an API key, printed
//! once with a ready-to-paste sign-in command, so a newcomer can make a first request within a
//! minute.

use toolsmith_domain::{ApiKeyId, OrgId, Role, UserId};
use toolsmith_repo::RepoStore;
use toolsmith_store::{ApiKeyRecord, Store, StoreError, UserRef};

use crate::identity::api_key;

/// What bootstrap created; the secret is shown once and never stored.
pub struct Bootstrapped {
    /// The organization.
    pub org_id: OrgId,
    /// The admin user.
    pub user_id: UserId,
    /// The API key id.
    pub key_id: ApiKeyId,
    /// The API key secret.
    pub key_secret: String,
}

/// Creates an organization with its repository and an admin user (role `admin`) and returns the
/// user's id.
pub async fn create_org_with_admin(
    store: &Store,
    repos: &RepoStore,
    org_id: &OrgId,
    name: &str,
) -> Result<UserId, StoreError> {
    store.create_org(org_id, name).await?;
    if let Err(err) = repos.create(org_id.as_str()).await {
        // The repository is also created on first use, so the organization stays usable.
        tracing::warn!(org = %org_id, error = %err, "could not create the organization's repository yet");
    }
    let user_id = UserId::generate();
    store.create_user(org_id, &user_id, "admin").await?;
    store.grant_role(org_id, &UserRef { org_id: org_id.clone(), user_id: user_id.clone() }, Role::Admin).await?;
    Ok(user_id)
}

/// Creates an API key for an organization and returns (id, secret).
pub async fn create_api_key(
    store: &Store,
    org_id: &OrgId,
    description: &str,
    expires_in_days: Option<i64>,
) -> Result<(ApiKeyId, String), StoreError> {
    let key = api_key::generate();
    store
        .create_api_key(&ApiKeyRecord {
            org_id: org_id.clone(),
            id: key.id.clone(),
            secret_sha256: key.secret_sha256,
            description: description.to_owned(),
            expires_at: expires_in_days.map(|d| toolsmith_domain::time::Timestamp::now().plus_secs(d * 86_400)),
            revoked_at: None,
        })
        .await?;
    Ok((key.id, key.secret))
}

/// Bootstraps an empty installation; `None` when organizations already exist (or another process
/// bootstrapped it at the same moment).
pub async fn bootstrap_if_empty(
    store: &Store,
    repos: &RepoStore,
    org_id: &OrgId,
) -> Result<Option<Bootstrapped>, StoreError> {
    if !store.list_orgs().await?.is_empty() {
        return Ok(None);
    }
    let user_id = match create_org_with_admin(store, repos, org_id, org_id.as_str()).await {
        Ok(user_id) => user_id,
        Err(StoreError::AlreadyExists) => return Ok(None),
        Err(e) => return Err(e),
    };
    let (key_id, key_secret) = create_api_key(store, org_id, "created on first start", None).await?;
    Ok(Some(Bootstrapped { org_id: org_id.clone(), user_id, key_id, key_secret }))
}

/// The message printed after bootstrapping, with a sign-in command for `base_url`.
pub fn welcome(b: &Bootstrapped, base_url: &str) -> String {
    format!(
        "\n\
         toolsmith: first start. Created organization '{org}' with an admin user and an API key.\n\
         The API key secret is shown only now; keep it somewhere safe.\n\
         \n\
         \x20 organization: {org}\n\
         \x20 admin user:   {user}\n\
         \x20 API key id:   {key_id}\n\
         \x20 API key:      {secret}\n\
         \n\
         Sign in (prints a token to use as 'Authorization: Bearer <token>'):\n\
         \n\
         \x20 curl -s -X POST {base}/v1/{org}/user/signin_with_api_key \\\n\
         \x20   -H 'x-api-key: {secret}' -H 'x-api-key-id: {key_id}' -H 'x-user-id: {user}'\n",
        org = b.org_id,
        user = b.user_id,
        key_id = b.key_id,
        secret = b.key_secret,
        base = base_url.trim_end_matches('/'),
    )
}
