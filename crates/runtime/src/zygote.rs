//! One tool version's zygote: a sandboxed Python process that has imported the tool and forks a
//! fresh child for every invocation (the protocol is described in `python/toolsmith_harness.py`).
//!
//! Many invocations may be in flight on one zygote at once; each request carries an id and the
//! answers come back in any order over the zygote's stdout, where one reader task hands each to
//! its waiting caller.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::{oneshot, Semaphore};

use crate::cgroup::SandboxCgroup;
use crate::sandbox::{Identity, Limits, Mount, Network, Sandbox, SandboxError};
use crate::secret::Secret;

/// The harness, compiled into the binary so that the server never reads its source tree.
pub const HARNESS: &str = include_str!("../python/toolsmith_harness.py");
/// The harness's file name in the directory mounted at [`HARNESS_DIR`].
pub const HARNESS_FILE: &str = "toolsmith_harness.py";
const HARNESS_DIR: &str = "/opt/toolsmith";
const PROJECT_DIR: &str = "/project";
const ENV_DIR: &str = "/env";
const STDERR_KEPT: usize = 16 * 1024;
/// Slots beyond the invocations that may run at once: the child forked ahead holds one, and an
/// ended child holds its slot until the zygote has cleaned up after it.
pub const SPARE_SLOTS: usize = 2;

/// Limits of each invocation, applied in the forked child (the zygote itself runs under the
/// sandbox's own limits).
#[derive(Debug, Clone, Copy)]
pub struct InvocationLimits {
    /// Address space of one invocation, in bytes.
    pub memory_bytes: u64,
    /// CPU seconds of one invocation.
    pub cpu_secs: u64,
    /// Largest file one invocation may write, in bytes.
    pub file_size_bytes: u64,
    /// Bytes of stdout and stderr (together) kept from one invocation.
    pub output_bytes: usize,
    /// Wall-clock time of one invocation before its processes are killed.
    pub timeout: Duration,
    /// Processes the whole zygote (all its invocations together) may have at once.
    pub processes: u64,
}

impl Default for InvocationLimits {
    fn default() -> Self {
        InvocationLimits {
            memory_bytes: 1 << 30,
            cpu_secs: 30,
            file_size_bytes: 64 << 20,
            output_bytes: 256 << 10,
            timeout: Duration::from_secs(30),
            processes: 128,
        }
    }
}

/// What starts a zygote. The environment's values and the secrets are [`Secret`]s, so that
/// `Debug` shows neither.
#[derive(Clone, Debug)]
pub struct ZygoteConfig {
    /// The version's source tree (mounted read-only at `/project`).
    pub project: PathBuf,
    /// The version's environment (mounted read-only at `/env`).
    pub venv: PathBuf,
    /// The base interpreter's prefix, which the environment links into.
    pub base_prefix: PathBuf,
    /// The directory holding [`HARNESS_FILE`].
    pub harness_dir: PathBuf,
    /// `module:function`.
    pub entrypoint: String,
    /// Whether the entrypoint takes `context`.
    pub takes_context: bool,
    /// The tool's environment: env vars and decrypted secrets.
    pub env: Secret<Vec<(String, String)>>,
    /// How the sandbox reaches the network.
    pub network: Network,
    /// The host identity the tool's code runs as.
    pub identity: Identity,
    /// The size cap of `/tmp` and of `/dev/shm`, in bytes.
    pub tmp_bytes: u64,
    /// Per-invocation limits.
    pub limits: InvocationLimits,
    /// The sandbox's cgroups (the whole, its own processes, the per-invocation slots), when
    /// cgroups are available.
    pub cgroup: Option<Arc<SandboxCgroup>>,
    /// Values masked in every error and log line about this zygote (the tool's secrets).
    pub secrets: Secret<Vec<String>>,
    /// How long importing the tool may take.
    pub start_timeout: Duration,
}

/// Why a zygote could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The sandbox could not be started.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// The tool failed to import.
    #[error("the tool could not be imported: {exception_type}: {message}")]
    Import {
        /// The exception's class name.
        exception_type: String,
        /// `str(exception)`.
        message: String,
        /// Its traceback.
        traceback: String,
    },
    /// The harness did not answer; the text is what it printed.
    #[error("the tool's runtime did not start: {0}")]
    NoAnswer(String),
}

/// How one invocation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    /// The tool returned; `output` is its result as text.
    Returned {
        /// The result (a string as is, anything else as JSON).
        output: String,
        /// Time spent in the tool call.
        duration_ms: f64,
        /// Captured stdout and stderr.
        logs: String,
    },
    /// The tool raised.
    Raised {
        /// The exception's class name.
        exception_type: String,
        /// `str(exception)`.
        message: String,
        /// The traceback, one entry per formatted line group.
        trace: Vec<String>,
        /// Time spent in the tool call.
        duration_ms: f64,
        /// Captured stdout and stderr.
        logs: String,
    },
    /// The wall-clock timeout ran out and the invocation's processes were killed.
    TimedOut {
        /// The limit.
        limit: Duration,
        /// What the tool printed before it was stopped.
        logs: String,
    },
    /// The invocation's process ended without answering (a limit's signal, a crash).
    Crashed {
        /// How the process ended.
        status: String,
        /// Time until it ended.
        duration_ms: f64,
        /// What the tool printed before it ended.
        logs: String,
    },
    /// The zygote itself went away while the invocation ran.
    RuntimeLost,
}

struct Shared {
    /// `None` once the zygote is stopped: closing it is the harness's signal to end.
    stdin: tokio::sync::Mutex<Option<ChildStdin>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Finished>>>,
    alive: AtomicBool,
    next_id: AtomicU64,
}

/// A running zygote. Dropping it kills the sandbox and everything in it; the pool drops its
/// reference when it replaces or stops a zygote, so the invocations still running on it finish
/// first.
pub struct Zygote {
    shared: Arc<Shared>,
    child: Mutex<Option<Child>>,
    limits: InvocationLimits,
    /// One permit per per-invocation cgroup slot: invocations beyond wait for a slot.
    slots: Option<Arc<Semaphore>>,
    secrets: Secret<Vec<String>>,
    sandbox_pid: Option<u32>,
    bwrap_pid: Option<u32>,
    _cgroup: Option<Arc<SandboxCgroup>>,
    _egress: Option<crate::egress::EgressLink>,
}

impl std::fmt::Debug for Zygote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zygote").field("alive", &self.is_alive()).finish()
    }
}

/// The frames of the zygote protocol (see the harness's module comment for the byte layout).
mod frame {
    /// Server → zygote: the start configuration (JSON).
    pub const START: u8 = b'S';
    /// Server → zygote: a request; its payload goes to the child unread.
    pub const REQUEST: u8 = b'R';
    /// Server → zygote: kill the invocation with this id.
    pub const KILL: u8 = b'K';
    /// Zygote → server: whether the tool imported (JSON).
    pub const READY: u8 = b'Y';
    /// Zygote → server: the child's answer and its logs.
    pub const ANSWER: u8 = b'A';
    /// Zygote → server: the child ended without answering; a status and its logs.
    pub const CRASHED: u8 = b'C';
    /// Bytes before the payload: length (u32), kind (u8), id (u64).
    pub const HEADER: usize = 13;
    /// The largest frame either side accepts.
    pub const MAX: usize = 256 << 20;
}

// The JSON frames. Each has exactly these fields both ways (the harness's records `Start`,
// `Limits`, `Ready`, `Request` and `Answer` have the same ones), and `python/zygote_frames.json`
// holds an example of every frame kind, byte for byte, that the tests of both sides check.

/// The start configuration the harness reads.
#[derive(serde::Serialize)]
struct StartFrame<'a> {
    entrypoint: &'a str,
    takes_context: bool,
    env: BTreeMap<&'a str, &'a str>,
    limits: LimitsFrame,
    /// Per-invocation cgroup slots: for each, the descriptors of its `cgroup.procs` files.
    slots: Vec<Vec<i32>>,
}

impl StartFrame<'_> {
    /// The start configuration of `config`, whose slots the harness has as `slots`.
    fn of(config: &ZygoteConfig, slots: Vec<Vec<i32>>) -> StartFrame<'_> {
        StartFrame {
            entrypoint: &config.entrypoint,
            takes_context: config.takes_context,
            env: config.env.expose().iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            limits: LimitsFrame {
                memory_bytes: config.limits.memory_bytes,
                cpu_secs: config.limits.cpu_secs,
                file_size_bytes: config.limits.file_size_bytes,
                output_bytes: config.limits.output_bytes,
            },
            slots,
        }
    }
}

#[derive(serde::Serialize)]
struct LimitsFrame {
    memory_bytes: u64,
    cpu_secs: u64,
    file_size_bytes: u64,
    output_bytes: usize,
}

/// The harness's answer to the start configuration: ready, or the exception that kept the tool
/// from importing (empty when ready). A frame with other fields is not the harness's.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadyFrame {
    ready: bool,
    #[serde(rename = "type")]
    exception_type: String,
    message: String,
    traceback: String,
}

/// A request as the child reads it.
#[derive(serde::Serialize)]
struct RequestFrame<'a> {
    input: &'a Value,
    context: &'a Value,
}

/// The payload of a request frame: `u32 length | JSON`, handed to the child as it is.
fn request_payload(input: &Value, context: &Value) -> Vec<u8> {
    let body = serde_json::to_vec(&RequestFrame { input, context }).unwrap_or_default();
    let mut payload = Vec::with_capacity(body.len() + 4);
    payload.extend_from_slice(&(body.len() as u32).to_be_bytes());
    payload.extend_from_slice(&body);
    payload
}

/// A child's answer: the output, or the exception the tool raised (the fields of the other
/// case are empty).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerFrame {
    ok: bool,
    output: String,
    #[serde(rename = "type")]
    exception_type: String,
    message: String,
    trace: Vec<String>,
    duration_ms: f64,
}

/// What the zygote reported for one invocation.
struct Finished {
    kind: u8,
    /// The answer's JSON (kind ANSWER) or the status text (kind CRASHED).
    body: Vec<u8>,
    logs: String,
    truncated: bool,
}

/// One frame as read: kind, id, payload.
async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Option<(u8, u64, Vec<u8>)> {
    let mut head = [0u8; frame::HEADER];
    reader.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let kind = head[4];
    let id = u64::from_be_bytes(head[5..13].try_into().ok()?);
    let payload_len = len.checked_sub(frame::HEADER - 4).filter(|n| *n <= frame::MAX)?;
    let mut payload = vec![0u8; payload_len];
    reader.read_exact(&mut payload).await.ok()?;
    Some((kind, id, payload))
}

fn encode(kind: u8, id: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + frame::HEADER);
    out.extend_from_slice(&((payload.len() + frame::HEADER - 4) as u32).to_be_bytes());
    out.push(kind);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The first child of host process `pid` (bubblewrap's: the sandbox's first process).
fn first_child_of(pid: u32) -> Option<u32> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

/// Splits an ANSWER or CRASHED payload: `u32 body length | body | u8 truncated | logs`.
fn split_report(kind: u8, payload: &[u8]) -> Option<Finished> {
    if kind != frame::ANSWER && kind != frame::CRASHED {
        return None;
    }
    let len = u32::from_be_bytes(payload.get(..4)?.try_into().ok()?) as usize;
    let body = payload.get(4..4usize.checked_add(len)?)?.to_vec();
    let rest = payload.get(4 + len..)?;
    let (flag, logs) = rest.split_first()?;
    Some(Finished { kind, body, logs: String::from_utf8_lossy(logs).into_owned(), truncated: *flag != 0 })
}

impl Finished {
    /// What the report means for the caller; `elapsed` is how long the invocation took as the
    /// server saw it (the answer carries the tool's own time). An answer that cannot be read
    /// becomes a crash whose status quotes it, with `secrets` masked.
    fn outcome(self, elapsed: Duration, secrets: &[String]) -> RunOutcome {
        let mut logs = self.logs;
        if self.truncated {
            logs.push_str("\n[output truncated: the tool printed more than the limit]\n");
        }
        let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
        if self.kind != frame::ANSWER {
            return RunOutcome::Crashed {
                status: String::from_utf8_lossy(&self.body).into_owned(),
                duration_ms: elapsed_ms,
                logs,
            };
        }
        match serde_json::from_slice::<AnswerFrame>(&self.body) {
            Ok(answer) if answer.ok => {
                RunOutcome::Returned { output: answer.output, duration_ms: answer.duration_ms, logs }
            }
            Ok(answer) => RunOutcome::Raised {
                exception_type: answer.exception_type,
                message: answer.message,
                trace: answer.trace,
                duration_ms: answer.duration_ms,
                logs,
            },
            Err(e) => RunOutcome::Crashed {
                status: mask(&format!("the tool's answer could not be read: {e}"), secrets),
                duration_ms: elapsed_ms,
                logs,
            },
        }
    }
}

/// The slots' `cgroup.procs` files, opened here (as the server) and handed down: a child joins
/// its slot by writing to the descriptor, which needs no rights of its own. The files in the
/// order the sandbox inherits them, and for each slot the numbers its files have there.
fn slot_descriptors(config: &ZygoteConfig) -> Result<(Vec<OwnedFd>, Vec<Vec<i32>>), StartError> {
    let mut inherited: Vec<OwnedFd> = Vec::new();
    let mut slot_fds: Vec<Vec<i32>> = Vec::new();
    let Some(cgroup) = &config.cgroup else { return Ok((inherited, slot_fds)) };
    for slot in &cgroup.slots {
        let mut numbers = Vec::new();
        for path in slot.procs() {
            let file = std::fs::OpenOptions::new().write(true).open(&path).map_err(|e| {
                StartError::NoAnswer(format!("cannot open the invocation cgroup {}: {e}", path.display()))
            })?;
            numbers.push(Sandbox::INHERITED_FDS + inherited.len() as i32);
            inherited.push(OwnedFd::from(file));
        }
        slot_fds.push(numbers);
    }
    Ok((inherited, slot_fds))
}

/// The sandbox a zygote runs in: the version's tree, environment and interpreter and the
/// harness, read-only, with the slots' descriptors `inherited`.
fn sandbox_for(config: &ZygoteConfig, inherited: Vec<OwnedFd>) -> Sandbox {
    let sandbox_limits = Limits {
        // The zygote's own limits bound the whole sandbox; each invocation gets tighter ones.
        memory_bytes: config.limits.memory_bytes.saturating_add(1 << 30),
        cpu_secs: libc::RLIM_INFINITY,
        file_size_bytes: config.limits.file_size_bytes,
        open_files: 1024,
        timeout: Duration::MAX,
        output_bytes: STDERR_KEPT,
    };
    Sandbox::new()
        .mount(Mount::read_only_at(&config.project, PROJECT_DIR))
        .mount(Mount::read_only_at(&config.venv, ENV_DIR))
        .mount(Mount::read_only(&config.base_prefix))
        .mount(Mount::read_only_at(&config.harness_dir, HARNESS_DIR))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .cwd(PROJECT_DIR)
        .network(config.network.clone())
        .identity(config.identity)
        .tmp_bytes(config.tmp_bytes)
        .limits(sandbox_limits)
        .as_pid_1(true)
        .cgroups(config.cgroup.as_ref().map(|c| c.main.procs()).unwrap_or_default())
        .inherit(inherited)
        // Without a cgroup, RLIMIT_NPROC is the fallback; it counts every process of the
        // user, the server's and other sandboxes' included, hence the headroom.
        .max_processes(if config.cgroup.is_none() { Some(config.limits.processes.max(64) * 8) } else { None })
}

/// A zygote's sandbox between its start and the harness's ready frame. Dropping it kills the
/// sandbox, which is how a start that fails leaves nothing running.
struct Launched {
    stdout: ChildStdout,
    stdin: ChildStdin,
    /// The end of what the harness printed to stderr, which says why it failed when it does.
    stderr_tail: Arc<Mutex<Vec<u8>>>,
    child: Child,
    sandbox_pid: Option<u32>,
    bwrap_pid: Option<u32>,
    /// Dropped last, after the process that uses it.
    egress: Option<crate::egress::EgressLink>,
}

impl Launched {
    /// Starts the harness in `sandbox`, takes its pipes and starts keeping its stderr.
    async fn spawn(sandbox: Sandbox) -> Result<Launched, StartError> {
        let spawned = sandbox
            .spawn(&[format!("{ENV_DIR}/bin/python"), "-u".to_owned(), format!("{HARNESS_DIR}/{HARNESS_FILE}")])
            .await?;
        let egress = spawned.egress;
        let mut child = spawned.child;
        let sandbox_pid = spawned.sandbox_pid;
        let bwrap_pid = child.id();
        let stdin = child.stdin.take().ok_or_else(|| StartError::NoAnswer("no stdin".into()))?;
        let stdout = child.stdout.take().ok_or_else(|| StartError::NoAnswer("no stdout".into()))?;
        let stderr_tail = keep_stderr_tail(child.stderr.take());
        Ok(Launched { stdout, stdin, stderr_tail, child, sandbox_pid, bwrap_pid, egress })
    }

    /// Sends the start configuration (with the slots' descriptor numbers `slot_fds`) and waits
    /// for the harness's answer: the tool imported, or the exception that kept it from
    /// importing. Whatever the harness says may quote the tool's secrets, so the error masks
    /// them.
    async fn handshake(&mut self, config: &ZygoteConfig, slot_fds: Vec<Vec<i32>>) -> Result<(), StartError> {
        let masked = |text: &str| mask(text, config.secrets.expose());
        let start =
            serde_json::to_vec(&StartFrame::of(config, slot_fds)).map_err(|e| StartError::NoAnswer(e.to_string()))?;
        if self.stdin.write_all(&encode(frame::START, 0, &start)).await.is_err() {
            let _ = self.child.wait().await;
            return Err(StartError::NoAnswer(stderr_text(&self.stderr_tail, config.secrets.expose())));
        }
        let ready = tokio::time::timeout(config.start_timeout, read_frame(&mut self.stdout)).await;
        let ready = match ready {
            Ok(Some((frame::READY, _, payload))) => match serde_json::from_slice::<ReadyFrame>(&payload) {
                Ok(ready) => ready,
                // serde's message may quote the frame, which may quote the tool's secrets.
                Err(e) => {
                    return Err(StartError::NoAnswer(masked(&format!("the harness's ready frame is unreadable: {e}"))))
                }
            },
            Ok(_) => {
                let _ = self.child.wait().await;
                // Let the stderr reader catch up with what the process printed as it died.
                tokio::time::sleep(Duration::from_millis(20)).await;
                return Err(StartError::NoAnswer(stderr_text(&self.stderr_tail, config.secrets.expose())));
            }
            Err(_) => {
                return Err(StartError::NoAnswer(format!(
                    "importing the tool took longer than {} s",
                    config.start_timeout.as_secs()
                )))
            }
        };
        if !ready.ready {
            return Err(StartError::Import {
                exception_type: masked(&ready.exception_type),
                message: masked(&ready.message),
                traceback: masked(&ready.traceback),
            });
        }
        Ok(())
    }
}

/// Keeps the last [`STDERR_KEPT`] bytes the harness prints to stderr. A task of its own reads
/// them as they come, so that the harness never blocks on a full pipe.
fn keep_stderr_tail(stderr: Option<ChildStderr>) -> Arc<Mutex<Vec<u8>>> {
    let stderr_tail = Arc::new(Mutex::new(Vec::<u8>::new()));
    if let Some(mut stderr) = stderr {
        let tail = stderr_tail.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let mut kept = tail.lock().unwrap_or_else(|e| e.into_inner());
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > STDERR_KEPT {
                    let cut = kept.len() - STDERR_KEPT;
                    kept.drain(..cut);
                }
            }
        });
    }
    stderr_tail
}

/// What the harness printed to stderr, with `secrets` masked: it may hold them.
fn stderr_text(tail: &Mutex<Vec<u8>>, secrets: &[String]) -> String {
    let text = String::from_utf8_lossy(&tail.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    mask(&text, secrets)
}

/// The task that hands each report on the zygote's stdout to the caller waiting for it. When
/// stdout closes, every caller still waiting learns that the runtime is gone, and an end the
/// pool did not ask for is logged with what the harness printed.
fn spawn_report_reader(
    shared: Arc<Shared>,
    mut stdout: ChildStdout,
    tail: Arc<Mutex<Vec<u8>>>,
    secrets: Secret<Vec<String>>,
) {
    tokio::spawn(async move {
        while let Some((kind, id, payload)) = read_frame(&mut stdout).await {
            let Some(finished) = split_report(kind, &payload) else { continue };
            let waiter = shared.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            if let Some(waiter) = waiter {
                let _ = waiter.send(finished);
            }
        }
        let was_alive = shared.alive.swap(false, Ordering::SeqCst);
        if was_alive {
            // Not stopped by the pool: the harness itself ended. What it printed says why.
            tokio::time::sleep(Duration::from_millis(20)).await;
            tracing::warn!(stderr = %stderr_text(&tail, secrets.expose()), "a tool runtime exited unexpectedly");
        }
        // Dropping the senders tells every waiting caller that the runtime is gone.
        shared.pending.lock().unwrap_or_else(|e| e.into_inner()).clear();
    });
}

impl Zygote {
    /// Starts the sandbox, sends the configuration and waits until the tool is imported.
    pub async fn start(config: ZygoteConfig) -> Result<Zygote, StartError> {
        let (inherited, slot_fds) = slot_descriptors(&config)?;
        let mut launched = Launched::spawn(sandbox_for(&config, inherited)).await?;
        launched.handshake(&config, slot_fds).await?;
        let Launched { stdout, stdin, stderr_tail, child, sandbox_pid, bwrap_pid, egress } = launched;
        let shared = Arc::new(Shared {
            stdin: tokio::sync::Mutex::new(Some(stdin)),
            pending: Mutex::new(HashMap::new()),
            alive: AtomicBool::new(true),
            next_id: AtomicU64::new(1),
        });
        spawn_report_reader(shared.clone(), stdout, stderr_tail, config.secrets.clone());
        let slots =
            config.cgroup.as_ref().map(|c| Arc::new(Semaphore::new(c.slots.len().saturating_sub(SPARE_SLOTS).max(1))));
        Ok(Zygote {
            shared,
            child: Mutex::new(Some(child)),
            limits: config.limits,
            slots,
            secrets: config.secrets,
            // bubblewrap has started the command by now (it answered).
            sandbox_pid: sandbox_pid.or_else(|| bwrap_pid.and_then(first_child_of)),
            bwrap_pid,
            _cgroup: config.cgroup,
            _egress: egress,
        })
    }

    /// Whether the zygote still runs.
    pub fn is_alive(&self) -> bool {
        self.shared.alive.load(Ordering::SeqCst)
    }

    /// Kills the sandbox now; invocations in flight end as [`RunOutcome::RuntimeLost`].
    pub fn kill(&self) {
        self.shared.alive.store(false, Ordering::SeqCst);
        if let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            // The sandbox's PID 1 runs as another uid than bubblewrap, so the parent-death signal
            // bubblewrap asks for is not allowed to reach it: the server kills it itself (which
            // ends its PID namespace), while bubblewrap still waits for it, so the pid is its.
            if let Some(pid) = self.sandbox_pid() {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
            let _ = child.start_kill();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = child.wait().await;
                });
            }
        }
        // And whatever happens to the signal, end of input makes the harness exit.
        if let Ok(mut stdin) = self.shared.stdin.try_lock() {
            stdin.take();
        } else if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let shared = self.shared.clone();
            runtime.spawn(async move {
                shared.stdin.lock().await.take();
            });
        }
    }

    async fn send(&self, bytes: &[u8]) -> bool {
        let mut stdin = self.shared.stdin.lock().await;
        match stdin.as_mut() {
            Some(stdin) => stdin.write_all(bytes).await.is_ok(),
            None => false,
        }
    }

    /// Runs one invocation in a fresh child of the zygote.
    pub async fn invoke(&self, input: &Value, context: &Value) -> RunOutcome {
        if !self.is_alive() {
            return RunOutcome::RuntimeLost;
        }
        let _slot = match &self.slots {
            Some(slots) => match slots.clone().acquire_owned().await {
                Ok(permit) => Some(permit),
                Err(_) => return RunOutcome::RuntimeLost,
            },
            None => None,
        };
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = oneshot::channel();
        self.shared.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(id, tx);
        let started = Instant::now();
        if !self.send(&encode(frame::REQUEST, id, &request_payload(input, context))).await {
            self.shared.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            return RunOutcome::RuntimeLost;
        }
        let finished = match tokio::time::timeout(self.limits.timeout, &mut rx).await {
            Ok(Ok(finished)) => finished,
            Ok(Err(_)) => return RunOutcome::RuntimeLost,
            Err(_) => {
                // The zygote kills the invocation's process group and reports the child's end;
                // if it cannot within a moment, the whole sandbox goes.
                let sent = self.send(&encode(frame::KILL, id, &[])).await;
                let mut logs = String::new();
                match tokio::time::timeout(Duration::from_secs(2), &mut rx).await {
                    Ok(Ok(finished)) if sent => logs = finished.logs,
                    _ => self.kill(),
                }
                return RunOutcome::TimedOut { limit: self.limits.timeout, logs };
            }
        };
        finished.outcome(started.elapsed(), self.secrets.expose())
    }

    /// The host pid of the zygote's interpreter (PID 1 of its sandbox), for inspection.
    pub fn sandbox_pid(&self) -> Option<u32> {
        self.sandbox_pid.or_else(|| self.bwrap_pid.and_then(first_child_of))
    }

    /// The values masked in everything this zygote reports (the tool's secrets).
    pub fn secrets(&self) -> &[String] {
        self.secrets.expose()
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Replaces every occurrence of any of `secrets` in `text` with a mask.
///
/// Values shorter than four characters are not masked: masking every `a` or `1` in a tool's
/// output would destroy it while protecting nothing worth a secret.
pub fn mask(text: &str, secrets: &[String]) -> String {
    let mut secrets: Vec<&str> = secrets.iter().map(String::as_str).filter(|s| s.chars().count() >= 4).collect();
    if secrets.is_empty() {
        return text.to_owned();
    }
    // Longest first, so that a secret containing another is masked whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_owned();
    for secret in secrets {
        if out.contains(secret) {
            out = out.replace(secret, MASK);
        }
    }
    out
}

/// What a masked secret looks like.
pub const MASK: &str = "********";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence_longest_first() {
        let secrets = vec!["s3cr3t".to_owned(), "s3cr3t-extended".to_owned(), "ab".to_owned()];
        assert_eq!(mask("x s3cr3t-extended y s3cr3t ab", &secrets), "x ******** y ******** ab");
    }

    /// One example of every frame, with its bytes; the harness's tests check the same file.
    fn fixture(direction: &str) -> Vec<Value> {
        let frames: Value = serde_json::from_str(include_str!("../python/zygote_frames.json")).unwrap();
        frames[direction].as_array().unwrap().clone()
    }

    fn kind_of(frame: &Value) -> u8 {
        frame["kind"].as_str().unwrap().as_bytes()[0]
    }

    fn text(value: &Value) -> String {
        value.as_str().unwrap_or_else(|| panic!("{value} is not a string")).to_owned()
    }

    /// A configuration holding what the fixture's start frame says, read field by field.
    fn config_of(start: &Value) -> ZygoteConfig {
        let number = |name: &str| start["limits"][name].as_u64().unwrap_or_else(|| panic!("limits.{name}"));
        ZygoteConfig {
            project: PathBuf::new(),
            venv: PathBuf::new(),
            base_prefix: PathBuf::new(),
            harness_dir: PathBuf::new(),
            entrypoint: text(&start["entrypoint"]),
            takes_context: start["takes_context"].as_bool().unwrap(),
            env: Secret::new(start["env"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), text(v))).collect()),
            network: Network::Off,
            identity: Identity::NOBODY,
            tmp_bytes: 0,
            limits: InvocationLimits {
                memory_bytes: number("memory_bytes"),
                cpu_secs: number("cpu_secs"),
                file_size_bytes: number("file_size_bytes"),
                output_bytes: number("output_bytes") as usize,
                ..InvocationLimits::default()
            },
            cgroup: None,
            secrets: Secret::default(),
            start_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn frames_the_server_sends_are_the_fixtures_byte_for_byte() {
        let frames = fixture("to_zygote");
        let kinds: Vec<u8> = frames.iter().map(kind_of).collect();
        assert_eq!(kinds, [frame::START, frame::REQUEST, frame::KILL]);
        for sent in frames {
            let (kind, id, payload) = (kind_of(&sent), sent["id"].as_u64().unwrap(), &sent["payload"]);
            let body = match kind {
                frame::START => {
                    let slots = serde_json::from_value(payload["slots"].clone()).unwrap();
                    serde_json::to_vec(&StartFrame::of(&config_of(payload), slots)).unwrap()
                }
                frame::REQUEST => request_payload(&payload["input"], &payload["context"]),
                _ => Vec::new(),
            };
            let bytes = hex::encode(encode(kind, id, &body));
            assert_eq!(bytes, text(&sent["hex"]), "the {} frame as the server encodes it", kind as char);
        }
    }

    #[tokio::test]
    async fn frames_the_harness_sends_read_as_the_fixture_says() {
        let frames = fixture("from_zygote");
        let mut kinds: Vec<u8> = frames.iter().map(kind_of).collect();
        kinds.dedup();
        assert_eq!(kinds, [frame::READY, frame::ANSWER, frame::CRASHED]);
        let elapsed = Duration::from_millis(40);
        for received in frames {
            let bytes = hex::decode(text(&received["hex"])).unwrap();
            let (kind, id, payload) = read_frame(&mut bytes.as_slice()).await.expect("a whole frame");
            assert_eq!((kind, id), (kind_of(&received), received["id"].as_u64().unwrap()));
            if kind == frame::READY {
                let expected = &received["payload"];
                let ready: ReadyFrame = serde_json::from_slice(&payload).unwrap();
                assert_eq!(ready.ready, expected["ready"].as_bool().unwrap());
                assert_eq!(ready.exception_type, text(&expected["type"]));
                assert_eq!(ready.message, text(&expected["message"]));
                assert_eq!(ready.traceback, text(&expected["traceback"]));
                continue;
            }
            let mut logs = text(&received["logs"]);
            if received["truncated"].as_bool().unwrap() {
                logs.push_str("\n[output truncated: the tool printed more than the limit]\n");
            }
            let answer = &received["answer"];
            let expected = match kind {
                frame::CRASHED => RunOutcome::Crashed { status: text(&received["status"]), duration_ms: 40.0, logs },
                _ if answer["ok"].as_bool().unwrap() => RunOutcome::Returned {
                    output: text(&answer["output"]),
                    duration_ms: answer["duration_ms"].as_f64().unwrap(),
                    logs,
                },
                _ => RunOutcome::Raised {
                    exception_type: text(&answer["type"]),
                    message: text(&answer["message"]),
                    trace: answer["trace"].as_array().unwrap().iter().map(text).collect(),
                    duration_ms: answer["duration_ms"].as_f64().unwrap(),
                    logs,
                },
            };
            let finished = split_report(kind, &payload).expect("a report");
            assert_eq!(finished.outcome(elapsed, &[]), expected);
        }
    }

    #[test]
    fn an_answer_with_a_field_of_another_name_is_not_taken_for_one() {
        let answered = fixture("from_zygote").into_iter().find(|f| kind_of(f) == frame::ANSWER).unwrap();
        let mut answer = answered["answer"].as_object().unwrap().clone();
        let value = answer.remove("type").unwrap();
        answer.insert("exception_type".into(), value);
        let finished = Finished {
            kind: frame::ANSWER,
            body: serde_json::to_vec(&answer).unwrap(),
            logs: String::new(),
            truncated: false,
        };
        let RunOutcome::Crashed { status, .. } = finished.outcome(Duration::ZERO, &[]) else {
            panic!("read as an answer")
        };
        assert!(status.contains("could not be read"), "{status}");
    }
}
