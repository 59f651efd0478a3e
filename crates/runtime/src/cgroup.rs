//! Process-count cgroups for sandboxes.
//!
//! `RLIMIT_NPROC` counts processes per user and does not bind root, so a service running as root
//! could not stop a fork bomb with it. A `pids` cgroup per sandbox can: every process inside
//! counts against the cgroup's `pids.max`, whatever its user. Both cgroup versions are
//! supported; where neither can be written to (a service without the rights), sandboxes fall
//! back to `RLIMIT_NPROC`, and the service says so at start.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where this service's sandbox cgroups are created.
#[derive(Debug)]
pub struct Cgroups {
    base: PathBuf,
    next: AtomicU64,
}

/// One sandbox's cgroup; removed when dropped (once its processes are gone).
#[derive(Debug)]
pub struct Cgroup {
    dir: PathBuf,
}

impl Cgroups {
    /// Sets up a directory for this process's sandbox cgroups, or says why it cannot.
    pub fn detect() -> Result<Cgroups, String> {
        static POOLS: AtomicU64 = AtomicU64::new(0);
        let name = format!("toolsmith-{}-{}", std::process::id(), POOLS.fetch_add(1, Ordering::Relaxed));
        let v1 = Path::new("/sys/fs/cgroup/pids");
        if v1.join("cgroup.procs").exists() {
            let base = v1.join(&name);
            return match std::fs::create_dir_all(&base) {
                Ok(()) => Ok(Cgroups { base, next: AtomicU64::new(0) }),
                Err(e) => Err(format!("cannot create {}: {e}", base.display())),
            };
        }
        let root = Path::new("/sys/fs/cgroup");
        let controllers = std::fs::read_to_string(root.join("cgroup.controllers"))
            .map_err(|e| format!("no cgroup filesystem: {e}"))?;
        if !controllers.split_whitespace().any(|c| c == "pids") {
            return Err("the pids controller is not available".into());
        }
        // The root cgroup may enable controllers for its children even though it holds
        // processes; below it, only a cgroup without processes may.
        std::fs::write(root.join("cgroup.subtree_control"), "+pids").map_err(|e| format!("cannot enable pids: {e}"))?;
        let base = root.join(&name);
        std::fs::create_dir_all(&base).map_err(|e| format!("cannot create {}: {e}", base.display()))?;
        std::fs::write(base.join("cgroup.subtree_control"), "+pids").map_err(|e| format!("cannot enable pids: {e}"))?;
        Ok(Cgroups { base, next: AtomicU64::new(0) })
    }

    /// A new cgroup allowing at most `max_processes` processes at once.
    pub fn create(&self, max_processes: u64) -> io::Result<Cgroup> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.base.join(format!("sandbox-{n}"));
        std::fs::create_dir(&dir)?;
        let cgroup = Cgroup { dir };
        std::fs::write(cgroup.dir.join("pids.max"), max_processes.to_string())?;
        Ok(cgroup)
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.base);
    }
}

impl Cgroup {
    /// The file a process writes itself into to join.
    pub fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let dir = self.dir.clone();
        // The sandbox's processes are being killed as this runs; the directory can only go once
        // they are gone, so retry for a moment off the caller's thread.
        std::thread::spawn(move || {
            for _ in 0..50 {
                if std::fs::remove_dir(&dir).is_ok() || !dir.exists() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        });
    }
}
