//! Tools: create, list, modify, deprecate.

use std::collections::HashMap;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Row};
use toolsmith_domain::time::Timestamp;
use toolsmith_domain::{OrgId, Tag, TagFilter, ToolId, ToolName, UserId};

use crate::db::{get_bool, get_id, placeholders, Dialect};
use crate::{Store, StoreError};

/// A user as recorded on a tool: the organization they belong to and their id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserRef {
    /// The user's organization.
    pub org_id: OrgId,
    /// The user's id.
    pub user_id: UserId,
}

impl UserRef {
    /// Reads a user recorded in two columns of a row: their organization's and their own id.
    pub(crate) fn from_row(row: &AnyRow, org_column: &str, user_column: &str) -> Result<UserRef, StoreError> {
        Ok(UserRef { org_id: get_id(row, org_column)?, user_id: get_id(row, user_column)? })
    }
}

/// A tool as stored, with the names of its live environment variables.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    /// The tool's id.
    pub id: ToolId,
    /// The organization owning it.
    pub org_id: OrgId,
    /// Its name, unique among the organization's live tools.
    pub name: String,
    /// What the tool does, shown to the LLM.
    pub description: String,
    /// Deprecated tools cannot be used and free their name.
    pub deprecated: bool,
    /// Tags in the order they were given.
    pub tags: Vec<Tag>,
    /// Names of the ordinary environment variables, sorted.
    pub envvars: Vec<String>,
    /// Names of the secret environment variables, sorted.
    pub secret_envvars: Vec<String>,
    /// Who created it.
    pub creator: UserRef,
    /// Who changed it last.
    pub updated_by: UserRef,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was changed last.
    pub updated_at: Timestamp,
}

/// What creating a tool needs.
#[derive(Debug, Clone)]
pub struct NewTool {
    /// The owning organization.
    pub org_id: OrgId,
    /// The validated name.
    pub name: ToolName,
    /// The description.
    pub description: String,
    /// The tags.
    pub tags: Vec<Tag>,
    /// The creating user.
    pub creator: UserRef,
}

/// A field the tool listing can sort by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortField {
    /// The tool's name.
    Name,
    /// Whether it is deprecated.
    Deprecated,
}

/// A page request of the tool listing.
#[derive(Debug, Clone, Default)]
pub struct ToolQuery {
    /// Only these ids, when not empty.
    pub ids: Vec<ToolId>,
    /// Only deprecated (true) or live (false) tools, when set.
    pub deprecated: Option<bool>,
    /// Every filter must match.
    pub tags: Vec<TagFilter>,
    /// Sort keys with `true` for descending; creation order breaks remaining ties.
    pub sort: Vec<(SortField, bool)>,
    /// Page size.
    pub limit: i64,
    /// Rows to skip.
    pub offset: i64,
}

/// One page of tools.
#[derive(Debug, Clone)]
pub struct ToolPage {
    /// The tools of this page.
    pub tools: Vec<Tool>,
    /// Whether more tools follow.
    pub has_more: bool,
}

const TOOL_COLUMNS: &str = "id, org_id, name, description, deprecated, tags_json, creator_org, creator_user, \
                            updated_by_org, updated_by_user, created_at, updated_at";

impl Store {
    /// Creates a tool; [`StoreError::AlreadyExists`] if a live tool has the same name, decided
    /// by the database's unique index so that concurrent creates cannot both succeed.
    pub async fn create_tool(&self, new: NewTool) -> Result<Tool, StoreError> {
        let id = ToolId::generate();
        let now = Timestamp::now();
        let tags_json = tags_to_json(&new.tags);
        let mut tx = self.db.write.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO tools (org_id, id, name, description, deprecated, tags_json, creator_org, creator_user, \
             updated_by_org, updated_by_user, created_at, updated_at) VALUES ($1, $2, $3, $4, 0, $5, $6, $7, $6, $7, $8, $8)",
        )
        .bind(new.org_id.as_str())
        .bind(id.as_str())
        .bind(new.name.as_str())
        .bind(&new.description)
        .bind(&tags_json)
        .bind(new.creator.org_id.as_str())
        .bind(new.creator.user_id.as_str())
        .bind(now.0)
        .execute(&mut *tx)
        .await;
        if let Err(err) = inserted {
            return Err(if StoreError::is_unique_violation(&err) { StoreError::AlreadyExists } else { err.into() });
        }
        insert_tags(&mut tx, &new.org_id, &id, &new.tags).await?;
        tx.commit().await?;
        Ok(Tool {
            id,
            org_id: new.org_id,
            name: new.name.as_str().to_owned(),
            description: new.description,
            deprecated: false,
            tags: new.tags,
            envvars: Vec::new(),
            secret_envvars: Vec::new(),
            creator: new.creator.clone(),
            updated_by: new.creator,
            created_at: now,
            updated_at: now,
        })
    }

    /// Looks up a tool of an organization.
    pub async fn get_tool(&self, org_id: &OrgId, tool_id: &ToolId) -> Result<Option<Tool>, StoreError> {
        let sql = format!("SELECT {TOOL_COLUMNS} FROM tools WHERE org_id = $1 AND id = $2");
        let row = sqlx::query(&sql).bind(org_id.as_str()).bind(tool_id.as_str()).fetch_optional(&self.db.read).await?;
        let Some(row) = row else { return Ok(None) };
        let mut tools = vec![tool_from_row(&row)?];
        self.attach_envvar_names(org_id, &mut tools).await?;
        Ok(tools.pop())
    }

    /// One page of an organization's tools.
    pub async fn list_tools(&self, org_id: &OrgId, q: &ToolQuery) -> Result<ToolPage, StoreError> {
        let mut sql = format!("SELECT {TOOL_COLUMNS} FROM tools t WHERE t.org_id = $1");
        let mut binds: Vec<Bind> = vec![Bind::Text(org_id.to_string())];
        if !q.ids.is_empty() {
            sql.push_str(&format!(" AND t.id IN ({})", placeholders(binds.len() + 1, q.ids.len())));
            binds.extend(q.ids.iter().map(|id| Bind::Text(id.to_string())));
        }
        if let Some(deprecated) = q.deprecated {
            binds.push(Bind::Int(i64::from(deprecated)));
            sql.push_str(&format!(" AND t.deprecated = ${}", binds.len()));
        }
        sql.push_str(&tag_clauses(&q.tags, &mut binds));
        let mut order: Vec<String> = q
            .sort
            .iter()
            .map(|(field, desc)| {
                let column = match (field, self.db.dialect) {
                    // Byte order on both backends, so pages do not depend on the server's locale.
                    (SortField::Name, Dialect::Postgres) => "t.name COLLATE \"C\"",
                    (SortField::Name, Dialect::Sqlite) => "t.name",
                    (SortField::Deprecated, _) => "t.deprecated",
                };
                format!("{column} {}", if *desc { "DESC" } else { "ASC" })
            })
            .collect();
        order.push("t.created_at ASC".into());
        order.push("t.id ASC".into());
        binds.push(Bind::Int(q.limit + 1));
        binds.push(Bind::Int(q.offset));
        sql.push_str(&format!(" ORDER BY {} LIMIT ${} OFFSET ${}", order.join(", "), binds.len() - 1, binds.len()));

        let rows = bind_all(sqlx::query(&sql), &binds).fetch_all(&self.db.read).await?;
        let mut tools = rows.iter().map(tool_from_row).collect::<Result<Vec<_>, _>>()?;
        let has_more = tools.len() as i64 > q.limit;
        tools.truncate(q.limit.max(0) as usize);
        self.attach_envvar_names(org_id, &mut tools).await?;
        Ok(ToolPage { tools, has_more })
    }

    /// The distinct tag keys used by an organization's tools, sorted.
    pub async fn tag_keys(&self, org_id: &OrgId) -> Result<Vec<String>, StoreError> {
        let sql = match self.db.dialect {
            Dialect::Postgres => "SELECT DISTINCT key COLLATE \"C\" AS key FROM tool_tags WHERE org_id = $1 ORDER BY 1",
            Dialect::Sqlite => "SELECT DISTINCT key FROM tool_tags WHERE org_id = $1 ORDER BY 1",
        };
        let rows = sqlx::query(sql).bind(org_id.as_str()).fetch_all(&self.db.read).await?;
        Ok(rows.iter().map(|r| r.try_get("key")).collect::<Result<_, _>>()?)
    }

    /// Changes a tool's description and/or replaces its tags; [`StoreError::NotFound`] if the
    /// organization has no such tool.
    pub async fn modify_tool(
        &self,
        org_id: &OrgId,
        tool_id: &ToolId,
        description: Option<&str>,
        tags: Option<&[Tag]>,
        by: &UserRef,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.write.begin().await?;
        let done = sqlx::query(
            "UPDATE tools SET description = COALESCE($3, description), tags_json = COALESCE($4, tags_json), \
             updated_by_org = $5, updated_by_user = $6, updated_at = $7 WHERE org_id = $1 AND id = $2",
        )
        .bind(org_id.as_str())
        .bind(tool_id.as_str())
        .bind(description)
        .bind(tags.map(tags_to_json))
        .bind(by.org_id.as_str())
        .bind(by.user_id.as_str())
        .bind(Timestamp::now().0)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        if let Some(tags) = tags {
            sqlx::query("DELETE FROM tool_tags WHERE org_id = $1 AND tool_id = $2")
                .bind(org_id.as_str())
                .bind(tool_id.as_str())
                .execute(&mut *tx)
                .await?;
            insert_tags(&mut tx, org_id, tool_id, tags).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deprecates a tool, freeing its name; deprecating it again changes nothing.
    /// [`StoreError::NotFound`] if the organization has no such tool.
    pub async fn deprecate_tool(&self, org_id: &OrgId, tool_id: &ToolId, by: &UserRef) -> Result<(), StoreError> {
        let mut tx = self.db.write.begin().await?;
        let exists = sqlx::query("SELECT deprecated FROM tools WHERE org_id = $1 AND id = $2")
            .bind(org_id.as_str())
            .bind(tool_id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = exists else { return Err(StoreError::NotFound) };
        if !get_bool(&row, "deprecated")? {
            sqlx::query(
                "UPDATE tools SET deprecated = 1, updated_by_org = $3, updated_by_user = $4, updated_at = $5 \
                 WHERE org_id = $1 AND id = $2",
            )
            .bind(org_id.as_str())
            .bind(tool_id.as_str())
            .bind(by.org_id.as_str())
            .bind(by.user_id.as_str())
            .bind(Timestamp::now().0)
            .execute(&mut *tx)
            .await?;
        }
        // Deprecating a tool deprecates every version of it.
        sqlx::query(
            "UPDATE tool_versions SET deprecated = 1, updated_by_org = $3, updated_by_user = $4, updated_at = $5 \
             WHERE org_id = $1 AND tool_id = $2 AND deprecated = 0",
        )
        .bind(org_id.as_str())
        .bind(tool_id.as_str())
        .bind(by.org_id.as_str())
        .bind(by.user_id.as_str())
        .bind(Timestamp::now().0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn attach_envvar_names(&self, org_id: &OrgId, tools: &mut [Tool]) -> Result<(), StoreError> {
        if tools.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "SELECT tool_id, name, is_secret FROM envvars WHERE org_id = $1 AND deleted_at IS NULL AND tool_id IN ({}) ORDER BY name",
            placeholders(2, tools.len())
        );
        let mut query = sqlx::query(&sql).bind(org_id.as_str());
        for tool in tools.iter() {
            query = query.bind(tool.id.as_str());
        }
        let rows = query.fetch_all(&self.db.read).await?;
        let index: HashMap<ToolId, usize> = tools.iter().enumerate().map(|(i, t)| (t.id.clone(), i)).collect();
        for row in rows {
            let tool_id: ToolId = get_id(&row, "tool_id")?;
            let name: String = row.try_get("name")?;
            if let Some(&i) = index.get(&tool_id) {
                if get_bool(&row, "is_secret")? {
                    tools[i].secret_envvars.push(name);
                } else {
                    tools[i].envvars.push(name);
                }
            }
        }
        Ok(())
    }
}

/// The conditions that every tag filter matches, for a query whose tools table is `t`, with their
/// values appended to `binds`.
pub(crate) fn tag_clauses(filters: &[TagFilter], binds: &mut Vec<Bind>) -> String {
    let mut sql = String::new();
    for filter in filters {
        binds.push(Bind::Text(filter.key().to_owned()));
        let key_param = binds.len();
        let value_clause = match filter {
            TagFilter::Equals(_, value) => {
                binds.push(Bind::Text(value.clone()));
                format!(" AND g.value = ${}", binds.len())
            }
            TagFilter::Present(_) => String::new(),
            TagFilter::Null(_) => " AND g.value IS NULL".to_owned(),
        };
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM tool_tags g WHERE g.org_id = t.org_id AND g.tool_id = t.id AND g.key = ${key_param}{value_clause})"
        ));
    }
    sql
}

/// A value to bind to a dynamically built query.
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    Text(String),
    Int(i64),
}

pub(crate) fn bind_all<'q>(
    mut query: Query<'q, Any, AnyArguments<'q>>,
    binds: &'q [Bind],
) -> Query<'q, Any, AnyArguments<'q>> {
    for b in binds {
        query = match b {
            Bind::Text(s) => query.bind(s.as_str()),
            Bind::Int(i) => query.bind(*i),
        };
    }
    query
}

async fn insert_tags(
    tx: &mut sqlx::Transaction<'_, Any>,
    org_id: &OrgId,
    tool_id: &ToolId,
    tags: &[Tag],
) -> Result<(), StoreError> {
    for tag in tags {
        sqlx::query("INSERT INTO tool_tags (org_id, tool_id, key, value) VALUES ($1, $2, $3, $4)")
            .bind(org_id.as_str())
            .bind(tool_id.as_str())
            .bind(&tag.key)
            .bind(tag.value.as_deref())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

fn tags_to_json(tags: &[Tag]) -> String {
    let pairs: Vec<(&str, Option<&str>)> = tags.iter().map(|t| (t.key.as_str(), t.value.as_deref())).collect();
    serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".into())
}

fn tool_from_row(r: &AnyRow) -> Result<Tool, StoreError> {
    let tags_json: String = r.try_get("tags_json")?;
    let pairs: Vec<(String, Option<String>)> =
        serde_json::from_str(&tags_json).map_err(|e| StoreError::Corrupt(format!("tool tags: {e}")))?;
    Ok(Tool {
        id: get_id(r, "id")?,
        org_id: get_id(r, "org_id")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        deprecated: get_bool(r, "deprecated")?,
        tags: pairs.into_iter().map(|(key, value)| Tag { key, value }).collect(),
        envvars: Vec::new(),
        secret_envvars: Vec::new(),
        creator: UserRef::from_row(r, "creator_org", "creator_user")?,
        updated_by: UserRef::from_row(r, "updated_by_org", "updated_by_user")?,
        created_at: Timestamp(r.try_get("created_at")?),
        updated_at: Timestamp(r.try_get("updated_at")?),
    })
}
