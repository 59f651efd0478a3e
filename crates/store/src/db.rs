//! Connection pools and the SQL dialect switch.

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor};
use toolsmith_domain::IdError;

use crate::StoreError;

/// The database behind a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite in WAL mode: one writer connection, several readers.
    Sqlite,
    /// PostgreSQL: one pool for everything; may be shared by several server processes.
    Postgres,
}

/// The pools of one database.
///
/// SQLite allows one writer at a time; funnelling every write through a single connection turns
/// what would be `SQLITE_BUSY` retries into an orderly queue, while readers proceed in parallel
/// under WAL. On PostgreSQL both fields are the same pool.
#[derive(Clone)]
pub(crate) struct Db {
    pub(crate) write: AnyPool,
    pub(crate) read: AnyPool,
    pub(crate) dialect: Dialect,
}

impl Db {
    pub(crate) async fn connect(url: &str) -> Result<Db, StoreError> {
        sqlx::any::install_default_drivers();
        if url.starts_with("sqlite:") {
            let url = if url.contains('?') { url.to_owned() } else { format!("{url}?mode=rwc") };
            let write = sqlite_pool(&url, 1).await?;
            let read = sqlite_pool(&url, 4).await?;
            Ok(Db { write, read, dialect: Dialect::Sqlite })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool =
                AnyPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(30)).connect(url).await?;
            Ok(Db { write: pool.clone(), read: pool, dialect: Dialect::Postgres })
        } else {
            Err(StoreError::Database(sqlx::Error::Configuration(
                "database URL must start with sqlite: or postgres:".into(),
            )))
        }
    }
}

async fn sqlite_pool(url: &str, connections: u32) -> Result<AnyPool, StoreError> {
    let pool = AnyPoolOptions::new()
        .max_connections(connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                // FULL: an acknowledged write is on disk, not only in the OS cache.
                conn.execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                )
                .await?;
                Ok(())
            })
        })
        .connect(url)
        .await?;
    Ok(pool)
}

/// Builds `$start, $start+1, …` placeholders for an `IN (…)` list of `count` values.
pub(crate) fn placeholders(start: usize, count: usize) -> String {
    (start..start + count).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// Reads an integer column that holds a boolean (0 or 1) in both dialects.
pub(crate) fn get_bool(row: &AnyRow, column: &str) -> Result<bool, sqlx::Error> {
    use sqlx::Row;
    Ok(row.try_get::<i64, _>(column)? != 0)
}

/// Reads a text column holding an identifier. The store writes only ids that parsed, so one that
/// does not parse means the row was changed behind the store's back: [`StoreError::Corrupt`].
pub(crate) fn get_id<T>(row: &AnyRow, column: &str) -> Result<T, StoreError>
where
    T: TryFrom<String, Error = IdError>,
{
    use sqlx::Row;
    parse_id(column, row.try_get::<String, _>(column)?)
}

/// Reads a nullable text column holding an identifier; see [`get_id`].
pub(crate) fn get_optional_id<T>(row: &AnyRow, column: &str) -> Result<Option<T>, StoreError>
where
    T: TryFrom<String, Error = IdError>,
{
    use sqlx::Row;
    row.try_get::<Option<String>, _>(column)?.map(|text| parse_id(column, text)).transpose()
}

fn parse_id<T>(column: &str, text: String) -> Result<T, StoreError>
where
    T: TryFrom<String, Error = IdError>,
{
    let shown = format!("{text:?}");
    T::try_from(text).map_err(|err| StoreError::Corrupt(format!("column {column} holds {shown}, which {err}")))
}
