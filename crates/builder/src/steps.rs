//! How each sandboxed build step is confined: whose identity it runs as and what it may use.
//!
//! Every step (resolving, installing, testing, inspecting) runs in its own sandbox under the
//! same limits as an invocation has them: a process count and a memory bound for the step as a
//! whole (a cgroup; without one, `RLIMIT_NPROC` for the identity), a capped `/tmp`, per-process
//! address space, CPU and file size limits, and a wall-clock timeout.

use std::time::Duration;

use toolsmith_runtime::cgroup::{Cgroup, CgroupLimits, Cgroups};
use toolsmith_runtime::{Identity, Limits, Outcome, Sandbox, SandboxError};

/// The limits of each build step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildLimits {
    /// Wall-clock time of one step; everything it started is killed after it.
    pub timeout: Duration,
    /// CPU seconds one process of a step may use.
    pub cpu_secs: u64,
    /// Memory of a step: all its processes together (with a cgroup) and each one's address space.
    pub memory_bytes: u64,
    /// Processes and threads a step may have at once.
    pub processes: u64,
    /// The size of a step's `/tmp` (and of its `/dev/shm`).
    pub tmp_bytes: u64,
    /// The largest file a step may write.
    pub file_size_bytes: u64,
}

impl Default for BuildLimits {
    fn default() -> Self {
        BuildLimits {
            timeout: Duration::from_secs(300),
            cpu_secs: 300,
            memory_bytes: 2 << 30,
            processes: 256,
            tmp_bytes: 512 << 20,
            file_size_bytes: Limits::default().file_size_bytes,
        }
    }
}

impl BuildLimits {
    /// The per-process limits of the sandbox.
    pub fn sandbox_limits(&self) -> Limits {
        Limits {
            memory_bytes: self.memory_bytes,
            cpu_secs: self.cpu_secs,
            file_size_bytes: self.file_size_bytes,
            timeout: self.timeout,
            ..Limits::default()
        }
    }
}

/// The two host identities of the organization a build is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identities {
    /// Resolves and installs: owns the organization's uv cache and environments being staged.
    pub build: Identity,
    /// Runs the project's own code (its tests, its schema extraction), as its invocations do.
    pub run: Identity,
}

/// A sandbox with its step's limits applied, and the cgroup it joins (removed when dropped).
pub(crate) struct Confined {
    sandbox: Sandbox,
    _cgroup: Option<Cgroup>,
}

impl Confined {
    /// Applies `limits` to `sandbox`, which runs as `identity`; with `cgroups`, in a cgroup of
    /// its own.
    pub(crate) fn new(
        sandbox: Sandbox,
        identity: Identity,
        limits: &BuildLimits,
        cgroups: Option<&Cgroups>,
    ) -> std::io::Result<Confined> {
        let sandbox = sandbox.identity(identity).tmp_bytes(limits.tmp_bytes).limits(limits.sandbox_limits());
        Ok(match cgroups {
            Some(cgroups) => {
                let cgroup = cgroups
                    .create(CgroupLimits { processes: limits.processes, memory_bytes: Some(limits.memory_bytes) })?;
                Confined { sandbox: sandbox.cgroups(cgroup.procs()), _cgroup: Some(cgroup) }
            }
            // RLIMIT_NPROC counts every process of the identity on the host, so concurrent
            // steps of one organization share it; a cgroup would bound each step alone.
            None => Confined { sandbox: sandbox.max_processes(Some(limits.processes)), _cgroup: None },
        })
    }

    /// The confined sandbox, for a step that adds to it and runs it itself.
    pub(crate) fn sandbox(&self) -> Sandbox {
        self.sandbox.clone()
    }

    /// Runs `argv` in the sandbox to completion or to the timeout. With a cgroup, it returns
    /// only once every process of the step is gone: bubblewrap reports the command's end while
    /// the processes it left are still being killed, and what the step wrote must not change
    /// while the server handles it.
    pub(crate) async fn run<S: Into<std::ffi::OsString> + Clone>(&self, argv: &[S]) -> Result<Outcome, SandboxError> {
        let outcome = self.sandbox.run(argv).await?;
        if let Some(cgroup) = &self._cgroup {
            let deadline = std::time::Instant::now() + LINGER;
            while !is_empty(cgroup) {
                if std::time::Instant::now() > deadline {
                    return Err(SandboxError::Io(std::io::Error::other(
                        "the step's processes were still running after it ended",
                    )));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(outcome)
    }
}

/// How long a step's processes may take to die once the step has ended.
const LINGER: Duration = Duration::from_secs(10);

fn is_empty(cgroup: &Cgroup) -> bool {
    cgroup.procs().iter().all(|procs| std::fs::read(procs).is_ok_and(|pids| pids.iter().all(u8::is_ascii_whitespace)))
}
