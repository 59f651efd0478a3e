//! The one error type of the use cases.

use toolsmith_store::StoreError;

/// Why a use case did not do what it was asked. Each surface maps it to its own answer: the HTTP
/// layer to a status code and the operation's text, the MCP endpoint to a JSON-RPC error or a
/// tool error result.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The addressed organization, tool, version, build or invocation does not exist, or the
    /// caller may not know that it does.
    #[error("not found")]
    NotFound,
    /// The credentials presented are not valid; the text is what the caller is told.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The caller lacks a permission the action needs.
    #[error("missing required permissions")]
    Forbidden,
    /// The request is well-formed but cannot be done as asked; the message says why, in the
    /// words the contract uses.
    #[error("{0}")]
    Rejected(String),
    /// A request parameter, named as the request named it, is not acceptable; the message says
    /// why.
    #[error("{name}: {message}")]
    InvalidArgument {
        /// The parameter (`ref`, `path`).
        name: &'static str,
        /// Why.
        message: String,
    },
    /// The tool's arguments do not conform to its input schema; the message names the input
    /// and the fields, so that whoever wrote them (a person or a model) can correct them.
    #[error("{0}")]
    InvalidInput(String),
    /// The action conflicts with the current state (a name taken, an operation in progress).
    #[error("{0}")]
    Conflict(String),
    /// The server is at its limit of concurrent invocations; retrying shortly may succeed.
    #[error("too many tool invocations are running on this server")]
    Busy,
    /// Something the action needs is not available on this server (the Python toolchain, a
    /// runtime that failed to start for a reason that is not the tool's).
    #[error("{0}")]
    Unavailable(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A failure that is a bug or an unexpected condition; the text goes to the log only.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// An internal error, logged where it is made so that the context is not lost.
    pub fn internal(context: &str, cause: impl std::fmt::Display) -> Error {
        tracing::error!(error = %cause, "{context}");
        Error::Internal(format!("{context}: {cause}"))
    }
}
