//! The zygotes of all active versions: started on first use (or ahead, after a publish), shared
//! by every invocation of their version, replaced when the tool's environment changes, and
//! stopped when idle. A semaphore bounds the invocations running at once, so that overload is
//! refused at the door instead of queueing without end.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};

use crate::cgroup::{CgroupLimits, Cgroups};
use crate::sandbox::{Identity, Network};
use crate::secret::Secret;
use crate::zygote::{InvocationLimits, StartError, Zygote, ZygoteConfig, HARNESS, HARNESS_FILE, SPARE_SLOTS};

/// At most this many invocations of one version run at once, each in its own cgroup slot;
/// more wait for a slot.
const MAX_SLOTS: usize = 32;

/// Tunables of the pool.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Invocations that may run at once across all versions.
    pub max_concurrent: usize,
    /// A zygote unused for this long is stopped.
    pub idle_timeout: Duration,
    /// At most this many zygotes run; starting one more stops the least recently used.
    pub max_zygotes: usize,
    /// How tools reach the network.
    pub network: Network,
    /// The size cap of each sandbox's `/tmp` and `/dev/shm`, in bytes.
    pub tmp_bytes: u64,
    /// Per-invocation limits.
    pub limits: InvocationLimits,
    /// How long importing a tool may take.
    pub start_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_concurrent: 64,
            idle_timeout: Duration::from_secs(600),
            max_zygotes: 64,
            network: Network::Off,
            tmp_bytes: 256 << 20,
            limits: InvocationLimits::default(),
            start_timeout: Duration::from_secs(30),
        }
    }
}

/// What identifies and starts one version's zygote. The environment's values and the secrets
/// are [`Secret`]s, so that `Debug` shows neither.
#[derive(Clone, Debug)]
pub struct VersionRuntime {
    /// The version's source tree.
    pub project: PathBuf,
    /// Its environment.
    pub venv: PathBuf,
    /// The base interpreter's prefix.
    pub base_prefix: PathBuf,
    /// `module:function`.
    pub entrypoint: String,
    /// Whether the entrypoint takes `context`.
    pub takes_context: bool,
    /// The tool's env vars and decrypted secrets, by name.
    pub env: Secret<Vec<(String, String)>>,
    /// The host identity of the tool's organization.
    pub identity: Identity,
    /// The values to mask in whatever the runtime reports (the tool's secrets).
    pub secrets: Secret<Vec<String>>,
}

impl VersionRuntime {
    /// A digest of the environment: a zygote started with other values is stale.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut env = self.env.expose().clone();
        env.sort();
        let mut hash = Sha256::new();
        for (k, v) in &env {
            hash.update((k.len() as u64).to_be_bytes());
            hash.update(k.as_bytes());
            hash.update((v.len() as u64).to_be_bytes());
            hash.update(v.as_bytes());
        }
        hash.update(self.project.as_os_str().as_encoded_bytes());
        hash.update(self.venv.as_os_str().as_encoded_bytes());
        format!("{:x}", hash.finalize())
    }
}

type Started = Result<Arc<Zygote>, Arc<StartError>>;

struct Entry {
    fingerprint: String,
    cell: Arc<OnceCell<Started>>,
    last_used: Instant,
}

/// The refusal when every invocation slot is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many invocations are running")]
pub struct Busy;

/// The pool of zygotes.
pub struct Pool {
    config: PoolConfig,
    harness_dir: PathBuf,
    entries: Mutex<HashMap<String, Entry>>,
    permits: Arc<Semaphore>,
    cgroups: Result<Cgroups, String>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("config", &self.config).finish()
    }
}

impl Pool {
    /// A pool that keeps its harness copy under `runtime_dir`.
    pub fn new(config: PoolConfig, runtime_dir: &Path) -> std::io::Result<Pool> {
        let harness_dir = runtime_dir.join("harness");
        std::fs::create_dir_all(&harness_dir)?;
        let path = harness_dir.join(HARNESS_FILE);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(HARNESS) {
            let staging = harness_dir.join(format!(".{HARNESS_FILE}.{}", std::process::id()));
            std::fs::write(&staging, HARNESS)?;
            std::fs::rename(&staging, &path)?;
        }
        Ok(Pool {
            permits: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
            config,
            harness_dir,
            entries: Mutex::new(HashMap::new()),
            cgroups: Cgroups::detect(),
        })
    }

    /// The pool's tunables.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Why sandboxes have no process-count cgroup, when they have none.
    pub fn cgroup_problem(&self) -> Option<&str> {
        self.cgroups.as_ref().err().map(String::as_str)
    }

    /// Takes `n` invocation slots, or refuses at once when they are not free.
    pub fn try_permits(&self, n: u32) -> Result<OwnedSemaphorePermit, Busy> {
        self.permits.clone().try_acquire_many_owned(n).map_err(|_| Busy)
    }

    fn zygote_config(&self, runtime: &VersionRuntime) -> Result<ZygoteConfig, StartError> {
        let limits = self.config.limits;
        let cgroup = match &self.cgroups {
            Ok(cgroups) => {
                let whole = CgroupLimits { processes: limits.processes, memory_bytes: None };
                let each = CgroupLimits { processes: limits.processes, memory_bytes: Some(limits.memory_bytes) };
                let slots = self.config.max_concurrent.clamp(1, MAX_SLOTS) + SPARE_SLOTS;
                Some(Arc::new(
                    cgroups
                        .create_sandbox(whole, slots, each)
                        .map_err(|e| StartError::NoAnswer(format!("cannot create the sandbox's cgroup: {e}")))?,
                ))
            }
            Err(_) => None,
        };
        Ok(ZygoteConfig {
            project: runtime.project.clone(),
            venv: runtime.venv.clone(),
            base_prefix: runtime.base_prefix.clone(),
            harness_dir: self.harness_dir.clone(),
            entrypoint: runtime.entrypoint.clone(),
            takes_context: runtime.takes_context,
            env: runtime.env.clone(),
            secrets: runtime.secrets.clone(),
            network: self.config.network.clone(),
            identity: runtime.identity,
            tmp_bytes: self.config.tmp_bytes,
            limits: self.config.limits,
            cgroup,
            start_timeout: self.config.start_timeout,
        })
    }

    /// Starts a zygote outside the pool, for a one-off run (testing an unpublished commit).
    pub async fn start_unpooled(&self, runtime: &VersionRuntime) -> Result<Zygote, StartError> {
        Zygote::start(self.zygote_config(runtime)?).await
    }

    /// The running zygote of `key` (a version id), started if there is none, replaced if the
    /// running one is dead or was started with another environment. Concurrent callers share
    /// one start.
    pub async fn zygote(&self, key: &str, runtime: &VersionRuntime) -> Started {
        self.zygote_traced(key, runtime).await.0
    }

    /// [`Pool::zygote`], and how long the start took when this call started the zygote (a cold
    /// start), for metrics.
    pub async fn zygote_traced(&self, key: &str, runtime: &VersionRuntime) -> (Started, Option<Duration>) {
        let fingerprint = runtime.fingerprint();
        let mut init = None;
        for _ in 0..2 {
            let cell = {
                let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
                let stale = match entries.get(key) {
                    Some(entry) => {
                        entry.fingerprint != fingerprint
                            || matches!(entry.cell.get(), Some(Ok(z)) if !z.is_alive())
                            // A failed start is retried on the next call, not cached for ever.
                            || matches!(entry.cell.get(), Some(Err(_)))
                    }
                    None => true,
                };
                if stale {
                    // The old zygote is only let go of: invocations still running on it hold it
                    // and finish there, and it stops when the last of them lets go too.
                    entries.remove(key);
                    self.make_room(&mut entries);
                    entries.insert(
                        key.to_owned(),
                        Entry {
                            fingerprint: fingerprint.clone(),
                            cell: Arc::new(OnceCell::new()),
                            last_used: Instant::now(),
                        },
                    );
                }
                let entry = entries.get_mut(key).expect("inserted above");
                entry.last_used = Instant::now();
                entry.cell.clone()
            };
            let init = &mut init;
            let started = cell
                .get_or_init(|| async {
                    let began = Instant::now();
                    let started = match self.zygote_config(runtime) {
                        Ok(config) => Zygote::start(config).await.map(Arc::new).map_err(Arc::new),
                        Err(e) => Err(Arc::new(e)),
                    };
                    *init = Some(began.elapsed());
                    started
                })
                .await
                .clone();
            match &started {
                Ok(z) if !z.is_alive() => continue,
                _ => return (started, *init),
            }
        }
        (Err(Arc::new(StartError::NoAnswer("the tool's runtime exited as it started".into()))), init)
    }

    fn make_room(&self, entries: &mut HashMap<String, Entry>) {
        while entries.len() >= self.config.max_zygotes.max(1) {
            let Some(oldest) = entries.iter().min_by_key(|(_, e)| e.last_used).map(|(k, _)| k.clone()) else {
                return;
            };
            entries.remove(&oldest);
        }
    }

    /// Stops the zygotes of these keys (deprecated versions, a deprecated tool). New
    /// invocations no longer reach them; the ones running finish first (a zygote stops when its
    /// last user lets go of it).
    pub fn evict(&self, keys: &[String]) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys {
            entries.remove(key);
        }
    }

    /// Stops zygotes idle for longer than the idle timeout; returns how many.
    pub fn evict_idle(&self) -> usize {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let idle: Vec<String> = entries
            .iter()
            .filter(|(_, e)| e.last_used.elapsed() >= self.config.idle_timeout)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &idle {
            entries.remove(key);
        }
        idle.len()
    }

    /// How many invocations hold a slot now.
    pub fn in_flight(&self) -> usize {
        self.config.max_concurrent.max(1).saturating_sub(self.permits.available_permits())
    }

    /// How many zygotes are running.
    pub fn running(&self) -> usize {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.values().filter(|e| matches!(e.cell.get(), Some(Ok(z)) if z.is_alive())).count()
    }

    /// Runs idle eviction in the background for as long as the pool lives.
    pub fn spawn_evictor(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let period = (self.config.idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(pool) = weak.upgrade() else { return };
                pool.evict_idle();
            }
        });
    }
}
