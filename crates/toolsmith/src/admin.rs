//! `toolsmith admin …`: manage organizations, users, role grants, API keys and secret keys from
//! the command line, directly against the database (no running server needed); back up and
//! restore an installation (see [`crate::backup`]).

use anyhow::{bail, Context};
use clap::Subcommand;
use toolsmith_domain::{ObjectId, OrgId, Role};
use toolsmith_store::Store;

use crate::bootstrap;
use crate::config::StorageArgs;

/// An administrative action.
#[derive(Debug, Subcommand)]
pub enum AdminAction {
    /// Create an organization with an admin user; prints the user id.
    CreateOrg {
        /// The organization id (`^[a-z0-9][a-z0-9-]{0,62}$`).
        org: String,
        /// A display name (default: the id).
        #[arg(long)]
        name: Option<String>,
    },
    /// List organizations.
    ListOrgs,
    /// Create a user in an organization; prints the user id.
    CreateUser {
        /// The organization.
        #[arg(long)]
        org: String,
        /// A display name.
        #[arg(long, default_value = "user")]
        name: String,
        /// Roles to grant right away (admin, developer, invoker, viewer, repo-reader).
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// List the users of an organization with their roles.
    ListUsers {
        /// The organization.
        #[arg(long)]
        org: String,
    },
    /// Grant a role in an organization, possibly to a user of another organization.
    Grant {
        /// The organization the role applies to.
        #[arg(long)]
        org: String,
        /// The user id.
        #[arg(long)]
        user: String,
        /// The user's own organization (default: --org).
        #[arg(long)]
        user_org: Option<String>,
        /// The role.
        #[arg(long)]
        role: String,
    },
    /// Revoke a role.
    Revoke {
        /// The organization the role applies to.
        #[arg(long)]
        org: String,
        /// The user id.
        #[arg(long)]
        user: String,
        /// The user's own organization (default: --org).
        #[arg(long)]
        user_org: Option<String>,
        /// The role.
        #[arg(long)]
        role: String,
    },
    /// Create an API key for an organization; prints its id and secret (shown only once).
    CreateKey {
        /// The organization.
        #[arg(long)]
        org: String,
        /// What the key is for.
        #[arg(long, default_value = "")]
        description: String,
        /// Days until the key expires (default: never).
        #[arg(long)]
        expires_in_days: Option<i64>,
    },
    /// List the API keys of an organization (ids and state; secrets are not stored).
    ListKeys {
        /// The organization.
        #[arg(long)]
        org: String,
    },
    /// Revoke an API key.
    RevokeKey {
        /// The organization.
        #[arg(long)]
        org: String,
        /// The key id.
        #[arg(long)]
        id: String,
    },
    /// Issue a token for a user directly (for scripts and benchmarks).
    Token {
        /// The organization.
        #[arg(long)]
        org: String,
        /// The user id.
        #[arg(long)]
        user: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl_secs: i64,
    },
    /// Add a new secret key (it seals from now on) and re-seal every stored secret with it.
    RotateSecretKey,
    /// Write a consistent backup into DIR (new or empty) while servers run: the SQLite
    /// database, keys, repositories, artifacts and environments. With PostgreSQL, everything but
    /// the database, which pg_dump takes first.
    Backup {
        /// Where the backup goes (must not exist or be empty).
        dir: std::path::PathBuf,
    },
    /// Restore the backup in DIR into the data directory, which must not exist or be empty.
    Restore {
        /// The backup.
        dir: std::path::PathBuf,
    },
}

fn org_arg(org: &str) -> anyhow::Result<OrgId> {
    OrgId::parse(org).map_err(|e| anyhow::anyhow!("organization id {org:?} {e}"))
}

fn role_arg(role: &str) -> anyhow::Result<Role> {
    Role::parse(role).with_context(|| {
        let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        format!("unknown role {role:?}; one of: {}", names.join(", "))
    })
}

async fn require_org(store: &Store, org: &OrgId) -> anyhow::Result<()> {
    if store.get_org(org.as_str()).await?.is_none() {
        bail!("organization {org} does not exist");
    }
    Ok(())
}

/// Runs an action against the store opened from `storage`.
pub async fn run(store: &Store, action: AdminAction, storage: &StorageArgs, token_key: Vec<u8>) -> anyhow::Result<()> {
    match action {
        AdminAction::CreateOrg { org, name } => {
            let org = org_arg(&org)?;
            let repos = crate::server::open_repos(storage, toolsmith_repo::Limits::default())?;
            let user =
                bootstrap::create_org_with_admin(store, &repos, org.as_str(), name.as_deref().unwrap_or(org.as_str()))
                    .await
                    .with_context(|| format!("creating organization {org}"))?;
            println!("organization {org} created; admin user {user}");
        }
        AdminAction::ListOrgs => {
            for org in store.list_orgs().await? {
                println!("{}\t{}\t{}", org.id, org.name, org.created_at.to_rfc3339());
            }
        }
        AdminAction::CreateUser { org, name, roles } => {
            let org = org_arg(&org)?;
            require_org(store, &org).await?;
            let roles = roles.iter().map(|r| role_arg(r)).collect::<anyhow::Result<Vec<_>>>()?;
            let user = ObjectId::generate().to_string();
            store.create_user(org.as_str(), &user, &name).await?;
            for role in roles {
                store.grant_role(org.as_str(), org.as_str(), &user, role).await?;
            }
            println!("{user}");
        }
        AdminAction::ListUsers { org } => {
            let org = org_arg(&org)?;
            for user in store.list_users(org.as_str()).await? {
                let roles = store.roles_of(org.as_str(), org.as_str(), &user.id).await?;
                let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
                println!("{}\t{}\t{}", user.id, user.name, roles.join(","));
            }
        }
        AdminAction::Grant { org, user, user_org, role } => {
            let org = org_arg(&org)?;
            require_org(store, &org).await?;
            let user_org = org_arg(user_org.as_deref().unwrap_or(org.as_str()))?;
            if store.get_user(user_org.as_str(), &user).await?.is_none() {
                bail!("user {user} does not exist in organization {user_org}");
            }
            store.grant_role(org.as_str(), user_org.as_str(), &user, role_arg(&role)?).await?;
            println!("granted {role} in {org} to {user_org}/{user}");
        }
        AdminAction::Revoke { org, user, user_org, role } => {
            let org = org_arg(&org)?;
            let user_org = org_arg(user_org.as_deref().unwrap_or(org.as_str()))?;
            let had = store.revoke_role(org.as_str(), user_org.as_str(), &user, role_arg(&role)?).await?;
            println!("{}", if had { "revoked" } else { "the user did not have that role" });
        }
        AdminAction::CreateKey { org, description, expires_in_days } => {
            let org = org_arg(&org)?;
            require_org(store, &org).await?;
            let (id, secret) = bootstrap::create_api_key(store, org.as_str(), &description, expires_in_days).await?;
            println!("API key id: {id}\nAPI key:    {secret}");
        }
        AdminAction::ListKeys { org } => {
            let org = org_arg(&org)?;
            for key in store.list_api_keys(org.as_str()).await? {
                let state = if key.revoked_at.is_some() { "revoked" } else { "live" };
                let expires = key.expires_at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "never".into());
                println!("{}\t{state}\texpires {expires}\t{}", key.id, key.description);
            }
        }
        AdminAction::RevokeKey { org, id } => {
            let org = org_arg(&org)?;
            let revoked = store.revoke_api_key(org.as_str(), &id).await?;
            println!("{}", if revoked { "revoked" } else { "no live key with that id" });
        }
        AdminAction::Token { org, user, ttl_secs } => {
            let org = org_arg(&org)?;
            if store.get_user(org.as_str(), &user).await?.is_none() {
                bail!("user {user} does not exist in organization {org}");
            }
            let (token, _) = crate::identity::token::TokenSigner::new(token_key).issue(org.as_str(), &user, ttl_secs);
            println!("{token}");
        }
        AdminAction::RotateSecretKey => {
            let key = crate::keys::prepend_secret_key(&storage.data_dir)?;
            let rotated = Store::open(&storage.url(), crate::keys::load_keyring(&storage.data_dir)?).await?;
            let count = rotated.reseal_secrets().await?;
            rotated.close().await;
            println!("secret key {} is now current; re-sealed {count} secret values", key.id());
            println!("restart running servers so that they seal new values with it too");
        }
        AdminAction::Backup { .. } | AdminAction::Restore { .. } => {
            bail!("backup and restore run without an open store (see `toolsmith::backup`)")
        }
    }
    Ok(())
}
