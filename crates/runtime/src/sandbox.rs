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

use std::ffi::{CString, OsString};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::egress::{EgressLink, EgressPolicy};
use crate::secret::Secret;

/// Why a sandboxed run could not happen (as opposed to the code failing inside it).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// bubblewrap could not be started.
    #[error("could not start bubblewrap (is it installed?): {0}")]
    Spawn(std::io::Error),
    /// Waiting for or reading from the process failed.
    #[error("i/o error around the sandbox: {0}")]
    Io(#[from] std::io::Error),
    /// The sandbox's egress link could not be set up.
    #[error("could not connect the sandbox's network: {0}")]
    Egress(std::io::Error),
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

/// The unprivileged host identity sandboxed code runs as.
///
/// When the server runs as root, bubblewrap keeps only `CAP_SETUID` and `CAP_SETGID`, and
/// `setpriv` switches to this identity (with no supplementary groups and `no_new_privs`) before
/// anything of the tool's runs; the capabilities are gone with the switch. When the server runs
/// as another user it cannot change identities: the code then runs as the server's own uid in a
/// user namespace of its own, and the identity is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity {
    /// Host user id; never 0.
    pub uid: u32,
    /// Host group id; never 0.
    pub gid: u32,
}

/// What a sandbox is for: each organization has one identity to run its tools and another to
/// build them, so that what a build leaves owned (its caches) is never writable by a running tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Invocations, schema extraction and tests.
    Run,
    /// Dependency resolution and installation.
    Build,
}

impl Identity {
    /// The traditional `nobody`: what a sandbox runs as when its caller names no identity.
    pub const NOBODY: Identity = Identity { uid: 65534, gid: 65534 };

    /// The identity for `purpose` of the organization with sandbox slot `slot`: uids from `base`
    /// on, two per organization. `None` when that leaves the range of uids.
    pub fn of_slot(base: u32, slot: u32, purpose: Purpose) -> Option<Identity> {
        let offset = u64::from(slot) * 2 + u64::from(purpose == Purpose::Build);
        let uid = u64::from(base).checked_add(offset).filter(|uid| *uid < u64::from(u32::MAX - 1) && *uid > 0)?;
        let uid = u32::try_from(uid).ok()?;
        Some(Identity { uid, gid: uid })
    }
}

/// How a sandbox reaches the network.
#[derive(Debug, Clone, Default)]
pub enum Network {
    /// A network namespace with loopback only.
    #[default]
    Off,
    /// A network namespace of its own whose traffic leaves through a userspace stack that never
    /// reaches the host's loopback, under the policy's address rules.
    Egress(Arc<EgressPolicy>),
    /// The host's own network namespace, loopback included. Unsafe with untrusted code.
    Host,
}

/// A sandboxed command about to run.
#[derive(Debug, Clone)]
pub struct Sandbox {
    mounts: Vec<Mount>,
    /// Values may be credentials (a package index's, a proxy's): never shown by `Debug`.
    env: Secret<Vec<(String, String)>>,
    cwd: PathBuf,
    network: Network,
    limits: Limits,
    as_pid_1: bool,
    cgroup_procs: Vec<PathBuf>,
    max_processes: Option<u64>,
    identity: Identity,
    tmp_bytes: u64,
    inherited: Vec<Arc<OwnedFd>>,
}

/// A sandboxed process started with [`Sandbox::spawn`].
#[derive(Debug)]
pub struct Spawned {
    /// bubblewrap's process, with piped stdin, stdout and stderr; killed when dropped.
    pub child: tokio::process::Child,
    /// The host pid of the sandbox's first process (the command itself with `as_pid_1`).
    pub sandbox_pid: Option<u32>,
    /// The sandbox's link to the outside, when it has egress; ends when dropped.
    pub egress: Option<EgressLink>,
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

/// Parts of `/proc` made read-only (as a container runtime's default does).
const PROC_READ_ONLY: &[&str] = &["/proc/sys", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sysrq-trigger"];
/// Files of `/proc` replaced by an empty one.
const PROC_HIDDEN: &[&str] =
    &["/proc/kcore", "/proc/keys", "/proc/key-users", "/proc/latency_stats", "/proc/timer_list", "/proc/sched_debug"];

/// Where the descriptors bubblewrap reads from appear in its process.
const SECCOMP_FD: i32 = 3;
const INFO_FD: i32 = 4;
const BLOCK_FD: i32 = 5;
const RESOLV_FD: i32 = 6;

/// The switch to the sandbox's identity, run inside the sandbox before the command.
const SETPRIV: &str = "/usr/bin/setpriv";

/// Whether this process runs as root, and so can give sandboxes an identity of their own.
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Descriptors prepared for one bubblewrap start; the parent keeps its ends.
struct Plumbing {
    seccomp: OwnedFd,
    /// (bubblewrap's write end, our read end) of `--info-fd`.
    info: Option<(OwnedFd, OwnedFd)>,
    /// (bubblewrap's read end, our write end) of `--block-fd`.
    block: Option<(OwnedFd, OwnedFd)>,
    resolv: Option<OwnedFd>,
}

impl Sandbox {
    /// Where the descriptors handed over with [`Sandbox::inherit`] start.
    pub const INHERITED_FDS: i32 = 10;

    /// A sandbox with no mounts beyond the system's, no network and default limits, running
    /// as [`Identity::NOBODY`].
    pub fn new() -> Self {
        Sandbox {
            mounts: Vec::new(),
            env: Secret::default(),
            cwd: PathBuf::from("/"),
            network: Network::Off,
            limits: Limits::default(),
            as_pid_1: false,
            cgroup_procs: Vec::new(),
            max_processes: None,
            identity: Identity::NOBODY,
            tmp_bytes: 256 << 20,
            inherited: Vec::new(),
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

    /// Joins the sandbox to cgroups (the paths of their `cgroup.procs`) before bubblewrap
    /// starts, so every process inside counts against their limits.
    pub fn cgroups(mut self, procs: Vec<PathBuf>) -> Self {
        self.cgroup_procs = procs;
        self
    }

    /// Sets `RLIMIT_NPROC`. The kernel counts it per user and does not apply it to root, so it
    /// is a fallback for when no cgroup is available.
    pub fn max_processes(mut self, limit: Option<u64>) -> Self {
        self.max_processes = limit;
        self
    }

    /// The host identity the code runs as (when the server runs as root).
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = identity;
        self
    }

    /// Hands `fds` to the command: the first appears as descriptor [`Sandbox::INHERITED_FDS`],
    /// the next one after it, and so on.
    pub fn inherit(mut self, fds: Vec<OwnedFd>) -> Self {
        self.inherited = fds.into_iter().map(Arc::new).collect();
        self
    }

    /// The size cap of the sandbox's `/tmp` (and, separately, of `/dev/shm`), in bytes.
    pub fn tmp_bytes(mut self, bytes: u64) -> Self {
        self.tmp_bytes = bytes;
        self
    }

    /// Adds a mount.
    pub fn mount(mut self, mount: Mount) -> Self {
        self.mounts.push(mount);
        self
    }

    /// Sets an environment variable inside (the environment starts empty).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.expose_mut().push((name.to_owned(), value.to_owned()));
        self
    }

    /// The working directory inside.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = dir.into();
        self
    }

    /// How the sandbox reaches the network.
    pub fn network(mut self, network: Network) -> Self {
        self.network = network;
        self
    }

    /// Sets the limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    fn plumbing(&self) -> std::io::Result<Plumbing> {
        let seccomp = memfd_with(crate::seccomp::program()?)?;
        let egress = matches!(self.network, Network::Egress(_));
        Ok(Plumbing {
            seccomp,
            info: if egress { Some(pipe()?).map(|(r, w)| (w, r)) } else { None },
            block: if egress { Some(pipe()?) } else { None },
            resolv: if egress { Some(memfd_with(crate::egress::RESOLV_CONF.as_bytes())?) } else { None },
        })
    }

    /// The bubblewrap command line for `argv`: bubblewrap's options in the order it applies
    /// them (isolation, file system, environment), the switch to the sandbox's identity, the
    /// command itself; and what the forked process does before it becomes bubblewrap.
    fn command(&self, argv: &[OsString], plumbing: &Plumbing) -> Command {
        let root = running_as_root();
        let mut cmd = Command::new("bwrap");
        // bubblewrap runs as PID 1 of the sandbox and its own environment is readable there
        // through /proc/1/environ: it must not inherit the server's.
        cmd.env_clear();
        self.isolation_args(&mut cmd, root);
        self.file_system_args(&mut cmd, plumbing);
        self.environment_args(&mut cmd);
        cmd.arg("--seccomp").arg(SECCOMP_FD.to_string());
        cmd.arg("--");
        if root {
            self.identity_switch_args(&mut cmd);
        }
        cmd.args(argv);
        self.before_exec(&mut cmd, plumbing);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        cmd
    }

    /// The namespaces, session and capabilities the sandbox gets; with egress, the descriptors
    /// through which bubblewrap reports the sandbox's pid and then waits until its network is
    /// linked.
    fn isolation_args(&self, cmd: &mut Command, root: bool) {
        cmd.args(["--die-with-parent", "--new-session", "--clearenv"]);
        // Every namespace of its own. A user namespace only when the server is not root: run
        // by root, bubblewrap would map nothing but root into it, and the switch to the
        // sandbox's identity needs the host's uids.
        cmd.args(["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]);
        if !matches!(self.network, Network::Host) {
            cmd.arg("--unshare-net");
        }
        if !root {
            cmd.arg("--unshare-user");
        }
        if root {
            // Run as root, bubblewrap would keep every capability inside the sandbox. Only the
            // two that `setpriv` needs to leave root are kept, and leaving root drops them.
            cmd.args(["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]);
        }
        if self.as_pid_1 {
            cmd.arg("--as-pid-1");
        }
        if let Network::Egress(_) = self.network {
            cmd.arg("--info-fd").arg(INFO_FD.to_string()).arg("--block-fd").arg(BLOCK_FD.to_string());
        }
    }

    /// The sandbox's file system, in the order bubblewrap must build it: the mount points'
    /// parents before anything is mounted in them, the system's files, `/proc`, `/dev` and
    /// `/tmp`, the caller's mounts over those, and last the root made read-only under them all.
    fn file_system_args(&self, cmd: &mut Command, plumbing: &Plumbing) {
        for parent in self.mount_point_parents() {
            cmd.args(["--perms", "0755", "--dir"]).arg(parent);
        }
        system_mount_args(cmd, plumbing.resolv.is_some());
        proc_mount_args(cmd);
        scratch_mount_args(cmd, self.tmp_bytes.max(1 << 20));
        for m in &self.mounts {
            cmd.arg(if m.writable { "--bind" } else { "--ro-bind" }).arg(&m.host).arg(&m.inside);
        }
        // The sandbox's root is a tmpfs holding the mount points; left writable, files written
        // there (`/etc/x`, `/x`) would outlive an invocation. Only `/tmp`, `/dev/shm` and
        // writable mounts take writes.
        cmd.args(["--remount-ro", "/"]);
    }

    /// The directories above the mount points (of `/etc`'s files and the caller's mounts) that
    /// are not mount points themselves, shallowest first. bubblewrap makes a mount point's
    /// missing parents private (0700, root's): made beforehand, they are traversable by the
    /// sandbox's identity.
    fn mount_point_parents(&self) -> Vec<&Path> {
        let etc = ETC_FILES.iter().map(|file| Path::new(*file));
        let destinations: Vec<&Path> = etc.chain(self.mounts.iter().map(|m| m.inside.as_path())).collect();
        let mut parents: Vec<&Path> = Vec::new();
        for destination in &destinations {
            for parent in destination.ancestors().skip(1) {
                if parent != Path::new("/") && !parents.contains(&parent) && !destinations.contains(&parent) {
                    parents.push(parent);
                }
            }
        }
        parents.sort_by_key(|p| p.components().count());
        parents
    }

    /// The environment starts empty: a fixed `PATH`, `HOME` and `TMPDIR` pointing at the only
    /// writable place every sandbox has, the caller's variables (which may override them), and
    /// the working directory.
    fn environment_args(&self, cmd: &mut Command) {
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
        for (k, v) in self.env.expose() {
            cmd.arg("--setenv").arg(k).arg(v);
        }
        cmd.arg("--chdir").arg(&self.cwd);
    }

    /// Run by root, the command starts under `setpriv`, which leaves root for the sandbox's
    /// identity, drops the capabilities bubblewrap kept and forbids gaining any back before the
    /// command runs.
    fn identity_switch_args(&self, cmd: &mut Command) {
        let Identity { uid, gid } = self.identity;
        cmd.arg(SETPRIV).args([
            format!("--reuid={uid}"),
            format!("--regid={gid}"),
            "--clear-groups".to_owned(),
            "--inh-caps=-all".to_owned(),
            "--no-new-privs".to_owned(),
            // Changing the uid clears the parent-death signal bubblewrap set: set again, the
            // command (PID 1 with `as_pid_1`) still dies with its sandbox.
            "--pdeathsig=SIGKILL".to_owned(),
            "--".to_owned(),
        ]);
    }

    /// What the forked process does before it becomes bubblewrap: it joins the sandbox's
    /// cgroups, puts the descriptors bubblewrap is told about at their numbers and sets the
    /// limits, all inherited by bubblewrap and every process in the sandbox.
    fn before_exec(&self, cmd: &mut Command, plumbing: &Plumbing) {
        let limits = self.limits;
        let nproc = self.max_processes;
        let cgroups: Vec<CString> =
            self.cgroup_procs.iter().filter_map(|p| CString::new(p.as_os_str().as_encoded_bytes()).ok()).collect();
        let moves = self.descriptor_moves(plumbing);
        let mut moved = Vec::with_capacity(moves.len());
        // SAFETY: only async-signal-safe calls (open, write, close, fcntl, dup2, setrlimit)
        // between fork and exec; every buffer was allocated before the fork.
        unsafe {
            cmd.pre_exec(move || {
                join_cgroups(&cgroups)?;
                move_descriptors(&moves, &mut moved)?;
                set_limits(limits, nproc)
            });
        }
    }

    /// Which of the server's descriptors bubblewrap finds at which number: the ones its options
    /// name, then those handed over with [`Sandbox::inherit`].
    fn descriptor_moves(&self, plumbing: &Plumbing) -> Vec<(i32, i32)> {
        let mut moves: Vec<(i32, i32)> = vec![(plumbing.seccomp.as_raw_fd(), SECCOMP_FD)];
        if let Some((theirs, _)) = &plumbing.info {
            moves.push((theirs.as_raw_fd(), INFO_FD));
        }
        if let Some((theirs, _)) = &plumbing.block {
            moves.push((theirs.as_raw_fd(), BLOCK_FD));
        }
        if let Some(resolv) = &plumbing.resolv {
            moves.push((resolv.as_raw_fd(), RESOLV_FD));
        }
        for (n, fd) in self.inherited.iter().enumerate() {
            moves.push((fd.as_raw_fd(), Sandbox::INHERITED_FDS + n as i32));
        }
        moves
    }

    /// Starts bubblewrap and, for a sandbox with egress, links its network namespace to the
    /// outside before the command may run.
    async fn start(&self, argv: &[OsString], stdin: Stdio) -> Result<Spawned, SandboxError> {
        let plumbing = self.plumbing().map_err(SandboxError::Spawn)?;
        let mut cmd = self.command(argv, &plumbing);
        cmd.stdin(stdin);
        let child = cmd.spawn().map_err(SandboxError::Spawn)?;
        let Plumbing { info, block, .. } = plumbing;
        let mut spawned = Spawned { child, sandbox_pid: None, egress: None };
        if let (Network::Egress(policy), Some((theirs, ours)), Some((their_block, our_block))) =
            (&self.network, info, block)
        {
            drop(theirs);
            drop(their_block);
            let pid = read_child_pid(ours).await?;
            spawned.sandbox_pid = Some(pid);
            let link = crate::egress::attach(policy, pid, !running_as_root()).await.map_err(SandboxError::Egress)?;
            spawned.egress = Some(link);
            let mut release = std::fs::File::from(our_block);
            release.write_all(b"1")?;
        }
        Ok(spawned)
    }

    /// Starts `argv` inside the sandbox with its stdin, stdout and stderr piped, for a process
    /// that lives on and talks over its pipes. The limits' timeout does not apply; the process
    /// is killed when the returned child is dropped (and with the server).
    pub async fn spawn<S: Into<OsString> + Clone>(&self, argv: &[S]) -> Result<Spawned, SandboxError> {
        let argv: Vec<OsString> = argv.iter().cloned().map(Into::into).collect();
        self.start(&argv, Stdio::piped()).await
    }

    /// Runs `argv` inside the sandbox to completion (or to the timeout).
    pub async fn run<S: Into<OsString> + Clone>(&self, argv: &[S]) -> Result<Outcome, SandboxError> {
        let argv: Vec<OsString> = argv.iter().cloned().map(Into::into).collect();
        let started = Instant::now();
        let Spawned { mut child, egress, .. } = self.start(&argv, Stdio::null()).await?;
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
        drop(egress);
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

/// Reads bubblewrap's `--info-fd` until it closes and finds the sandbox's first process.
async fn read_child_pid(fd: OwnedFd) -> Result<u32, SandboxError> {
    let text = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        std::fs::File::from(fd).read_to_string(&mut text).map(|_| text)
    })
    .await
    .map_err(|e| SandboxError::Io(std::io::Error::other(e)))??;
    let digits = text
        .split("\"child-pid\"")
        .nth(1)
        .map(|rest| {
            rest.chars().skip_while(|c| !c.is_ascii_digit()).take_while(char::is_ascii_digit).collect::<String>()
        })
        .unwrap_or_default();
    digits
        .parse()
        .map_err(|_| SandboxError::Io(std::io::Error::other(format!("bubblewrap said no child pid: {text:?}"))))
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A sealed-off memory file holding `data`, positioned at its start, for bubblewrap to read.
fn memfd_with(data: &[u8]) -> std::io::Result<OwnedFd> {
    // SAFETY: a valid NUL-terminated name.
    let fd = unsafe { libc::memfd_create(c"toolsmith-sandbox".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor owned by nothing else.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.write_all(data)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(file.into())
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

/// The system's files every program needs, read-only: `/usr`, the merged-`/usr` links (or
/// directories, where the host has not merged them) and the files of `/etc` the sandbox may
/// see. With egress, `/etc/resolv.conf` is the sandbox's own, naming its resolver.
fn system_mount_args(cmd: &mut Command, own_resolv_conf: bool) {
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
        if *etc == "/etc/resolv.conf" && own_resolv_conf {
            cmd.args(["--perms", "0644", "--ro-bind-data"]).arg(RESOLV_FD.to_string()).arg(etc);
        } else if Path::new(etc).exists() {
            cmd.arg("--ro-bind").arg(etc).arg(etc);
        }
    }
}

/// The sandbox's own `/proc`. The kernel's settings and interfaces under it are read-only,
/// and the files that tell about the host's memory, keys and timers are hidden, whoever the
/// code runs as.
fn proc_mount_args(cmd: &mut Command) {
    cmd.args(["--proc", "/proc"]);
    for dir in PROC_READ_ONLY.iter().filter(|d| Path::new(d).exists()) {
        cmd.args(["--ro-bind", dir, dir]);
    }
    for file in PROC_HIDDEN.iter().filter(|f| Path::new(f).exists()) {
        cmd.args(["--ro-bind", "/dev/null", file]);
    }
}

/// `/dev` and `/tmp`. `/dev` is bubblewrap's own small tmpfs, read-only but for `/dev/shm`;
/// `/dev/shm` and `/tmp` are tmpfs capped at `bytes` each, so that code writing without end
/// fills its sandbox's share of memory, not the host's.
fn scratch_mount_args(cmd: &mut Command, bytes: u64) {
    let size = bytes.to_string();
    cmd.args(["--dev", "/dev", "--perms", "1777", "--size", &size, "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]);
    cmd.args(["--perms", "1777", "--size", &size, "--tmpfs", "/tmp"]);
}

/// Moves the forked process, and so bubblewrap and everything it starts, into each cgroup by
/// writing 0 (the writer itself) into its `cgroup.procs`. Runs between fork and exec: only
/// open, write and close.
fn join_cgroups(procs: &[CString]) -> std::io::Result<()> {
    for path in procs {
        // SAFETY: a NUL-terminated path that lives as long as the call.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: two bytes of a static buffer written to, then the closing of, a descriptor
        // this function opened.
        let written = unsafe {
            let written = libc::write(fd, b"0\n".as_ptr().cast(), 2);
            libc::close(fd);
            written
        };
        if written != 2 {
            return Err(std::io::Error::other("could not join the sandbox's cgroup"));
        }
    }
    Ok(())
}

/// Puts each descriptor of `moves` at its number. The numbers bubblewrap is told about may be
/// taken by other descriptors of the server that are still to move, so every descriptor first
/// moves out of the way (above 64) into `moved`, then into place; dup2 leaves the new
/// descriptor open across exec. Runs between fork and exec: only fcntl and dup2, and `moved`
/// has room for every descriptor already.
fn move_descriptors(moves: &[(i32, i32)], moved: &mut Vec<i32>) -> std::io::Result<()> {
    moved.clear();
    for (fd, _) in moves {
        // SAFETY: fcntl has no memory-safety preconditions.
        let high = unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 64) };
        if high < 0 {
            return Err(std::io::Error::last_os_error());
        }
        moved.push(high);
    }
    for (high, (_, target)) in moved.iter().zip(moves) {
        // SAFETY: dup2 has no memory-safety preconditions.
        if unsafe { libc::dup2(*high, *target) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The resource limits, and no core dumps, set on the process that becomes bubblewrap so that
/// every process of the sandbox inherits them. Runs between fork and exec: only setrlimit.
fn set_limits(limits: Limits, nproc: Option<u64>) -> std::io::Result<()> {
    if let Some(n) = nproc {
        set_limit(libc::RLIMIT_NPROC, n)?;
    }
    set_limit(libc::RLIMIT_AS, limits.memory_bytes)?;
    set_limit(libc::RLIMIT_CPU, limits.cpu_secs)?;
    set_limit(libc::RLIMIT_FSIZE, limits.file_size_bytes)?;
    set_limit(libc::RLIMIT_NOFILE, limits.open_files)?;
    set_limit(libc::RLIMIT_CORE, 0)
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
