//! Environment variables of tools: atomic batches of inserts, updates and deletes, with secret
//! values sealed before they reach the database and tombstones that block re-use of a name for a
//! while after it was deleted (runtimes that cached the old value must have let go of it first).

use std::collections::HashMap;

use sqlx::Row;
use toolsmith_domain::time::Timestamp;
use toolsmith_domain::{EnvVarName, OrgId, ToolId};

use crate::db::{get_bool, get_id, Dialect};
use crate::secrets::Sealed;
use crate::{Store, StoreError, UserRef};

/// A variable to create. Its `Debug` shows the value only when it is not a secret.
#[derive(Clone)]
pub struct EnvVarInsert {
    /// Its name.
    pub name: EnvVarName,
    /// Its value in plaintext; sealed by the store when `is_secret`.
    pub value: String,
    /// Whether the value is a secret.
    pub is_secret: bool,
}

/// One batch of changes, applied all together or not at all. Its `Debug` shows no value: an
/// update does not say whether the variable it changes is a secret.
#[derive(Clone, Default)]
pub struct EnvVarChanges {
    /// Variables to create.
    pub inserts: Vec<EnvVarInsert>,
    /// New values for existing variables (their secrecy stays as it is).
    pub updates: Vec<(EnvVarName, String)>,
    /// Variables to delete.
    pub deletes: Vec<EnvVarName>,
}

impl std::fmt::Debug for EnvVarInsert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = if self.is_secret { "***" } else { self.value.as_str() };
        f.debug_struct("EnvVarInsert")
            .field("name", &self.name)
            .field("value", &value)
            .field("is_secret", &self.is_secret)
            .finish()
    }
}

impl std::fmt::Debug for EnvVarChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inserts: Vec<(&EnvVarName, bool)> = self.inserts.iter().map(|i| (&i.name, i.is_secret)).collect();
        let updates: Vec<&EnvVarName> = self.updates.iter().map(|(name, _)| name).collect();
        f.debug_struct("EnvVarChanges")
            .field("inserts", &inserts)
            .field("updates", &updates)
            .field("deletes", &self.deletes)
            .finish()
    }
}

/// A variable with its value in plaintext, for the process that runs the tool.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvVarValue {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: String,
    /// Whether the value is a secret (to be masked wherever it shows up).
    pub is_secret: bool,
}

impl std::fmt::Debug for EnvVarValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = if self.is_secret { "***" } else { self.value.as_str() };
        write!(f, "EnvVarValue({}={value:?})", self.name)
    }
}

struct Existing {
    is_secret: bool,
    deleted_at: Option<i64>,
}

impl Store {
    /// Applies a batch of env var changes to a tool.
    ///
    /// Fails with [`StoreError::NotFound`] (no such tool), [`StoreError::EnvVarsInvalid`] (an
    /// update or delete names a variable that does not exist) or [`StoreError::EnvVarConflict`]
    /// (an insert names a live variable, or one deleted less than `tombstone_secs` ago); a
    /// delete of a variable that a live version requires is `EnvVarsInvalid` too. In every
    /// failure nothing changes.
    pub async fn modify_envvars(
        &self,
        org_id: &OrgId,
        tool_id: &ToolId,
        changes: &EnvVarChanges,
        tombstone_secs: i64,
        by: &UserRef,
    ) -> Result<(), StoreError> {
        let now = Timestamp::now();
        let mut tx = self.db.write.begin().await?;
        // On PostgreSQL concurrent batches for one tool queue on its row; SQLite already has a
        // single writer.
        let lock_sql = match self.db.dialect {
            Dialect::Postgres => "SELECT id FROM tools WHERE org_id = $1 AND id = $2 FOR UPDATE",
            Dialect::Sqlite => "SELECT id FROM tools WHERE org_id = $1 AND id = $2",
        };
        if sqlx::query(lock_sql).bind(org_id.as_str()).bind(tool_id.as_str()).fetch_optional(&mut *tx).await?.is_none()
        {
            return Err(StoreError::NotFound);
        }
        let rows = sqlx::query("SELECT name, is_secret, deleted_at FROM envvars WHERE org_id = $1 AND tool_id = $2")
            .bind(org_id.as_str())
            .bind(tool_id.as_str())
            .fetch_all(&mut *tx)
            .await?;
        let mut existing = HashMap::new();
        for row in rows {
            existing.insert(
                row.try_get::<String, _>("name")?,
                Existing { is_secret: get_bool(&row, "is_secret")?, deleted_at: row.try_get("deleted_at")? },
            );
        }
        let live = |name: &EnvVarName| existing.get(name.as_str()).filter(|e| e.deleted_at.is_none());

        if changes.updates.iter().any(|(name, _)| live(name).is_none())
            || changes.deletes.iter().any(|n| live(n).is_none())
        {
            return Err(StoreError::EnvVarsInvalid);
        }
        if !changes.deletes.is_empty() {
            let in_use = crate::versions::in_use(&mut *tx, org_id, tool_id).await?;
            if changes.deletes.iter().any(|n| in_use.contains(n.as_str())) {
                return Err(StoreError::EnvVarsInvalid);
            }
        }
        let window_start = now.plus_secs(-tombstone_secs).0;
        let blocked = |name: &EnvVarName| match existing.get(name.as_str()) {
            Some(Existing { deleted_at: None, .. }) => true,
            Some(Existing { deleted_at: Some(at), .. }) => *at > window_start,
            None => false,
        };
        if changes.inserts.iter().any(|i| blocked(&i.name)) {
            return Err(StoreError::EnvVarConflict);
        }

        for name in &changes.deletes {
            // The value is wiped, not only hidden: a deleted secret should not linger at rest.
            sqlx::query(
                "UPDATE envvars SET deleted_at = $4, updated_at = $4, value = $5, key_id = NULL \
                 WHERE org_id = $1 AND tool_id = $2 AND name = $3",
            )
            .bind(org_id.as_str())
            .bind(tool_id.as_str())
            .bind(name.as_str())
            .bind(now.0)
            .bind(Vec::<u8>::new())
            .execute(&mut *tx)
            .await?;
        }
        for (name, value) in &changes.updates {
            let is_secret = live(name).map(|e| e.is_secret).unwrap_or(false);
            let (bytes, key_id) = self.stored_value(org_id, tool_id, name, value, is_secret)?;
            sqlx::query(
                "UPDATE envvars SET value = $4, key_id = $5, updated_at = $6 WHERE org_id = $1 AND tool_id = $2 AND name = $3",
            )
            .bind(org_id.as_str())
            .bind(tool_id.as_str())
            .bind(name.as_str())
            .bind(bytes)
            .bind(key_id)
            .bind(now.0)
            .execute(&mut *tx)
            .await?;
        }
        for insert in &changes.inserts {
            let (bytes, key_id) = self.stored_value(org_id, tool_id, &insert.name, &insert.value, insert.is_secret)?;
            sqlx::query(
                "INSERT INTO envvars (org_id, tool_id, name, is_secret, value, key_id, created_at, updated_at, deleted_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7, NULL) \
                 ON CONFLICT (org_id, tool_id, name) DO UPDATE SET is_secret = excluded.is_secret, value = excluded.value, \
                 key_id = excluded.key_id, created_at = excluded.created_at, updated_at = excluded.updated_at, deleted_at = NULL",
            )
            .bind(org_id.as_str())
            .bind(tool_id.as_str())
            .bind(insert.name.as_str())
            .bind(i64::from(insert.is_secret))
            .bind(bytes)
            .bind(key_id)
            .bind(now.0)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE tools SET updated_by_org = $3, updated_by_user = $4, updated_at = $5 WHERE org_id = $1 AND id = $2",
        )
        .bind(org_id.as_str())
        .bind(tool_id.as_str())
        .bind(by.org_id.as_str())
        .bind(by.user_id.as_str())
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The live environment variables of a tool with their plaintext values, sorted by name.
    ///
    /// Only the runtime's launch path may call this: it is where secrets leave the store.
    pub async fn envvar_values(&self, org_id: &OrgId, tool_id: &ToolId) -> Result<Vec<EnvVarValue>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, is_secret, value, key_id FROM envvars \
             WHERE org_id = $1 AND tool_id = $2 AND deleted_at IS NULL ORDER BY name",
        )
        .bind(org_id.as_str())
        .bind(tool_id.as_str())
        .fetch_all(&self.db.read)
        .await?;
        let mut values = Vec::with_capacity(rows.len());
        for row in rows {
            let name: String = row.try_get("name")?;
            let is_secret = get_bool(&row, "is_secret")?;
            let bytes: Vec<u8> = row.try_get("value")?;
            let plain = if is_secret {
                let key_id: Option<String> = row.try_get("key_id")?;
                let sealed = Sealed { key_id: key_id.unwrap_or_default(), bytes };
                self.keyring.open(org_id, tool_id, &name, &sealed)?
            } else {
                bytes
            };
            let value =
                String::from_utf8(plain).map_err(|_| StoreError::Corrupt(format!("env var {name} is not UTF-8")))?;
            values.push(EnvVarValue { name, value, is_secret });
        }
        Ok(values)
    }

    fn stored_value(
        &self,
        org_id: &OrgId,
        tool_id: &ToolId,
        name: &EnvVarName,
        value: &str,
        is_secret: bool,
    ) -> Result<(Vec<u8>, Option<String>), StoreError> {
        if is_secret {
            let sealed = self.keyring.seal(org_id, tool_id, name.as_str(), value.as_bytes())?;
            Ok((sealed.bytes, Some(sealed.key_id)))
        } else {
            Ok((value.as_bytes().to_vec(), None))
        }
    }
}

impl Store {
    /// Re-seals every secret that is not sealed with the keyring's current key, so that an old
    /// key can be retired after a rotation. Returns how many values were re-sealed.
    pub async fn reseal_secrets(&self) -> Result<u64, StoreError> {
        let current = self.keyring.current().id().to_owned();
        let rows = sqlx::query(
            "SELECT org_id, tool_id, name, value, key_id FROM envvars \
             WHERE is_secret = 1 AND deleted_at IS NULL AND key_id <> $1",
        )
        .bind(&current)
        .fetch_all(&self.db.read)
        .await?;
        let mut count = 0;
        for row in rows {
            let (org_id, tool_id, name): (OrgId, ToolId, String) =
                (get_id(&row, "org_id")?, get_id(&row, "tool_id")?, row.try_get("name")?);
            let old = Sealed {
                key_id: row.try_get::<Option<String>, _>("key_id")?.unwrap_or_default(),
                bytes: row.try_get("value")?,
            };
            let plain = self.keyring.open(&org_id, &tool_id, &name, &old)?;
            let new = self.keyring.seal(&org_id, &tool_id, &name, &plain)?;
            // Only replace what was read: a value updated meanwhile is already sealed anew.
            let done = sqlx::query(
                "UPDATE envvars SET value = $4, key_id = $5 WHERE org_id = $1 AND tool_id = $2 AND name = $3 AND key_id = $6",
            )
            .bind(org_id.as_str())
            .bind(tool_id.as_str())
            .bind(&name)
            .bind(new.bytes)
            .bind(new.key_id)
            .bind(&old.key_id)
            .execute(&self.db.write)
            .await?;
            count += done.rows_affected();
        }
        Ok(count)
    }
}
