//! Group commit for invocation records.
//!
//! Every invocation must be on disk before its caller is answered, and a commit costs an fsync
//! (milliseconds) whatever it holds. One task therefore writes for everyone: callers queue their
//! rows, the task takes everything queued, writes it in one transaction, commits once and then
//! answers each waiting caller. Under load a commit carries hundreds of rows, which is how the
//! store sustains thousands of durable records per second on one disk.

use std::collections::HashMap;

use sqlx::{Any, Row, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::Prepared;
use crate::db::{placeholders, Db, Dialect};
use crate::StoreError;

/// How many requests may wait for the writer before callers wait to enqueue (back pressure).
const QUEUE_DEPTH: usize = 4096;
/// The most rows one transaction takes; more waits for the next one.
const MAX_BATCH_ROWS: usize = 5_000;
/// Rows per INSERT statement, far below both backends' limits on bound parameters. SQLite looks
/// up each parameter's name by walking the list of names, so binding costs grow with the square
/// of the parameter count: its statements stay small.
fn rows_per_statement(dialect: Dialect) -> usize {
    match dialect {
        Dialect::Sqlite => 20,
        Dialect::Postgres => 100,
    }
}

struct Request {
    rows: Vec<Prepared>,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// The handle callers use to reach the writer task; cheap to clone.
#[derive(Clone)]
pub(crate) struct Recorder {
    queue: mpsc::Sender<Request>,
}

fn writer_gone() -> StoreError {
    StoreError::Database(sqlx::Error::PoolClosed)
}

impl Recorder {
    /// Starts the writer task on the current Tokio runtime. It ends when the last handle is
    /// dropped.
    pub(crate) fn start(db: Db) -> Recorder {
        let (queue, requests) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(run(db, requests));
        Recorder { queue }
    }

    /// Hands rows to the writer and waits until they are committed.
    pub(crate) async fn record(&self, rows: Vec<Prepared>) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let (done, answer) = oneshot::channel();
        self.queue.send(Request { rows, done }).await.map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?
    }

    /// Waits until every row queued before this call is committed (or its caller has learnt
    /// that it failed). The writer takes requests in order, so once this empty request is
    /// answered every earlier one has been.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        let (done, answer) = oneshot::channel();
        self.queue.send(Request { rows: Vec::new(), done }).await.map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?
    }
}

impl crate::Store {
    /// Commits every invocation record queued so far before returning; a stopping server calls
    /// it once it has stopped taking requests, before it closes the database.
    pub async fn flush_invocations(&self) -> Result<(), StoreError> {
        self.recorder.flush().await
    }

    /// How many batches of invocation records wait for the writer now (each batch is one
    /// request's records).
    pub fn invocation_writer_queue(&self) -> usize {
        self.recorder.queue.max_capacity() - self.recorder.queue.capacity()
    }
}

async fn run(db: Db, mut requests: mpsc::Receiver<Request>) {
    while let Some(first) = requests.recv().await {
        let mut count = first.rows.len();
        let mut batch = vec![first];
        while count < MAX_BATCH_ROWS {
            match requests.try_recv() {
                Ok(request) => {
                    count += request.rows.len();
                    batch.push(request);
                }
                Err(_) => break,
            }
        }
        let all: Vec<&Prepared> = batch.iter().flat_map(|r| r.rows.iter()).collect();
        // A batch of flushes alone has nothing to write.
        let written = if all.is_empty() { Ok(()) } else { write(&db, &all).await };
        match written {
            Ok(()) => {
                for request in batch {
                    let _ = request.done.send(Ok(()));
                }
            }
            Err(err) if batch.len() == 1 => {
                let _ = batch.pop().map(|request| request.done.send(Err(err)));
            }
            Err(err) => {
                // One caller's bad row must not fail everyone else's records: write each
                // caller's rows on their own, so that each learns its own outcome.
                tracing::warn!(error = %err, callers = batch.len(), "invocation batch failed; retrying per caller");
                for request in batch {
                    let rows: Vec<&Prepared> = request.rows.iter().collect();
                    let _ = request.done.send(write(&db, &rows).await);
                }
            }
        }
    }
}

async fn write(db: &Db, rows: &[&Prepared]) -> Result<(), StoreError> {
    let mut tx = db.write.begin().await?;
    for chunk in rows.chunks(rows_per_statement(db.dialect)) {
        match db.dialect {
            Dialect::Sqlite => insert_sqlite(&mut tx, chunk).await?,
            Dialect::Postgres => insert_postgres(&mut tx, chunk).await?,
        }
    }
    tx.commit().await?;
    Ok(())
}

const COLUMNS: &str = "org_id, id, tool_id, major, minor, patch, succeeded, output, exception_type, \
    exception_message, exception_stack_trace, duration_ms, inputs, source, source_type, conversation_id, \
    simulation_run_id, caller_org_id, caller_user_id, created_at, updated_at, logs";
const COLUMN_COUNT: usize = 22;

fn values_clause(rows: usize, per_row: usize, last_cast: Option<&str>) -> String {
    (0..rows)
        .map(|r| {
            let mut p = placeholders(r * per_row + 1, per_row);
            if let Some(cast) = last_cast {
                p.push_str(cast);
            }
            format!("({p})")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

type AnyQuery<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>;

fn bind_row<'q>(query: AnyQuery<'q>, row: &'q Prepared) -> AnyQuery<'q> {
    query
        .bind(row.org_id.as_str())
        .bind(row.id.as_str())
        .bind(row.tool_id.as_str())
        .bind(row.major)
        .bind(row.minor)
        .bind(row.patch)
        .bind(i64::from(row.succeeded))
        .bind(row.output.as_deref())
        .bind(row.exception_type.as_deref())
        .bind(row.exception_message.as_deref())
        .bind(row.stack_trace_json.as_str())
        .bind(row.duration_ms)
        .bind(row.inputs_json.as_str())
        .bind(row.source_json.as_str())
        .bind(row.source_type)
        .bind(row.conversation_id.as_deref())
        .bind(row.simulation_run_id.as_deref())
        .bind(row.caller.org_id.as_str())
        .bind(row.caller.user_id.as_str())
        .bind(row.created_at)
        .bind(row.created_at)
        .bind(row.logs.as_str())
}

/// Inserts the rows, then their words into the search index under the row ids SQLite gave them.
/// A row whose id is already recorded is skipped, so retrying a write is harmless.
async fn insert_sqlite(tx: &mut Transaction<'_, Any>, rows: &[&Prepared]) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO invocations ({COLUMNS}) VALUES {} ON CONFLICT (org_id, id) DO NOTHING RETURNING seq, org_id, id",
        values_clause(rows.len(), COLUMN_COUNT, None)
    );
    let mut query = sqlx::query(&sql);
    for row in rows {
        query = bind_row(query, row);
    }
    let inserted = query.fetch_all(&mut **tx).await?;
    if inserted.is_empty() {
        return Ok(());
    }
    // RETURNING promises no order, so rows are matched to their ids by key.
    let by_key: HashMap<(&str, &str), &Prepared> =
        rows.iter().rev().map(|r| ((r.org_id.as_str(), r.id.as_str()), *r)).collect();
    let mut indexed = Vec::with_capacity(inserted.len());
    for r in &inserted {
        let seq: i64 = r.try_get("seq")?;
        let org_id: String = r.try_get("org_id")?;
        let id: String = r.try_get("id")?;
        if let Some(row) = by_key.get(&(org_id.as_str(), id.as_str())) {
            indexed.push((seq, *row));
        }
    }
    let sql = format!(
        "INSERT INTO invocations_fts (rowid, output, exception_message, exception_type, exception_stack_trace) VALUES {}",
        values_clause(indexed.len(), 5, None)
    );
    let mut query = sqlx::query(&sql);
    for (seq, row) in &indexed {
        let [output, message, kind, trace] = &row.search_text;
        query = query.bind(*seq).bind(output.as_str()).bind(message.as_str()).bind(kind.as_str()).bind(trace.as_str());
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

/// Inserts the rows with their weighted word vectors. A row whose id is already recorded is
/// skipped, so retrying a write is harmless.
async fn insert_postgres(tx: &mut Transaction<'_, Any>, rows: &[&Prepared]) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO invocations ({COLUMNS}, search) VALUES {} ON CONFLICT (org_id, id) DO NOTHING",
        values_clause(rows.len(), COLUMN_COUNT + 1, Some("::tsvector"))
    );
    let mut query = sqlx::query(&sql);
    for row in rows {
        query = bind_row(query, row).bind(row.tsvector.as_str());
    }
    query.execute(&mut **tx).await?;
    Ok(())
}
