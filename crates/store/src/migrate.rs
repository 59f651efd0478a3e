//! Schema migrations, applied in order on every start.
//!
//! Each migration exists once per dialect (the types differ slightly) and runs in one
//! transaction together with the row that records it, so a crash mid-migration leaves the schema
//! as it was. On PostgreSQL an advisory lock keeps several processes starting at once from
//! applying the same migration twice.

use sqlx::{Executor, Row};

use crate::db::{Db, Dialect};
use crate::StoreError;

struct Migration {
    version: i64,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sqlite: include_str!("../migrations/sqlite/0001_init.sql"),
        postgres: include_str!("../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        sqlite: include_str!("../migrations/sqlite/0002_pushed_commits.sql"),
        postgres: include_str!("../migrations/postgres/0002_pushed_commits.sql"),
    },
    Migration {
        version: 3,
        sqlite: include_str!("../migrations/sqlite/0003_versions.sql"),
        postgres: include_str!("../migrations/postgres/0003_versions.sql"),
    },
    Migration {
        version: 4,
        sqlite: include_str!("../migrations/sqlite/0004_invocations.sql"),
        postgres: include_str!("../migrations/postgres/0004_invocations.sql"),
    },
    Migration {
        version: 5,
        sqlite: include_str!("../migrations/sqlite/0005_sandbox_identities.sql"),
        postgres: include_str!("../migrations/postgres/0005_sandbox_identities.sql"),
    },
    Migration {
        version: 6,
        sqlite: include_str!("../migrations/sqlite/0006_invocation_callers.sql"),
        postgres: include_str!("../migrations/postgres/0006_invocation_callers.sql"),
    },
    Migration {
        version: 7,
        sqlite: include_str!("../migrations/sqlite/0007_invocation_orders_and_retention.sql"),
        postgres: include_str!("../migrations/postgres/0007_invocation_orders_and_retention.sql"),
    },
    Migration {
        version: 8,
        sqlite: include_str!("../migrations/sqlite/0008_version_output_schemas.sql"),
        postgres: include_str!("../migrations/postgres/0008_version_output_schemas.sql"),
    },
];

/// An arbitrary constant that names toolsmith's migration lock among PostgreSQL advisory locks.
const MIGRATION_LOCK_KEY: i64 = 0x746f_6f6c_736d;

pub(crate) async fn run(db: &Db) -> Result<(), StoreError> {
    run_through(db, i64::MAX).await
}

/// Applies the pending migrations up to and including `last`: the schema a server of that
/// version leaves behind.
pub(crate) async fn run_through(db: &Db, last: i64) -> Result<(), StoreError> {
    let mut conn = db.write.acquire().await?;
    if db.dialect == Dialect::Postgres {
        sqlx::query("SELECT pg_advisory_lock($1)").bind(MIGRATION_LOCK_KEY).execute(&mut *conn).await?;
    }
    let result = apply_pending(&mut conn, db.dialect, last).await;
    if db.dialect == Dialect::Postgres {
        sqlx::query("SELECT pg_advisory_unlock($1)").bind(MIGRATION_LOCK_KEY).execute(&mut *conn).await?;
    }
    result
}

async fn apply_pending(conn: &mut sqlx::AnyConnection, dialect: Dialect, last: i64) -> Result<(), StoreError> {
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .await?;
    let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| r.try_get::<i64, _>("version"))
        .collect::<Result<_, _>>()?;
    for m in MIGRATIONS.iter().filter(|m| m.version <= last && !applied.contains(&m.version)) {
        let sql = match dialect {
            Dialect::Sqlite => m.sqlite,
            Dialect::Postgres => m.postgres,
        };
        tracing::info!(version = m.version, "applying migration");
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(m.version)
            .bind(toolsmith_domain::time::Timestamp::now().0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(())
}
