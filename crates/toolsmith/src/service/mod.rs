//! The use cases: what the service does, independent of how it is asked.
//!
//! Each use case takes typed input and the authenticated [`Caller`], and returns typed output or
//! an [`Error`]. It owns its locks (released when their guard goes out of scope), its audit and
//! its records. The HTTP routes only extract a request, call one use case and map its answer to
//! the wire; the MCP endpoint calls the same functions, so the checks, limits, masking and
//! records cannot differ between the two surfaces.
//!
//! Architecture invariant: nothing in this module knows HTTP (no `axum`, no status codes, no
//! wire JSON shapes); `tests/architecture.rs` checks the imports.

pub mod caller;
pub mod catalog;
pub mod envvars;
pub mod error;
pub mod identity;
pub mod invocations;
pub mod invoke;
pub mod publish;
pub mod repo;
pub mod repo_access;
pub mod test;
pub mod tools;
pub mod versions;

pub use caller::Caller;
pub use error::Error;
