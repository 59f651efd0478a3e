//! The bubblewrap sandbox for running untrusted code to completion.
//!
//! What a sandboxed process sees: `/usr` (and the merged-`/usr` links `/bin`, `/lib`, …) and a
//! few files of `/etc` needed for name resolution and TLS, read-only; the mounts the caller
//! names (read-only unless said otherwise); a private `/tmp`; its own `/proc` and `/dev`. It has
//! its own PID, IPC, UTS and (unless network is allowed) network namespaces, a cleared
//! environment, a new session (no terminal injection) and dies with the server.
//!
//! Resource limits are set on bubblewrap itself and inherited: address space, CPU seconds, file
//! size and open files. The wall-clock timeout kills bubblewrap, which takes the whole PID
//! namespace — every process the code started — with it. Output is captured up to a cap and
//! the rest drained and dropped, so a process that prints without end neither blocks nor
//! fills memory.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// Why a sandboxed run could not happen (as opposed to the code failing inside it).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// bubblewrap could not be started.
    #[error("could not start bubblewrap (is it installed?): {0}")]
    Spawn(std::io::Error),
    /// Waiting for or reading from the process failed.
    #[error("i/o error around the sandbox: {0}")]
    Io(#[from] std::io::Error),
}

/// A host path made visible inside the sandbox.
#[derive(Debug, Clone)]
pub struct Mount {
    /// The path on the host.
    pub host: PathBuf,
    /// Where it appears inside.
    pub inside: PathBuf,
    /// Whether the code may write to it.
    pub writable: bool,
}

impl Mount {
    /// A read-only mount at the same path inside as outside.
    pub fn read_only(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        Mount { inside: path.clone(), host: path, writable: false }
    }

    /// A read-only mount at another path inside.
    pub fn read_only_at(host: impl Into<PathBuf>, inside: impl Into<PathBuf>) -> Self {
        Mount { host: host.into(), inside: inside.into(), writable: false }
    }

    /// A writable mount at another path inside.
    pub fn writable_at(host: impl Into<PathBuf>, inside: impl Into<PathBuf>) -> Self {
        Mount { host: host.into(), inside: inside.into(), writable: true }
    }
}

/// Resource limits of a sandboxed run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Address space in bytes (`RLIMIT_AS`).
    pub memory_bytes: u64,
    /// CPU time in seconds (`RLIMIT_CPU`).
    pub cpu_secs: u64,
    /// Largest file the code may write, in bytes (`RLIMIT_FSIZE`).
    pub file_size_bytes: u64,
    /// Open file descriptors (`RLIMIT_NOFILE`).
    pub open_files: u64,
    /// Wall-clock time before everything is killed.
    pub timeout: Duration,
    /// Bytes of stdout and of stderr kept each.
    pub output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 2 << 30,
            cpu_secs: 60,
            file_size_bytes: 256 << 20,
            open_files: 256,
            timeout: Duration::from_secs(60),
            output_bytes: 1 << 20,
        }
    }
}

/// How a sandboxed run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The exit code, when the process exited.
    pub exit_code: Option<i32>,
    /// The signal that ended it, when one did (a CPU or file size limit, or the timeout's kill).
    pub signal: Option<i32>,
    /// Whether the wall-clock timeout ended it.
    pub timed_out: bool,
    /// Captured standard output (at most the cap).
    pub stdout: Vec<u8>,
    /// Captured standard error (at most the cap).
    pub stderr: Vec<u8>,
    /// Whether output beyond the cap was dropped.
    pub truncated: bool,
    /// Wall-clock time.
    pub duration: Duration,
}

impl Outcome {
    /// Whether the process exited with status 0 in time.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }

    /// The end of stderr then stdout as text, for build logs and error messages.
    pub fn tail(&self, bytes: usize) -> String {
        let mut text = String::from_utf8_lossy(&self.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&self.stderr));
        if text.len() > bytes {
            let mut start = text.len() - bytes;
            while !text.is_char_boundary(start) {
                start += 1;
            }
            text = text[start..].to_owned();
        }
        text
    }
}

/// A sandboxed command about to run.
#[derive(Debug, Clone)]
pub struct Sandbox {
    mounts: Vec<Mount>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
    network: bool,
    limits: Limits,
    as_pid_1: bool,
    cgroup_procs: Option<PathBuf>,
    max_processes: Option<u64>,
}

/// Files of `/etc` that programs need for name resolution, TLS and user lookups; nothing else
/// of the host's configuration is visible.
const ETC_FILES: &[&str] = &[
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/localtime",
    "/etc/passwd",
    "/etc/group",
];

impl Sandbox {
    /// A sandbox with no mounts beyond the system's, no network and default limits.
    pub fn new() -> Self {
        Sandbox {
            mounts: Vec::new(),
            env: Vec::new(),
            cwd: PathBuf::from("/"),
            network: false,
            limits: Limits::default(),
            as_pid_1: false,
            cgroup_procs: None,
            max_processes: None,
        }
    }

    /// Runs the command itself as PID 1 of the sandbox's PID namespace instead of under
    /// bubblewrap's reaper. The kernel then ignores signals to it from inside the sandbox that
    /// it has no handler for (SIGKILL included), so the code it runs cannot kill it, and it
    /// must reap orphans itself.
    pub fn as_pid_1(mut self, yes: bool) -> Self {
        self.as_pid_1 = yes;
        self
    }

    /// Joins the sandbox to a process-count cgroup (the path of its `cgroup.procs`) before
    /// bubblewrap starts, so every process inside counts against that cgroup's `pids.max`.
    pub fn cgroup(mut self, procs: Option<PathBuf>) -> Self {
        self.cgroup_procs = procs;
        self
    }

    /// Sets `RLIMIT_NPROC`. The kernel counts it per user and does not apply it to root, so it
    /// is a fallback for when no cgroup is available and the service runs as its own user.
    pub fn max_processes(mut self, limit: Option<u64>) -> Self {
        self.max_processes = limit;
        self
    }

    /// Adds a mount.
    pub fn mount(mut self, mount: Mount) -> Self {
        self.mounts.push(mount);
        self
    }

    /// Sets an environment variable inside (the environment starts empty).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The working directory inside.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = dir.into();
        self
    }

    /// Allows network access (the host's network namespace).
    pub fn network(mut self, allowed: bool) -> Self {
        self.network = allowed;
        self
    }

    /// Sets the limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The bubblewrap command line for `argv`.
    fn command(&self, argv: &[OsString]) -> Command {
        let mut cmd = Command::new("bwrap");
        // bubblewrap runs as PID 1 of the sandbox and its own environment is readable there
        // through /proc/1/environ: it must not inherit the server's.
        cmd.env_clear();
        cmd.args(["--die-with-parent", "--new-session", "--unshare-all", "--clearenv"]);
        // Run as root, bubblewrap would keep every capability inside the sandbox.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            cmd.args(["--cap-drop", "ALL"]);
        }
        if self.as_pid_1 {
            cmd.arg("--as-pid-1");
        }
        if self.network {
            cmd.arg("--share-net");
        }
        cmd.args(["--ro-bind", "/usr", "/usr"]);
        for link in ["/bin", "/sbin", "/lib", "/lib32", "/lib64"] {
            let path = Path::new(link);
            match std::fs::read_link(path) {
                Ok(target) => {
                    cmd.arg("--symlink").arg(target).arg(path);
                }
                Err(_) if path.is_dir() => {
                    cmd.arg("--ro-bind").arg(path).arg(path);
                }
                Err(_) => {}
            }
        }
        for etc in ETC_FILES {
            if Path::new(etc).exists() {
                cmd.arg("--ro-bind").arg(etc).arg(etc);
            }
        }
        cmd.args(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]);
        for m in &self.mounts {
            cmd.arg(if m.writable { "--bind" } else { "--ro-bind" }).arg(&m.host).arg(&m.inside);
        }
        // The sandbox's root is a tmpfs holding the mount points; left writable, files written
        // there (`/etc/x`, `/x`) would outlive an invocation. Only `/tmp` and writable mounts
        // take writes.
        cmd.args(["--remount-ro", "/"]);
        cmd.args([
            "--setenv",
            "PATH",
            "/usr/local/bin:/usr/bin:/bin",
            "--setenv",
            "HOME",
            "/tmp",
            "--setenv",
            "TMPDIR",
            "/tmp",
        ]);
        for (k, v) in &self.env {
            cmd.arg("--setenv").arg(k).arg(v);
        }
        cmd.arg("--chdir").arg(&self.cwd);
        cmd.arg("--").args(argv);
        let limits = self.limits;
        let nproc = self.max_processes;
        let cgroup =
            self.cgroup_procs.as_ref().and_then(|p| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).ok());
        // SAFETY: only async-signal-safe calls (open, write, close, setrlimit) between fork and
        // exec; the path was allocated before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(path) = &cgroup {
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let written = libc::write(fd, b"0\n".as_ptr().cast(), 2);
                    libc::close(fd);
                    if written != 2 {
                        return Err(std::io::Error::other("could not join the sandbox's cgroup"));
                    }
                }
                if let Some(n) = nproc {
                    set_limit(libc::RLIMIT_NPROC, n)?;
                }
                set_limit(libc::RLIMIT_AS, limits.memory_bytes)?;
                set_limit(libc::RLIMIT_CPU, limits.cpu_secs)?;
                set_limit(libc::RLIMIT_FSIZE, limits.file_size_bytes)?;
                set_limit(libc::RLIMIT_NOFILE, limits.open_files)?;
                set_limit(libc::RLIMIT_CORE, 0)?;
                Ok(())
            });
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        cmd
    }

    /// Starts `argv` inside the sandbox with its stdin, stdout and stderr piped, for a process
    /// that lives on and talks over its pipes. The limits' timeout does not apply; the process
    /// is killed when the returned child is dropped (and with the server).
    pub fn spawn<S: Into<OsString> + Clone>(&self, argv: &[S]) -> Result<tokio::process::Child, SandboxError> {
        let argv: Vec<OsString> = argv.iter().cloned().map(Into::into).collect();
        let mut cmd = self.command(&argv);
        cmd.stdin(Stdio::piped());
        cmd.spawn().map_err(SandboxError::Spawn)
    }

    /// Runs `argv` inside the sandbox to completion (or to the timeout).
    pub async fn run<S: Into<OsString> + Clone>(&self, argv: &[S]) -> Result<Outcome, SandboxError> {
        let argv: Vec<OsString> = argv.iter().cloned().map(Into::into).collect();
        let started = Instant::now();
        let mut child = self.command(&argv).spawn().map_err(SandboxError::Spawn)?;
        let cap = self.limits.output_bytes;
        let stdout = capture(child.stdout.take(), cap);
        let stderr = capture(child.stderr.take(), cap);
        let waited = tokio::time::timeout(self.limits.timeout, child.wait()).await;
        let (status, timed_out) = match waited {
            Ok(status) => (status?, false),
            Err(_) => {
                // Killing bubblewrap ends its PID namespace and every process in it.
                child.start_kill()?;
                (child.wait().await?, true)
            }
        };
        let (stdout, out_truncated) = stdout.await.unwrap_or_default();
        let (stderr, err_truncated) = stderr.await.unwrap_or_default();
        Ok(Outcome {
            exit_code: status.code(),
            signal: status.signal(),
            timed_out,
            stdout,
            stderr,
            truncated: out_truncated || err_truncated,
            duration: started.elapsed(),
        })
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
    let limit = libc::rlimit { rlim_cur: value, rlim_max: value };
    // SAFETY: setrlimit with a valid pointer to a stack value.
    if unsafe { libc::setrlimit(resource, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn capture<R: AsyncRead + Unpin + Send + 'static>(
    pipe: Option<R>,
    cap: usize,
) -> tokio::task::JoinHandle<(Vec<u8>, bool)> {
    tokio::spawn(async move {
        let Some(mut pipe) = pipe else { return (Vec::new(), false) };
        let mut kept = Vec::new();
        let mut truncated = false;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match pipe.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = cap.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                    truncated |= n > room;
                }
            }
        }
        (kept, truncated)
    })
}
