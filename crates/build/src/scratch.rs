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
/// contents) when dropped.
#[derive(Debug)]
pub struct WorkDir {
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
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = crate::tree::remove(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove a build's work directory");
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
}
