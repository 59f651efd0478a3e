//! The store's error type.

/// What can go wrong in the store, precise enough for callers to pick a response.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique name is already taken (e.g. a live tool with the same name).
    #[error("already exists")]
    AlreadyExists,
    /// The addressed record does not exist in this organization.
    #[error("not found")]
    NotFound,
    /// Names to update or delete do not exist, or are still required by live versions.
    #[error("environment variables to update or delete do not exist or are in use")]
    EnvVarsInvalid,
    /// A name to insert exists or was deleted within the tombstone window.
    #[error("environment variable exists or was recently deleted")]
    EnvVarConflict,
    /// A secret could not be encrypted or decrypted (wrong or missing key).
    #[error("secret key problem: {0}")]
    Secret(String),
    /// A stored row could not be decoded into its type.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The database itself failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    /// Whether the database could not be reached (as opposed to a query failing): callers answer
    /// "try again later" rather than "something broke".
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)))
    }

    pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
        matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
    }
}
