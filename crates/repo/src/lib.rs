//! The organizations' tool repositories.
//!
//! Every organization owns one bare git repository, `<root>/<org>.git`. Clients clone and push
//! through git's smart HTTP protocol, which [`smart_http`] serves by running the real `git
//! upload-pack` / `git receive-pack` and streaming bodies in both directions; the service reads
//! the repository (files, directories, history, branches) through [`browse`], in process: git
//! itself reads the objects, in long-lived `git cat-file` processes, and the walks over them
//! follow git's own rules (see the private `objects` and `history` modules). Builds take a
//! project's tree out through [`export`].
//!
//! Every git command runs with the system and user configuration switched off, and never with
//! a caller's string in an option position: refs and paths are validated first ([`names`]) and
//! passed after `--end-of-options` or `--`.

pub mod browse;
mod error;
pub mod export;
mod git;
mod history;
pub mod names;
mod objects;
pub mod offline;
pub mod scaffold;
pub mod smart_http;

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use error::RepoError;
use git::Git;

/// Where the repositories live, and the limits applied to them.
#[derive(Clone)]
pub struct RepoStore {
    root: PathBuf,
    limits: Limits,
    readers: Arc<Mutex<HashMap<String, Arc<objects::Repo>>>>,
}

impl std::fmt::Debug for RepoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoStore").field("root", &self.root).field("limits", &self.limits).finish()
    }
}

/// The most repositories whose readers (and their `cat-file` processes) are kept open.
const OPEN_READERS: usize = 32;

/// Limits that protect the service from very large inputs and outputs.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest pack a push may send, in bytes.
    pub max_push_bytes: u64,
    /// The largest file the browsing endpoints return, in bytes.
    pub max_file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_push_bytes: 256 << 20, max_file_bytes: 10 << 20 }
    }
}

/// The identity of commits the service itself makes (the scaffold commit).
const SERVICE_NAME: &str = "toolsmith";
const SERVICE_EMAIL: &str = "toolsmith@localhost";

impl RepoStore {
    /// A store rooted at `root` (created when missing).
    pub fn new(root: PathBuf, limits: Limits) -> Result<RepoStore, RepoError> {
        std::fs::create_dir_all(&root)?;
        Ok(RepoStore { root, limits, readers: Arc::default() })
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The directory of an organization's repository.
    pub fn path_of(&self, org: &str) -> Result<PathBuf, RepoError> {
        names::check_org(org)?;
        Ok(self.root.join(format!("{org}.git")))
    }

    fn git(&self, org: &str) -> Result<Git, RepoError> {
        let dir = self.path_of(org)?;
        if !dir.join("HEAD").exists() {
            return Err(RepoError::NoRepository);
        }
        Ok(Git::new(dir))
    }

    /// The in-process reader of the organization's repository, opened on first use and opened
    /// anew when the repository directory was replaced.
    fn reader(&self, org: &str) -> Result<Arc<objects::Repo>, RepoError> {
        let dir = self.path_of(org)?;
        let meta = match std::fs::metadata(&dir) {
            Ok(m) if m.is_dir() && dir.join("HEAD").exists() => m,
            Ok(_) => return Err(RepoError::NoRepository),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(RepoError::NoRepository),
            Err(e) => return Err(e.into()),
        };
        // A directory made again may get the same inode number; its birth time tells it apart.
        let born = meta.created().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        let identity = (meta.dev(), meta.ino(), born.map_or(0, |d| d.as_nanos()));
        let mut readers = objects::lock(&self.readers);
        if let Some(repo) = readers.get(org).filter(|r| r.identity == identity) {
            return Ok(repo.clone());
        }
        if readers.len() >= OPEN_READERS {
            // Dropping a reader stops its processes once the reads holding it finish.
            let evicted: Vec<String> = readers.keys().take(OPEN_READERS / 4).cloned().collect();
            for key in evicted {
                readers.remove(&key);
            }
        }
        let repo = Arc::new(objects::Repo::open(dir, identity));
        readers.insert(org.to_owned(), repo.clone());
        Ok(repo)
    }

    /// Whether the organization's repository exists.
    pub fn exists(&self, org: &str) -> bool {
        self.path_of(org).map(|p| p.join("HEAD").exists()).unwrap_or(false)
    }

    /// Creates the organization's repository with one commit on `main` holding the scaffold
    /// under `hello_world/`. Creating a repository that exists already changes nothing.
    ///
    /// The repository is built in a temporary directory and renamed into place, so a crash
    /// leaves either no repository or a complete one.
    pub async fn create(&self, org: &str) -> Result<(), RepoError> {
        let dir = self.path_of(org)?;
        if dir.join("HEAD").exists() {
            return Ok(());
        }
        let staging = tempfile::Builder::new().prefix(".creating-").tempdir_in(&self.root)?;
        let bare = staging.path().join("repo.git");
        Git::run_global(&["init", "--quiet", "--bare", "--initial-branch=main"], Some(&bare)).await?;
        let git = Git::new(bare.clone());
        git.run(&["config", "receive.denyDeletes", "false"]).await?;
        git.run(&["config", "core.logAllRefUpdates", "true"]).await?;
        smart_http::install_hooks(&bare)?;
        let commit = scaffold::commit_into(&git, "hello_world").await?;
        git.run(&["update-ref", "refs/heads/main", &commit]).await?;
        match std::fs::rename(&bare, &dir) {
            Ok(()) => Ok(()),
            // Another process created it at the same moment: theirs is as good as ours.
            Err(_) if dir.join("HEAD").exists() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The root directory of all repositories.
    pub fn root(&self) -> &Path {
        &self.root
    }
}
