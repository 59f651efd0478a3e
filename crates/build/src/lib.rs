//! Building tool versions.
//!
//! A build takes a project directory of the organization's repository at one commit and makes
//! it runnable: it reads `pyproject.toml` ([`project`]), resolves and installs its dependencies
//! with uv into an environment shared by every build with the same lock and interpreter
//! ([`environment`]), runs the project's tests, and derives the input schema from the
//! entrypoint ([`pipeline`]). Installation, tests and schema extraction all run in the runtime's
//! sandbox: installing an sdist runs its build script, and the tests are the author's code.

pub mod environment;
pub mod export;
pub mod pipeline;
pub mod project;

pub use environment::{EnvStore, Toolchain};
pub use pipeline::{build, BuildFailure, BuildInput, BuildOutput, FailureKind};
pub use project::ProjectSpec;
