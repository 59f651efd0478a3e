//! Private scratch space for builds, under `<data>/tmp`.
//!
//! Build work directories (exported sources, project copies being locked, throwaway caches)
//! live in the data directory rather than the system's `/tmp`: they are private to the server
//! (0700), on the disk the environments are on, and what a server that died left there is
//! found and removed. Each server process works in its own directory,
//! `<data>/tmp/<host>-<pid>-<start time>`, so that several servers may share a data directory;
//! when one starts, it removes the directories of the processes of its host that no longer run
//! (a server restarted with the same pid, as the first process of a container is, has another
//! start time).

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// This host's name, as a file name.
fn host() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String =
        name.trim().chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '_' }).collect();
    if name.is_empty() {
        "host".to_owned()
    } else {
        name
    }
}

/// When process `pid` started (clock ticks since boot), if it runs.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The name of this process's scratch directory.
fn own_name() -> String {
    let pid = std::process::id();
    format!("{}-{pid}-{}", host(), start_time(pid).unwrap_or(0))
}

/// Whether the scratch directory `name` belongs to a process of this host that no longer runs
/// (or is no scratch directory at all).
fn is_stale(name: &str, host: &str, own: &str) -> bool {
    if name == own {
        return false;
    }
    let mut parts = name.rsplitn(3, '-');
    let (Some(start), Some(pid), Some(their_host)) = (parts.next(), parts.next(), parts.next()) else {
        return true;
    };
    let (Ok(start), Ok(pid)) = (start.parse::<u64>(), pid.parse::<u32>()) else { return true };
    // Another host's server may be alive; only it can tell.
    their_host == host && start_time(pid) != Some(start)
}

/// Prepares `tmp` (mode 0700), removes what dead servers of this host left in it, and returns
/// this process's own scratch directory in it (mode 0700).
pub fn prepare(tmp: &Path) -> std::io::Result<PathBuf> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(tmp)?;
    std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o700))?;
    let (host, own) = (host(), own_name());
    for entry in std::fs::read_dir(tmp)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_stale(&name, &host, &own) {
            if let Err(e) = crate::tree::remove(&entry.path()) {
                tracing::warn!(path = %entry.path().display(), error = %e, "could not remove a dead server's scratch directory");
            }
        }
    }
    let dir = tmp.join(own);
    std::fs::DirBuilder::new().mode(0o700).create(&dir).or_else(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => Ok(()),
        _ => Err(e),
    })?;
    Ok(dir)
}

/// A private work directory inside the scratch directory, removed (however hostile its
/// contents) by [`WorkDir::remove`] or, failing that, when dropped.
#[derive(Debug)]
pub struct WorkDir {
    /// Empty once removed.
    path: PathBuf,
}

impl WorkDir {
    /// A new, empty directory (mode 0700) in `scratch`.
    pub fn new(scratch: &Path) -> std::io::Result<WorkDir> {
        let dir = tempfile::Builder::new().prefix("build-").tempdir_in(scratch)?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        Ok(WorkDir { path: dir.keep() })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the directory on the blocking pool and returns once it is gone: what a build
    /// leaves in it (a copy of the project, a half-installed environment, a cache of built
    /// wheels) can take a while to remove.
    pub async fn remove(mut self) {
        let path = std::mem::take(&mut self.path);
        let _ = tokio::task::spawn_blocking(move || remove_logged(&path, &[])).await;
    }
}

/// Removes `path`, and after a failure again after each of `retries`.
fn remove_logged(path: &Path, retries: &[Duration]) {
    let mut result = crate::tree::remove(path);
    for wait in retries {
        if result.is_ok() {
            return;
        }
        std::thread::sleep(*wait);
        result = crate::tree::remove(path);
    }
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "could not remove a build's work directory");
    }
}

/// How long a dropped work directory's removal keeps trying: a step of the cancelled build
/// that was running on the blocking pool goes on writing into the directory until it ends.
const AFTER_CANCEL: [Duration; 4] =
    [Duration::from_millis(100), Duration::from_millis(500), Duration::from_secs(2), Duration::from_secs(5)];

impl Drop for WorkDir {
    /// A build that ends normally removes its directory itself; one whose future was dropped
    /// (its request went away) or that panicked gets here. Inside a runtime the removal goes to
    /// the blocking pool, so that the executor thread dropping the build is not held up by it;
    /// what is left (the runtime shut down first, a step never stopped writing) goes at the
    /// next start of the server, with the rest of this process's scratch space.
    fn drop(&mut self) {
        if self.path.as_os_str().is_empty() {
            return;
        }
        let path = std::mem::take(&mut self.path);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || remove_logged(&path, &AFTER_CANCEL))),
            Err(_) => remove_logged(&path, &[]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_servers_directories_go_and_live_ones_stay() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("tmp");
        let own = prepare(&root).unwrap();
        let (host, pid) = (host(), std::process::id());
        // A process of this host that no longer runs: the server's own pid with another start.
        let dead = root.join(format!("{host}-{pid}-1"));
        std::fs::create_dir_all(dead.join("build-x/project")).unwrap();
        let elsewhere = root.join("otherhost-1-1");
        std::fs::create_dir(&elsewhere).unwrap();
        let work = WorkDir::new(&own).unwrap();
        assert_eq!(prepare(&root).unwrap(), own);
        assert!(!dead.exists(), "a dead server's scratch directory is removed");
        assert!(elsewhere.exists(), "another host's is not this server's to judge");
        assert!(work.path().exists(), "this process's own work goes on");
        let mode = std::fs::metadata(work.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let path = work.path().to_owned();
        drop(work);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn a_work_directory_goes_whether_removed_or_dropped_in_a_runtime() {
        let scratch = tempfile::tempdir().unwrap();
        let filled = || {
            let work = WorkDir::new(scratch.path()).unwrap();
            std::fs::create_dir_all(work.path().join("env/lib")).unwrap();
            std::fs::write(work.path().join("env/lib/site.py"), "x").unwrap();
            let path = work.path().to_owned();
            (work, path)
        };
        let (work, path) = filled();
        work.remove().await;
        assert!(!path.exists(), "removed by the time remove returns");

        // A build whose future is dropped: the removal is handed to the blocking pool.
        let (work, path) = filled();
        drop(work);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while path.exists() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(!path.exists(), "removed after the drop");
    }
}
