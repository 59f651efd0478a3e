//! Schema extraction: runs `toolsmith_introspect.py` with the tool's own interpreter, inside the
//! sandbox, against the tool's project directory.

use std::path::Path;

use serde_json::Value;

use crate::sandbox::{Mount, Sandbox, SandboxError};

/// The script, compiled into the binary so that the server never reads its source tree.
pub const SCRIPT: &str = include_str!("../python/toolsmith_introspect.py");

/// Where the project is mounted inside the sandbox; it is also the working directory and the
/// import root, as when the tool runs.
pub const PROJECT_DIR: &str = "/project";
/// Where the environment (the virtualenv) is mounted inside the sandbox.
pub const ENV_DIR: &str = "/env";
const SCRIPT_DIR: &str = "/opt/toolsmith";

/// What introspection found.
#[derive(Debug, Clone, PartialEq)]
pub enum Introspection {
    /// The entrypoint's input schema, and whether it takes a `context` parameter.
    Schema {
        /// JSON Schema 2020-12 of the input.
        input_schema: Value,
        /// Whether `context` is declared.
        takes_context: bool,
    },
    /// The entrypoint could not be used; `kind` is `import_error`, `not_a_function` or
    /// `bad_signature`.
    Unusable {
        /// Which kind of problem.
        kind: String,
        /// A message for the tool author.
        message: String,
        /// The Python traceback, when there is one.
        traceback: String,
    },
}

/// The paths of one runnable environment.
#[derive(Debug, Clone)]
pub struct PythonEnv<'a> {
    /// The virtualenv directory (mounted at [`ENV_DIR`]).
    pub venv: &'a Path,
    /// The base interpreter's installation prefix, which the virtualenv links into (mounted
    /// read-only at the same path).
    pub base_prefix: &'a Path,
}

/// Why introspection did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum IntrospectError {
    /// The sandbox failed.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// The script did not answer (crashed, timed out, printed something else); the text is the
    /// tail of its output.
    #[error("introspection failed: {0}")]
    NoAnswer(String),
    /// The script could not be written to a temporary directory.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Derives the input schema of `entrypoint` (`module:function`) in `project`, in `sandbox`: the
/// caller's sandbox with its identity and limits (the organization's, as for its invocations),
/// to which the project, the environment and the script are added.
pub async fn introspect(
    env: &PythonEnv<'_>,
    project: &Path,
    entrypoint: &str,
    sandbox: Sandbox,
) -> Result<Introspection, IntrospectError> {
    let scripts = tempfile::tempdir()?;
    std::fs::write(scripts.path().join("toolsmith_introspect.py"), SCRIPT)?;
    // The directory is the mount point: the sandbox's identity must be able to enter it.
    std::fs::set_permissions(scripts.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let outcome = sandbox
        .mount(Mount::read_only_at(project, PROJECT_DIR))
        .mount(Mount::read_only_at(env.venv, ENV_DIR))
        .mount(Mount::read_only(env.base_prefix))
        .mount(Mount::read_only_at(scripts.path(), SCRIPT_DIR))
        .env("PYTHONPATH", PROJECT_DIR)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .cwd(PROJECT_DIR)
        .run(&[format!("{ENV_DIR}/bin/python"), format!("{SCRIPT_DIR}/toolsmith_introspect.py"), entrypoint.to_owned()])
        .await?;
    if !outcome.success() {
        return Err(IntrospectError::NoAnswer(outcome.tail(4000)));
    }
    let answer: Value =
        serde_json::from_slice(&outcome.stdout).map_err(|_| IntrospectError::NoAnswer(outcome.tail(4000)))?;
    let text = |k: &str| answer.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    if answer.get("ok") == Some(&Value::Bool(true)) {
        Ok(Introspection::Schema {
            input_schema: answer.get("input_schema").cloned().unwrap_or(Value::Null),
            takes_context: answer.get("takes_context") == Some(&Value::Bool(true)),
        })
    } else {
        Ok(Introspection::Unusable { kind: text("error_kind"), message: text("message"), traceback: text("traceback") })
    }
}
