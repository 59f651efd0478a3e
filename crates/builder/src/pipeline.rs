//! The build of one project at one commit, step by step, with a log of every step.
//!
//! Who runs what: uv (resolving, installing) runs as the organization's build identity, with the
//! organization's own cache; the project's tests run as its run identity, with the project and
//! its environment read-only and no cache at all. The source tree is the server's: exported
//! from git into a private work directory, read on the host only through
//! [`read_project_file`](crate::files::read_project_file), and never mounted writable.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};
use toolsmith_repo::export::{export_tree, ExportError, TreeLimits};
use toolsmith_runtime::introspect::{introspect, Introspection, PythonEnv};
use toolsmith_runtime::{Mount, Network, Outcome, Sandbox};

use crate::blocking::unblock;
use crate::environment::{copy_tree, EnvStore, ReadyEnv, Toolchain, UvError, UvJob, ENV};
use crate::files::{read_project_file_async, ReadError, LOCK_MAX_BYTES, PYPROJECT_MAX_BYTES};
use crate::log::Log;
use crate::project::ProjectSpec;
use crate::scratch::WorkDir;
use crate::steps::{BuildLimits, Confined, Identities};

/// What to build and with what.
pub struct BuildInput<'a> {
    /// The organization the build is for (its slug names its caches and environments).
    pub org_id: &'a str,
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
    /// The organization's sandbox identities.
    pub identities: Identities,
    /// How resolving and installing reach the package index (tests and schema extraction run
    /// without a network).
    pub network: Network,
    /// Limits of each sandboxed step.
    pub limits: BuildLimits,
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
    /// The schema of the entrypoint's result (the JSON the harness makes of it), derived from
    /// its return annotation; `None` without one or when it has no JSON form (the log says why).
    pub output_schema: Option<Value>,
    /// SHA-256 over (source tree, lock, schemas).
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
    /// The project breaks the contract: its `pyproject.toml` says something wrong, or its
    /// tree holds what the server does not read (links or special files where a file is read,
    /// files over their size cap, `..` or `.git` entries, too many or too large files).
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

fn tail_of(outcome: &Outcome) -> String {
    outcome.tail(1500).trim().to_owned()
}

/// Builds `input.project_path` at `input.commit`, in a work directory that is gone when it
/// returns.
pub async fn build(input: BuildInput<'_>) -> Result<BuildOutput, BuildFailure> {
    let log = Log::default();
    if toolsmith_domain::OrgId::parse(input.org_id).is_err() {
        return Err(log.fail(FailureKind::Internal, format!("{:?} is not an organization", input.org_id)));
    }
    let scratch = input.envs.scratch().to_owned();
    let work = match unblock(move || WorkDir::new(&scratch)).await {
        Ok(w) => w,
        Err(e) => return Err(log.fail(FailureKind::Internal, format!("no work directory: {e}"))),
    };
    let built = build_in(input, work.path(), log).await;
    work.remove().await;
    built
}

/// The steps of [`build`], in the work directory `work`.
async fn build_in(input: BuildInput<'_>, work: &Path, mut log: Log) -> Result<BuildOutput, BuildFailure> {
    let source = work.join("project");
    log.step(&format!("export {} at {}", input.project_path, input.commit));
    if let Err(e) = std::fs::create_dir(&source)
        .and_then(|()| std::fs::set_permissions(&source, std::os::unix::fs::PermissionsExt::from_mode(0o755)))
    {
        return Err(log.fail(FailureKind::Internal, e.to_string()));
    }
    match export_tree(input.repo, input.commit, input.project_path, &source, TreeLimits::default()).await {
        Ok(()) => {}
        Err(ExportError::NotADirectory(p)) => {
            return Err(log.fail(FailureKind::ProjectNotFound, format!("the commit has no directory {p}")))
        }
        Err(ExportError::Refused(why)) => return Err(log.fail(FailureKind::InvalidProject, why)),
        Err(e) => return Err(log.fail(FailureKind::Internal, e.to_string())),
    }

    log.step("read pyproject.toml");
    let pyproject = match read_project_file_async(&source, "pyproject.toml", PYPROJECT_MAX_BYTES).await {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(_) => return Err(log.fail(FailureKind::InvalidProject, "pyproject.toml is not UTF-8 text")),
        },
        Err(ReadError::Missing(_)) => {
            return Err(log.fail(FailureKind::ProjectNotFound, format!("{} has no pyproject.toml", input.project_path)))
        }
        Err(ReadError::Refused(why)) => return Err(log.fail(FailureKind::InvalidProject, why)),
        Err(e) => return Err(log.fail(FailureKind::Internal, e.to_string())),
    };
    let spec = match ProjectSpec::parse(&pyproject) {
        Ok(spec) => spec,
        Err(why) => return Err(log.fail(FailureKind::InvalidProject, why)),
    };
    log.line(&format!(
        "entrypoint {}, envvars {:?}, secret_envvars {:?}",
        spec.entrypoint, spec.envvars, spec.secret_envvars
    ));

    let job = UvJob {
        toolchain: input.toolchain,
        org_id: input.org_id,
        identity: input.identities.build,
        network: &input.network,
        limits: &input.limits,
        work,
    };
    let lock = match read_project_file_async(&source, "uv.lock", LOCK_MAX_BYTES).await {
        Ok(lock) => {
            log.step("uv.lock present: installing it as it is");
            lock
        }
        Err(ReadError::Missing(_)) => {
            log.step("no uv.lock: resolving one");
            let lock = match input.envs.lock(&job, &source, &mut log).await {
                Ok(lock) => lock,
                Err(e) => return Err(uv_failure(log, e, FailureKind::Resolution, "resolving the dependencies failed")),
            };
            let (path, content) = (source.join("uv.lock"), lock.clone());
            let written = unblock(move || {
                std::fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(path)?.write_all(&content)
            })
            .await;
            if let Err(e) = written {
                return Err(log.fail(FailureKind::Internal, format!("keeping the resolved lock failed: {e}")));
            }
            lock
        }
        Err(ReadError::Refused(why)) => return Err(log.fail(FailureKind::InvalidProject, why)),
        Err(e) => return Err(log.fail(FailureKind::Internal, e.to_string())),
    };
    let Ok(lock_text) = String::from_utf8(lock.clone()) else {
        return Err(log.fail(FailureKind::InvalidProject, "uv.lock is not UTF-8 text"));
    };

    log.step("install the environment");
    let env = match input.envs.ensure(&job, &source, &lock, &mut log).await {
        Ok(env) => env,
        Err(e) => return Err(uv_failure(log, e, FailureKind::Install, "installing the dependencies failed")),
    };

    let project = source.clone();
    let tests = match unblock(move || Ok(has_tests(&project))).await {
        Ok(tests) => tests,
        Err(e) => return Err(log.fail(FailureKind::Internal, format!("reading the project failed: {e}"))),
    };
    if tests {
        log.step("run the tests (pytest)");
        let sandbox = Sandbox::new()
            .mount(Mount::read_only_at(&source, "/project"))
            .mount(Mount::read_only_at(&env.dir, ENV))
            .mount(Mount::read_only(&input.toolchain.base_prefix))
            .env("PYTHONPATH", "/project")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .cwd("/project");
        let confined = match Confined::new(sandbox, input.identities.run, &input.limits, input.envs.cgroups()) {
            Ok(c) => c,
            Err(e) => return Err(log.fail(FailureKind::Internal, format!("cannot confine the tests: {e}"))),
        };
        let outcome = confined
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

    log.step(&format!("derive the input and output schemas of {}", spec.entrypoint));
    // The entrypoint is imported: the project's own code runs, as the organization's run
    // identity under the build's limits, as in its tests.
    let python_env = PythonEnv { venv: &env.dir, base_prefix: &input.toolchain.base_prefix };
    let confined = match Confined::new(Sandbox::new(), input.identities.run, &input.limits, input.envs.cgroups()) {
        Ok(c) => c,
        Err(e) => return Err(log.fail(FailureKind::Internal, format!("cannot confine the schema extraction: {e}"))),
    };
    let inspected = introspect(&python_env, &source, &spec.entrypoint, confined.sandbox()).await;
    drop(confined);
    let (input_schema, takes_context, output_schema) = match inspected {
        Ok(Introspection::Schema { input_schema, takes_context, output_schema, output_schema_problem }) => {
            match (&output_schema, output_schema_problem) {
                (Some(_), _) => log.line("output schema derived from the return annotation"),
                (None, Some(why)) => log.line(&format!("no output schema: {why}")),
                (None, None) => log.line("no output schema: the entrypoint has no return annotation"),
            }
            (input_schema, takes_context, output_schema)
        }
        Ok(Introspection::Unusable { message, traceback, .. }) => {
            log.line(&traceback);
            return Err(log.fail(FailureKind::Entrypoint, message));
        }
        Err(e) => return Err(log.fail(FailureKind::Entrypoint, format!("the entrypoint could not be inspected: {e}"))),
    };

    let (tree, locked, schema, output) =
        (source.clone(), lock_text.clone(), input_schema.clone(), output_schema.clone());
    let content_digest = match unblock(move || digest(&tree, &locked, &schema, output.as_ref())).await {
        Ok(d) => d,
        Err(e) => return Err(log.fail(FailureKind::Internal, format!("reading the source tree failed: {e}"))),
    };
    log.step(&format!("store the artifact {content_digest}"));
    let (kept, artifacts, name) = (source.clone(), input.artifacts.to_owned(), content_digest.clone());
    let artifact_dir = match unblock(move || keep_artifact(&kept, &artifacts, &name)).await {
        Ok(dir) => dir,
        Err(e) => return Err(log.fail(FailureKind::Internal, format!("storing the artifact failed: {e}"))),
    };
    log.line("build succeeded");
    Ok(BuildOutput {
        spec,
        lock: lock_text,
        env,
        input_schema,
        takes_context,
        output_schema,
        content_digest,
        artifact_dir,
        log: log.0,
    })
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
        UvError::Refused(why) => log.fail(FailureKind::InvalidProject, why),
        UvError::Sandbox(e) => log.fail(FailureKind::Internal, e.to_string()),
        UvError::Io(e) => log.fail(FailureKind::Internal, e.to_string()),
    }
}

/// Whether the project has tests for pytest to find. Only names are looked at, never followed:
/// a `tests` link counts (pytest follows it inside the sandbox), and what it points at on the
/// host stays unknown.
fn has_tests(project: &Path) -> bool {
    let present = |name: &str| {
        std::fs::symlink_metadata(project.join(name)).is_ok_and(|m| m.is_dir() || m.file_type().is_symlink())
    };
    if present("tests") || present("test") {
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
/// the schemas: equal digests mean the same code, dependencies and interface. Files are hashed
/// as streams, whatever their size. A project without an output schema hashes as it did before
/// output schemas were derived, so its artifact keeps its name.
fn digest(source: &Path, lock: &str, schema: &Value, output_schema: Option<&Value>) -> std::io::Result<String> {
    let mut files = Vec::new();
    collect(source, source, &mut files)?;
    files.sort();
    let mut hash = Sha256::new();
    for (path, content) in files {
        hash.update(path.as_bytes());
        hash.update([0]);
        hash.update(content);
    }
    hash.update(b"\0lock\0");
    hash.update(lock.as_bytes());
    hash.update(b"\0schema\0");
    hash.update(schema.to_string().as_bytes());
    if let Some(output_schema) = output_schema {
        hash.update(b"\0output schema\0");
        hash.update(output_schema.to_string().as_bytes());
    }
    Ok(hex::encode(hash.finalize()))
}

/// Every file below `dir` with the SHA-256 of its content (of `symlink:<target>` for a link).
fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, [u8; 32])>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        let relative = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
        if kind.is_dir() {
            collect(root, &path, out)?;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(&path)?.to_string_lossy().into_owned();
            out.push((relative, Sha256::digest(format!("symlink:{target}")).into()));
        } else if kind.is_file() {
            let mut hash = Sha256::new();
            std::io::copy(&mut std::fs::File::open(&path)?, &mut hash)?;
            out.push((relative, hash.finalize().into()));
        }
    }
    Ok(())
}

/// Keeps the source tree under its digest, sealed: read-only for every sandbox identity.
fn keep_artifact(source: &Path, artifacts: &Path, digest: &str) -> std::io::Result<PathBuf> {
    let dest = artifacts.join(digest);
    if dest.exists() {
        return Ok(dest);
    }
    std::fs::create_dir_all(artifacts)?;
    let staging = tempfile::Builder::new().prefix(".staging-").tempdir_in(artifacts)?;
    copy_tree(source, staging.path())?;
    crate::tree::seal(staging.path())?;
    let staged = staging.keep();
    match std::fs::rename(&staged, &dest) {
        Ok(()) => Ok(dest),
        Err(_) if dest.exists() => {
            let _ = crate::tree::remove(&staged);
            Ok(dest)
        }
        Err(e) => Err(e),
    }
}
