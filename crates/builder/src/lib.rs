//! Building tool versions.
//!
//! A build takes a project directory of the organization's repository at one commit and makes
//! it runnable: it exports the tree into a private work directory (`toolsmith_repo::export`,
//! [`scratch`]), reads `pyproject.toml` as data ([`files`], [`project`]), resolves and installs
//! its dependencies with uv into an environment of the organization's own ([`environment`]),
//! runs the project's tests, and derives the input and output schemas from the entrypoint
//! ([`pipeline`]). Its filesystem work runs on the blocking pool, off the executor that serves
//! requests.
//! Installation, tests and schema extraction all run in the runtime's sandbox, each step under
//! its own limits and as one of the organization's host identities ([`steps`]); what sandboxes
//! wrote is handled without trusting it ([`tree`]).

mod blocking;
pub mod environment;
pub mod files;
mod log;
pub mod pipeline;
pub mod project;
pub mod scratch;
pub mod steps;
pub mod tree;

pub use environment::{EnvStore, Toolchain};
pub use pipeline::{build, BuildFailure, BuildInput, BuildOutput, FailureKind};
pub use project::ProjectSpec;
pub use steps::{BuildLimits, Identities};
