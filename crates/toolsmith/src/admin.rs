//! `toolsmith admin …`: manage organizations, users, role grants, API keys and secret keys from
//! the command line, directly against the database (no running server needed); back up and
//! restore an installation (see [`crate::backup`]).

use anyhow::{bail, Context};
use clap::Subcommand;
use toolsmith_domain::{ApiKeyId, OrgId, Role, UserId};
use toolsmith_store::{Store, UserRef};

use crate::bootstrap;
use crate::config::StorageArgs;

/// An administrative action.
#[derive(Debug, Subcommand)]
pub enum AdminAction {
    /// Create an organization with an admin user; prints the user id.
    CreateOrg {
        /// The organization id (`^[a-z0-9][a-z0-9-]{0,62}$`).
        org: OrgId,
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
        org: OrgId,
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
        org: OrgId,
    },
    /// Grant a role in an organization, possibly to a user of another organization.
    Grant {
        /// The organization the role applies to.
        #[arg(long)]
        org: OrgId,
        /// The user id.
        #[arg(long)]
        user: UserId,
        /// The user's own organization (default: --org).
        #[arg(long)]
        user_org: Option<OrgId>,
        /// The role.
        #[arg(long)]
        role: String,
    },
    /// Revoke a role.
    Revoke {
        /// The organization the role applies to.
        #[arg(long)]
        org: OrgId,
        /// The user id.
        #[arg(long)]
        user: UserId,
        /// The user's own organization (default: --org).
        #[arg(long)]
        user_org: Option<OrgId>,
        /// The role.
        #[arg(long)]
        role: String,
    },
    /// Create an API key for an organization; prints its id and secret (shown only once).
    CreateKey {
        /// The organization.
        #[arg(long)]
        org: OrgId,
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
        org: OrgId,
    },
    /// Revoke an API key.
    RevokeKey {
        /// The organization.
        #[arg(long)]
        org: OrgId,
        /// The key id.
        #[arg(long)]
        id: ApiKeyId,
    },
    /// Issue a token for a user directly (for scripts and benchmarks).
    Token {
        /// The organization.
        #[arg(long)]
        org: OrgId,
        /// The user id.
        #[arg(long)]
        user: UserId,
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

fn role_arg(role: &str) -> anyhow::Result<Role> {
    Role::parse(role).with_context(|| {
        let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        format!("unknown role {role:?}; one of: {}", names.join(", "))
    })
}

async fn require_org(store: &Store, org: &OrgId) -> anyhow::Result<()> {
    if store.get_org(org).await?.is_none() {
        bail!("organization {org} does not exist");
    }
    Ok(())
}

/// Runs an action against the store opened from `storage`.
pub async fn run(store: &Store, action: AdminAction, storage: &StorageArgs, token_key: Vec<u8>) -> anyhow::Result<()> {
    match action {
        AdminAction::CreateOrg { org, name } => {
            let repos = crate::server::open_repos(storage, toolsmith_repo::Limits::default())?;
            let user = bootstrap::create_org_with_admin(store, &repos, &org, name.as_deref().unwrap_or(org.as_str()))
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
            require_org(store, &org).await?;
            let roles = roles.iter().map(|r| role_arg(r)).collect::<anyhow::Result<Vec<_>>>()?;
            let user = UserId::generate();
            store.create_user(&org, &user, &name).await?;
            let member = UserRef { org_id: org.clone(), user_id: user.clone() };
            for role in roles {
                store.grant_role(&org, &member, role).await?;
            }
            println!("{user}");
        }
        AdminAction::ListUsers { org } => {
            for user in store.list_users(&org).await? {
                let roles = store.roles_of(&org, &UserRef { org_id: org.clone(), user_id: user.id.clone() }).await?;
                let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
                println!("{}\t{}\t{}", user.id, user.name, roles.join(","));
            }
        }
        AdminAction::Grant { org, user, user_org, role } => {
            require_org(store, &org).await?;
            let user_org = user_org.unwrap_or_else(|| org.clone());
            if store.get_user(&user_org, &user).await?.is_none() {
                bail!("user {user} does not exist in organization {user_org}");
            }
            let member = UserRef { org_id: user_org.clone(), user_id: user.clone() };
            store.grant_role(&org, &member, role_arg(&role)?).await?;
            println!("granted {role} in {org} to {user_org}/{user}");
        }
        AdminAction::Revoke { org, user, user_org, role } => {
            let user_org = user_org.unwrap_or_else(|| org.clone());
            let member = UserRef { org_id: user_org, user_id: user };
            let had = store.revoke_role(&org, &member, role_arg(&role)?).await?;
            println!("{}", if had { "revoked" } else { "the user did not have that role" });
        }
        AdminAction::CreateKey { org, description, expires_in_days } => {
            require_org(store, &org).await?;
            let (id, secret) = bootstrap::create_api_key(store, &org, &description, expires_in_days).await?;
            println!("API key id: {id}\nAPI key:    {secret}");
        }
        AdminAction::ListKeys { org } => {
            for key in store.list_api_keys(&org).await? {
                let state = if key.revoked_at.is_some() { "revoked" } else { "live" };
                let expires = key.expires_at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "never".into());
                println!("{}\t{state}\texpires {expires}\t{}", key.id, key.description);
            }
        }
        AdminAction::RevokeKey { org, id } => {
            let revoked = store.revoke_api_key(&org, &id).await?;
            println!("{}", if revoked { "revoked" } else { "no live key with that id" });
        }
        AdminAction::Token { org, user, ttl_secs } => {
            if store.get_user(&org, &user).await?.is_none() {
                bail!("user {user} does not exist in organization {org}");
            }
            let (token, _) =
                crate::identity::token::TokenSigner::new(token_key).issue(org.as_str(), user.as_str(), ttl_secs);
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
