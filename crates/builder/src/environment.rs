//! Python environments, built once per (organization, interpreter, lock) and shared by every
//! version of that organization with the same key.
//!
//! Nothing writable is shared between organizations. Each has its own uv cache
//! (`uv-caches/<org>`) and its own environments (`envs/<org>/<key>`), and uv works as the
//! organization's build identity, which owns that cache. uv reaches the package index through
//! the build network, and with the cache writable it only resolves and installs wheels
//! (`--no-build`): no code of the project or of its dependencies runs. When something must be
//! built from source (a path dependency, an sdist, metadata that is not static), the step runs
//! again without the organization's cache, in a throwaway cache of this build's own, so that a
//! build backend never sees a cache any later build trusts.
//!
//! An environment is installed in the build's work directory and moved into place only when
//! complete, so an interrupted build leaves nothing a later one would trust; once complete it is
//! sealed (owned by root where the server is root, read-only for everyone else) and never
//! changed again.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use toolsmith_runtime::cgroup::Cgroups;
use toolsmith_runtime::sandbox::running_as_root;
use toolsmith_runtime::{Identity, Mount, Network, Outcome, Sandbox, SandboxError, Secret};

use crate::blocking::unblock;
use crate::files::{read_project_file_async, ReadError, LOCK_MAX_BYTES};
use crate::log::Log;
use crate::steps::{BuildLimits, Confined};
use crate::tree;

/// Where the project is mounted while uv works on it.
const PROJECT: &str = "/project";
/// Where the environment is built; it is mounted at the same place when the tool runs, so the
/// paths uv writes into it stay valid.
pub const ENV: &str = "/env";
const UV: &str = "/opt/uv/uv";
const CACHE: &str = "/uv-cache";

/// Environment variables passed from the server to uv when set: how the machine reaches its
/// package index (mirrors, proxies, certificates). They are read once, when the toolchain is
/// discovered.
const PASSED_TO_UV: &[&str] = &[
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_INDEX",
    "UV_NATIVE_TLS",
    "SSL_CERT_FILE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// The interpreter tools run on and the uv that installs their dependencies.
#[derive(Debug, Clone)]
pub struct Toolchain {
    /// The real uv binary.
    pub uv: PathBuf,
    /// The interpreter (`sys.executable` of a base installation, not a shim).
    pub python: PathBuf,
    /// Its installation prefix (`sys.base_prefix`), mounted read-only wherever it runs.
    pub base_prefix: PathBuf,
    /// Its version (`3.11.7`), part of every environment key.
    pub version: String,
    /// The server's settings for reaching the package index ([`PASSED_TO_UV`]) as they were at
    /// discovery. An index URL or a proxy may carry credentials, hence a [`Secret`].
    uv_env: Secret<Vec<(String, String)>>,
}

impl Toolchain {
    /// Finds the toolchain from `python` (a command or path; shims are resolved by asking the
    /// interpreter itself) and `uv` (a path, or found next to the interpreter or on `PATH`).
    pub async fn discover(python: &str, uv: Option<&Path>) -> Result<Toolchain, String> {
        let out = tokio::process::Command::new(python)
            .args([
                "-I",
                "-c",
                "import sys, platform; print(sys.executable); print(sys.base_prefix); print(platform.python_version())",
            ])
            .output()
            .await
            .map_err(|e| format!("cannot run {python}: {e}"))?;
        if !out.status.success() {
            return Err(format!("{python} failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let (Some(exe), Some(prefix), Some(version)) = (lines.next(), lines.next(), lines.next()) else {
            return Err(format!("{python} did not describe itself"));
        };
        let uv = match uv {
            Some(path) => path.to_owned(),
            None => {
                find_uv(python).await.ok_or("uv not found: install it with `python3 -m pip install uv` or set --uv")?
            }
        };
        let uv = tokio::fs::canonicalize(&uv).await.map_err(|e| format!("uv at {}: {e}", uv.display()))?;
        let uv_env =
            PASSED_TO_UV.iter().filter_map(|name| Some((name.to_string(), std::env::var(name).ok()?))).collect();
        Ok(Toolchain {
            uv,
            python: PathBuf::from(exe),
            base_prefix: PathBuf::from(prefix),
            version: version.to_owned(),
            uv_env: Secret::new(uv_env),
        })
    }

    fn sandbox(&self) -> Sandbox {
        let mut sandbox = Sandbox::new()
            .mount(Mount::read_only_at(&self.uv, UV))
            .mount(Mount::read_only(&self.base_prefix))
            .env("UV_PYTHON_DOWNLOADS", "never")
            .env("UV_CACHE_DIR", CACHE)
            .env("UV_LINK_MODE", "copy")
            .env("UV_NO_PROGRESS", "1")
            .env("UV_PROJECT_ENVIRONMENT", ENV)
            .cwd(PROJECT);
        for (name, value) in self.uv_env.expose() {
            sandbox = sandbox.env(name, value);
            if name == "SSL_CERT_FILE" {
                sandbox = sandbox.mount(Mount::read_only(value));
            }
        }
        sandbox
    }
}

async fn find_uv(python: &str) -> Option<PathBuf> {
    let out =
        tokio::process::Command::new(python).args(["-c", "import uv; print(uv.find_uv_bin())"]).output().await.ok()?;
    if out.status.success() {
        return Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("uv")).find(|p| p.is_file())
}

/// Where builds happen: the organizations' environments and uv caches, this server's scratch
/// space, and the cgroups of build sandboxes.
#[derive(Debug, Clone)]
pub struct EnvStore {
    root: PathBuf,
    caches: PathBuf,
    scratch: PathBuf,
    cgroups: Arc<Result<Cgroups, String>>,
}

/// A ready environment.
#[derive(Debug, Clone)]
pub struct ReadyEnv {
    /// Its key: `<organization>/<hash>`, its path below the environments directory.
    pub key: String,
    /// Its directory (mounted at [`ENV`] to run).
    pub dir: PathBuf,
    /// Whether it already existed.
    pub reused: bool,
}

/// A uv step that did not succeed.
#[derive(Debug)]
pub enum UvError {
    /// The sandbox could not run.
    Sandbox(SandboxError),
    /// uv ran and failed (resolution or installation); the outcome holds its output.
    Failed(Outcome),
    /// What uv left is not something the server reads (the message says what).
    Refused(String),
    /// The filesystem failed.
    Io(std::io::Error),
}

/// What one uv step works on and as whom.
pub(crate) struct UvJob<'a> {
    /// Interpreter and uv.
    pub toolchain: &'a Toolchain,
    /// The organization (a validated slug: it names directories).
    pub org_id: &'a str,
    /// The organization's build identity.
    pub identity: Identity,
    /// How uv reaches the package index.
    pub network: &'a Network,
    /// The limits of each step.
    pub limits: &'a BuildLimits,
    /// The build's private work directory.
    pub work: &'a Path,
}

fn private_dir(path: &Path) -> std::io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// The organization's uv cache in `caches`, owned by its build identity.
fn org_cache(caches: &Path, org_id: &str, identity: Identity) -> std::io::Result<PathBuf> {
    let dir = caches.join(org_id);
    private_dir(&dir)?;
    // A cache made under another identity (another uid base) is still this organization's.
    if running_as_root() && std::fs::symlink_metadata(&dir)?.uid() != identity.uid {
        tree::give(&dir, identity)?;
    }
    Ok(dir)
}

/// A cache for this build alone (in its work directory), for the steps that may run build
/// backends.
fn throwaway_cache(work: &Path, identity: Identity) -> std::io::Result<PathBuf> {
    let dir = work.join("uv-cache");
    private_dir(&dir)?;
    tree::give(&dir, identity)?;
    Ok(dir)
}

/// Makes `staging` the empty directory uv installs an environment into, owned by `identity`;
/// `fresh` removes what an earlier attempt left there first.
fn stage(staging: &Path, identity: Identity, fresh: bool) -> std::io::Result<()> {
    if fresh {
        tree::remove(staging)?;
    }
    std::fs::DirBuilder::new().mode(0o755).create(staging)?;
    tree::give(staging, identity)
}

impl EnvStore {
    /// Environments under `data/envs`, uv caches under `data/uv-caches`, scratch space under
    /// `data/tmp` (where what dead servers left is removed now). The cache that every
    /// organization once shared (`data/uv-cache`) is removed: nothing may trust it.
    pub fn new(data: &Path) -> std::io::Result<EnvStore> {
        let root = data.join("envs");
        let caches = data.join("uv-caches");
        std::fs::create_dir_all(&root)?;
        std::fs::create_dir_all(data)?;
        private_dir(&caches)?;
        let shared = data.join("uv-cache");
        if shared.exists() {
            tracing::info!(path = %shared.display(), "removing the uv cache organizations used to share");
            tree::remove(&shared)?;
        }
        let scratch = crate::scratch::prepare(&data.join("tmp"))?;
        Ok(EnvStore { root, caches, scratch, cgroups: Arc::new(Cgroups::detect()) })
    }

    /// The directory of the environment with `key` (which exists once a build made it). Keys
    /// come from version records: `<organization>/<hash>`, or a bare hash for environments
    /// built before environments were kept per organization.
    pub fn path_of(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// The key of the environment for `lock` on `toolchain`, for organization `org_id`.
    pub fn key(org_id: &str, lock: &[u8], toolchain: &Toolchain) -> String {
        let mut hash = Sha256::new();
        hash.update(b"toolsmith-env-v1\0");
        hash.update(toolchain.version.as_bytes());
        hash.update(b"\0");
        hash.update(lock);
        format!("{org_id}/{}", hex::encode(hash.finalize()))
    }

    /// This server process's scratch directory (private; emptied of dead servers' leftovers).
    pub fn scratch(&self) -> &Path {
        &self.scratch
    }

    /// Why build steps have no cgroup (and fall back to `RLIMIT_NPROC`), when they have none.
    pub fn cgroup_problem(&self) -> Option<&str> {
        self.cgroups.as_ref().as_ref().err().map(String::as_str)
    }

    /// The cgroups build steps are confined in, when there are any.
    pub(crate) fn cgroups(&self) -> Option<&Cgroups> {
        self.cgroups.as_ref().as_ref().ok()
    }

    async fn run_uv(&self, job: &UvJob<'_>, mounts: Vec<Mount>, args: &[&str]) -> Result<Outcome, UvError> {
        let mut sandbox = job.toolchain.sandbox().network(job.network.clone());
        for mount in mounts {
            sandbox = sandbox.mount(mount);
        }
        let confined = Confined::new(sandbox, job.identity, job.limits, self.cgroups()).map_err(UvError::Io)?;
        confined.run(args).await.map_err(UvError::Sandbox)
    }

    /// Resolves `project`'s dependencies and returns the `uv.lock` uv wrote. uv works on a copy
    /// of the project in the build's work directory, so the source tree is never writable by a
    /// sandbox.
    pub(crate) async fn lock(&self, job: &UvJob<'_>, project: &Path, log: &mut Log) -> Result<Vec<u8>, UvError> {
        let copy = job.work.join("lock");
        let (from, to, caches, org_id, identity) =
            (project.to_owned(), copy.clone(), self.caches.clone(), job.org_id.to_owned(), job.identity);
        let cache = unblock(move || {
            std::fs::create_dir(&to)?;
            copy_tree(&from, &to)?;
            tree::give(&to, identity)?;
            org_cache(&caches, &org_id, identity)
        })
        .await
        .map_err(UvError::Io)?;
        let python = job.toolchain.python.to_string_lossy().into_owned();
        let wheels_only = self
            .run_uv(
                job,
                vec![Mount::writable_at(&copy, PROJECT), Mount::writable_at(&cache, CACHE)],
                &[UV, "lock", "--no-build", "--python", &python],
            )
            .await?;
        if !wheels_only.success() {
            if wheels_only.timed_out {
                return Err(UvError::Failed(wheels_only));
            }
            log.outcome(&wheels_only);
            log.line(
                "resolving without building anything failed: again with builds allowed, in a cache of this build's own",
            );
            let (work, identity) = (job.work.to_owned(), job.identity);
            let throwaway = unblock(move || throwaway_cache(&work, identity)).await.map_err(UvError::Io)?;
            let built = self
                .run_uv(
                    job,
                    vec![Mount::writable_at(&copy, PROJECT), Mount::writable_at(&throwaway, CACHE)],
                    &[UV, "lock", "--python", &python],
                )
                .await?;
            if !built.success() {
                return Err(UvError::Failed(built));
            }
            log.outcome(&built);
        } else {
            log.outcome(&wheels_only);
        }
        match read_project_file_async(&copy, "uv.lock", LOCK_MAX_BYTES).await {
            Ok(lock) => Ok(lock),
            Err(ReadError::Refused(why)) => Err(UvError::Refused(format!("the resolved lock: {why}"))),
            Err(ReadError::Missing(_)) => Err(UvError::Refused("uv wrote no uv.lock".into())),
            Err(ReadError::Io(_, e)) => Err(UvError::Io(e)),
        }
    }

    /// The environment for `lock` (the `uv.lock` of `project`), installed if it does not exist
    /// yet; what uv printed goes to `log`.
    pub(crate) async fn ensure(
        &self,
        job: &UvJob<'_>,
        project: &Path,
        lock: &[u8],
        log: &mut Log,
    ) -> Result<ReadyEnv, UvError> {
        let key = EnvStore::key(job.org_id, lock, job.toolchain);
        let dir = self.path_of(&key);
        let staging = job.work.join("env");
        let identity = job.identity;
        let prepared = {
            let (dir, org_envs, caches, org_id, staging) =
                (dir.clone(), self.root.join(job.org_id), self.caches.clone(), job.org_id.to_owned(), staging.clone());
            unblock(move || {
                if dir.join(".complete").exists() {
                    return Ok(None);
                }
                std::fs::create_dir_all(&org_envs)?;
                let cache = org_cache(&caches, &org_id, identity)?;
                stage(&staging, identity, false)?;
                Ok(Some(cache))
            })
            .await
            .map_err(UvError::Io)?
        };
        let Some(cache) = prepared else {
            log.line(&format!("reusing environment {key}"));
            return Ok(ReadyEnv { key, dir, reused: true });
        };
        let python = job.toolchain.python.to_string_lossy().into_owned();
        let sync = [UV, "sync", "--frozen", "--no-install-project", "--python", &python];
        let wheels_only = self
            .run_uv(
                job,
                vec![
                    Mount::read_only_at(project, PROJECT),
                    Mount::writable_at(&cache, CACHE),
                    Mount::writable_at(&staging, ENV),
                ],
                &[&sync[..], &["--no-build"]].concat(),
            )
            .await?;
        if !wheels_only.success() {
            if wheels_only.timed_out {
                return Err(UvError::Failed(wheels_only));
            }
            log.outcome(&wheels_only);
            log.line("installing without building anything failed: again with builds allowed, in a cache of this build's own");
            let (restaged, work) = (staging.clone(), job.work.to_owned());
            let throwaway = unblock(move || {
                stage(&restaged, identity, true)?;
                throwaway_cache(&work, identity)
            })
            .await
            .map_err(UvError::Io)?;
            let built = self
                .run_uv(
                    job,
                    vec![
                        Mount::read_only_at(project, PROJECT),
                        Mount::writable_at(&throwaway, CACHE),
                        Mount::writable_at(&staging, ENV),
                    ],
                    &sync,
                )
                .await?;
            if !built.success() {
                return Err(UvError::Failed(built));
            }
            log.outcome(&built);
        } else {
            log.outcome(&wheels_only);
        }
        let (marker, target) = (key.clone(), dir.clone());
        unblock(move || {
            tree::seal(&staging)?;
            mark_complete(&staging, &marker)?;
            match std::fs::rename(&staging, &target) {
                Ok(()) => Ok(()),
                // Another build finished the same environment first; theirs is identical.
                Err(_) if target.join(".complete").exists() => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await
        .map_err(UvError::Io)?;
        Ok(ReadyEnv { key, dir, reused: false })
    }
}

/// Writes the marker of a complete environment into `staging`. What sandboxed code left there
/// (a `.complete` link to a server file, say) is removed first, and the marker is created anew,
/// never written through a link.
fn mark_complete(staging: &Path, key: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let marker = staging.join(".complete");
    tree::remove(&marker)?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&marker)?
        .write_all(key.as_bytes())
}

/// Copies a tree the server exported (directories, regular files, links; never followed).
pub(crate) fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            std::fs::create_dir(&target)?;
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_toolchain_shows_no_index_or_proxy_credentials() {
        let toolchain = Toolchain {
            uv: PathBuf::from("/usr/bin/uv"),
            python: PathBuf::from("/usr/bin/python3"),
            base_prefix: PathBuf::from("/usr"),
            version: "3.11.7".to_owned(),
            uv_env: Secret::new(vec![
                ("UV_INDEX_URL".to_owned(), "https://builder:pypi-tok-6c1d@mirror.example/simple".to_owned()),
                ("HTTPS_PROXY".to_owned(), "http://ops:proxy-pass-93@proxy.example:3128".to_owned()),
            ]),
        };
        for text in [format!("{toolchain:?}"), format!("{toolchain:#?}")] {
            for secret in ["pypi-tok-6c1d", "proxy-pass-93", "mirror.example", "proxy.example"] {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
            assert!(text.contains("<redacted 2>") && text.contains("3.11.7"), "{text}");
        }
    }
}
