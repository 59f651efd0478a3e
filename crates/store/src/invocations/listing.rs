//! The invocation listing: one page of an organization's invocations under a filter, in the
//! order asked for, continued from a token by keyset pagination.

use sqlx::Row;
use toolsmith_domain::OrgId;

use super::{
    invocation_from_row, InvocationFilter, InvocationPage, InvocationQuery, InvocationSortField, SourceType, COLUMNS,
};
use crate::db::Dialect;
use crate::tools::{bind_all, Bind};
use crate::{Store, StoreError};

/// The sort columns holding text; every other one holds an integer.
const TEXT_COLUMNS: [&str; 2] = ["i.tool_id", "i.source_type"];

impl Store {
    /// One page of an organization's invocations. [`StoreError::NotFound`] when `after` names
    /// no invocation of the organization, unless it names one that retention deleted and the
    /// order is led by `created_at` (the page then starts where that invocation stood).
    pub async fn list_invocations(&self, org_id: &OrgId, q: &InvocationQuery) -> Result<InvocationPage, StoreError> {
        let limit = q.limit.max(0);
        let mut invocations = Vec::new();
        for part in self.list_parts(org_id, q).await? {
            let take = limit + 1 - invocations.len() as i64;
            if take <= 0 {
                break;
            }
            let Some((sql, binds)) = self.list_statement(org_id, &part, take).await? else { continue };
            for row in bind_all(sqlx::query(&sql), &binds).fetch_all(&self.db.read).await? {
                invocations.push(invocation_from_row(&row)?);
            }
        }
        let has_more = invocations.len() as i64 > limit;
        invocations.truncate(limit as usize);
        let next = has_more.then(|| invocations.last().map_or(q.after, |i| i.seq));
        Ok(InvocationPage { invocations, has_more, next })
    }

    /// The listing as consecutive parts, read one after the other until the page is full.
    ///
    /// Usually one part, the query itself. But when the order is led by `tool_id` or the source
    /// type and the filter allows several of its values, neither database can start the walk
    /// of the index at the token: they either read each value's rows from its first, or walk
    /// the rows of the values in between and drop them. Each allowed value in the order's
    /// direction is then a part of its own, filtered to it, which is an index range; the value
    /// the token's row has continues after the token, the following ones from their start.
    pub(super) async fn list_parts(
        &self,
        org_id: &OrgId,
        q: &InvocationQuery,
    ) -> Result<Vec<InvocationQuery>, StoreError> {
        let pinned = pinned_columns(&q.filter);
        let keys: Vec<(&str, bool)> = sort_keys(&q.sort).into_iter().filter(|(c, _)| !pinned.contains(c)).collect();
        let (lead, desc) = keys[0];
        let mut values: Vec<String> = if lead == InvocationSortField::ToolId.column() {
            q.filter.tools.iter().map(|t| t.tool_id.to_string()).collect()
        } else if lead == InvocationSortField::SourceType.column() {
            let types = q.filter.source_types.as_deref().unwrap_or_default();
            if SourceType::ALL.iter().all(|t| types.contains(t)) {
                Vec::new()
            } else {
                types.iter().map(|t| t.as_str().to_owned()).collect()
            }
        } else {
            Vec::new()
        };
        values.sort();
        values.dedup();
        if values.len() < 2 {
            return Ok(vec![q.clone()]);
        }
        if desc {
            values.reverse();
        }
        // Where the token's row stands in the leading key (ids and type names compare alike in
        // Rust and in either database's collation: lowercase letters, digits and dashes).
        let start = if q.after > 0 {
            match self.anchor(org_id, q.after, &[(lead, desc)]).await?.ok_or(StoreError::NotFound)?.pop() {
                Some(Bind::Text(value)) => Some(value),
                _ => None,
            }
        } else {
            None
        };
        let mut parts = Vec::new();
        for value in values {
            let after = match &start {
                Some(start) if (value < *start && !desc) || (value > *start && desc) => continue,
                Some(start) if value == *start => q.after,
                _ => 0,
            };
            let mut filter = q.filter.clone();
            if lead == InvocationSortField::ToolId.column() {
                filter.tools.retain(|t| t.tool_id.as_str() == value);
            } else {
                filter.source_types = SourceType::parse(&value).map(|t| vec![t]);
            }
            parts.push(InvocationQuery { filter, sort: q.sort.clone(), limit: q.limit, after });
        }
        Ok(parts)
    }

    /// The statement reading up to `take` rows of a listing, with its values; `None` when the
    /// filter matches nothing. [`StoreError::NotFound`] when the token names no position of the
    /// organization.
    pub(super) async fn list_statement(
        &self,
        org_id: &OrgId,
        q: &InvocationQuery,
        take: i64,
    ) -> Result<Option<(String, Vec<Bind>)>, StoreError> {
        let mut binds = vec![Bind::Text(org_id.to_string())];
        let Some(filter_sql) = self.filter_sql(org_id, &q.filter, &mut binds).await? else {
            return Ok(None);
        };
        let pinned = pinned_columns(&q.filter);
        let keys: Vec<(&str, bool)> = sort_keys(&q.sort).into_iter().filter(|(c, _)| !pinned.contains(c)).collect();
        let hint = self.index_hint(&q.filter);
        let mut sql = format!("SELECT {COLUMNS} FROM invocations i{hint} WHERE i.org_id = $1{filter_sql}");
        if q.after > 0 {
            let anchor = self.anchor(org_id, q.after, &keys).await?.ok_or(StoreError::NotFound)?;
            sql.push_str(" AND ");
            sql.push_str(&keyset_predicate(&keys, anchor, &mut binds));
        }
        let order: Vec<String> =
            keys.iter().map(|(col, desc)| format!("{col} {}", if *desc { "DESC" } else { "ASC" })).collect();
        binds.push(Bind::Int(take));
        sql.push_str(&format!(" ORDER BY {} LIMIT ${}", order.join(", "), binds.len()));
        Ok(Some((sql, binds)))
    }

    /// SQLite only: the index a listing filtered by conversation or simulation run must use.
    /// Such a filter leaves a few rows, which are sorted; but SQLite (without statistics, as it
    /// runs) prefers walking a sort field's index, which then reads every row of the
    /// organization to find them. PostgreSQL's statistics see it for itself.
    fn index_hint(&self, filter: &InvocationFilter) -> &'static str {
        match self.db.dialect {
            Dialect::Postgres => "",
            Dialect::Sqlite if !filter.conversation_ids.is_empty() => " INDEXED BY invocations_conversation",
            Dialect::Sqlite if !filter.simulation_run_ids.is_empty() => " INDEXED BY invocations_simulation",
            Dialect::Sqlite => "",
        }
    }

    /// The sort-key values of the row a continuation token names; `None` when it names no
    /// position of the organization.
    ///
    /// A record that retention deleted (its number is at most the highest deleted in the
    /// organization) keeps its place in orders led by `created_at`: it was older than every
    /// record kept, so it stands in as a record older than all, before every row in ascending
    /// order and after every row in descending order. In other orders its place depended on
    /// values that are gone, and the token names nothing.
    async fn anchor(&self, org_id: &OrgId, seq: i64, keys: &[(&str, bool)]) -> Result<Option<Vec<Bind>>, StoreError> {
        let columns: Vec<&str> = keys.iter().map(|(c, _)| *c).collect();
        let sql = format!("SELECT {} FROM invocations i WHERE i.seq = $1 AND i.org_id = $2", columns.join(", "));
        let Some(row) = sqlx::query(&sql).bind(seq).bind(org_id.as_str()).fetch_optional(&self.db.read).await? else {
            if keys.first().is_some_and(|(c, _)| *c == InvocationSortField::CreatedAt.column())
                && self.deleted_through(org_id).await? >= seq
            {
                let before_all = keys.iter().map(|(column, _)| match *column {
                    "i.seq" => Bind::Int(seq),
                    c if TEXT_COLUMNS.contains(&c) => Bind::Text(String::new()),
                    c if c == InvocationSortField::CreatedAt.column() => Bind::Int(i64::MIN),
                    _ => Bind::Int(0),
                });
                return Ok(Some(before_all.collect()));
            }
            return Ok(None);
        };
        let mut values = Vec::with_capacity(keys.len());
        for (i, (column, _)) in keys.iter().enumerate() {
            let text = TEXT_COLUMNS.contains(column);
            values.push(if text { Bind::Text(row.try_get(i)?) } else { Bind::Int(row.try_get(i)?) });
        }
        Ok(Some(values))
    }
}

/// The complete order: the requested keys, then `created_at` unless requested, then `seq`, the
/// last two in the direction of the last requested key. Keeping one direction throughout makes
/// `-k` exactly `+k` reversed, and lets the indexes that end in `(created_at, seq)` serve a sort
/// by `tool_id` or source type either way.
fn sort_keys(sort: &[(InvocationSortField, bool)]) -> Vec<(&'static str, bool)> {
    let mut keys: Vec<(&'static str, bool)> = Vec::new();
    for (field, desc) in sort {
        if !keys.iter().any(|(c, _)| *c == field.column()) {
            keys.push((field.column(), *desc));
        }
    }
    let trailing = keys.last().is_some_and(|(_, desc)| *desc);
    let created = InvocationSortField::CreatedAt.column();
    if !keys.iter().any(|(c, _)| *c == created) {
        keys.push((created, trailing));
    }
    keys.push(("i.seq", trailing));
    keys
}

/// The sort columns a filter holds to one value. Leaving them out of the order changes nothing
/// about it, and lets the databases see that a page of one tool sorted by `tool_id` (or of
/// failures sorted by `succeeded`) starts at a point of the filter's index rather than at its
/// first row.
fn pinned_columns(filter: &InvocationFilter) -> Vec<&'static str> {
    let mut pinned = Vec::new();
    if filter.tools.first().is_some_and(|first| filter.tools.iter().all(|t| t.tool_id == first.tool_id)) {
        pinned.push(InvocationSortField::ToolId.column());
    }
    if let Some(types) = &filter.source_types {
        if !types.is_empty() && types.iter().all(|t| *t == types[0]) {
            pinned.push(InvocationSortField::SourceType.column());
        }
    }
    if filter.succeeded.is_some() {
        pinned.push(InvocationSortField::Succeeded.column());
    }
    pinned
}

/// "Strictly after the anchor in this order". With one direction throughout this is a row
/// comparison, which both databases turn into an index range. With mixed directions it is the
/// nested form `k1 > v1 OR (k1 = v1 AND (k2 < v2 OR …))`, led by a bound on the first key so that
/// an index on it still gives a range to start from.
fn keyset_predicate(keys: &[(&str, bool)], anchor: Vec<Bind>, binds: &mut Vec<Bind>) -> String {
    let mut params = Vec::with_capacity(keys.len());
    for value in anchor {
        binds.push(value);
        params.push(format!("${}", binds.len()));
    }
    let uniform = keys.iter().all(|(_, d)| *d == keys[0].1);
    if uniform {
        let op = if keys[0].1 { "<" } else { ">" };
        let columns: Vec<&str> = keys.iter().map(|(c, _)| *c).collect();
        return format!("({}) {op} ({})", columns.join(", "), params.join(", "));
    }
    let mut nested = String::new();
    for (i, (column, desc)) in keys.iter().enumerate().rev() {
        let op = if *desc { "<" } else { ">" };
        nested = if nested.is_empty() {
            format!("{column} {op} {}", params[i])
        } else {
            format!("({column} {op} {p} OR ({column} = {p} AND {nested}))", p = params[i])
        };
    }
    let (first, first_desc) = keys[0];
    format!("{first} {} {} AND {nested}", if first_desc { "<=" } else { ">=" }, params[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_end_in_created_at_and_seq() {
        use InvocationSortField::*;
        assert_eq!(sort_keys(&[]), [("i.created_at", false), ("i.seq", false)]);
        assert_eq!(sort_keys(&[(CreatedAt, true)]), [("i.created_at", true), ("i.seq", true)]);
        assert_eq!(
            sort_keys(&[(ToolId, true), (ToolId, false)]),
            [("i.tool_id", true), ("i.created_at", true), ("i.seq", true)]
        );
        assert_eq!(
            sort_keys(&[(CreatedAt, true), (Major, false)]),
            [("i.created_at", true), ("i.major", false), ("i.seq", false)]
        );
    }

    #[test]
    fn keyset_predicates() {
        let mut binds = vec![Bind::Text("acme".into())];
        let uniform = keyset_predicate(&[("a", false), ("b", false)], vec![Bind::Int(1), Bind::Int(2)], &mut binds);
        assert_eq!(uniform, "(a, b) > ($2, $3)");
        let mixed = keyset_predicate(
            &[("a", true), ("b", false), ("c", true)],
            vec![Bind::Int(1), Bind::Int(2), Bind::Int(3)],
            &mut binds,
        );
        assert_eq!(mixed, "a <= $4 AND (a < $4 OR (a = $4 AND (b > $5 OR (b = $5 AND c < $6))))");
        assert_eq!(binds.len(), 6);
    }
}
