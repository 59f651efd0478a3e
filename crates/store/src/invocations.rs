//! Invocation records: written durably in group commits, listed with filters and keyset
//! pagination, and searched through a full-text index (FTS5 on SQLite, a weighted `tsvector`
//! on PostgreSQL).
//!
//! Every sort ends in `seq`, the order rows were recorded in, which makes every order total. A
//! continuation token is the `seq` of the last row of a page: the next page starts after that
//! row's sort key, wherever the row sits, so reading page 10,000 costs what page 1 does. Every
//! sort field has an index in the order the listing reads it (the field, `created_at`, `seq`),
//! and another behind `tool_id` for the listing of one tool, so a page is an index walk whatever
//! its depth.
//!
//! Records older than a retention are deleted in small batches ([`Store::delete_invocations_before`]);
//! a token naming a deleted record still continues where the record stood when the order is led
//! by `created_at`.

#[cfg(test)]
mod plans;
mod text;
mod writer;

use std::collections::HashMap;

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row;
use toolsmith_domain::time::Timestamp;
use toolsmith_domain::{InvocationId, InvocationSource, OrgId, Specifier, ToolId, Version};

use crate::db::{get_bool, get_id, get_optional_id, placeholders, Dialect};
use crate::tools::{bind_all, Bind, UserRef};
use crate::{Store, StoreError};

/// Where an invocation came from; reading each kind takes its own permission.
pub use toolsmith_domain::SourceType;
pub(crate) use writer::Recorder;

/// One invocation to record.
#[derive(Debug, Clone)]
pub struct NewInvocation {
    /// A fresh id, chosen by the caller so it can answer before the record is written.
    pub id: InvocationId,
    /// The organization.
    pub org_id: OrgId,
    /// The invoked tool.
    pub tool_id: ToolId,
    /// The invoked version.
    pub version: Version,
    /// Whether the tool returned (rather than raised).
    pub succeeded: bool,
    /// The output, when it succeeded.
    pub output: Option<String>,
    /// The exception's type, when it failed.
    pub exception_type: Option<String>,
    /// The exception's message, when it failed.
    pub exception_message: Option<String>,
    /// The stack trace lines, when it failed.
    pub exception_stack_trace: Vec<String>,
    /// How long the run took.
    pub duration_ms: i64,
    /// The `input_parameters` object.
    pub inputs: Value,
    /// Where the call came from; its type, conversation and simulation run are also kept as
    /// columns to filter on.
    pub source: InvocationSource,
    /// Who called: the authenticated user, whatever source they attached.
    pub caller: UserRef,
    /// What the tool printed, secrets already masked.
    pub logs: String,
    /// When it was invoked.
    pub created_at: Timestamp,
}

/// A recorded invocation, without its logs (see [`Store::invocation_logs`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// Its position in recording order; what continuation tokens name.
    pub seq: i64,
    /// Its id.
    pub id: InvocationId,
    /// The organization.
    pub org_id: OrgId,
    /// The invoked tool.
    pub tool_id: ToolId,
    /// The invoked version.
    pub version: Version,
    /// Whether the tool returned.
    pub succeeded: bool,
    /// The output, when it succeeded.
    pub output: Option<String>,
    /// The exception's type, when it failed.
    pub exception_type: Option<String>,
    /// The exception's message, when it failed.
    pub exception_message: Option<String>,
    /// The stack trace lines.
    pub exception_stack_trace: Vec<String>,
    /// How long the run took.
    pub duration_ms: i64,
    /// The input parameters.
    pub inputs: Value,
    /// Where the call came from.
    pub source: InvocationSource,
    /// Who called; `None` for records made before callers were recorded (other than direct
    /// calls, whose source names the caller).
    pub caller: Option<UserRef>,
    /// When it was invoked.
    pub created_at: Timestamp,
    /// When the record last changed (records do not change, so the same).
    pub updated_at: Timestamp,
}

/// The logs of one invocation, with what deciding who may read them needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationLogs {
    /// The invocation's id.
    pub id: InvocationId,
    /// The invoked tool.
    pub tool_id: ToolId,
    /// The kind of its source; `None` for a kind this server does not know (recorded by a newer
    /// one sharing the database), which nobody may read here.
    pub source_type: Option<SourceType>,
    /// What the tool printed.
    pub logs: String,
}

/// Invocations of one tool, optionally only of the versions a specifier selects.
#[derive(Debug, Clone)]
pub struct ToolVersions {
    /// The tool.
    pub tool_id: ToolId,
    /// Only versions matching this, when set.
    pub versions: Option<Specifier>,
}

/// Filters shared by listing and search; every non-empty filter must match.
#[derive(Debug, Clone, Default)]
pub struct InvocationFilter {
    /// Only invocations of these tools (and versions), when not empty.
    pub tools: Vec<ToolVersions>,
    /// Only these source types; `None` for any. Callers pass what the user asked for
    /// intersected with what the user may read, so an empty list matches nothing.
    pub source_types: Option<Vec<SourceType>>,
    /// Only these conversations, when not empty.
    pub conversation_ids: Vec<String>,
    /// Only these simulation unit test set runs, when not empty.
    pub simulation_run_ids: Vec<String>,
    /// Only succeeded (true) or failed (false) invocations, when set.
    pub succeeded: Option<bool>,
}

/// A field the listing can sort by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvocationSortField {
    /// `created_at`.
    CreatedAt,
    /// `version.major`.
    Major,
    /// `version.minor`.
    Minor,
    /// `version.patch`.
    Patch,
    /// `tool_id`.
    ToolId,
    /// `invocation_source.type`.
    SourceType,
    /// `invocation_status.succeeded`.
    Succeeded,
}

impl InvocationSortField {
    fn column(self) -> &'static str {
        match self {
            InvocationSortField::CreatedAt => "i.created_at",
            InvocationSortField::Major => "i.major",
            InvocationSortField::Minor => "i.minor",
            InvocationSortField::Patch => "i.patch",
            InvocationSortField::ToolId => "i.tool_id",
            InvocationSortField::SourceType => "i.source_type",
            InvocationSortField::Succeeded => "i.succeeded",
        }
    }
}

/// The sort columns holding text; every other one holds an integer.
const TEXT_COLUMNS: [&str; 2] = ["i.tool_id", "i.source_type"];

/// A page request of the invocation listing.
#[derive(Debug, Clone)]
pub struct InvocationQuery {
    /// Which invocations.
    pub filter: InvocationFilter,
    /// Sort keys with `true` for descending. Unless `created_at` is among them it follows them;
    /// recording order (`seq`) breaks the remaining ties. Both take the direction of the last
    /// key given (ascending when none is), so `-k` is exactly `+k` reversed.
    pub sort: Vec<(InvocationSortField, bool)>,
    /// Page size (0 answers only whether rows exist after `after`).
    pub limit: i64,
    /// The continuation token: the `seq` of the last row already seen, 0 to start.
    pub after: i64,
}

/// One page of invocations.
#[derive(Debug, Clone)]
pub struct InvocationPage {
    /// The rows of this page.
    pub invocations: Vec<Invocation>,
    /// Whether more rows follow.
    pub has_more: bool,
    /// The token of the next page when more rows follow.
    pub next: Option<i64>,
}

/// A field search can look in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SearchField {
    /// `invocation_status.output`.
    Output,
    /// `invocation_status.exception_message`.
    ExceptionMessage,
    /// `invocation_status.exception_type`.
    ExceptionType,
    /// `invocation_status.exception_stack_trace`.
    ExceptionStackTrace,
}

impl SearchField {
    /// Every searchable field.
    pub const ALL: [SearchField; 4] = [
        SearchField::Output,
        SearchField::ExceptionMessage,
        SearchField::ExceptionType,
        SearchField::ExceptionStackTrace,
    ];

    fn fts_column(self) -> &'static str {
        match self {
            SearchField::Output => "output",
            SearchField::ExceptionMessage => "exception_message",
            SearchField::ExceptionType => "exception_type",
            SearchField::ExceptionStackTrace => "exception_stack_trace",
        }
    }

    fn weight(self) -> char {
        match self {
            SearchField::Output => 'A',
            SearchField::ExceptionMessage => 'B',
            SearchField::ExceptionType => 'C',
            SearchField::ExceptionStackTrace => 'D',
        }
    }
}

/// A full-text search of invocations.
#[derive(Debug, Clone)]
pub struct InvocationSearch {
    /// The user's words. Every word must occur (as a whole word, case-insensitively; `word*`
    /// for any word starting with it) in one of `fields`; punctuation is ignored.
    pub query: String,
    /// Where to look; all fields when empty.
    pub fields: Vec<SearchField>,
    /// Which invocations.
    pub filter: InvocationFilter,
    /// How many hits, newest recorded first.
    pub limit: i64,
}

/// A row ready for the writer: JSON serialized, filter columns and index words extracted.
#[derive(Debug)]
pub(crate) struct Prepared {
    org_id: OrgId,
    id: InvocationId,
    tool_id: ToolId,
    major: i64,
    minor: i64,
    patch: i64,
    succeeded: bool,
    output: Option<String>,
    exception_type: Option<String>,
    exception_message: Option<String>,
    stack_trace_json: String,
    duration_ms: i64,
    inputs_json: String,
    source_json: String,
    source_type: &'static str,
    conversation_id: Option<String>,
    simulation_run_id: Option<String>,
    caller: UserRef,
    created_at: i64,
    logs: String,
    /// SQLite: the distinct words of output, message, type and trace, space separated.
    search_text: [String; 4],
    /// PostgreSQL: the weighted `tsvector` literal.
    tsvector: String,
}

/// PostgreSQL text cannot hold NUL; it is replaced on both backends so that they store the same.
fn clean(s: &str) -> String {
    s.replace('\0', "\u{fffd}")
}

fn number(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Prepared {
    fn new(row: NewInvocation, dialect: Dialect) -> Prepared {
        let output = row.output.as_deref().map(clean);
        let exception_type = row.exception_type.as_deref().map(clean);
        let exception_message = row.exception_message.as_deref().map(clean);
        let trace: Vec<String> = row.exception_stack_trace.iter().map(|l| clean(l)).collect();
        let words = [
            text::distinct_words(output.as_deref().unwrap_or_default()),
            text::distinct_words(exception_message.as_deref().unwrap_or_default()),
            text::distinct_words(exception_type.as_deref().unwrap_or_default()),
            text::distinct_words(&trace.join("\n")),
        ];
        let (search_text, tsvector) = match dialect {
            Dialect::Sqlite => (words.map(|w| w.join(" ")), String::new()),
            Dialect::Postgres => {
                let weighted: Vec<(&[String], char)> =
                    words.iter().zip(SearchField::ALL).map(|(w, f)| (w.as_slice(), f.weight())).collect();
                (Default::default(), text::tsvector(&weighted))
            }
        };
        // JSON escapes a NUL inside the source, but the filter columns hold plain text.
        Prepared {
            source_type: row.source.source_type().as_str(),
            conversation_id: row.source.conversation_id().map(clean),
            simulation_run_id: row.source.simulation_run_id().map(clean),
            source_json: serde_json::to_string(&row.source).unwrap_or_else(|_| "{}".into()),
            caller: row.caller,
            org_id: row.org_id,
            id: row.id,
            tool_id: row.tool_id,
            major: number(row.version.major),
            minor: number(row.version.minor),
            patch: number(row.version.patch),
            succeeded: row.succeeded,
            output,
            exception_type,
            exception_message,
            stack_trace_json: serde_json::to_string(&trace).unwrap_or_else(|_| "[]".into()),
            duration_ms: row.duration_ms,
            inputs_json: row.inputs.to_string(),
            created_at: row.created_at.0,
            logs: clean(&row.logs),
            search_text,
            tsvector,
        }
    }
}

/// How many of the newest rows a PostgreSQL search tests before choosing how to go on.
const PROBE_ROWS: i64 = 1_000;
/// The most rows a PostgreSQL search walks after the probe; beyond, the index is cheaper.
const MAX_WALK_ROWS: i64 = 50_000;

const COLUMNS: &str = "i.seq, i.org_id, i.id, i.tool_id, i.major, i.minor, i.patch, i.succeeded, i.output, \
    i.exception_type, i.exception_message, i.exception_stack_trace, i.duration_ms, i.inputs, i.source, \
    i.caller_org_id, i.caller_user_id, i.created_at, i.updated_at";

impl Store {
    /// Records invocations; when this returns `Ok` they are committed and on disk. Concurrent
    /// calls share transactions (see the writer), so many callers cost few commits. An id that
    /// is already recorded in the organization is skipped, which makes retries harmless.
    pub async fn record_invocations(&self, rows: Vec<NewInvocation>) -> Result<(), StoreError> {
        let dialect = self.db.dialect;
        let prepared = rows.into_iter().map(|row| Prepared::new(row, dialect)).collect();
        self.recorder.record(prepared).await
    }

    /// One invocation of an organization.
    pub async fn get_invocation(&self, org_id: &OrgId, id: &InvocationId) -> Result<Option<Invocation>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM invocations i WHERE i.org_id = $1 AND i.id = $2");
        let row = sqlx::query(&sql).bind(org_id.as_str()).bind(id.as_str()).fetch_optional(&self.db.read).await?;
        row.as_ref().map(invocation_from_row).transpose()
    }

    /// The logs of one invocation of an organization.
    pub async fn invocation_logs(
        &self,
        org_id: &OrgId,
        id: &InvocationId,
    ) -> Result<Option<InvocationLogs>, StoreError> {
        let row = sqlx::query("SELECT id, tool_id, source_type, logs FROM invocations WHERE org_id = $1 AND id = $2")
            .bind(org_id.as_str())
            .bind(id.as_str())
            .fetch_optional(&self.db.read)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(InvocationLogs {
            id: get_id(&row, "id")?,
            tool_id: get_id(&row, "tool_id")?,
            source_type: SourceType::parse(&row.try_get::<String, _>("source_type")?),
            logs: row.try_get("logs")?,
        }))
    }

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
    async fn list_parts(&self, org_id: &OrgId, q: &InvocationQuery) -> Result<Vec<InvocationQuery>, StoreError> {
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
    async fn list_statement(
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

    /// Deletes up to `batch` invocation records created before `cutoff`, oldest first in each
    /// organization, with their logs and their search-index entries; returns how many, fewer
    /// than `batch` once no older record is left. Each organization's share is one transaction,
    /// short enough that the invocation writer (on SQLite the same single connection) waits at
    /// most that long; a caller deleting many calls again, pausing between calls.
    pub async fn delete_invocations_before(&self, cutoff: Timestamp, batch: u32) -> Result<u64, StoreError> {
        let batch = u64::from(batch);
        let mut deleted = 0;
        for org_id in self.invocation_orgs().await? {
            if deleted >= batch {
                break;
            }
            deleted += self.delete_org_invocations_before(&org_id, cutoff, batch - deleted).await?;
        }
        Ok(deleted)
    }

    /// The organizations that have invocation records, found by skipping through the
    /// `(org_id, …)` index from one organization to the next rather than reading its rows.
    async fn invocation_orgs(&self) -> Result<Vec<OrgId>, StoreError> {
        let rows = sqlx::query(
            "WITH RECURSIVE orgs(org_id) AS ( \
               SELECT (SELECT min(org_id) FROM invocations) \
               UNION ALL \
               SELECT (SELECT min(i.org_id) FROM invocations i WHERE i.org_id > orgs.org_id) \
               FROM orgs WHERE orgs.org_id IS NOT NULL) \
             SELECT org_id FROM orgs WHERE org_id IS NOT NULL",
        )
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(|r| get_id(r, "org_id")).collect()
    }

    /// One transaction deleting up to `limit` of an organization's records created before
    /// `cutoff`, and noting the highest number deleted (see [`Store::anchor`]).
    async fn delete_org_invocations_before(
        &self,
        org_id: &OrgId,
        cutoff: Timestamp,
        limit: u64,
    ) -> Result<u64, StoreError> {
        // Several PostgreSQL servers may delete at once: each skips the rows another has locked.
        let lock = match self.db.dialect {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let sql = format!(
            "DELETE FROM invocations WHERE seq IN (SELECT seq FROM invocations \
             WHERE org_id = $1 AND created_at < $2 ORDER BY created_at, seq LIMIT $3{lock}) RETURNING seq"
        );
        let mut tx = self.db.write.begin().await?;
        let rows = sqlx::query(&sql)
            .bind(org_id.as_str())
            .bind(cutoff.0)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await?;
        let seqs: Vec<i64> = rows.iter().map(|r| r.try_get::<i64, _>("seq")).collect::<Result<_, _>>()?;
        let Some(highest) = seqs.iter().max().copied() else {
            return Ok(0);
        };
        if self.db.dialect == Dialect::Sqlite {
            // The contentless index keeps no text, only which words each row id has; PostgreSQL
            // keeps the words in the row itself.
            let list = serde_json::to_string(&seqs).unwrap_or_else(|_| "[]".into());
            sqlx::query("DELETE FROM invocations_fts WHERE rowid IN (SELECT value FROM json_each($1))")
                .bind(list)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO invocation_retention (org_id, deleted_through) VALUES ($1, $2) \
             ON CONFLICT (org_id) DO UPDATE SET deleted_through = CASE \
             WHEN excluded.deleted_through > invocation_retention.deleted_through \
             THEN excluded.deleted_through ELSE invocation_retention.deleted_through END",
        )
        .bind(org_id.as_str())
        .bind(highest)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(seqs.len() as u64)
    }

    /// The newest invocations (in recording order) whose chosen fields contain every word of
    /// the query. A query without words finds nothing.
    pub async fn search_invocations(
        &self,
        org_id: &OrgId,
        q: &InvocationSearch,
    ) -> Result<Vec<Invocation>, StoreError> {
        let terms = text::query_terms(&q.query);
        if terms.is_empty() || q.limit <= 0 {
            return Ok(Vec::new());
        }
        let mut fields: Vec<SearchField> = Vec::new();
        for f in &q.fields {
            if !fields.contains(f) {
                fields.push(*f);
            }
        }
        let all_fields = fields.is_empty() || fields.len() == SearchField::ALL.len();
        let match_expr = match self.db.dialect {
            Dialect::Sqlite => {
                let columns: Vec<&str> =
                    if all_fields { Vec::new() } else { fields.iter().map(|f| f.fts_column()).collect() };
                text::fts5_query(&terms, &columns)
            }
            Dialect::Postgres => {
                let weights: String =
                    if all_fields { String::new() } else { fields.iter().map(|f| f.weight()).collect() };
                text::tsquery(&terms, &weights)
            }
        };
        let mut binds = vec![Bind::Text(org_id.to_string()), Bind::Text(match_expr)];
        let Some(filter_sql) = self.filter_sql(org_id, &q.filter, &mut binds).await? else {
            return Ok(Vec::new());
        };
        if self.db.dialect == Dialect::Postgres {
            return self.search_postgres(binds, &filter_sql, q.limit).await;
        }
        binds.push(Bind::Int(q.limit));
        let limit = binds.len();
        // SQLite cannot estimate how many rows a text query matches, so the join order is chosen
        // here (CROSS JOIN fixes it). Usually the text index drives: it yields matches newest
        // first and the walk stops at the limit. A conversation or simulation run holds few
        // invocations, so with such a filter those rows drive instead, each checked against the
        // text index by row id, rather than walking every match of a common word.
        let selective = !q.filter.conversation_ids.is_empty() || !q.filter.simulation_run_ids.is_empty();
        let sql = if selective {
            format!(
                "SELECT {COLUMNS} FROM invocations i CROSS JOIN invocations_fts ON invocations_fts.rowid = i.seq \
                 WHERE invocations_fts MATCH $2 AND i.org_id = $1{filter_sql} \
                 ORDER BY i.seq DESC LIMIT ${limit}"
            )
        } else {
            format!(
                "SELECT {COLUMNS} FROM invocations_fts CROSS JOIN invocations i ON i.seq = invocations_fts.rowid \
                 WHERE invocations_fts MATCH $2 AND i.org_id = $1{filter_sql} \
                 ORDER BY invocations_fts.rowid DESC LIMIT ${limit}"
            )
        };
        let rows = bind_all(sqlx::query(&sql), &binds).fetch_all(&self.db.read).await?;
        rows.iter().map(invocation_from_row).collect()
    }

    /// Search on PostgreSQL, which has two ways to the newest hits: walk the organization's rows
    /// newest first, testing each (cheap when the words are common), or collect every match from
    /// the GIN index and keep the newest (cheap when they are rare). Its planner chooses from
    /// word statistics, and guesses wrong by orders of magnitude for a rare word missing from
    /// them or for words that occur together (it multiplies their frequencies). So the choice is
    /// made here, from how often the words match among the newest rows: a probe of
    /// [`PROBE_ROWS`] rows either already holds enough hits or measures the hit rate, and the
    /// cheaper way for the remaining hits follows from it.
    async fn search_postgres(
        &self,
        binds: Vec<Bind>,
        filter_sql: &str,
        limit: i64,
    ) -> Result<Vec<Invocation>, StoreError> {
        let want = limit as usize;
        let mut hits: Vec<i64> = Vec::new();
        let (probe, mut floor) = self.walk_newest(&binds, filter_sql, i64::MAX, PROBE_ROWS).await?;
        hits.extend(probe.iter().filter(|(_, hit)| *hit).map(|(seq, _)| *seq).take(want));
        let exhausted = (probe.len() as i64) < PROBE_ROWS;
        if hits.len() < want && !exhausted {
            let rate = hits.len() as f64 / probe.len() as f64;
            let need = (want - hits.len()) as f64;
            // Rows still to walk at this rate, against matches the index would hand over among
            // the older rows (`floor` bounds their number). An index hit costs a random page
            // read, a walked row a sequential one: about four to one, as measured.
            let walk = if rate > 0.0 { need / rate } else { f64::INFINITY };
            let index = rate.max(1.0 / PROBE_ROWS as f64) * floor as f64;
            let walking = walk <= 4.0 * index && walk <= MAX_WALK_ROWS as f64;
            tracing::debug!(probe_hits = hits.len(), rate, walking, "search goes on past the probe");
            if walking {
                let budget = (walk * 1.5) as i64 + 100;
                let (more, next_floor) = self.walk_newest(&binds, filter_sql, floor, budget).await?;
                hits.extend(more.iter().filter(|(_, hit)| *hit).map(|(seq, _)| *seq).take(want - hits.len()));
                floor = if (more.len() as i64) < budget { 0 } else { next_floor };
            }
            if hits.len() < want && floor > 0 {
                hits.extend(self.index_newest(&binds, filter_sql, floor, (want - hits.len()) as i64).await?);
            }
        }
        if hits.is_empty() {
            return Ok(Vec::new());
        }
        let mut fetch = vec![binds[0].clone()];
        fetch.extend(hits.iter().map(|s| Bind::Int(*s)));
        let sql = format!(
            "SELECT {COLUMNS} FROM invocations i WHERE i.org_id = $1 AND i.seq IN ({}) ORDER BY i.seq DESC",
            placeholders(2, hits.len())
        );
        let rows = bind_all(sqlx::query(&sql), &fetch).fetch_all(&self.db.read).await?;
        rows.iter().map(invocation_from_row).collect()
    }

    /// Up to `rows` of the organization's filtered rows older than `floor`, newest first, each
    /// with whether it matches the query; and the oldest `seq` seen.
    async fn walk_newest(
        &self,
        binds: &[Bind],
        filter_sql: &str,
        floor: i64,
        rows: i64,
    ) -> Result<(Vec<(i64, bool)>, i64), StoreError> {
        let mut binds = binds.to_vec();
        binds.push(Bind::Int(floor));
        binds.push(Bind::Int(rows));
        let n = binds.len();
        let sql = format!(
            "SELECT i.seq, CASE WHEN i.search @@ $2::tsquery THEN 1 ELSE 0 END AS hit FROM invocations i \
             WHERE i.org_id = $1{filter_sql} AND i.seq < ${} ORDER BY i.seq DESC LIMIT ${n}",
            n - 1
        );
        let found = bind_all(sqlx::query(&sql), &binds).fetch_all(&self.db.read).await?;
        let mut out = Vec::with_capacity(found.len());
        for row in &found {
            out.push((row.try_get::<i64, _>("seq")?, get_bool(row, "hit")?));
        }
        let oldest = out.last().map_or(0, |(seq, _)| *seq);
        Ok((out, oldest))
    }

    /// The newest `limit` matches older than `floor`, collected through the GIN index: the
    /// materialized subquery has no order to follow, so the planner has no reason to walk.
    async fn index_newest(
        &self,
        binds: &[Bind],
        filter_sql: &str,
        floor: i64,
        limit: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let mut binds = binds.to_vec();
        binds.push(Bind::Int(floor));
        binds.push(Bind::Int(limit));
        let n = binds.len();
        let sql = format!(
            "WITH matches AS MATERIALIZED (SELECT i.seq FROM invocations i \
             WHERE i.org_id = $1 AND i.search @@ $2::tsquery{filter_sql} AND i.seq < ${}) \
             SELECT seq FROM matches ORDER BY seq DESC LIMIT ${n}",
            n - 1
        );
        let found = bind_all(sqlx::query(&sql), &binds).fetch_all(&self.db.read).await?;
        found.iter().map(|r| Ok(r.try_get::<i64, _>("seq")?)).collect()
    }

    /// Refreshes the query planner's statistics of the invocation tables, as a bulk load
    /// should be followed by (PostgreSQL's autovacuum does it too, eventually).
    pub async fn refresh_invocation_statistics(&self) -> Result<(), StoreError> {
        sqlx::query("ANALYZE invocations").execute(&self.db.write).await?;
        Ok(())
    }

    /// The SQL (` AND …`) for a filter, with its values appended to `binds`; `None` when the
    /// filter can match nothing (no visible source type, or no version matching any specifier).
    async fn filter_sql(
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

    /// The highest record number retention has deleted in the organization; 0 when none.
    async fn deleted_through(&self, org_id: &OrgId) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT deleted_through FROM invocation_retention WHERE org_id = $1")
            .bind(org_id.as_str())
            .fetch_optional(&self.db.read)
            .await?;
        Ok(match row {
            Some(row) => row.try_get("deleted_through")?,
            None => 0,
        })
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

fn invocation_from_row(r: &AnyRow) -> Result<Invocation, StoreError> {
    let json = |column: &str| -> Result<Value, StoreError> {
        let text: String = r.try_get(column)?;
        serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("invocation {column}: {e}")))
    };
    let n = |c: &str| -> Result<u64, StoreError> { Ok(r.try_get::<i64, _>(c)?.max(0) as u64) };
    let trace: Vec<String> = serde_json::from_value(json("exception_stack_trace")?)
        .map_err(|e| StoreError::Corrupt(format!("invocation stack trace: {e}")))?;
    let id: InvocationId = get_id(r, "id")?;
    let source: InvocationSource = serde_json::from_value(json("source")?)
        .map_err(|e| StoreError::Corrupt(format!("invocation {id}: source: {e}")))?;
    let caller = match (get_optional_id(r, "caller_org_id")?, get_optional_id(r, "caller_user_id")?) {
        (Some(org_id), Some(user_id)) => Some(UserRef { org_id, user_id }),
        _ => None,
    };
    Ok(Invocation {
        seq: r.try_get("seq")?,
        id,
        org_id: get_id(r, "org_id")?,
        tool_id: get_id(r, "tool_id")?,
        version: Version { major: n("major")?, minor: n("minor")?, patch: n("patch")? },
        succeeded: get_bool(r, "succeeded")?,
        output: r.try_get("output")?,
        exception_type: r.try_get("exception_type")?,
        exception_message: r.try_get("exception_message")?,
        exception_stack_trace: trace,
        duration_ms: r.try_get("duration_ms")?,
        inputs: json("inputs")?,
        source,
        caller,
        created_at: Timestamp(r.try_get("created_at")?),
        updated_at: Timestamp(r.try_get("updated_at")?),
    })
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
