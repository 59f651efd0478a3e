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

mod filter;
mod listing;
#[cfg(test)]
mod plans;
mod retention;
mod search;
mod text;
mod writer;

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row;
use toolsmith_domain::time::Timestamp;
use toolsmith_domain::{InvocationId, InvocationSource, OrgId, Specifier, ToolId, Version};

use crate::db::{get_bool, get_id, get_optional_id, Dialect};
use crate::tools::UserRef;
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

    /// Refreshes the query planner's statistics of the invocation tables, as a bulk load
    /// should be followed by (PostgreSQL's autovacuum does it too, eventually).
    pub async fn refresh_invocation_statistics(&self) -> Result<(), StoreError> {
        sqlx::query("ANALYZE invocations").execute(&self.db.write).await?;
        Ok(())
    }
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
