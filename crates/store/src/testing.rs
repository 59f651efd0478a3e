//! Support for test suites: each PostgreSQL test gets a schema of its own in a shared database,
//! so tests run in parallel without seeing each other's rows; and a database can be left at the
//! schema an earlier version of toolsmith had, to check what opening it with this one does.

use sqlx::Connection;

use crate::db::Db;
use crate::StoreError;

/// Creates a fresh, empty schema in the database at `base_url` and returns a URL whose
/// connections use it as their search path.
pub async fn fresh_postgres_schema(base_url: &str) -> Result<String, StoreError> {
    sqlx::any::install_default_drivers();
    let schema = format!("t_{}", toolsmith_domain::ObjectId::generate());
    let mut conn = sqlx::AnyConnection::connect(base_url).await?;
    sqlx::raw_sql(&format!("CREATE SCHEMA {schema}")).execute(&mut conn).await?;
    conn.close().await?;
    let separator = if base_url.contains('?') { '&' } else { '?' };
    Ok(format!("{base_url}{separator}options=-c%20search_path%3D{schema}"))
}

/// Applies the migrations up to and including `last` to the database at `url` (`sqlite://…` or
/// `postgres://…`) and no further: the database a server of that schema version left behind.
pub async fn migrate_through(url: &str, last: i64) -> Result<(), StoreError> {
    let db = Db::connect(url).await?;
    let result = crate::migrate::run_through(&db, last).await;
    db.write.close().await;
    db.read.close().await;
    result
}

/// The URLs of two empty databases, one per backend: a SQLite file in `dir` and a fresh schema
/// in the PostgreSQL database named by `TOOLSMITH_TEST_POSTGRES_URL`.
pub async fn empty_databases(dir: &std::path::Path) -> Result<[String; 2], StoreError> {
    let base = std::env::var("TOOLSMITH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let sqlite = format!("sqlite://{}?mode=rwc", dir.join("toolsmith.db").display());
    Ok([sqlite, fresh_postgres_schema(&base).await?])
}
