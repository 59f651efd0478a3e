//! The shared state every request handler sees.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use toolsmith_builder::{EnvStore, Toolchain};
use toolsmith_repo::RepoStore;
use toolsmith_runtime::{Pool, PoolConfig};
use toolsmith_store::Store;

use crate::http::rate_limit::RateLimiter;
use crate::identity::token::TokenSigner;

/// The default first uid of sandbox identities: far above the uids of people and system
/// services, and below the range some tools treat as negative.
pub const DEFAULT_SANDBOX_UID_BASE: u32 = 1_500_000_000;

/// Tunables of the running service, validated at start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a token from `signin_with_api_key` stays valid.
    pub token_ttl: Duration,
    /// How long a deleted env var name stays blocked from being inserted again.
    pub envvar_tombstone: Duration,
    /// The lease of a per-tool operation lock; renewed while the operation runs.
    pub lock_lease: Duration,
    /// The largest request body accepted on the JSON endpoints.
    pub max_body_bytes: usize,
    /// How many live versions a tool may have; publishing one more is refused.
    pub max_active_versions: usize,
    /// The time limit of each build step (resolving, installing, testing, inspecting).
    pub build_step_timeout: Duration,
    /// How tools run: concurrency, limits, network, idle eviction.
    pub runtime: PoolConfig,
    /// The first host uid of sandbox identities; each organization gets the two after
    /// `base + 2 × its slot`.
    pub sandbox_uid_base: u32,
    /// How builds reach the network (resolving and downloading dependencies).
    pub build_network: toolsmith_runtime::Network,
    /// Memory of each build step, all its processes together.
    pub build_memory_bytes: u64,
    /// Processes and threads each build step may have at once.
    pub build_max_processes: u64,
    /// The size cap of each build step's `/tmp` and `/dev/shm`.
    pub build_tmp_bytes: u64,
    /// Free space the data directory's file system must keep for the server to call itself
    /// ready (`GET /readyz`): below it, builds and invocation records start failing.
    pub min_free_disk_bytes: u64,
    /// Deleting invocation records past an age; `None` keeps every record.
    pub invocation_retention: Option<Retention>,
    /// Browser origins allowed to call the MCP endpoint, as [`normalize_origin`] writes them;
    /// a request with any other `Origin` header is refused.
    pub mcp_allowed_origins: Vec<String>,
}

/// An origin as compared: lower case, without a trailing slash.
pub fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

impl Default for Settings {
    /// The settings of a server started without flags: tools and builds reach the network
    /// through egress.
    fn default() -> Self {
        let egress = match toolsmith_runtime::EgressPolicy::new(&[]) {
            Ok(policy) => toolsmith_runtime::Network::Egress(std::sync::Arc::new(policy)),
            Err(_) => toolsmith_runtime::Network::Off,
        };
        Settings {
            token_ttl: Duration::from_secs(3600),
            envvar_tombstone: Duration::from_secs(60),
            lock_lease: Duration::from_secs(60),
            max_body_bytes: 1 << 20,
            max_active_versions: 3,
            build_step_timeout: Duration::from_secs(300),
            sandbox_uid_base: DEFAULT_SANDBOX_UID_BASE,
            build_network: egress.clone(),
            build_memory_bytes: 2048 << 20,
            build_max_processes: 256,
            build_tmp_bytes: 512 << 20,
            min_free_disk_bytes: 512 << 20,
            invocation_retention: None,
            mcp_allowed_origins: Vec::new(),
            runtime: PoolConfig { network: egress, ..PoolConfig::default() },
        }
    }
}

/// What building versions needs: the interpreter and uv, the shared environments and the
/// artifacts directory. Absent when the toolchain could not be found at start; publishing then
/// answers 503 with the reason.
#[derive(Debug, Clone)]
pub struct Builder {
    /// Interpreter and uv.
    pub toolchain: Toolchain,
    /// Environments and uv's cache.
    pub envs: EnvStore,
    /// Where built source trees are kept.
    pub artifacts: std::path::PathBuf,
}

/// Builds of tested commits, by organization, commit and project directory. A commit never
/// changes, so a second test of the same branch tip reuses the build (environment, schema and test
/// run included). Bounded: it is emptied when it grows past 256 builds.
#[derive(Default)]
pub struct TestedBuilds(Mutex<HashMap<String, Arc<toolsmith_builder::pipeline::BuildOutput>>>);

impl TestedBuilds {
    /// The build of a key, when there is one.
    pub fn get(&self, key: &str) -> Option<Arc<toolsmith_builder::pipeline::BuildOutput>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned()
    }

    /// Keeps a build.
    pub fn insert(&self, key: String, output: Arc<toolsmith_builder::pipeline::BuildOutput>) {
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= 256 {
            cache.clear();
        }
        cache.insert(key, output);
    }
}

struct Inner {
    store: Store,
    tested_builds: TestedBuilds,
    repos: RepoStore,
    builder: Result<Builder, String>,
    tokens: TokenSigner,
    limiter: RateLimiter,
    settings: Settings,
    runtime: Option<Arc<Pool>>,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
    metrics: crate::metrics::Metrics,
}

/// Cheaply clonable handle to the service's state.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    /// Assembles the state from what [`crate::server::Application::build`] opened. Nothing is
    /// started here: the background tasks belong to the application.
    pub fn new(
        store: Store,
        repos: RepoStore,
        builder: Result<Builder, String>,
        runtime: Option<Arc<Pool>>,
        tokens: TokenSigner,
        limiter: RateLimiter,
        settings: Settings,
    ) -> Self {
        AppState(Arc::new(Inner {
            store,
            tested_builds: TestedBuilds::default(),
            repos,
            builder,
            tokens,
            limiter,
            settings,
            runtime,
            validators: Mutex::new(HashMap::new()),
            metrics: crate::metrics::Metrics::new(),
        }))
    }

    /// Starts deleting invocation records past the retention, when there is one; the task ends
    /// when the state is dropped.
    pub fn spawn_retention(&self) {
        if let Some(retention) = self.0.settings.invocation_retention.clone() {
            spawn_invocation_retention(Arc::downgrade(&self.0), retention);
        }
    }

    /// The zygote pool that runs invocations, when tools can run on this server.
    pub fn runtime(&self) -> Option<&Arc<Pool>> {
        self.0.runtime.as_ref()
    }

    /// The compiled input-schema validator of a version, compiled once per version.
    pub fn validator(
        &self,
        version_id: &str,
        schema: &serde_json::Value,
    ) -> Result<Arc<jsonschema::Validator>, String> {
        if let Some(v) = self.0.validators.lock().unwrap_or_else(|e| e.into_inner()).get(version_id) {
            return Ok(v.clone());
        }
        let compiled = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(schema)
            .map_err(|e| e.to_string())?;
        let compiled = Arc::new(compiled);
        let mut cache = self.0.validators.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(version_id.to_owned(), compiled.clone());
        Ok(compiled)
    }

    /// Builds of tested commits.
    pub fn tested_builds(&self) -> &TestedBuilds {
        &self.0.tested_builds
    }

    /// The build services, or why they are unavailable.
    pub fn builder(&self) -> Result<&Builder, &str> {
        self.0.builder.as_ref().map_err(String::as_str)
    }

    /// The organizations' git repositories.
    pub fn repos(&self) -> &RepoStore {
        &self.0.repos
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// The token signer.
    pub fn tokens(&self) -> &TokenSigner {
        &self.0.tokens
    }

    /// The rate limiter.
    pub fn limiter(&self) -> &RateLimiter {
        &self.0.limiter
    }

    /// The service's metrics.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.0.metrics
    }

    /// The metrics' text exposition, with the gauges read now.
    pub fn render_metrics(&self) -> String {
        let (runtimes, in_flight) = match &self.0.runtime {
            Some(pool) => (pool.running(), pool.in_flight()),
            None => (0, 0),
        };
        self.0.metrics.render(runtimes, in_flight, self.0.store.invocation_writer_queue())
    }

    /// The service's tunables.
    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }

    /// The host identity `org_id`'s sandboxes run as for `purpose`.
    pub async fn sandbox_identity(
        &self,
        org_id: &toolsmith_domain::OrgId,
        purpose: toolsmith_runtime::Purpose,
    ) -> Result<toolsmith_runtime::Identity, String> {
        let slot = self.0.store.sandbox_slot(org_id).await.map_err(|e| e.to_string())?;
        toolsmith_runtime::Identity::of_slot(self.0.settings.sandbox_uid_base, slot, purpose)
            .ok_or_else(|| format!("organization {org_id} has sandbox slot {slot}, beyond the range of uids"))
    }
}

/// How invocation records past an age are deleted.
#[derive(Debug, Clone)]
pub struct Retention {
    /// Records created longer ago than this are deleted.
    pub max_age: Duration,
    /// How often the server looks for such records.
    pub every: Duration,
    /// Records deleted per transaction; `None` for 1,000 on PostgreSQL and 250 on SQLite, whose
    /// invocation writer waits while a transaction runs (about 10 ms for 250 records).
    pub batch: Option<u32>,
    /// The pause between two transactions, in which the writer gets its turn.
    pub pause: Duration,
}

impl Retention {
    /// Deleting records older than `days`, looking every ten minutes, in transactions of the
    /// database's size 20 ms apart.
    pub fn days(days: u64) -> Retention {
        Retention {
            max_age: Duration::from_secs(days.saturating_mul(86_400)),
            every: Duration::from_secs(600),
            batch: None,
            pause: Duration::from_millis(20),
        }
    }
}

/// Deletes invocation records past the retention, every `retention.every`, in batches with a
/// pause between them; ends when the service's state is dropped. Several servers sharing a
/// PostgreSQL database each run it, and skip the rows another is deleting.
fn spawn_invocation_retention(state: std::sync::Weak<Inner>, retention: Retention) {
    tokio::spawn(async move {
        loop {
            let Some(store) = state.upgrade().map(|inner| inner.store.clone()) else { return };
            let max_age = i64::try_from(retention.max_age.as_micros()).unwrap_or(i64::MAX);
            let cutoff =
                toolsmith_domain::time::Timestamp(toolsmith_domain::time::Timestamp::now().0.saturating_sub(max_age));
            let batch = retention.batch.unwrap_or(match store.dialect() {
                toolsmith_store::Dialect::Sqlite => 250,
                toolsmith_store::Dialect::Postgres => 1_000,
            });
            let mut deleted = 0;
            loop {
                match store.delete_invocations_before(cutoff, batch).await {
                    Ok(n) => {
                        deleted += n;
                        if n < u64::from(batch) {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not delete invocation records past the retention");
                        break;
                    }
                }
                tokio::time::sleep(retention.pause).await;
                if state.strong_count() == 0 {
                    return;
                }
            }
            if deleted > 0 {
                tracing::info!(deleted, cutoff = %cutoff.to_rfc3339(), "deleted invocation records past the retention");
            }
            drop(store);
            tokio::time::sleep(retention.every).await;
        }
    });
}
