//! Starting the service: open the store, load keys, bootstrap, listen, shut down gracefully.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use toolsmith_repo::{Limits, RepoStore};
use toolsmith_store::Store;

use toolsmith_domain::OrgId;
use toolsmith_runtime::Pool;

use crate::app::{AppState, Builder, Settings};
use crate::config::{LogFormat, ServeArgs, StorageArgs, Switch};
use crate::http::rate_limit::RateLimiter;
use crate::identity::token::TokenSigner;
use crate::{bootstrap, keys};
use toolsmith_builder::{EnvStore, Toolchain};

/// Opens the store named by `storage`, creating the data directory (mode 0700) when needed.
pub async fn open_store(storage: &StorageArgs) -> anyhow::Result<Store> {
    storage.validate().map_err(anyhow::Error::msg)?;
    create_data_dir(&storage.data_dir)?;
    let keyring = keys::load_keyring(&storage.data_dir)?;
    let url = storage.url();
    Store::open(&url, keyring)
        .await
        .with_context(|| format!("opening the database at {}", crate::config::redact_url(&url)))
}

fn create_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if !dir.exists() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating the data directory {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// The rate limiter fitting the store: in memory for SQLite (one process), in the database for
/// PostgreSQL (several processes), or none.
pub fn rate_limiter(store: &Store, switch: Switch) -> RateLimiter {
    match (switch, store.dialect()) {
        (Switch::Off, _) => RateLimiter::Off,
        (Switch::On, toolsmith_store::Dialect::Sqlite) => RateLimiter::Memory(Mutex::new(Default::default())),
        (Switch::On, toolsmith_store::Dialect::Postgres) => RateLimiter::Database(store.clone()),
    }
}

/// Finds the toolchain and prepares the environments, caches, scratch and artifacts directories
/// under the data directory (removing what a server that died left in its scratch space); the
/// error is the reason publishing will be unavailable.
pub async fn open_builder(
    data_dir: &std::path::Path,
    python: &str,
    uv: Option<&std::path::Path>,
) -> Result<Builder, String> {
    let toolchain = Toolchain::discover(python, uv).await?;
    let envs = EnvStore::new(data_dir).map_err(|e| format!("preparing {}: {e}", data_dir.display()))?;
    Ok(Builder { toolchain, envs, artifacts: data_dir.join("artifacts") })
}

/// The repositories under `<data-dir>/repos`.
pub fn open_repos(storage: &StorageArgs, limits: Limits) -> anyhow::Result<RepoStore> {
    let root = storage.data_dir.join("repos");
    RepoStore::new(root.clone(), limits).with_context(|| format!("opening the repositories in {}", root.display()))
}

/// Sets up logging: text or JSON lines, filtered by `RUST_LOG` (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// How to start the service: what `toolsmith serve` reads from its flags, and what the tests
/// give directly. Every value is already checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// The data directory and database.
    pub storage: StorageArgs,
    /// Where the API listens; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Where `/metrics` is served, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// The service's tunables.
    pub settings: Settings,
    /// Whether rate limits apply.
    pub rate_limits: Switch,
    /// Push and file-size limits of the repositories.
    pub repo_limits: Limits,
    /// The Python interpreter tools are built for and run on.
    pub python: String,
    /// The uv binary, when not found next to the interpreter.
    pub uv: Option<PathBuf>,
    /// The organization to create on the first start, if any.
    pub bootstrap_org: Option<OrgId>,
    /// How long running requests may take to finish once a shutdown starts.
    pub shutdown_grace: Duration,
}

impl ServeArgs {
    /// The configuration these flags describe.
    pub fn config(&self) -> Result<Config, String> {
        Ok(Config {
            storage: self.storage.clone(),
            listen: self.listen,
            metrics_listen: self.metrics_listen,
            settings: self.settings()?,
            rate_limits: self.rate_limits,
            repo_limits: self.repo_limits(),
            python: self.python.clone(),
            uv: self.uv.clone(),
            bootstrap_org: Some(self.bootstrap_org.clone()),
            shutdown_grace: self.shutdown_grace(),
        })
    }
}

/// The service, opened and listening but not yet serving: `main` and the tests start it the same
/// way, through [`Application::build`], and run it with [`Application::run`].
pub struct Application {
    state: AppState,
    listener: TcpListener,
    metrics: Option<TcpListener>,
    grace: Duration,
    bootstrapped: Option<bootstrap::Bootstrapped>,
}

impl Application {
    /// Opens the store (applying migrations), the keys, the repositories and the build
    /// toolchain; bootstraps an empty installation; fails the builds a stopped server left
    /// running; starts the background tasks (tool runtimes' eviction, stale-build sweep,
    /// retention); and binds the listeners.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let store = open_store(&config.storage).await?;
        let token_key = keys::load_token_key(&config.storage.data_dir)?;
        let repos = open_repos(&config.storage, config.repo_limits)?;
        let bootstrapped = match &config.bootstrap_org {
            Some(org) => bootstrap::bootstrap_if_empty(&store, &repos, org).await?,
            None => None,
        };
        let limiter = rate_limiter(&store, config.rate_limits);
        let builder = open_builder(&config.storage.data_dir, &config.python, config.uv.as_deref()).await;
        match &builder {
            Ok(b) => {
                tracing::info!(python = %b.toolchain.python.display(), version = %b.toolchain.version, uv = %b.toolchain.uv.display(), "build toolchain ready");
                if let Some(why) = b.envs.cgroup_problem() {
                    tracing::warn!(
                        reason = why,
                        "no cgroup for build steps; their processes are bounded by RLIMIT_NPROC, per identity"
                    );
                }
            }
            Err(why) => {
                tracing::warn!(reason = %why, "publishing is unavailable until the build toolchain is installed")
            }
        }
        let runtime = builder.as_ref().ok().and_then(|b| open_runtime(&config.settings, b));
        // Builds left "running" by a server that stopped will never finish: failed now, and from
        // then on as soon as the lease of the lock they ran under runs out. A build has at most
        // six sandboxed steps (resolving and installing may each take two), each within the step
        // timeout.
        let build_age = config.settings.build_step_timeout.as_secs() as i64 * 8;
        let stale = store.fail_stale_builds(build_age).await?;
        if stale > 0 {
            tracing::warn!(count = stale, "marked interrupted builds as failed");
        }
        spawn_stale_build_sweep(store.clone(), config.settings.lock_lease, build_age);
        let state =
            AppState::new(store, repos, builder, runtime, TokenSigner::new(token_key), limiter, config.settings);
        state.spawn_retention();
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {} (is another server running there?)", config.listen))?;
        let metrics = match config.metrics_listen {
            Some(address) => {
                Some(TcpListener::bind(address).await.with_context(|| format!("listening for metrics on {address}"))?)
            }
            None => None,
        };
        Ok(Application { state, listener, metrics, grace: config.shutdown_grace, bootstrapped })
    }

    /// The address the API listens on.
    pub fn address(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// The service's state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// What the first start created, to be shown once.
    pub fn bootstrapped(&self) -> Option<&bootstrap::Bootstrapped> {
        self.bootstrapped.as_ref()
    }

    /// Serves until `signals` counts one stop request, then drains (see [`drain`]); a second
    /// one cuts the requests still running. Writes the last invocation records and closes the
    /// database before returning.
    pub async fn run(self, signals: tokio::sync::watch::Receiver<u32>) -> anyhow::Result<()> {
        let store = self.state.store().clone();
        tracing::info!(address = %self.listener.local_addr()?, backend = ?store.dialect(), "toolsmith is listening");
        if let Some(metrics) = self.metrics {
            // A listener of its own, so that the metrics are never exposed with the API.
            tracing::info!(address = %metrics.local_addr()?, "metrics are served at /metrics");
            let mut stop = signals.clone();
            let state = self.state.clone();
            tokio::spawn(crate::metrics::serve(metrics, state, async move { self::signalled(&mut stop, 1).await }));
        }
        let app = crate::http::router(self.state);
        drain(self.listener, app, signals, self.grace).await?;
        // Every request that answered has its invocations committed already; rows of requests
        // cut at the deadline may still be queued, and are written before the database closes.
        if let Err(err) = store.flush_invocations().await {
            tracing::error!(error = %err, "could not write the last invocation records");
        }
        store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The zygote pool of a server whose toolchain was found; it keeps its harness beside the
/// artifacts it runs. `None` (tools cannot run) when it cannot be prepared.
fn open_runtime(settings: &Settings, builder: &Builder) -> Option<Arc<Pool>> {
    let dir = builder.artifacts.parent().unwrap_or(&builder.artifacts).join("runtime");
    match Pool::new(settings.runtime.clone(), &dir) {
        Ok(pool) => {
            if !toolsmith_runtime::sandbox::running_as_root() {
                tracing::warn!(
                    "not running as root: tool code runs as this service's own uid in a user namespace, \
                     not as a separate uid per organization"
                );
            }
            if let Some(why) = pool.cgroup_problem() {
                tracing::warn!(
                    reason = why,
                    "no process-count cgroup for sandboxes; falling back to RLIMIT_NPROC, which does not bind root"
                );
            }
            let pool = Arc::new(pool);
            pool.spawn_evictor();
            Some(pool)
        }
        Err(e) => {
            tracing::error!(error = %e, dir = %dir.display(), "cannot prepare the tool runtime");
            None
        }
    }
}

/// `toolsmith serve`.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.config().map_err(anyhow::Error::msg)?;
    init_logging(args.log_format);
    let application = Application::build(config).await?;
    if let Some(created) = application.bootstrapped() {
        // Written once and never fatal: a closed stdout (a pipe whose reader left) must not stop
        // the server.
        use std::io::Write;
        let _ = std::io::stdout().lock().write_all(bootstrap::welcome(created, &args.public_url()).as_bytes());
        let _ = std::io::stdout().flush();
    }
    let (signalled, signals) = tokio::sync::watch::channel(0u32);
    tokio::spawn(count_signals(signalled));
    application.run(signals).await
}

/// Serves until the first SIGTERM or SIGINT, then stops accepting connections (the listener is
/// closed, so new connections are refused) and lets the requests under way finish: running
/// invocations, publishes and pushes end normally and their answers are complete. After `grace`
/// (or at a second signal) the requests still running are cut.
async fn drain(
    listener: TcpListener,
    app: axum::Router,
    signals: tokio::sync::watch::Receiver<u32>,
    grace: std::time::Duration,
) -> anyhow::Result<()> {
    let mut first = signals.clone();
    let stopping = async move { signalled(&mut first, 1).await };
    let mut server = tokio::spawn(axum::serve(listener, app).with_graceful_shutdown(stopping).into_future());
    let mut watch = signals;
    tokio::select! {
        done = &mut server => return Ok(done??),
        _ = signalled(&mut watch, 1) => {}
    }
    tracing::info!(grace_secs = grace.as_secs(), "shutting down: refusing new connections, finishing running requests");
    let cut = tokio::select! {
        done = &mut server => {
            done??;
            false
        }
        _ = tokio::time::sleep(grace) => true,
        _ = signalled(&mut watch, 2) => true,
    };
    if cut {
        tracing::warn!("requests still running at the end of the shutdown grace are cut");
        server.abort();
    } else {
        tracing::info!("every running request has finished");
    }
    Ok(())
}

/// Every lock lease, fails the builds whose server died (see `Store::fail_stale_builds`): on
/// PostgreSQL another server process may have died, and a publish of a tool that is never
/// published again would otherwise stay "running".
fn spawn_stale_build_sweep(store: Store, period: std::time::Duration, build_age: i64) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            match store.fail_stale_builds(build_age).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(count = n, "marked builds whose server stopped as failed"),
                Err(e) => tracing::warn!(error = %e, "could not look for builds whose server stopped"),
            }
        }
    });
}

/// Returns once `count` signals have arrived; never, when signals cannot be received.
async fn signalled(signals: &mut tokio::sync::watch::Receiver<u32>, count: u32) {
    if signals.wait_for(|n| *n >= count).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Counts SIGTERM and SIGINT: the first starts the shutdown, a second one ends its grace.
async fn count_signals(count: tokio::sync::watch::Sender<u32>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(term), Ok(int)) => (term, int),
        (Err(err), _) | (_, Err(err)) => {
            tracing::error!(error = %err, "cannot listen for SIGTERM and SIGINT; stop the server with SIGKILL");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        count.send_modify(|n| *n += 1);
    }
}
