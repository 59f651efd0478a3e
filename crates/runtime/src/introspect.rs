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
    /// The entrypoint's schemas, and whether it takes a `context` parameter.
    Schema {
        /// JSON Schema 2020-12 of the input.
        input_schema: Value,
        /// Whether `context` is declared.
        takes_context: bool,
        /// JSON Schema 2020-12 of the JSON the harness makes of the result, from the return
        /// annotation; `None` without one, or when it names what has no JSON form.
        output_schema: Option<Value>,
        /// Why there is no output schema although there is a return annotation.
        output_schema_problem: Option<String>,
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

/// The script's answer, as its module comment describes it: the fields of a schema when `ok`,
/// the fields of a failure otherwise.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    ok: bool,
    #[serde(default)]
    input_schema: Option<Value>,
    #[serde(default)]
    takes_context: bool,
    #[serde(default)]
    output_schema: Option<Value>,
    #[serde(default)]
    output_schema_problem: Option<String>,
    #[serde(default)]
    error_kind: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    traceback: String,
}

impl Answer {
    fn introspection(self) -> Option<Introspection> {
        Some(if self.ok {
            Introspection::Schema {
                input_schema: self.input_schema?,
                takes_context: self.takes_context,
                output_schema: self.output_schema,
                output_schema_problem: self.output_schema_problem,
            }
        } else {
            Introspection::Unusable { kind: self.error_kind, message: self.message, traceback: self.traceback }
        })
    }
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

/// Derives the input and output schemas of `entrypoint` (`module:function`) in `project`, in `sandbox`: the
/// caller's sandbox with its identity and limits (the organization's, as for its invocations),
/// to which the project, the environment and the script are added.
pub async fn introspect(
    env: &PythonEnv<'_>,
    project: &Path,
    entrypoint: &str,
    sandbox: Sandbox,
) -> Result<Introspection, IntrospectError> {
    // One directory with one file: removing it when `scripts` drops is two calls, cheap enough
    // for the executor; writing the file goes through tokio's blocking pool.
    let scripts = tempfile::tempdir()?;
    tokio::fs::write(scripts.path().join("toolsmith_introspect.py"), SCRIPT).await?;
    // The directory is the mount point: the sandbox's identity must be able to enter it.
    tokio::fs::set_permissions(scripts.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).await?;
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
    serde_json::from_slice::<Answer>(&outcome.stdout)
        .ok()
        .and_then(Answer::introspection)
        .ok_or_else(|| IntrospectError::NoAnswer(outcome.tail(4000)))
}
