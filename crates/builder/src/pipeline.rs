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

/// Why a step of a build failed: the failure's kind and its one paragraph, which
/// [`build_in`] turns into the [`BuildFailure`] with the whole log.
struct Failed(FailureKind, String);

impl Failed {
    fn new(kind: FailureKind, message: impl Into<String>) -> Failed {
        Failed(kind, message.into())
    }

    fn internal(message: impl std::fmt::Display) -> Failed {
        Failed(FailureKind::Internal, message.to_string())
    }
}

type Step<T> = Result<T, Failed>;

/// The steps of [`build`], in the work directory `work`; each one writes its part of the log.
async fn build_in(input: BuildInput<'_>, work: &Path, mut log: Log) -> Result<BuildOutput, BuildFailure> {
    match steps(&input, work, &mut log).await {
        Ok(built) => {
            log.line("build succeeded");
            Ok(BuildOutput { log: log.0, ..built })
        }
        Err(Failed(kind, message)) => Err(log.fail(kind, message)),
    }
}

async fn steps(input: &BuildInput<'_>, work: &Path, log: &mut Log) -> Step<BuildOutput> {
    let source = export(input, work, log).await?;
    let spec = read_spec(input, &source, log).await?;
    let job = UvJob {
        toolchain: input.toolchain,
        org_id: input.org_id,
        identity: input.identities.build,
        network: &input.network,
        limits: &input.limits,
        work,
    };
    let lock = lock_of(input, &job, &source, log).await?;
    let Ok(lock_text) = String::from_utf8(lock.clone()) else {
        return Err(Failed::new(FailureKind::InvalidProject, "uv.lock is not UTF-8 text"));
    };
    log.step("install the environment");
    let env = match input.envs.ensure(&job, &source, &lock, log).await {
        Ok(env) => env,
        Err(e) => return Err(uv_failed(log, e, FailureKind::Install, "installing the dependencies failed")),
    };
    run_tests(input, &source, &env, log).await?;
    let (input_schema, takes_context, output_schema) = derive_schemas(input, &source, &env, &spec, log).await?;
    let (content_digest, artifact_dir) =
        store_artifact(input, &source, &lock_text, &input_schema, output_schema.as_ref(), log).await?;
    Ok(BuildOutput {
        spec,
        lock: lock_text,
        env,
        input_schema,
        takes_context,
        output_schema,
        content_digest,
        artifact_dir,
        log: String::new(),
    })
}

/// Writes the project's directory at the commit into `work/project`, from git's objects.
async fn export(input: &BuildInput<'_>, work: &Path, log: &mut Log) -> Step<PathBuf> {
    let source = work.join("project");
    log.step(&format!("export {} at {}", input.project_path, input.commit));
    std::fs::create_dir(&source)
        .and_then(|()| std::fs::set_permissions(&source, std::os::unix::fs::PermissionsExt::from_mode(0o755)))
        .map_err(Failed::internal)?;
    match export_tree(input.repo, input.commit, input.project_path, &source, TreeLimits::default()).await {
        Ok(()) => Ok(source),
        Err(ExportError::NotADirectory(p)) => {
            Err(Failed::new(FailureKind::ProjectNotFound, format!("the commit has no directory {p}")))
        }
        Err(ExportError::Refused(why)) => Err(Failed::new(FailureKind::InvalidProject, why)),
        Err(e) => Err(Failed::internal(e)),
    }
}

/// Reads `pyproject.toml` as data: what the project declares (entrypoint, env vars).
async fn read_spec(input: &BuildInput<'_>, source: &Path, log: &mut Log) -> Step<ProjectSpec> {
    log.step("read pyproject.toml");
    let pyproject = match read_project_file_async(source, "pyproject.toml", PYPROJECT_MAX_BYTES).await {
        Ok(bytes) => String::from_utf8(bytes)
            .map_err(|_| Failed::new(FailureKind::InvalidProject, "pyproject.toml is not UTF-8 text"))?,
        Err(ReadError::Missing(_)) => {
            return Err(Failed::new(
                FailureKind::ProjectNotFound,
                format!("{} has no pyproject.toml", input.project_path),
            ))
        }
        Err(ReadError::Refused(why)) => return Err(Failed::new(FailureKind::InvalidProject, why)),
        Err(e) => return Err(Failed::internal(e)),
    };
    let spec = ProjectSpec::parse(&pyproject).map_err(|why| Failed::new(FailureKind::InvalidProject, why))?;
    log.line(&format!(
        "entrypoint {}, envvars {:?}, secret_envvars {:?}",
        spec.entrypoint, spec.envvars, spec.secret_envvars
    ));
    Ok(spec)
}

/// The project's `uv.lock`, or one resolved now and kept with the source (so that the
/// artifact's digest covers what was installed).
async fn lock_of(input: &BuildInput<'_>, job: &UvJob<'_>, source: &Path, log: &mut Log) -> Step<Vec<u8>> {
    match read_project_file_async(source, "uv.lock", LOCK_MAX_BYTES).await {
        Ok(lock) => {
            log.step("uv.lock present: installing it as it is");
            Ok(lock)
        }
        Err(ReadError::Missing(_)) => {
            log.step("no uv.lock: resolving one");
            let lock = match input.envs.lock(job, source, log).await {
                Ok(lock) => lock,
                Err(e) => return Err(uv_failed(log, e, FailureKind::Resolution, "resolving the dependencies failed")),
            };
            let (path, content) = (source.join("uv.lock"), lock.clone());
            unblock(move || {
                std::fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(path)?.write_all(&content)
            })
            .await
            .map_err(|e| Failed::internal(format!("keeping the resolved lock failed: {e}")))?;
            Ok(lock)
        }
        Err(ReadError::Refused(why)) => Err(Failed::new(FailureKind::InvalidProject, why)),
        Err(e) => Err(Failed::internal(e)),
    }
}

/// Runs the project's tests with pytest, when it has any, as the organization's run identity
/// without network: a failing test fails the build.
async fn run_tests(input: &BuildInput<'_>, source: &Path, env: &ReadyEnv, log: &mut Log) -> Step<()> {
    let project = source.to_owned();
    let tests = unblock(move || Ok(has_tests(&project)))
        .await
        .map_err(|e| Failed::internal(format!("reading the project failed: {e}")))?;
    if !tests {
        log.step("no tests found");
        return Ok(());
    }
    log.step("run the tests (pytest)");
    let sandbox = Sandbox::new()
        .mount(Mount::read_only_at(source, "/project"))
        .mount(Mount::read_only_at(&env.dir, ENV))
        .mount(Mount::read_only(&input.toolchain.base_prefix))
        .env("PYTHONPATH", "/project")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .cwd("/project");
    let confined = Confined::new(sandbox, input.identities.run, &input.limits, input.envs.cgroups())
        .map_err(|e| Failed::internal(format!("cannot confine the tests: {e}")))?;
    let pytest = [
        format!("{ENV}/bin/python"),
        "-m".into(),
        "pytest".into(),
        "-q".into(),
        "-p".into(),
        "no:cacheprovider".into(),
    ];
    let outcome = confined.run(&pytest).await.map_err(Failed::internal)?;
    log.outcome(&outcome);
    if outcome.timed_out {
        return Err(Failed::new(FailureKind::Timeout, "the tests did not finish in time"));
    }
    let no_pytest = String::from_utf8_lossy(&outcome.stderr).contains("No module named pytest");
    match outcome.exit_code {
        Some(0) | Some(5) => Ok(()),
        _ if no_pytest => Err(Failed::new(
            FailureKind::TestsFailed,
            "the project has tests but pytest is not among its dependencies; add it, e.g. [dependency-groups] dev = [\"pytest\"]",
        )),
        _ => Err(Failed::new(FailureKind::TestsFailed, format!("the project's tests failed:\n{}", tail_of(&outcome)))),
    }
}

/// The entrypoint's input schema, whether it takes `context`, and its output schema when its
/// return annotation gives one. The entrypoint is imported: the project's own code runs, as the
/// organization's run identity under the build's limits, as in its tests.
async fn derive_schemas(
    input: &BuildInput<'_>,
    source: &Path,
    env: &ReadyEnv,
    spec: &ProjectSpec,
    log: &mut Log,
) -> Step<(Value, bool, Option<Value>)> {
    log.step(&format!("derive the input and output schemas of {}", spec.entrypoint));
    let python_env = PythonEnv { venv: &env.dir, base_prefix: &input.toolchain.base_prefix };
    let confined = Confined::new(Sandbox::new(), input.identities.run, &input.limits, input.envs.cgroups())
        .map_err(|e| Failed::internal(format!("cannot confine the schema extraction: {e}")))?;
    let inspected = introspect(&python_env, source, &spec.entrypoint, confined.sandbox()).await;
    drop(confined);
    match inspected {
        Ok(Introspection::Schema { input_schema, takes_context, output_schema, output_schema_problem }) => {
            match (&output_schema, output_schema_problem) {
                (Some(_), _) => log.line("output schema derived from the return annotation"),
                (None, Some(why)) => log.line(&format!("no output schema: {why}")),
                (None, None) => log.line("no output schema: the entrypoint has no return annotation"),
            }
            Ok((input_schema, takes_context, output_schema))
        }
        Ok(Introspection::Unusable { message, traceback, .. }) => {
            log.line(&traceback);
            Err(Failed::new(FailureKind::Entrypoint, message))
        }
        Err(e) => Err(Failed::new(FailureKind::Entrypoint, format!("the entrypoint could not be inspected: {e}"))),
    }
}

/// Digests what was built (source tree, lock, schemas) and keeps the tree as the artifact of
/// that digest; returns the digest and the artifact's directory.
async fn store_artifact(
    input: &BuildInput<'_>,
    source: &Path,
    lock_text: &str,
    input_schema: &Value,
    output_schema: Option<&Value>,
    log: &mut Log,
) -> Step<(String, PathBuf)> {
    let (tree, locked, schema, output) =
        (source.to_owned(), lock_text.to_owned(), input_schema.clone(), output_schema.cloned());
    let content_digest = unblock(move || digest(&tree, &locked, &schema, output.as_ref()))
        .await
        .map_err(|e| Failed::internal(format!("reading the source tree failed: {e}")))?;
    log.step(&format!("store the artifact {content_digest}"));
    let (kept, artifacts, name) = (source.to_owned(), input.artifacts.to_owned(), content_digest.clone());
    let artifact_dir = unblock(move || keep_artifact(&kept, &artifacts, &name))
        .await
        .map_err(|e| Failed::internal(format!("storing the artifact failed: {e}")))?;
    Ok((content_digest, artifact_dir))
}

/// A failed uv step, with its output in the log.
fn uv_failed(log: &mut Log, err: UvError, kind: FailureKind, what: &str) -> Failed {
    match err {
        UvError::Failed(outcome) => {
            log.outcome(&outcome);
            if outcome.timed_out {
                Failed::new(FailureKind::Timeout, format!("{what}: it did not finish in time"))
            } else {
                Failed::new(kind, format!("{what}:\n{}", tail_of(&outcome)))
            }
        }
        UvError::Refused(why) => Failed::new(FailureKind::InvalidProject, why),
        UvError::Sandbox(e) => Failed::internal(e),
        UvError::Io(e) => Failed::internal(e),
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
