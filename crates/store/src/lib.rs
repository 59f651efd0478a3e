//! toolsmith's persistence.
//!
//! One [`Store`] serves both backends: SQLite (the embedded default, one file in the data
//! directory) and PostgreSQL (several server processes sharing one database). Queries go through
//! sqlx's `Any` driver and are written in the SQL both dialects share (`$n` parameters, integer
//! timestamps and booleans, `ON CONFLICT`, `RETURNING`); the few places where the dialects
//! differ (schema types, full-text search, cross-process coordination) branch on [`Dialect`].
//!
//! Architecture invariant: this crate is the only one that contains SQL, and every query that
//! touches tenant data is scoped by organization id.

mod builds;
mod catalog;
mod db;
mod envvars;
mod error;
mod identity;
mod invocations;
mod locks;
pub use locks::ToolLock;
mod migrate;
mod pushes;
mod rate_limits;
mod sandbox_identities;
pub mod secrets;
pub mod testing;
mod tools;
mod versions;

pub use builds::{BuildRecord, BuildState};
pub use catalog::{CatalogEntry, CatalogPage, CatalogQuery};
pub use db::Dialect;
pub use envvars::{EnvVarChanges, EnvVarInsert, EnvVarValue};
pub use error::StoreError;
pub use identity::{Access, ApiKeyRecord, Organization, UserRecord};
pub use invocations::{
    Invocation, InvocationFilter, InvocationLogs, InvocationPage, InvocationQuery, InvocationSearch,
    InvocationSortField, NewInvocation, SearchField, SourceType, ToolVersions,
};
pub use tools::{NewTool, SortField, Tool, ToolPage, ToolQuery, UserRef};
pub use versions::{NewVersion, ToolVersion};

use std::path::Path;
use std::time::Duration;

use db::Db;
use secrets::Keyring;

/// The handle to toolsmith's database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Db,
    keyring: Keyring,
    recorder: invocations::Recorder,
}

impl Store {
    /// Connects to `url` (`sqlite://path` or `postgres://…`) and applies pending migrations.
    pub async fn open(url: &str, keyring: Keyring) -> Result<Store, StoreError> {
        let db = Db::connect(url).await?;
        migrate::run(&db).await?;
        let recorder = invocations::Recorder::start(db.clone());
        Ok(Store { db, keyring, recorder })
    }

    /// Opens (creating if needed) the SQLite database inside a data directory.
    pub async fn open_sqlite_dir(dir: &Path, keyring: Keyring) -> Result<Store, StoreError> {
        let url = format!("sqlite://{}", dir.join("toolsmith.db").display());
        Store::open(&url, keyring).await
    }

    /// Which database this store talks to.
    pub fn dialect(&self) -> Dialect {
        self.db.dialect
    }

    /// Answers once the database responds; used by the readiness check.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.db.read).await?;
        Ok(())
    }

    /// Closes every connection, waiting for in-flight queries.
    pub async fn close(&self) {
        self.db.write.close().await;
        self.db.read.close().await;
    }

    /// How long the store waits for a busy database before giving up.
    pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
}
