//! The shared state every request handler sees.

use std::sync::Arc;
use std::time::Duration;

use toolsmith_build::{EnvStore, Toolchain};
use toolsmith_repo::RepoStore;
use toolsmith_store::Store;

use crate::http::rate_limit::RateLimiter;
use crate::identity::token::TokenSigner;

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
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            token_ttl: Duration::from_secs(3600),
            envvar_tombstone: Duration::from_secs(60),
            lock_lease: Duration::from_secs(60),
            max_body_bytes: 1 << 20,
            max_active_versions: 3,
            build_step_timeout: Duration::from_secs(300),
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

struct Inner {
    store: Store,
    repos: RepoStore,
    builder: Result<Builder, String>,
    tokens: TokenSigner,
    limiter: RateLimiter,
    settings: Settings,
}

/// Cheaply clonable handle to the service's state.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    /// Assembles the state.
    pub fn new(
        store: Store,
        repos: RepoStore,
        builder: Result<Builder, String>,
        tokens: TokenSigner,
        limiter: RateLimiter,
        settings: Settings,
    ) -> Self {
        AppState(Arc::new(Inner { store, repos, builder, tokens, limiter, settings }))
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

    /// The service's tunables.
    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }
}
