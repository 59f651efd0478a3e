//! Python environments, built once per (lock, interpreter) and shared by every version with the
//! same key.
//!
//! An environment is built in a staging directory and renamed into place only when complete,
//! so an interrupted build leaves nothing a later one would trust; a complete environment is
//! never changed again. uv runs inside the sandbox with network access (to reach the package
//! index) and with only the project, its own binary, the interpreter, its cache and the staging
//! directory mounted.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use toolsmith_runtime::{Limits, Mount, Outcome, Sandbox, SandboxError};

/// Where the project is mounted while uv works on it.
const PROJECT: &str = "/project";
/// Where the environment is built; it is mounted at the same place when the tool runs, so the
/// paths uv writes into it stay valid.
pub const ENV: &str = "/env";
const UV: &str = "/opt/uv/uv";
const CACHE: &str = "/uv-cache";

/// Environment variables passed from the server to uv when set: how the machine reaches its
/// package index (mirrors, proxies, certificates).
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
        let uv = std::fs::canonicalize(&uv).map_err(|e| format!("uv at {}: {e}", uv.display()))?;
        Ok(Toolchain {
            uv,
            python: PathBuf::from(exe),
            base_prefix: PathBuf::from(prefix),
            version: version.to_owned(),
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
        for name in PASSED_TO_UV {
            if let Ok(value) = std::env::var(name) {
                sandbox = sandbox.env(name, &value);
            }
        }
        if let Ok(cert) = std::env::var("SSL_CERT_FILE") {
            sandbox = sandbox.mount(Mount::read_only(cert));
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

/// The environments directory and uv's cache.
#[derive(Debug, Clone)]
pub struct EnvStore {
    root: PathBuf,
    cache: PathBuf,
}

/// A ready environment.
#[derive(Debug, Clone)]
pub struct ReadyEnv {
    /// Its key.
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
    /// The filesystem failed.
    Io(std::io::Error),
}

impl EnvStore {
    /// Environments under `root/envs`, uv's cache under `root/uv-cache`.
    pub fn new(root: &Path) -> std::io::Result<EnvStore> {
        let store = EnvStore { root: root.join("envs"), cache: root.join("uv-cache") };
        std::fs::create_dir_all(&store.root)?;
        std::fs::create_dir_all(&store.cache)?;
        Ok(store)
    }

    /// The directory of the environment with `key` (which exists once a build made it).
    pub fn path_of(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// The key of the environment for `lock` on `toolchain`.
    pub fn key(lock: &[u8], toolchain: &Toolchain) -> String {
        let mut hash = Sha256::new();
        hash.update(b"toolsmith-env-v1\0");
        hash.update(toolchain.version.as_bytes());
        hash.update(b"\0");
        hash.update(lock);
        hex::encode(hash.finalize())
    }

    /// Resolves `project`'s dependencies into a `uv.lock` (written into `project`, which must be
    /// a private writable copy).
    pub async fn lock(&self, toolchain: &Toolchain, project: &Path, limits: Limits) -> Result<Outcome, UvError> {
        let outcome = toolchain
            .sandbox()
            .mount(Mount::writable_at(project, PROJECT))
            .mount(Mount::writable_at(&self.cache, CACHE))
            .network(true)
            .limits(limits)
            .run(&[UV, "lock", "--python", &toolchain.python.to_string_lossy()])
            .await
            .map_err(UvError::Sandbox)?;
        if outcome.success() {
            Ok(outcome)
        } else {
            Err(UvError::Failed(outcome))
        }
    }

    /// The environment for `project`'s `uv.lock`, installed if it does not exist yet.
    pub async fn ensure(
        &self,
        toolchain: &Toolchain,
        project: &Path,
        limits: Limits,
    ) -> Result<(ReadyEnv, Option<Outcome>), UvError> {
        let lock = std::fs::read(project.join("uv.lock")).map_err(UvError::Io)?;
        let key = EnvStore::key(&lock, toolchain);
        let dir = self.root.join(&key);
        if dir.join(".complete").exists() {
            return Ok((ReadyEnv { key, dir, reused: true }, None));
        }
        let staging = tempfile::Builder::new().prefix(".staging-").tempdir_in(&self.root).map_err(UvError::Io)?;
        let outcome = toolchain
            .sandbox()
            .mount(Mount::read_only_at(project, PROJECT))
            .mount(Mount::writable_at(&self.cache, CACHE))
            .mount(Mount::writable_at(staging.path(), ENV))
            .network(true)
            .limits(limits)
            .run(&[UV, "sync", "--frozen", "--no-install-project", "--python", &toolchain.python.to_string_lossy()])
            .await
            .map_err(UvError::Sandbox)?;
        if !outcome.success() {
            return Err(UvError::Failed(outcome));
        }
        std::fs::write(staging.path().join(".complete"), &key).map_err(UvError::Io)?;
        let staged = staging.keep();
        match std::fs::rename(&staged, &dir) {
            Ok(()) => {}
            // Another build finished the same environment first; theirs is identical.
            Err(_) if dir.join(".complete").exists() => {
                let _ = std::fs::remove_dir_all(&staged);
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staged);
                return Err(UvError::Io(e));
            }
        }
        Ok((ReadyEnv { key, dir, reused: false }, Some(outcome)))
    }
}
