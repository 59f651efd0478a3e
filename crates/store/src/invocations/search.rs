//! Full-text search of invocations: the newest records whose chosen fields hold every word of
//! a query, through FTS5 on SQLite and a weighted `tsvector` on PostgreSQL.

use sqlx::Row;
use toolsmith_domain::OrgId;

use super::{invocation_from_row, text, Invocation, InvocationFilter, InvocationSearch, SearchField, COLUMNS};
use crate::db::{get_bool, placeholders, Dialect};
use crate::tools::{bind_all, Bind};
use crate::{Store, StoreError};

/// How many of the newest rows a PostgreSQL search tests before choosing how to go on.
const PROBE_ROWS: i64 = 1_000;
/// The most rows a PostgreSQL search walks after the probe; beyond, the index is cheaper.
const MAX_WALK_ROWS: i64 = 50_000;

impl Store {
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
        let match_expr = self.match_expression(&terms, &q.fields);
        let mut binds = vec![Bind::Text(org_id.to_string()), Bind::Text(match_expr)];
        let Some(filter_sql) = self.filter_sql(org_id, &q.filter, &mut binds).await? else {
            return Ok(Vec::new());
        };
        match self.db.dialect {
            Dialect::Postgres => self.search_postgres(binds, &filter_sql, q.limit).await,
            Dialect::Sqlite => self.search_sqlite(binds, &filter_sql, &q.filter, q.limit).await,
        }
    }

    /// The query in this backend's full-text syntax, limited to `fields` (each counted once)
    /// unless they name every field, which needs no restriction.
    fn match_expression(&self, terms: &[text::Term], fields: &[SearchField]) -> String {
        let mut distinct: Vec<SearchField> = Vec::new();
        for f in fields {
            if !distinct.contains(f) {
                distinct.push(*f);
            }
        }
        let all_fields = distinct.is_empty() || distinct.len() == SearchField::ALL.len();
        match self.db.dialect {
            Dialect::Sqlite => {
                let columns: Vec<&str> =
                    if all_fields { Vec::new() } else { distinct.iter().map(|f| f.fts_column()).collect() };
                text::fts5_query(terms, &columns)
            }
            Dialect::Postgres => {
                let weights: String =
                    if all_fields { String::new() } else { distinct.iter().map(|f| f.weight()).collect() };
                text::tsquery(terms, &weights)
            }
        }
    }

    /// Search on SQLite, which cannot estimate how many rows a text query matches, so the join
    /// order is chosen here (CROSS JOIN fixes it). Usually the text index drives: it yields
    /// matches newest first and the walk stops at the limit. A conversation or simulation run
    /// holds few invocations, so with such a filter those rows drive instead, each checked
    /// against the text index by row id, rather than walking every match of a common word.
    async fn search_sqlite(
        &self,
        mut binds: Vec<Bind>,
        filter_sql: &str,
        filter: &InvocationFilter,
        limit: i64,
    ) -> Result<Vec<Invocation>, StoreError> {
        binds.push(Bind::Int(limit));
        let limit = binds.len();
        let selective = !filter.conversation_ids.is_empty() || !filter.simulation_run_ids.is_empty();
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
}
