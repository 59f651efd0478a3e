//! The build of one project at one commit, step by step, with a log of every step.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};
use toolsmith_runtime::introspect::{introspect, Introspection, PythonEnv};
use toolsmith_runtime::{Limits, Mount, Outcome, Sandbox};

use crate::environment::{EnvStore, ReadyEnv, Toolchain, UvError, ENV};
use crate::export::{export_tree, ExportError};
use crate::project::ProjectSpec;

/// What to build and with what.
pub struct BuildInput<'a> {
    /// The organization's bare repository.
    pub repo: &'a Path,
    /// The commit.
    pub commit: &'a str,
    /// The project directory in it.
    pub project_path: &'a str,
    /// Interpreter and uv.
    pub toolchain: &'a Toolchain,
    /// Environments.
    pub envs: &'a EnvStore,
    /// Where finished source trees are kept (one directory per content digest).
    pub artifacts: &'a Path,
    /// Limits of each sandboxed step (its timeout is the step's timeout).
    pub limits: Limits,
}

/// A successful build.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    /// What the project declares.
    pub spec: ProjectSpec,
    /// The lock the environment was installed from.
    pub lock: String,
    /// The environment.
    pub env: ReadyEnv,
    /// The input schema.
    pub input_schema: Value,
    /// Whether the entrypoint takes `context`.
    pub takes_context: bool,
    /// SHA-256 over (source tree, lock, schema).
    pub content_digest: String,
    /// The source tree with its lock, read-only from now on.
    pub artifact_dir: PathBuf,
    /// What every step printed.
    pub log: String,
}

/// Why a build failed; each kind maps to its own message for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The commit has no such directory, or it has no `pyproject.toml`.
    ProjectNotFound,
    /// `pyproject.toml` breaks the project contract.
    InvalidProject,
    /// Dependencies could not be resolved (no `uv.lock`, and `uv lock` failed).
    Resolution,
    /// Dependencies could not be installed.
    Install,
    /// The project's tests failed ("failed CI checks").
    TestsFailed,
    /// The entrypoint does not import, is not a function, or its signature has no schema.
    Entrypoint,
    /// A step ran out of time.
    Timeout,
    /// Something on the server's side failed.
    Internal,
}

/// A failed build.
#[derive(Debug, Clone)]
pub struct BuildFailure {
    /// Which step failed how.
    pub kind: FailureKind,
    /// One paragraph for the caller.
    pub message: String,
    /// The whole log.
    pub log: String,
}

struct Log(String);

impl Log {
    fn step(&mut self, title: &str) {
        let _ = writeln!(self.0, "==> {title}");
    }

    fn line(&mut self, text: &str) {
        let _ = writeln!(self.0, "{text}");
    }

    fn outcome(&mut self, outcome: &Outcome) {
        let text = outcome.tail(16_000);
        if !text.is_empty() {
            self.0.push_str(&text);
            if !text.ends_with('\n') {
                self.0.push('\n');
            }
        }
        let _ = writeln!(
            self.0,
            "({:.1}s{})",
            outcome.duration.as_secs_f64(),
            if outcome.timed_out { ", timed out" } else { "" }
        );
    }

    fn fail(self, kind: FailureKind, message: impl Into<String>) -> BuildFailure {
        let message = message.into();
        let mut log = self.0;
        let _ = writeln!(log, "build failed: {message}");
        BuildFailure { kind, message, log }
    }
}

fn tail_of(outcome: &Outcome) -> String {
    outcome.tail(1500).trim().to_owned()
}

/// Builds `input.project_path` at `input.commit`.
pub async fn build(input: BuildInput<'_>) -> Result<BuildOutput, BuildFailure> {
    let mut log = Log(String::new());
    let work = match tempfile::tempdir() {
        Ok(w) => w,
        Err(e) => return Err(log.fail(FailureKind::Internal, format!("no temporary directory: {e}"))),
    };
    let source = work.path().join("project");
    log.step(&format!("export {} at {}", input.project_path, input.commit));
    if let Err(e) = std::fs::create_dir(&source) {
        return Err(log.fail(FailureKind::Internal, e.to_string()));
    }
    match export_tree(input.repo, input.commit, input.project_path, &source).await {
        Ok(()) => {}
        Err(ExportError::NotADirectory(p)) => {
            return Err(log.fail(FailureKind::ProjectNotFound, format!("the commit has no directory {p}")))
        }
        Err(e) => return Err(log.fail(FailureKind::Internal, e.to_string())),
    }

    log.step("read pyproject.toml");
    let Ok(pyproject) = std::fs::read_to_string(source.join("pyproject.toml")) else {
        return Err(log.fail(FailureKind::ProjectNotFound, format!("{} has no pyproject.toml", input.project_path)));
    };
    let spec = match ProjectSpec::parse(&pyproject) {
        Ok(spec) => spec,
        Err(why) => return Err(log.fail(FailureKind::InvalidProject, why)),
    };
    log.line(&format!(
        "entrypoint {}, envvars {:?}, secret_envvars {:?}",
        spec.entrypoint, spec.envvars, spec.secret_envvars
    ));

    if source.join("uv.lock").exists() {
        log.step("uv.lock present: installing it as it is");
    } else {
        log.step("no uv.lock: resolving one");
        match input.envs.lock(input.toolchain, &source, input.limits).await {
            Ok(outcome) => log.outcome(&outcome),
            Err(e) => return Err(uv_failure(log, e, FailureKind::Resolution, "resolving the dependencies failed")),
        }
    }
    let lock = std::fs::read_to_string(source.join("uv.lock")).unwrap_or_default();

    log.step("install the environment");
    let env = match input.envs.ensure(input.toolchain, &source, input.limits).await {
        Ok((env, outcome)) => {
            match outcome {
                Some(o) => log.outcome(&o),
                None => log.line(&format!("reusing environment {}", env.key)),
            }
            env
        }
        Err(e) => return Err(uv_failure(log, e, FailureKind::Install, "installing the dependencies failed")),
    };

    if has_tests(&source) {
        log.step("run the tests (pytest)");
        let outcome = Sandbox::new()
            .mount(Mount::read_only_at(&source, "/project"))
            .mount(Mount::read_only_at(&env.dir, ENV))
            .mount(Mount::read_only(&input.toolchain.base_prefix))
            .env("PYTHONPATH", "/project")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .cwd("/project")
            .limits(input.limits)
            .run(&[
                format!("{ENV}/bin/python"),
                "-m".into(),
                "pytest".into(),
                "-q".into(),
                "-p".into(),
                "no:cacheprovider".into(),
            ])
            .await;
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => return Err(log.fail(FailureKind::Internal, e.to_string())),
        };
        log.outcome(&outcome);
        if outcome.timed_out {
            return Err(log.fail(FailureKind::Timeout, "the tests did not finish in time"));
        }
        let no_pytest = String::from_utf8_lossy(&outcome.stderr).contains("No module named pytest");
        match outcome.exit_code {
            Some(0) | Some(5) => {}
            _ if no_pytest => {
                return Err(log.fail(
                    FailureKind::TestsFailed,
                    "the project has tests but pytest is not among its dependencies; add it, e.g. [dependency-groups] dev = [\"pytest\"]",
                ))
            }
            _ => return Err(log.fail(FailureKind::TestsFailed, format!("the project's tests failed:\n{}", tail_of(&outcome)))),
        }
    } else {
        log.step("no tests found");
    }

    log.step(&format!("derive the input schema of {}", spec.entrypoint));
    let python_env = PythonEnv { venv: &env.dir, base_prefix: &input.toolchain.base_prefix };
    let (input_schema, takes_context) = match introspect(&python_env, &source, &spec.entrypoint, input.limits).await {
        Ok(Introspection::Schema { input_schema, takes_context }) => (input_schema, takes_context),
        Ok(Introspection::Unusable { message, traceback, .. }) => {
            log.line(&traceback);
            return Err(log.fail(FailureKind::Entrypoint, message));
        }
        Err(e) => return Err(log.fail(FailureKind::Entrypoint, format!("the entrypoint could not be inspected: {e}"))),
    };

    let content_digest = digest(&source, &lock, &input_schema);
    log.step(&format!("store the artifact {content_digest}"));
    let artifact_dir = match keep_artifact(&source, input.artifacts, &content_digest) {
        Ok(dir) => dir,
        Err(e) => return Err(log.fail(FailureKind::Internal, format!("storing the artifact failed: {e}"))),
    };
    log.line("build succeeded");
    Ok(BuildOutput { spec, lock, env, input_schema, takes_context, content_digest, artifact_dir, log: log.0 })
}

fn uv_failure(mut log: Log, err: UvError, kind: FailureKind, what: &str) -> BuildFailure {
    match err {
        UvError::Failed(outcome) => {
            log.outcome(&outcome);
            if outcome.timed_out {
                log.fail(FailureKind::Timeout, format!("{what}: it did not finish in time"))
            } else {
                log.fail(kind, format!("{what}:\n{}", tail_of(&outcome)))
            }
        }
        UvError::Sandbox(e) => log.fail(FailureKind::Internal, e.to_string()),
        UvError::Io(e) => log.fail(FailureKind::Internal, e.to_string()),
    }
}

fn has_tests(project: &Path) -> bool {
    if project.join("tests").is_dir() || project.join("test").is_dir() {
        return true;
    }
    std::fs::read_dir(project)
        .map(|entries| {
            entries.filter_map(|e| e.ok()).any(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.ends_with(".py") && (name.starts_with("test_") || name.ends_with("_test.py"))
            })
        })
        .unwrap_or(false)
}

/// SHA-256 over every file of the source tree (path and content, in path order), the lock and
/// the schema: equal digests mean the same code, dependencies and interface.
fn digest(source: &Path, lock: &str, schema: &Value) -> String {
    let mut files = Vec::new();
    collect(source, source, &mut files);
    files.sort();
    let mut hash = Sha256::new();
    for (path, content) in files {
        hash.update(path.as_bytes());
        hash.update([0]);
        hash.update(Sha256::digest(&content));
    }
    hash.update(b"\0lock\0");
    hash.update(lock.as_bytes());
    hash.update(b"\0schema\0");
    hash.update(schema.to_string().as_bytes());
    hex::encode(hash.finalize())
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        let relative = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
        if kind.is_dir() {
            collect(root, &path, out);
        } else if kind.is_symlink() {
            let target = std::fs::read_link(&path).map(|t| t.to_string_lossy().into_owned()).unwrap_or_default();
            out.push((relative, format!("symlink:{target}").into_bytes()));
        } else if let Ok(content) = std::fs::read(&path) {
            out.push((relative, content));
        }
    }
}

fn keep_artifact(source: &Path, artifacts: &Path, digest: &str) -> std::io::Result<PathBuf> {
    let dest = artifacts.join(digest);
    if dest.exists() {
        return Ok(dest);
    }
    std::fs::create_dir_all(artifacts)?;
    let staging = tempfile::Builder::new().prefix(".staging-").tempdir_in(artifacts)?;
    copy_tree(source, staging.path())?;
    let staged = staging.keep();
    match std::fs::rename(&staged, &dest) {
        Ok(()) => Ok(dest),
        Err(_) if dest.exists() => {
            let _ = std::fs::remove_dir_all(&staged);
            Ok(dest)
        }
        Err(e) => Err(e),
    }
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            std::fs::create_dir(&target)?;
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
