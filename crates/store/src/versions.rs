//! Published tool versions: immutable records of what was built, from which commit, with which
//! input schema and environment requirements. Only their deprecation flag ever changes.

use std::collections::BTreeSet;

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row;
use toolsmith_domain::time::Timestamp;
use toolsmith_domain::{BuildId, OrgId, ToolId, Version, VersionId};

use crate::db::{get_bool, get_id, placeholders};
use crate::{Store, StoreError, UserRef};

/// A published version.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolVersion {
    /// The version record's id.
    pub id: VersionId,
    /// The organization.
    pub org_id: OrgId,
    /// The tool.
    pub tool_id: ToolId,
    /// `X.Y.Z`.
    pub version: Version,
    /// Non-secret env vars the version needs.
    pub required_envvars: Vec<String>,
    /// Secret env vars the version needs.
    pub required_secret_envvars: Vec<String>,
    /// JSON Schema of the input.
    pub input_schema: Value,
    /// JSON Schema of the output, derived from the entrypoint's return annotation; `None` when
    /// the entrypoint has none, and for versions published before output schemas were kept.
    pub output_schema: Option<Value>,
    /// Whether the entrypoint takes `context`.
    pub takes_context: bool,
    /// `module:function`.
    pub entrypoint: String,
    /// The commit the version was built from.
    pub tool_commit_hash: String,
    /// The scaffold archive hash the server had when building.
    pub scaffold_hash: String,
    /// The project directory in the repository.
    pub project_directory: String,
    /// The artifact revision: counts the tool's versions from 1.
    pub lambda_version: i64,
    /// SHA-256 over (source tree, lock, schema).
    pub content_digest: String,
    /// The key of the shared environment the version runs in.
    pub environment_key: String,
    /// The build that produced it.
    pub build_id: BuildId,
    /// Deprecated versions cannot be invoked or resolved.
    pub deprecated: bool,
    /// Who published it.
    pub creator: UserRef,
    /// Who changed it last (deprecated it).
    pub updated_by: UserRef,
    /// When it was published.
    pub created_at: Timestamp,
    /// When it changed last.
    pub updated_at: Timestamp,
}

/// What publishing a version records.
#[derive(Debug, Clone)]
pub struct NewVersion {
    /// The organization.
    pub org_id: OrgId,
    /// The tool.
    pub tool_id: ToolId,
    /// `X.Y.Z`.
    pub version: Version,
    /// Non-secret env vars needed.
    pub required_envvars: Vec<String>,
    /// Secret env vars needed.
    pub required_secret_envvars: Vec<String>,
    /// The input schema.
    pub input_schema: Value,
    /// The output schema, when the entrypoint's return annotation gives one.
    pub output_schema: Option<Value>,
    /// Whether the entrypoint takes `context`.
    pub takes_context: bool,
    /// `module:function`.
    pub entrypoint: String,
    /// Source commit.
    pub tool_commit_hash: String,
    /// Scaffold hash.
    pub scaffold_hash: String,
    /// Project directory.
    pub project_directory: String,
    /// Content digest.
    pub content_digest: String,
    /// Environment key.
    pub environment_key: String,
    /// The build.
    pub build_id: BuildId,
    /// The publisher.
    pub creator: UserRef,
}

pub(crate) const COLUMNS: &str = "id, org_id, tool_id, major, minor, patch, required_envvars, required_secret_envvars, input_schema, \
    takes_context, entrypoint, tool_commit_hash, scaffold_hash, project_directory, lambda_version, content_digest, \
    environment_key, build_id, deprecated, creator_org, creator_user, updated_by_org, updated_by_user, created_at, updated_at, \
    output_schema";

impl Store {
    /// Every version of a tool, oldest first.
    pub async fn versions_of(&self, org_id: &OrgId, tool_id: &ToolId) -> Result<Vec<ToolVersion>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM tool_versions WHERE org_id = $1 AND tool_id = $2 ORDER BY created_at, id");
        let rows = sqlx::query(&sql).bind(org_id.as_str()).bind(tool_id.as_str()).fetch_all(&self.db.read).await?;
        rows.iter().map(version_from_row).collect()
    }

    /// Records a new version; [`StoreError::AlreadyExists`] if the number is taken. Its
    /// `lambda_version` is one more than the tool's highest so far.
    pub async fn insert_version(&self, new: NewVersion) -> Result<ToolVersion, StoreError> {
        let id = VersionId::generate();
        let now = Timestamp::now();
        let mut tx = self.db.write.begin().await?;
        let row = sqlx::query(
            "SELECT COALESCE(MAX(lambda_version), 0) AS n FROM tool_versions WHERE org_id = $1 AND tool_id = $2",
        )
        .bind(new.org_id.as_str())
        .bind(new.tool_id.as_str())
        .fetch_one(&mut *tx)
        .await?;
        let lambda_version: i64 = row.try_get::<i64, _>("n")? + 1;
        let sql = format!(
            "INSERT INTO tool_versions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
             $17, $18, 0, $19, $20, $19, $20, $21, $21, $22)"
        );
        let inserted = sqlx::query(&sql)
            .bind(id.as_str())
            .bind(new.org_id.as_str())
            .bind(new.tool_id.as_str())
            .bind(new.version.major as i64)
            .bind(new.version.minor as i64)
            .bind(new.version.patch as i64)
            .bind(to_json(&new.required_envvars))
            .bind(to_json(&new.required_secret_envvars))
            .bind(new.input_schema.to_string())
            .bind(i64::from(new.takes_context))
            .bind(&new.entrypoint)
            .bind(&new.tool_commit_hash)
            .bind(&new.scaffold_hash)
            .bind(&new.project_directory)
            .bind(lambda_version)
            .bind(&new.content_digest)
            .bind(&new.environment_key)
            .bind(new.build_id.as_str())
            .bind(new.creator.org_id.as_str())
            .bind(new.creator.user_id.as_str())
            .bind(now.0)
            .bind(new.output_schema.as_ref().map(Value::to_string))
            .execute(&mut *tx)
            .await;
        if let Err(err) = inserted {
            return Err(if StoreError::is_unique_violation(&err) { StoreError::AlreadyExists } else { err.into() });
        }
        tx.commit().await?;
        Ok(ToolVersion {
            id,
            org_id: new.org_id,
            tool_id: new.tool_id,
            version: new.version,
            required_envvars: new.required_envvars,
            required_secret_envvars: new.required_secret_envvars,
            input_schema: new.input_schema,
            output_schema: new.output_schema,
            takes_context: new.takes_context,
            entrypoint: new.entrypoint,
            tool_commit_hash: new.tool_commit_hash,
            scaffold_hash: new.scaffold_hash,
            project_directory: new.project_directory,
            lambda_version,
            content_digest: new.content_digest,
            environment_key: new.environment_key,
            build_id: new.build_id,
            deprecated: false,
            updated_by: new.creator.clone(),
            creator: new.creator,
            created_at: now,
            updated_at: now,
        })
    }

    /// Deprecates the given live versions of a tool; returns how many changed.
    pub async fn deprecate_versions(
        &self,
        org_id: &OrgId,
        tool_id: &ToolId,
        ids: &[VersionId],
        by: &UserRef,
    ) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let sql = format!(
            "UPDATE tool_versions SET deprecated = 1, updated_by_org = $3, updated_by_user = $4, updated_at = $5 \
             WHERE org_id = $1 AND tool_id = $2 AND deprecated = 0 AND id IN ({})",
            placeholders(6, ids.len())
        );
        let mut query = sqlx::query(&sql)
            .bind(org_id.as_str())
            .bind(tool_id.as_str())
            .bind(by.org_id.as_str())
            .bind(by.user_id.as_str())
            .bind(Timestamp::now().0);
        for id in ids {
            query = query.bind(id.as_str());
        }
        Ok(query.execute(&self.db.write).await?.rows_affected())
    }

    /// The env var names (secret or not) that the tool's live versions need.
    pub async fn envvars_in_use(&self, org_id: &OrgId, tool_id: &ToolId) -> Result<BTreeSet<String>, StoreError> {
        in_use(&self.db.read, org_id, tool_id).await
    }
}

pub(crate) async fn in_use<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    exec: E,
    org_id: &OrgId,
    tool_id: &ToolId,
) -> Result<BTreeSet<String>, StoreError> {
    let rows = sqlx::query(
        "SELECT required_envvars, required_secret_envvars FROM tool_versions WHERE org_id = $1 AND tool_id = $2 AND deprecated = 0",
    )
    .bind(org_id.as_str())
    .bind(tool_id.as_str())
    .fetch_all(exec)
    .await?;
    let mut names = BTreeSet::new();
    for row in rows {
        for column in ["required_envvars", "required_secret_envvars"] {
            names.extend(from_json(&row.try_get::<String, _>(column)?)?);
        }
    }
    Ok(names)
}

fn to_json(names: &[String]) -> String {
    serde_json::to_string(names).unwrap_or_else(|_| "[]".into())
}

fn from_json(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("version env var list: {e}")))
}

pub(crate) fn version_from_row(r: &AnyRow) -> Result<ToolVersion, StoreError> {
    let number = |c: &str| -> Result<u64, StoreError> { Ok(r.try_get::<i64, _>(c)?.max(0) as u64) };
    let schema: String = r.try_get("input_schema")?;
    let output_schema = r
        .try_get::<Option<String>, _>("output_schema")?
        .map(|text| serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("output schema: {e}"))))
        .transpose()?;
    Ok(ToolVersion {
        id: get_id(r, "id")?,
        org_id: get_id(r, "org_id")?,
        tool_id: get_id(r, "tool_id")?,
        version: Version { major: number("major")?, minor: number("minor")?, patch: number("patch")? },
        required_envvars: from_json(&r.try_get::<String, _>("required_envvars")?)?,
        required_secret_envvars: from_json(&r.try_get::<String, _>("required_secret_envvars")?)?,
        input_schema: serde_json::from_str(&schema).map_err(|e| StoreError::Corrupt(format!("input schema: {e}")))?,
        output_schema,
        takes_context: get_bool(r, "takes_context")?,
        entrypoint: r.try_get("entrypoint")?,
        tool_commit_hash: r.try_get("tool_commit_hash")?,
        scaffold_hash: r.try_get("scaffold_hash")?,
        project_directory: r.try_get("project_directory")?,
        lambda_version: r.try_get("lambda_version")?,
        content_digest: r.try_get("content_digest")?,
        environment_key: r.try_get("environment_key")?,
        build_id: get_id(r, "build_id")?,
        deprecated: get_bool(r, "deprecated")?,
        creator: UserRef::from_row(r, "creator_org", "creator_user")?,
        updated_by: UserRef::from_row(r, "updated_by_org", "updated_by_user")?,
        created_at: Timestamp(r.try_get("created_at")?),
        updated_at: Timestamp(r.try_get("updated_at")?),
    })
}
