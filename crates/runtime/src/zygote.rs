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

use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};
use tokio::sync::oneshot;

use crate::cgroup::Cgroup;
use crate::sandbox::{Limits, Mount, Sandbox, SandboxError};

/// The harness, compiled into the binary so that the server never reads its source tree.
pub const HARNESS: &str = include_str!("../python/toolsmith_harness.py");
/// The harness's file name in the directory mounted at [`HARNESS_DIR`].
pub const HARNESS_FILE: &str = "toolsmith_harness.py";
const HARNESS_DIR: &str = "/opt/toolsmith";
const PROJECT_DIR: &str = "/project";
const ENV_DIR: &str = "/env";
const STDERR_KEPT: usize = 16 * 1024;

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

/// What starts a zygote.
#[derive(Debug, Clone)]
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
    pub env: Vec<(String, String)>,
    /// Whether the sandbox shares the host's network.
    pub network: bool,
    /// Per-invocation limits.
    pub limits: InvocationLimits,
    /// The process-count cgroup, when there is one.
    pub cgroup: Option<Arc<Cgroup>>,
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
    stdin: tokio::sync::Mutex<ChildStdin>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Value>>>,
    alive: AtomicBool,
    next_id: AtomicU64,
}

/// A running zygote. Dropping it kills the sandbox and everything in it.
pub struct Zygote {
    shared: Arc<Shared>,
    child: Mutex<Option<Child>>,
    limits: InvocationLimits,
    _cgroup: Option<Arc<Cgroup>>,
}

impl std::fmt::Debug for Zygote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zygote").field("alive", &self.is_alive()).finish()
    }
}

async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Option<Value> {
    let mut head = [0u8; 4];
    reader.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes(head) as usize;
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await.ok()?;
    serde_json::from_slice(&body).ok()
}

fn frame(message: &Value) -> Vec<u8> {
    let body = serde_json::to_vec(message).unwrap_or_default();
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

impl Zygote {
    /// Starts the sandbox, sends the configuration and waits until the tool is imported.
    pub async fn start(config: ZygoteConfig) -> Result<Zygote, StartError> {
        let sandbox_limits = Limits {
            // The zygote's own limits bound the whole sandbox; each invocation gets tighter ones.
            memory_bytes: config.limits.memory_bytes.saturating_add(1 << 30),
            cpu_secs: libc::RLIM_INFINITY,
            file_size_bytes: config.limits.file_size_bytes,
            open_files: 1024,
            timeout: Duration::MAX,
            output_bytes: STDERR_KEPT,
        };
        let sandbox = Sandbox::new()
            .mount(Mount::read_only_at(&config.project, PROJECT_DIR))
            .mount(Mount::read_only_at(&config.venv, ENV_DIR))
            .mount(Mount::read_only(&config.base_prefix))
            .mount(Mount::read_only_at(&config.harness_dir, HARNESS_DIR))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .cwd(PROJECT_DIR)
            .network(config.network)
            .limits(sandbox_limits)
            .as_pid_1(true)
            .cgroup(config.cgroup.as_ref().map(|c| c.procs()))
            // Without a cgroup, RLIMIT_NPROC is the fallback; it counts every process of the
            // user, the server's and other sandboxes' included, hence the headroom.
            .max_processes(if config.cgroup.is_none() { Some(config.limits.processes.max(64) * 8) } else { None });
        let mut child = sandbox.spawn(&[
            format!("{ENV_DIR}/bin/python"),
            "-u".to_owned(),
            format!("{HARNESS_DIR}/{HARNESS_FILE}"),
        ])?;
        let mut stdin = child.stdin.take().ok_or_else(|| StartError::NoAnswer("no stdin".into()))?;
        let mut stdout = child.stdout.take().ok_or_else(|| StartError::NoAnswer("no stdout".into()))?;
        let stderr_tail = Arc::new(Mutex::new(Vec::<u8>::new()));
        if let Some(mut stderr) = child.stderr.take() {
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
        let env: serde_json::Map<String, Value> =
            config.env.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        let hello = json!({
            "entrypoint": config.entrypoint,
            "takes_context": config.takes_context,
            "env": env,
            "limits": {
                "memory_bytes": config.limits.memory_bytes,
                "cpu_secs": config.limits.cpu_secs,
                "file_size_bytes": config.limits.file_size_bytes,
                "output_bytes": config.limits.output_bytes,
            },
        });
        let stderr_text = |tail: &Arc<Mutex<Vec<u8>>>| {
            String::from_utf8_lossy(&tail.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
        };
        if stdin.write_all(&frame(&hello)).await.is_err() {
            let _ = child.wait().await;
            return Err(StartError::NoAnswer(stderr_text(&stderr_tail)));
        }
        let ready = tokio::time::timeout(config.start_timeout, read_frame(&mut stdout)).await;
        let ready = match ready {
            Ok(Some(ready)) => ready,
            Ok(None) => {
                let _ = child.wait().await;
                // Let the stderr reader catch up with what the process printed as it died.
                tokio::time::sleep(Duration::from_millis(20)).await;
                return Err(StartError::NoAnswer(stderr_text(&stderr_tail)));
            }
            Err(_) => {
                return Err(StartError::NoAnswer(format!(
                    "importing the tool took longer than {} s",
                    config.start_timeout.as_secs()
                )))
            }
        };
        if ready.get("ready") != Some(&Value::Bool(true)) {
            let text = |k: &str| ready.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
            return Err(StartError::Import {
                exception_type: text("type"),
                message: text("message"),
                traceback: text("traceback"),
            });
        }
        let shared = Arc::new(Shared {
            stdin: tokio::sync::Mutex::new(stdin),
            pending: Mutex::new(HashMap::new()),
            alive: AtomicBool::new(true),
            next_id: AtomicU64::new(1),
        });
        let reader = shared.clone();
        let tail = stderr_tail.clone();
        tokio::spawn(async move {
            while let Some(answer) = read_frame(&mut stdout).await {
                let Some(id) = answer.get("id").and_then(Value::as_u64) else { continue };
                let waiter = reader.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(answer);
                }
            }
            let was_alive = reader.alive.swap(false, Ordering::SeqCst);
            if was_alive {
                // Not stopped by the pool: the harness itself ended. What it printed says why.
                tokio::time::sleep(Duration::from_millis(20)).await;
                tracing::warn!(stderr = %stderr_text(&tail), "a tool runtime exited unexpectedly");
            }
            // Dropping the senders tells every waiting caller that the runtime is gone.
            reader.pending.lock().unwrap_or_else(|e| e.into_inner()).clear();
        });
        Ok(Zygote { shared, child: Mutex::new(Some(child)), limits: config.limits, _cgroup: config.cgroup })
    }

    /// Whether the zygote still runs.
    pub fn is_alive(&self) -> bool {
        self.shared.alive.load(Ordering::SeqCst)
    }

    /// Kills the sandbox now; invocations in flight end as [`RunOutcome::RuntimeLost`].
    pub fn kill(&self) {
        self.shared.alive.store(false, Ordering::SeqCst);
        if let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = child.start_kill();
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
        }
    }

    async fn send(&self, message: &Value) -> bool {
        let mut stdin = self.shared.stdin.lock().await;
        stdin.write_all(&frame(message)).await.is_ok()
    }

    /// Runs one invocation in a fresh child of the zygote.
    pub async fn invoke(&self, input: &Value, context: &Value) -> RunOutcome {
        if !self.is_alive() {
            return RunOutcome::RuntimeLost;
        }
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = oneshot::channel();
        self.shared.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(id, tx);
        let started = Instant::now();
        if !self.send(&json!({"id": id, "input": input, "context": context})).await {
            self.shared.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            return RunOutcome::RuntimeLost;
        }
        let answer = match tokio::time::timeout(self.limits.timeout, &mut rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => return RunOutcome::RuntimeLost,
            Err(_) => {
                // The zygote kills the invocation's process group and reports the child's end;
                // if it cannot within a moment, the whole sandbox goes.
                let sent = self.send(&json!({"kill": id})).await;
                let mut logs = String::new();
                match tokio::time::timeout(Duration::from_secs(2), &mut rx).await {
                    Ok(Ok(answer)) if sent => {
                        logs = answer.get("logs").and_then(Value::as_str).unwrap_or_default().to_owned();
                    }
                    _ => self.kill(),
                }
                return RunOutcome::TimedOut { limit: self.limits.timeout, logs };
            }
        };
        let text = |k: &str| answer.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        let duration_ms = answer.get("duration_ms").and_then(Value::as_f64).unwrap_or_default();
        let mut logs = text("logs");
        if answer.get("truncated") == Some(&Value::Bool(true)) {
            logs.push_str("\n[output truncated: the tool printed more than the limit]\n");
        }
        if answer.get("crashed") == Some(&Value::Bool(true)) {
            return RunOutcome::Crashed {
                status: text("status"),
                duration_ms: started.elapsed().as_secs_f64() * 1000.0,
                logs,
            };
        }
        if answer.get("ok") == Some(&Value::Bool(true)) {
            RunOutcome::Returned { output: text("output"), duration_ms, logs }
        } else {
            let trace = answer
                .get("trace")
                .and_then(Value::as_array)
                .map(|lines| lines.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default();
            RunOutcome::Raised { exception_type: text("type"), message: text("message"), trace, duration_ms, logs }
        }
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
}
