//! Organizations, users, role grants and API keys.

use sqlx::any::AnyRow;
use sqlx::Row;
use toolsmith_domain::time::Timestamp;
use toolsmith_domain::{ApiKeyId, OrgId, Role, UserId};

use crate::db::get_id;
use crate::{Store, StoreError, UserRef};

/// An organization: the unit of tenancy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    /// The organization's slug.
    pub id: OrgId,
    /// A display name.
    pub name: String,
    /// When it was created.
    pub created_at: Timestamp,
}

/// A user of an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The organization the user belongs to.
    pub org_id: OrgId,
    /// The user's id.
    pub id: UserId,
    /// A display name.
    pub name: String,
}

/// An API key as stored: only a SHA-256 of its secret is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// The organization the key belongs to.
    pub org_id: OrgId,
    /// The key's id, sent as `x-api-key-id`.
    pub id: ApiKeyId,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    /// What the key is for.
    pub description: String,
    /// When the key stops working, if ever.
    pub expires_at: Option<Timestamp>,
    /// When the key was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
}

/// What a request's guard needs to know about a caller, read in one round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// Whether the addressed organization exists.
    pub org_exists: bool,
    /// Whether the calling user exists in their own organization.
    pub user_exists: bool,
    /// The roles the caller holds in the addressed organization.
    pub roles: Vec<Role>,
}

impl Store {
    /// Whether `org_id` exists, whether `user` exists in their own organization, and the roles
    /// that user holds in `org_id`, all in one query: this runs before every request.
    pub async fn access(&self, org_id: &OrgId, user: &UserRef) -> Result<Access, StoreError> {
        let rows = sqlx::query(
            "SELECT 'org' AS kind, id AS value FROM organizations WHERE id = $1 \
             UNION ALL SELECT 'user', id FROM users WHERE org_id = $2 AND id = $3 \
             UNION ALL SELECT 'role', role FROM role_grants WHERE org_id = $1 AND user_org_id = $2 AND user_id = $3",
        )
        .bind(org_id.as_str())
        .bind(user.org_id.as_str())
        .bind(user.user_id.as_str())
        .fetch_all(&self.db.read)
        .await?;
        let mut access = Access { org_exists: false, user_exists: false, roles: Vec::new() };
        for row in rows {
            let kind: String = row.try_get("kind")?;
            let value: String = row.try_get("value")?;
            match kind.as_str() {
                "org" => access.org_exists = true,
                "user" => access.user_exists = true,
                // A role name this build does not know (written by a newer version) grants nothing.
                _ => access.roles.extend(Role::parse(&value)),
            }
        }
        Ok(access)
    }

    /// Creates an organization; [`StoreError::AlreadyExists`] if the id is taken.
    pub async fn create_org(&self, id: &OrgId, name: &str) -> Result<Organization, StoreError> {
        let now = Timestamp::now();
        sqlx::query("INSERT INTO organizations (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(id.as_str())
            .bind(name)
            .bind(now.0)
            .execute(&self.db.write)
            .await
            .map_err(already_exists)?;
        Ok(Organization { id: id.clone(), name: name.to_owned(), created_at: now })
    }

    /// Looks up an organization.
    pub async fn get_org(&self, id: &OrgId) -> Result<Option<Organization>, StoreError> {
        let row = sqlx::query("SELECT id, name, created_at FROM organizations WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.db.read)
            .await?;
        row.map(|r| org_from_row(&r)).transpose()
    }

    /// Every organization, oldest first.
    pub async fn list_orgs(&self) -> Result<Vec<Organization>, StoreError> {
        let rows = sqlx::query("SELECT id, name, created_at FROM organizations ORDER BY created_at, id")
            .fetch_all(&self.db.read)
            .await?;
        rows.iter().map(org_from_row).collect()
    }

    /// Creates a user in an organization.
    pub async fn create_user(&self, org_id: &OrgId, user_id: &UserId, name: &str) -> Result<UserRecord, StoreError> {
        sqlx::query("INSERT INTO users (org_id, id, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(org_id.as_str())
            .bind(user_id.as_str())
            .bind(name)
            .bind(Timestamp::now().0)
            .execute(&self.db.write)
            .await
            .map_err(already_exists)?;
        Ok(UserRecord { org_id: org_id.clone(), id: user_id.clone(), name: name.to_owned() })
    }

    /// Looks up a user of an organization.
    pub async fn get_user(&self, org_id: &OrgId, user_id: &UserId) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query("SELECT org_id, id, name FROM users WHERE org_id = $1 AND id = $2")
            .bind(org_id.as_str())
            .bind(user_id.as_str())
            .fetch_optional(&self.db.read)
            .await?;
        row.map(|r| user_from_row(&r)).transpose()
    }

    /// The users of an organization, oldest first.
    pub async fn list_users(&self, org_id: &OrgId) -> Result<Vec<UserRecord>, StoreError> {
        let rows = sqlx::query("SELECT org_id, id, name FROM users WHERE org_id = $1 ORDER BY created_at, id")
            .bind(org_id.as_str())
            .fetch_all(&self.db.read)
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    /// Grants `role` in `org_id` to `user` (who may belong to another organization); granting
    /// twice is a no-op.
    pub async fn grant_role(&self, org_id: &OrgId, user: &UserRef, role: Role) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO role_grants (org_id, user_org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (org_id, user_org_id, user_id, role) DO NOTHING",
        )
        .bind(org_id.as_str())
        .bind(user.org_id.as_str())
        .bind(user.user_id.as_str())
        .bind(role.as_str())
        .bind(Timestamp::now().0)
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    /// Revokes a role; returns whether the user had it.
    pub async fn revoke_role(&self, org_id: &OrgId, user: &UserRef, role: Role) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "DELETE FROM role_grants WHERE org_id = $1 AND user_org_id = $2 AND user_id = $3 AND role = $4",
        )
        .bind(org_id.as_str())
        .bind(user.org_id.as_str())
        .bind(user.user_id.as_str())
        .bind(role.as_str())
        .execute(&self.db.write)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The roles `user` (who may belong to another organization) holds in `org_id`.
    pub async fn roles_of(&self, org_id: &OrgId, user: &UserRef) -> Result<Vec<Role>, StoreError> {
        let rows = sqlx::query("SELECT role FROM role_grants WHERE org_id = $1 AND user_org_id = $2 AND user_id = $3")
            .bind(org_id.as_str())
            .bind(user.org_id.as_str())
            .bind(user.user_id.as_str())
            .fetch_all(&self.db.read)
            .await?;
        // A role name this build does not know (written by a newer version) grants nothing.
        Ok(rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>("role").ok())
            .filter_map(|name| Role::parse(&name))
            .collect())
    }

    /// Stores a new API key (its secret already hashed).
    pub async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (org_id, id, secret_sha256, description, created_at, expires_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL)",
        )
        .bind(key.org_id.as_str())
        .bind(key.id.as_str())
        .bind(&key.secret_sha256)
        .bind(&key.description)
        .bind(Timestamp::now().0)
        .bind(key.expires_at.map(|t| t.0))
        .execute(&self.db.write)
        .await
        .map_err(already_exists)?;
        Ok(())
    }

    /// Looks up an API key of an organization.
    pub async fn get_api_key(&self, org_id: &OrgId, key_id: &ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT org_id, id, secret_sha256, description, expires_at, revoked_at FROM api_keys WHERE org_id = $1 AND id = $2",
        )
        .bind(org_id.as_str())
        .bind(key_id.as_str())
        .fetch_optional(&self.db.read)
        .await?;
        row.map(|r| key_from_row(&r)).transpose()
    }

    /// The API keys of an organization.
    pub async fn list_api_keys(&self, org_id: &OrgId) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT org_id, id, secret_sha256, description, expires_at, revoked_at FROM api_keys WHERE org_id = $1 ORDER BY created_at, id",
        )
        .bind(org_id.as_str())
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    /// Revokes an API key; returns whether it existed and was live.
    pub async fn revoke_api_key(&self, org_id: &OrgId, key_id: &ApiKeyId) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = $3 WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL")
                .bind(org_id.as_str())
                .bind(key_id.as_str())
                .bind(Timestamp::now().0)
                .execute(&self.db.write)
                .await?;
        Ok(done.rows_affected() > 0)
    }
}

fn already_exists(err: sqlx::Error) -> StoreError {
    if StoreError::is_unique_violation(&err) {
        StoreError::AlreadyExists
    } else {
        StoreError::Database(err)
    }
}

fn org_from_row(r: &AnyRow) -> Result<Organization, StoreError> {
    Ok(Organization { id: get_id(r, "id")?, name: r.try_get("name")?, created_at: Timestamp(r.try_get("created_at")?) })
}

fn user_from_row(r: &AnyRow) -> Result<UserRecord, StoreError> {
    Ok(UserRecord { org_id: get_id(r, "org_id")?, id: get_id(r, "id")?, name: r.try_get("name")? })
}

fn key_from_row(r: &AnyRow) -> Result<ApiKeyRecord, StoreError> {
    Ok(ApiKeyRecord {
        org_id: get_id(r, "org_id")?,
        id: get_id(r, "id")?,
        secret_sha256: r.try_get("secret_sha256")?,
        description: r.try_get("description")?,
        expires_at: r.try_get::<Option<i64>, _>("expires_at")?.map(Timestamp),
        revoked_at: r.try_get::<Option<i64>, _>("revoked_at")?.map(Timestamp),
    })
}
