//! Support for test suites that run against PostgreSQL: each test gets a schema of its own in a
//! shared database, so tests run in parallel without seeing each other's rows.

use sqlx::Connection;

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
