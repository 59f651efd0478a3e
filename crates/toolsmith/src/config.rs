//! Command line and environment configuration, validated before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::app::Settings;

/// toolsmith: host Python tools in git, publish immutable versions, invoke them in a sandbox.
#[derive(Debug, Parser)]
#[command(name = "toolsmith", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
// Parsed once per process: boxing the serve options would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (creates an organization, an admin and an API key on first start).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate(StorageArgs),
    /// Manage organizations, users, role grants and API keys.
    Admin {
        /// Where the data lives.
        #[command(flatten)]
        storage: StorageArgs,
        /// The administrative action.
        #[command(subcommand)]
        action: crate::admin::AdminAction,
    },
    /// Serve an organization's MCP server on standard input and output, relaying each message to
    /// a toolsmith server's MCP endpoint (for MCP clients that start local servers).
    Mcp(crate::mcp::bridge::BridgeArgs),
}

/// Where toolsmith keeps its data.
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// Directory for the SQLite database, repositories, environments and keys.
    #[arg(long, env = "TOOLSMITH_DATA_DIR", default_value = "./toolsmith-data")]
    pub data_dir: PathBuf,
    /// Use PostgreSQL instead of the embedded SQLite (`postgres://user@host/db`).
    #[arg(long, env = "TOOLSMITH_DATABASE_URL")]
    pub database_url: Option<String>,
}

impl StorageArgs {
    /// The database URL: the given PostgreSQL URL, or SQLite inside the data directory.
    pub fn url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("toolsmith.db").display()),
        }
    }

    /// Rejects a database URL of an unsupported kind before anything is opened.
    pub fn validate(&self) -> Result<(), String> {
        match &self.database_url {
            Some(url) if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) => Err(format!(
                "--database-url / TOOLSMITH_DATABASE_URL must be a postgres:// URL (got {:?}); omit it to use SQLite in the data directory",
                redact_url(url)
            )),
            _ => Ok(()),
        }
    }
}

/// A URL with any password replaced, fit for an error message or a log line.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// On or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// How sandboxed code reaches the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkMode {
    /// No network but the sandbox's own loopback.
    Off,
    /// The internet through a userspace stack: never the host's loopback, and no private,
    /// link-local or host address unless `--tool-egress-allow` names it.
    Egress,
    /// The host's own network, loopback and every local service included. Unsafe.
    Host,
}

fn network(mode: NetworkMode, egress: &Arc<toolsmith_runtime::EgressPolicy>) -> toolsmith_runtime::Network {
    match mode {
        NetworkMode::Off => toolsmith_runtime::Network::Off,
        NetworkMode::Egress => toolsmith_runtime::Network::Egress(egress.clone()),
        NetworkMode::Host => toolsmith_runtime::Network::Host,
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Options of `toolsmith serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Where the data lives.
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Address to listen on.
    #[arg(long, env = "TOOLSMITH_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The URL clients reach this server at, used in printed instructions (default: from --listen).
    #[arg(long, env = "TOOLSMITH_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Per-user, per-endpoint rate limits with the contract's numbers.
    #[arg(long, env = "TOOLSMITH_RATE_LIMITS", value_enum, default_value = "on")]
    pub rate_limits: Switch,
    /// Lifetime of tokens issued by sign-in, in seconds (60 to 2592000).
    #[arg(long, env = "TOOLSMITH_TOKEN_TTL_SECS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(60..=2_592_000))]
    pub token_ttl_secs: u64,
    /// How long a deleted env var name cannot be inserted again, in seconds.
    #[arg(long, env = "TOOLSMITH_ENVVAR_TOMBSTONE_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub envvar_tombstone_secs: u64,
    /// Lease of per-tool operation locks, in seconds (renewed while an operation runs).
    #[arg(long, env = "TOOLSMITH_LOCK_LEASE_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(5..=3600))]
    pub lock_lease_secs: u64,
    /// Largest accepted JSON request body, in bytes.
    #[arg(long, env = "TOOLSMITH_MAX_BODY_BYTES", default_value_t = 1 << 20,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1024..=67_108_864))]
    pub max_body_bytes: usize,
    /// Log line format.
    #[arg(long, env = "TOOLSMITH_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Largest pack a `git push` may send, in bytes.
    #[arg(long, env = "TOOLSMITH_MAX_PUSH_BYTES", default_value_t = 256 << 20)]
    pub max_push_bytes: u64,
    /// Largest file the repository browsing endpoints return, in bytes.
    #[arg(long, env = "TOOLSMITH_MAX_FILE_BYTES", default_value_t = 10 << 20)]
    pub max_file_bytes: u64,
    /// The Python interpreter tools are built for and run on.
    #[arg(long, env = "TOOLSMITH_PYTHON", default_value = "python3")]
    pub python: String,
    /// The uv binary (default: the `uv` Python package of --python, then `uv` on PATH).
    #[arg(long, env = "TOOLSMITH_UV")]
    pub uv: Option<PathBuf>,
    /// How many live versions a tool may have.
    #[arg(long, env = "TOOLSMITH_MAX_ACTIVE_VERSIONS", default_value_t = 3,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000))]
    pub max_active_versions: usize,
    /// Time limit of each build step, in seconds.
    #[arg(long, env = "TOOLSMITH_BUILD_STEP_TIMEOUT_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(5..=3600))]
    pub build_step_timeout_secs: u64,
    /// Memory of each build step (resolving, installing, testing, inspecting), all its
    /// processes together, in MiB.
    #[arg(long, env = "TOOLSMITH_BUILD_MEMORY_MIB", default_value_t = 2048,
          value_parser = clap::value_parser!(u64).range(256..=1_048_576))]
    pub build_memory_mib: u64,
    /// Processes and threads each build step may have at once.
    #[arg(long, env = "TOOLSMITH_BUILD_MAX_PROCESSES", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(16..=65_536))]
    pub build_max_processes: u64,
    /// The size cap of each build step's `/tmp` and `/dev/shm`, in MiB.
    #[arg(long, env = "TOOLSMITH_BUILD_TMP_MIB", default_value_t = 512,
          value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub build_tmp_mib: u64,
    /// Invocations that may run at once; more are refused with 503 and `Retry-After`.
    #[arg(long, env = "TOOLSMITH_MAX_CONCURRENT_INVOCATIONS", default_value_t = 64,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_concurrent_invocations: usize,
    /// Wall-clock limit of one invocation, in seconds; its processes are killed after it.
    #[arg(long, env = "TOOLSMITH_INVOKE_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub invoke_timeout_secs: u64,
    /// CPU seconds one invocation may use.
    #[arg(long, env = "TOOLSMITH_INVOKE_CPU_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub invoke_cpu_secs: u64,
    /// Address space of one invocation, in MiB.
    #[arg(long, env = "TOOLSMITH_INVOKE_MEMORY_MIB", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(64..=1_048_576))]
    pub invoke_memory_mib: u64,
    /// Processes one version's runtime may have at once (all its running invocations together).
    #[arg(long, env = "TOOLSMITH_INVOKE_MAX_PROCESSES", default_value_t = 128,
          value_parser = clap::value_parser!(u64).range(4..=65_536))]
    pub invoke_max_processes: u64,
    /// Largest file one invocation may write, in MiB.
    #[arg(long, env = "TOOLSMITH_INVOKE_FILE_MIB", default_value_t = 64)]
    pub invoke_file_mib: u64,
    /// Bytes of a tool's stdout and stderr kept per invocation; the rest is dropped.
    #[arg(long, env = "TOOLSMITH_INVOKE_LOG_BYTES", default_value_t = 256 << 10)]
    pub invoke_log_bytes: usize,
    /// How tools reach the network: `off`, `egress` (default) or `host` (unsafe: the host's loopback and every local service).
    #[arg(long, env = "TOOLSMITH_TOOL_NETWORK", value_enum, default_value = "egress")]
    pub tool_network: NetworkMode,
    /// How builds reach the network to resolve and download dependencies: `off`, `egress`
    /// (default) or `host` (unsafe).
    #[arg(long, env = "TOOLSMITH_BUILD_NETWORK", value_enum, default_value = "egress")]
    pub build_network: NetworkMode,
    /// A network (CIDR) or host name that sandboxes with egress may reach although it is
    /// private, link-local or the host's own. Repeatable.
    #[arg(long = "tool-egress-allow", env = "TOOLSMITH_TOOL_EGRESS_ALLOW", value_delimiter = ',')]
    pub tool_egress_allow: Vec<String>,
    /// Serve Prometheus metrics at `/metrics` on this address (off by default; never on the API's
    /// listener).
    #[arg(long, env = "TOOLSMITH_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// The first host uid of sandbox identities (two per organization follow it).
    #[arg(long, env = "TOOLSMITH_SANDBOX_UID_BASE", default_value_t = crate::app::DEFAULT_SANDBOX_UID_BASE,
          value_parser = clap::value_parser!(u32).range(1000..=2_000_000_000))]
    pub sandbox_uid_base: u32,
    /// The size cap of each sandbox's `/tmp` and of its `/dev/shm`, in MiB.
    #[arg(long, env = "TOOLSMITH_TOOL_TMP_MIB", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub tool_tmp_mib: u64,
    /// A version's runtime unused for this many seconds is stopped.
    #[arg(long, env = "TOOLSMITH_RUNTIME_IDLE_SECS", default_value_t = 600)]
    pub runtime_idle_secs: u64,
    /// Versions whose runtimes may run at once; the least recently used is stopped first.
    #[arg(long, env = "TOOLSMITH_MAX_RUNTIMES", default_value_t = 64,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_runtimes: usize,
    /// The organization created on first start.
    #[arg(long, env = "TOOLSMITH_BOOTSTRAP_ORG", default_value = "default")]
    pub bootstrap_org: toolsmith_domain::OrgId,
    /// After SIGTERM or SIGINT, how long running requests (invocations, publishes) may take to
    /// finish before the server exits anyway, in seconds.
    #[arg(long, env = "TOOLSMITH_SHUTDOWN_GRACE_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_grace_secs: u64,
    /// Free space the data directory's file system must have for `GET /readyz` to answer 200,
    /// in MiB.
    #[arg(long, env = "TOOLSMITH_MIN_FREE_DISK_MIB", default_value_t = 512)]
    pub min_free_disk_mib: u64,
    /// Delete invocation records (with their logs) older than this many days (default: keep
    /// every record).
    #[arg(long, env = "TOOLSMITH_INVOCATION_RETENTION_DAYS",
          value_parser = clap::value_parser!(u64).range(1..=36_500))]
    pub invocation_retention_days: Option<u64>,
    /// A browser origin (`https://app.example.com`) allowed to call the MCP endpoint; requests
    /// with any other `Origin` are refused. Repeatable, or comma-separated.
    #[arg(long = "mcp-allowed-origin", env = "TOOLSMITH_MCP_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub mcp_allowed_origins: Vec<String>,
}

impl ServeArgs {
    /// Turns the options into the service's settings. Ranges are checked where the options are
    /// parsed (clap's value parsers name the option and the range); what is left to check here is
    /// what spans several options or needs more than a number.
    pub fn settings(&self) -> Result<Settings, String> {
        self.storage.validate()?;
        let egress = Arc::new(
            toolsmith_runtime::EgressPolicy::new(&self.tool_egress_allow)
                .map_err(|e| format!("--tool-egress-allow: {e}"))?,
        );
        Ok(Settings {
            token_ttl: Duration::from_secs(self.token_ttl_secs),
            envvar_tombstone: Duration::from_secs(self.envvar_tombstone_secs),
            lock_lease: Duration::from_secs(self.lock_lease_secs),
            max_body_bytes: self.max_body_bytes,
            max_active_versions: self.max_active_versions,
            build_step_timeout: Duration::from_secs(self.build_step_timeout_secs),
            runtime: toolsmith_runtime::PoolConfig {
                max_concurrent: self.max_concurrent_invocations,
                idle_timeout: Duration::from_secs(self.runtime_idle_secs),
                max_zygotes: self.max_runtimes,
                network: network(self.tool_network, &egress),
                tmp_bytes: self.tool_tmp_mib << 20,
                limits: toolsmith_runtime::InvocationLimits {
                    memory_bytes: self.invoke_memory_mib << 20,
                    cpu_secs: self.invoke_cpu_secs,
                    file_size_bytes: self.invoke_file_mib << 20,
                    output_bytes: self.invoke_log_bytes,
                    timeout: Duration::from_secs(self.invoke_timeout_secs),
                    processes: self.invoke_max_processes,
                },
                start_timeout: Duration::from_secs(60),
            },
            sandbox_uid_base: self.sandbox_uid_base,
            build_network: network(self.build_network, &egress),
            build_memory_bytes: self.build_memory_mib << 20,
            build_max_processes: self.build_max_processes,
            build_tmp_bytes: self.build_tmp_mib << 20,
            min_free_disk_bytes: self.min_free_disk_mib.saturating_mul(1 << 20),
            invocation_retention: self.invocation_retention_days.map(crate::app::Retention::days),
            mcp_allowed_origins: self.mcp_allowed_origins.iter().map(|o| crate::app::normalize_origin(o)).collect(),
        })
    }

    /// The repository limits.
    pub fn repo_limits(&self) -> toolsmith_repo::Limits {
        toolsmith_repo::Limits { max_push_bytes: self.max_push_bytes, max_file_bytes: self.max_file_bytes }
    }

    /// How long a stopping server waits for running requests.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    /// The base URL to print in instructions.
    pub fn public_url(&self) -> String {
        self.public_url.clone().unwrap_or_else(|| format!("http://{}", self.listen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> ServeArgs {
        let mut argv = vec!["toolsmith", "serve"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(s) => s,
            _ => unreachable!(),
        }
    }

    #[test]
    fn defaults_are_valid() {
        let args = serve(&[]);
        assert!(args.settings().is_ok());
        assert_eq!(args.storage.url(), "sqlite://./toolsmith-data/toolsmith.db");
    }

    #[test]
    fn bad_values_are_named() {
        for (flag, bad) in [
            ("--token-ttl-secs", "5"),
            ("--bootstrap-org", "Bad_Org"),
            ("--shutdown-grace-secs", "86400"),
            ("--max-body-bytes", "12"),
            ("--max-concurrent-invocations", "0"),
        ] {
            let err =
                Cli::try_parse_from(["toolsmith", "serve", flag, bad]).map(|_| ()).expect_err("refused").to_string();
            assert!(err.contains(flag) && err.contains(bad), "{err}");
        }
        let err = serve(&["--database-url", "mysql://u:pw@h/db"]).settings().unwrap_err();
        assert!(err.contains("postgres://") && !err.contains("pw"), "{err}");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("postgres://me:hunter2@db/x"), "postgres://me:***@db/x");
        assert_eq!(redact_url("postgres://me@db/x"), "postgres://me@db/x");
    }
}
