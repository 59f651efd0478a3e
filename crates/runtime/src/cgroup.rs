//! Process-count and memory cgroups for sandboxes and for each invocation.
//!
//! `RLIMIT_NPROC` counts processes per user and `RLIMIT_AS` bounds one process, so neither can
//! bound what one invocation does through the processes it starts. A cgroup can: every process
//! inside counts against its `pids` and `memory` limits, whatever its user. Each sandbox gets a
//! cgroup whose limits bound the sandbox as a whole; inside it, `main` holds the sandbox's own
//! processes and `slot-K` cgroups (prepared before any invocation needs them) each bound one
//! invocation. Both cgroup versions are supported; with version 1 the `pids` and `memory`
//! hierarchies are separate trees, handled side by side. Where no hierarchy can be written to (a
//! service without the rights), sandboxes fall back to per-process limits, and the service says
//! so at start.
//!
//! Directories are named `toolsmith-<server pid>-<n>`, so that the leftovers of a server that
//! died (its sandboxes died with it) are recognised and removed when the next one starts.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The limits of one cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupLimits {
    /// Processes (and threads) at once.
    pub processes: u64,
    /// Memory in bytes (without swap), when bounded.
    pub memory_bytes: Option<u64>,
}

/// One controller's tree: where this server's cgroups go.
#[derive(Debug)]
struct Tree {
    /// The directory holding this server's cgroups.
    base: PathBuf,
    /// Which limit files this tree takes.
    controller: Controller,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Controller {
    /// cgroup v1 `pids` hierarchy.
    V1Pids,
    /// cgroup v1 `memory` hierarchy.
    V1Memory,
    /// The cgroup v2 unified hierarchy (both controllers).
    V2,
}

/// Where this process's sandbox cgroups are created.
#[derive(Debug)]
pub struct Cgroups {
    trees: Vec<Tree>,
    next: AtomicU64,
    memory: bool,
}

/// One cgroup (in every tree); removed when dropped, once its processes are gone.
#[derive(Debug)]
pub struct Cgroup {
    dirs: Vec<(PathBuf, Controller)>,
}

/// A sandbox's cgroup: the sandbox as a whole, its own processes, and the per-invocation slots.
#[derive(Debug)]
pub struct SandboxCgroup {
    /// Where the sandbox's own processes (bubblewrap, the zygote) live.
    pub main: Cgroup,
    /// One cgroup per invocation that may run at once.
    pub slots: Vec<Cgroup>,
    /// The sandbox as a whole; dropped last.
    _whole: Cgroup,
}

/// The path of this process's own cgroup in the hierarchy of `controller` (`""` for v2), from
/// `/proc/self/cgroup`.
fn own_path(controller: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
        list.split(',').any(|c| c == controller).then(|| path.trim_start_matches('/').to_owned())
    })
}

fn tree_name() -> String {
    static POOLS: AtomicU64 = AtomicU64::new(0);
    format!("toolsmith-{}-{}", std::process::id(), POOLS.fetch_add(1, Ordering::Relaxed))
}

impl Cgroups {
    /// Sets up a directory for this process's sandbox cgroups, or says why it cannot. Leftovers
    /// of servers that are no longer running are removed on the way.
    pub fn detect() -> Result<Cgroups, String> {
        let name = tree_name();
        let v1 = Path::new("/sys/fs/cgroup/pids");
        if v1.join("cgroup.procs").exists() {
            let parent = v1.join(own_path("pids").unwrap_or_default());
            remove_stale(&parent);
            let base = parent.join(&name);
            std::fs::create_dir_all(&base).map_err(|e| format!("cannot create {}: {e}", base.display()))?;
            let mut trees = vec![Tree { base, controller: Controller::V1Pids }];
            let memory_root = Path::new("/sys/fs/cgroup/memory");
            if memory_root.join("cgroup.procs").exists() {
                let parent = memory_root.join(own_path("memory").unwrap_or_default());
                remove_stale(&parent);
                let base = parent.join(&name);
                if std::fs::create_dir_all(&base).is_ok() {
                    trees.push(Tree { base, controller: Controller::V1Memory });
                }
            }
            let memory = trees.len() == 2;
            return Ok(Cgroups { trees, next: AtomicU64::new(0), memory });
        }
        let root = Path::new("/sys/fs/cgroup");
        let controllers = std::fs::read_to_string(root.join("cgroup.controllers"))
            .map_err(|e| format!("no cgroup filesystem: {e}"))?;
        let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
        if !has("pids") {
            return Err("the pids controller is not available".into());
        }
        let wanted = if has("memory") { "+pids +memory" } else { "+pids" };
        remove_stale(root);
        // The root cgroup may enable controllers for its children even though it holds
        // processes; below it, only a cgroup without processes may.
        std::fs::write(root.join("cgroup.subtree_control"), wanted).map_err(|e| format!("cannot enable pids: {e}"))?;
        let base = root.join(&name);
        std::fs::create_dir_all(&base).map_err(|e| format!("cannot create {}: {e}", base.display()))?;
        std::fs::write(base.join("cgroup.subtree_control"), wanted).map_err(|e| format!("cannot enable pids: {e}"))?;
        Ok(Cgroups {
            trees: vec![Tree { base, controller: Controller::V2 }],
            next: AtomicU64::new(0),
            memory: has("memory"),
        })
    }

    /// Whether cgroups made here can bound memory (not only processes).
    pub fn bounds_memory(&self) -> bool {
        self.memory
    }

    /// A new cgroup with `limits`.
    pub fn create(&self, limits: CgroupLimits) -> io::Result<Cgroup> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let name = format!("sandbox-{n}");
        let dirs = self.trees.iter().map(|t| (t.base.join(&name), t.controller)).collect();
        Cgroup::make(dirs, limits, false)
    }

    /// A cgroup for a sandbox with `whole` as the limits of everything in it, a `main` cgroup
    /// for its own processes and `slots` per-invocation cgroups with `each`.
    pub fn create_sandbox(&self, whole: CgroupLimits, slots: usize, each: CgroupLimits) -> io::Result<SandboxCgroup> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let name = format!("sandbox-{n}");
        let dirs: Vec<_> = self.trees.iter().map(|t| (t.base.join(&name), t.controller)).collect();
        let whole_cgroup = Cgroup::make(dirs.clone(), whole, true)?;
        let child = |leaf: &str, limits: CgroupLimits| {
            Cgroup::make(dirs.iter().map(|(d, c)| (d.join(leaf), *c)).collect(), limits, false)
        };
        let main = child("main", whole)?;
        let slots = (0..slots).map(|k| child(&format!("slot-{k}"), each)).collect::<io::Result<Vec<_>>>()?;
        Ok(SandboxCgroup { main, slots, _whole: whole_cgroup })
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for tree in &self.trees {
            let _ = std::fs::remove_dir(&tree.base);
        }
    }
}

impl Cgroup {
    fn make(dirs: Vec<(PathBuf, Controller)>, limits: CgroupLimits, parent: bool) -> io::Result<Cgroup> {
        let cgroup = Cgroup { dirs: Vec::new() };
        let mut cgroup = cgroup;
        for (dir, controller) in dirs {
            std::fs::create_dir(&dir)?;
            cgroup.dirs.push((dir.clone(), controller));
            match controller {
                Controller::V1Pids => std::fs::write(dir.join("pids.max"), limits.processes.to_string())?,
                Controller::V1Memory => {
                    if let Some(bytes) = limits.memory_bytes {
                        std::fs::write(dir.join("memory.limit_in_bytes"), bytes.to_string())?;
                        // With swap accounting, swap counts too; without it, the file is absent.
                        let _ = std::fs::write(dir.join("memory.memsw.limit_in_bytes"), bytes.to_string());
                    }
                }
                Controller::V2 => {
                    std::fs::write(dir.join("pids.max"), limits.processes.to_string())?;
                    if let Some(bytes) = limits.memory_bytes {
                        if dir.join("memory.max").exists() {
                            std::fs::write(dir.join("memory.max"), bytes.to_string())?;
                            let _ = std::fs::write(dir.join("memory.swap.max"), "0");
                        }
                    }
                    if parent {
                        let controllers = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
                        let wanted: Vec<String> = controllers
                            .split_whitespace()
                            .filter(|c| *c == "pids" || *c == "memory")
                            .map(|c| format!("+{c}"))
                            .collect();
                        std::fs::write(dir.join("cgroup.subtree_control"), wanted.join(" "))?;
                    }
                }
            }
        }
        Ok(cgroup)
    }

    /// The files a process writes `0` into to join this cgroup, one per tree.
    pub fn procs(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|(d, _)| d.join("cgroup.procs")).collect()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let dirs: Vec<PathBuf> = self.dirs.iter().map(|(d, _)| d.clone()).collect();
        // The sandbox's processes are being killed as this runs; the directory can only go once
        // they are gone, so retry for a moment off the caller's thread.
        std::thread::spawn(move || {
            for _ in 0..50 {
                let left: Vec<&PathBuf> =
                    dirs.iter().filter(|d| std::fs::remove_dir(d).is_err() && d.exists()).collect();
                if left.is_empty() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        });
    }
}

/// Removes the cgroups of toolsmith servers that no longer run, found under `parent`. Their
/// processes died with the server, so the directories are empty and can go, deepest first.
pub fn remove_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("toolsmith-")) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        remove_tree(&entry.path());
    }
}

fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}
