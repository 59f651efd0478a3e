//! Starting the service: open the store, load keys, bootstrap, listen, shut down gracefully.

use std::future::IntoFuture;
use std::sync::Mutex;

use anyhow::Context;
use tokio::net::TcpListener;
use toolsmith_repo::{Limits, RepoStore};
use toolsmith_store::Store;

use crate::app::{AppState, Builder, Settings};
use crate::config::{LogFormat, ServeArgs, StorageArgs, Switch};
use crate::http::rate_limit::RateLimiter;
use crate::identity::token::TokenSigner;
use crate::{bootstrap, keys};
use toolsmith_build::{EnvStore, Toolchain};

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

/// Builds the application state.
pub fn state(
    store: Store,
    repos: RepoStore,
    builder: Result<Builder, String>,
    token_key: Vec<u8>,
    limiter: RateLimiter,
    settings: Settings,
) -> AppState {
    AppState::new(store, repos, builder, TokenSigner::new(token_key), limiter, settings)
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

/// `toolsmith serve`.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let settings = args.settings().map_err(anyhow::Error::msg)?;
    init_logging(args.log_format);
    let store = open_store(&args.storage).await?;
    let token_key = keys::load_token_key(&args.storage.data_dir)?;
    let repos = open_repos(&args.storage, args.repo_limits())?;
    if let Some(created) = bootstrap::bootstrap_if_empty(&store, &repos, &args.bootstrap_org).await? {
        // Written once and never fatal: a closed stdout (a pipe whose reader left) must not stop
        // the server.
        use std::io::Write;
        let _ = std::io::stdout().lock().write_all(bootstrap::welcome(&created, &args.public_url()).as_bytes());
        let _ = std::io::stdout().flush();
    }
    let limiter = rate_limiter(&store, args.rate_limits);
    let builder = open_builder(&args.storage.data_dir, &args.python, args.uv.as_deref()).await;
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
        Err(why) => tracing::warn!(reason = %why, "publishing is unavailable until the build toolchain is installed"),
    }
    // Builds left "running" by a server that stopped will never finish: failed now, and from
    // then on as soon as the lease of the lock they ran under runs out. A build has at most six
    // sandboxed steps (resolving and installing may each take two), each within the step timeout.
    let build_age = settings.build_step_timeout.as_secs() as i64 * 8;
    let stale = store.fail_stale_builds(build_age).await?;
    if stale > 0 {
        tracing::warn!(count = stale, "marked interrupted builds as failed");
    }
    spawn_stale_build_sweep(store.clone(), settings.lock_lease, build_age);
    let app_state = state(store.clone(), repos, builder, token_key, limiter, settings);
    let app = crate::http::router(app_state.clone());
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {} (is another server running there?)", args.listen))?;
    tracing::info!(address = %args.listen, backend = ?store.dialect(), "toolsmith is listening");
    let (signalled, signals) = tokio::sync::watch::channel(0u32);
    tokio::spawn(count_signals(signalled));
    if let Some(address) = args.metrics_listen {
        // A listener of its own, so that the metrics are never exposed with the API.
        let metrics =
            TcpListener::bind(address).await.with_context(|| format!("listening for metrics on {address}"))?;
        tracing::info!(address = %address, "metrics are served at /metrics");
        let mut stop = signals.clone();
        tokio::spawn(crate::metrics::serve(metrics, app_state, async move { self::signalled(&mut stop, 1).await }));
    }
    drain(listener, app, signals, args.shutdown_grace()).await?;
    // Every request that answered has its invocations committed already; rows of requests cut
    // at the deadline may still be queued, and are written before the database closes.
    if let Err(err) = store.flush_invocations().await {
        tracing::error!(error = %err, "could not write the last invocation records");
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
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
