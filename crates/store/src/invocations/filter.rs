//! The SQL of the filters that listing and search share.

use std::collections::HashMap;

use sqlx::Row;
use toolsmith_domain::{OrgId, ToolId, Version};

use super::{number, InvocationFilter, SourceType, ToolVersions};
use crate::db::{get_id, placeholders};
use crate::tools::Bind;
use crate::{Store, StoreError};

impl Store {
    /// The SQL (` AND …`) for a filter, with its values appended to `binds`; `None` when the
    /// filter can match nothing (no visible source type, or no version matching any specifier).
    pub(super) async fn filter_sql(
        &self,
        org_id: &OrgId,
        filter: &InvocationFilter,
        binds: &mut Vec<Bind>,
    ) -> Result<Option<String>, StoreError> {
        let mut sql = String::new();
        if !filter.tools.is_empty() {
            let mut clauses = Vec::new();
            let mut whole: Vec<&ToolId> = Vec::new();
            let versions = self.tool_version_numbers(org_id, &filter.tools).await?;
            for tool in &filter.tools {
                let Some(spec) = &tool.versions else {
                    whole.push(&tool.tool_id);
                    continue;
                };
                let matching: Vec<&Version> = versions
                    .get(&tool.tool_id)
                    .map(|all| all.iter().filter(|v| spec.matches(v)).collect())
                    .unwrap_or_default();
                if matching.is_empty() {
                    continue;
                }
                binds.push(Bind::Text(tool.tool_id.to_string()));
                let tool_param = binds.len();
                let mut numbers = Vec::new();
                for v in matching {
                    binds.push(Bind::Int(number(v.major)));
                    binds.push(Bind::Int(number(v.minor)));
                    binds.push(Bind::Int(number(v.patch)));
                    let n = binds.len();
                    numbers.push(format!("(i.major = ${} AND i.minor = ${} AND i.patch = ${n})", n - 2, n - 1));
                }
                clauses.push(format!("(i.tool_id = ${tool_param} AND ({}))", numbers.join(" OR ")));
            }
            if !whole.is_empty() {
                clauses.push(format!("i.tool_id IN ({})", placeholders(binds.len() + 1, whole.len())));
                binds.extend(whole.into_iter().map(|t| Bind::Text(t.to_string())));
            }
            if clauses.is_empty() {
                return Ok(None);
            }
            sql.push_str(&format!(" AND ({})", clauses.join(" OR ")));
        }
        if let Some(types) = &filter.source_types {
            let mut distinct: Vec<SourceType> = Vec::new();
            for t in types {
                if !distinct.contains(t) {
                    distinct.push(*t);
                }
            }
            if distinct.is_empty() {
                return Ok(None);
            }
            // Every type allowed is no restriction at all; saying so keeps the default order's
            // index usable.
            if distinct.len() < SourceType::ALL.len() {
                sql.push_str(&format!(" AND i.source_type IN ({})", placeholders(binds.len() + 1, distinct.len())));
                binds.extend(distinct.iter().map(|t| Bind::Text(t.as_str().to_owned())));
            }
        }
        for (column, values) in
            [("i.conversation_id", &filter.conversation_ids), ("i.simulation_run_id", &filter.simulation_run_ids)]
        {
            if !values.is_empty() {
                sql.push_str(&format!(" AND {column} IN ({})", placeholders(binds.len() + 1, values.len())));
                binds.extend(values.iter().cloned().map(Bind::Text));
            }
        }
        if let Some(succeeded) = filter.succeeded {
            binds.push(Bind::Int(i64::from(succeeded)));
            sql.push_str(&format!(" AND i.succeeded = ${}", binds.len()));
        }
        Ok(Some(sql))
    }

    /// The published version numbers of the tools that carry a specifier.
    async fn tool_version_numbers(
        &self,
        org_id: &OrgId,
        tools: &[ToolVersions],
    ) -> Result<HashMap<ToolId, Vec<Version>>, StoreError> {
        let ids: Vec<&str> = tools.iter().filter(|t| t.versions.is_some()).map(|t| t.tool_id.as_str()).collect();
        let mut out: HashMap<ToolId, Vec<Version>> = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let sql = format!(
            "SELECT tool_id, major, minor, patch FROM tool_versions WHERE org_id = $1 AND tool_id IN ({})",
            placeholders(2, ids.len())
        );
        let mut query = sqlx::query(&sql).bind(org_id.as_str());
        for id in ids {
            query = query.bind(id);
        }
        for row in query.fetch_all(&self.db.read).await? {
            let n = |c: &str| -> Result<u64, sqlx::Error> { Ok(row.try_get::<i64, _>(c)?.max(0) as u64) };
            let v = Version { major: n("major")?, minor: n("minor")?, patch: n("patch")? };
            out.entry(get_id(&row, "tool_id")?).or_default().push(v);
        }
        Ok(out)
    }
}
