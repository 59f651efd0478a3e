//! The catalog of an organization's usable tools: every live tool that has a live version, with
//! those versions, read in one statement. It serves listings that show each tool with the version
//! a caller would run (the MCP server's `tools/list`), where reading tools and then each tool's
//! versions would cost a round trip per tool.

use sqlx::Row;
use toolsmith_domain::{OrgId, TagFilter, ToolId};

use crate::db::Dialect;
use crate::tools::{bind_all, tag_clauses, Bind};
use crate::versions::{version_from_row, COLUMNS};
use crate::{Store, StoreError, ToolVersion};

/// Which part of the catalog to read.
#[derive(Debug, Clone, Default)]
pub struct CatalogQuery {
    /// Every filter must match the tool's tags.
    pub tags: Vec<TagFilter>,
    /// Only the tool with this name.
    pub name: Option<String>,
    /// Only tools whose names sort after this one (byte order), for the next page.
    pub after_name: Option<String>,
    /// At most this many tools.
    pub limit: i64,
}

/// A live tool with its live versions.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogEntry {
    /// The tool's id.
    pub tool_id: ToolId,
    /// Its name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// Its live versions, oldest first; never empty.
    pub versions: Vec<ToolVersion>,
}

/// A page of the catalog.
#[derive(Debug, Clone)]
pub struct CatalogPage {
    /// The tools, by name in byte order.
    pub entries: Vec<CatalogEntry>,
    /// Whether tools follow the last one.
    pub has_more: bool,
}

impl Store {
    /// Live tools of an organization that have at least one live version, by name, each with
    /// its live versions: one statement, whatever the page size.
    pub async fn live_catalog(&self, org_id: &OrgId, q: &CatalogQuery) -> Result<CatalogPage, StoreError> {
        // Byte order on both backends, so that a page boundary means the same on each.
        let name = match self.db.dialect {
            Dialect::Postgres => "t.name COLLATE \"C\"",
            Dialect::Sqlite => "t.name",
        };
        let mut binds = vec![Bind::Text(org_id.as_str().to_owned())];
        let mut tools = String::from(
            "SELECT t.org_id, t.id, t.name, t.description FROM tools t WHERE t.org_id = $1 AND t.deprecated = 0 \
             AND EXISTS (SELECT 1 FROM tool_versions w WHERE w.org_id = t.org_id AND w.tool_id = t.id AND w.deprecated = 0)",
        );
        if let Some(only) = &q.name {
            binds.push(Bind::Text(only.clone()));
            tools.push_str(&format!(" AND t.name = ${}", binds.len()));
        }
        if let Some(after) = &q.after_name {
            binds.push(Bind::Text(after.clone()));
            tools.push_str(&format!(" AND {name} > ${}", binds.len()));
        }
        tools.push_str(&tag_clauses(&q.tags, &mut binds));
        binds.push(Bind::Int(q.limit.max(0) + 1));
        tools.push_str(&format!(" ORDER BY {name} LIMIT ${}", binds.len()));
        let version_columns: Vec<String> = COLUMNS.split(',').map(|c| format!("v.{}", c.trim())).collect();
        let sql = format!(
            "SELECT t.name AS catalog_name, t.description AS catalog_description, {} FROM ({tools}) t \
             JOIN tool_versions v ON v.org_id = t.org_id AND v.tool_id = t.id AND v.deprecated = 0 \
             ORDER BY {name}, v.created_at, v.id",
            version_columns.join(", ")
        );
        let rows = bind_all(sqlx::query(&sql), &binds).fetch_all(&self.db.read).await?;
        let mut entries: Vec<CatalogEntry> = Vec::new();
        for row in &rows {
            let version = version_from_row(row)?;
            match entries.last_mut() {
                Some(entry) if entry.tool_id == version.tool_id => entry.versions.push(version),
                _ => entries.push(CatalogEntry {
                    tool_id: version.tool_id.clone(),
                    name: row.try_get("catalog_name")?,
                    description: row.try_get("catalog_description")?,
                    versions: vec![version],
                }),
            }
        }
        let has_more = entries.len() as i64 > q.limit.max(0);
        entries.truncate(q.limit.max(0) as usize);
        Ok(CatalogPage { entries, has_more })
    }
}
