//! Backup and restore benchmark: an installation with 1,000 tools and 100,000 invocations,
//! backed up with `toolsmith admin backup` while its server runs, and restored with `toolsmith
//! admin restore` into empty data directories.
//!
//! Run with `cargo build --release -p toolsmith -p toolsmith-bench && target/release/bench_backup`.
//! `BENCH_TOOLS` and `BENCH_INVOCATIONS` change the sizes; `BENCH_DIR` puts the backups and the
//! restored copies on another disk (default: the system's temporary directory, where the
//! installation itself lives).
//!
//! The installation is real where it matters for the copy: the repository holds every tool's
//! project (pushed through the server in ten commits), each tool has two env vars (one a sealed
//! secret), each version an artifact with its sources, and all versions share one environment
//! (a virtual environment made by the interpreter, as tools without dependencies share one).
//! The rows go in directly through the store, invocations by group commit.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;
use toolsmith_bench::{Samples, Server};
use toolsmith_domain::time::Timestamp;
use toolsmith_domain::{BuildId, EnvVarName, InvocationId, OrgId, ToolName, Version};
use toolsmith_store::secrets::{Keyring, SecretKey};
use toolsmith_store::{EnvVarChanges, EnvVarInsert, NewInvocation, NewTool, NewVersion, Store, UserRef};

/// Backups and restores measured.
const RUNS: usize = 3;
/// Invocations per group commit while filling.
const BATCH: usize = 2_000;
/// Commits the tools' projects are pushed in.
const COMMITS: usize = 10;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn project_files(i: usize) -> Vec<(String, String)> {
    vec![
        (
            format!("tool_{i}/pyproject.toml"),
            format!(
                "[project]\nname = \"tool_{i}\"\nversion = \"0.1.0\"\nrequires-python = \">=3.11\"\ndependencies = []\n\n\
                 [tool.toolsmith]\nentrypoint = \"tool_{i}.tool:run\"\nenvvars = [\"GREETING\"]\nsecret_envvars = [\"API_TOKEN\"]\n"
            ),
        ),
        (format!("tool_{i}/tool_{i}/__init__.py"), String::new()),
        (
            format!("tool_{i}/tool_{i}/tool.py"),
            format!(
                "import os\n\n\ndef run(name: str) -> str:\n    \"\"\"Greets for tool {i}.\n\n    Args:\n        name: Who.\n    \"\"\"\n    \
                 return f\"{{os.environ['GREETING']}} {{name}} from tool {i}\"\n"
            ),
        ),
    ]
}

fn keyring_of(data: &Path) -> anyhow::Result<Keyring> {
    let text = std::fs::read_to_string(data.join("keys/secret-keys")).context("reading the server's keyring")?;
    let keys: Vec<SecretKey> = text.lines().filter_map(|l| SecretKey::from_hex(l.trim())).collect();
    Keyring::new(keys).context("an empty keyring")
}

fn dir_bytes(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return 0 };
    if meta.is_dir() {
        std::fs::read_dir(path).map(|d| d.filter_map(Result::ok).map(|e| dir_bytes(&e.path())).sum()).unwrap_or(0)
    } else if meta.is_file() {
        meta.len()
    } else {
        0
    }
}

/// Writes the artifact of tool `i` (its project's sources) and returns its digest.
fn write_artifact(data: &Path, i: usize) -> anyhow::Result<String> {
    let digest = format!("{:064x}", 0xa000_0000_u64 + i as u64);
    let root = data.join("artifacts").join(&digest);
    for (path, content) in project_files(i) {
        let target = root.join(path.strip_prefix(&format!("tool_{i}/")).unwrap_or(&path));
        std::fs::create_dir_all(target.parent().context("a file without a directory")?)?;
        std::fs::write(target, content)?;
    }
    Ok(digest)
}

/// One environment shared by every version, as tools without dependencies share one.
fn write_environment(data: &Path, org: &str) -> anyhow::Result<String> {
    let key = format!("{org}/{}", "e".repeat(64));
    let dir = data.join("envs").join(&key);
    std::fs::create_dir_all(dir.parent().context("no parent")?)?;
    let made = Command::new("python3").args(["-m", "venv", "--without-pip"]).arg(&dir).status()?;
    if !made.success() {
        bail!("python3 -m venv failed");
    }
    std::fs::write(dir.join(".complete"), format!("{key}\n"))?;
    Ok(key)
}

async fn fill(server: &Server, tools: usize, invocations: usize) -> anyhow::Result<()> {
    let data = server.data_dir();
    let org = OrgId::parse(&server.org).map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!("pushing {tools} projects in {COMMITS} commits …");
    let per_commit = tools.div_ceil(COMMITS);
    for (c, chunk) in (0..tools).collect::<Vec<_>>().chunks(per_commit).enumerate() {
        let files: Vec<(String, String)> = chunk.iter().flat_map(|i| project_files(*i)).collect();
        let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
        server.push_files(&refs, &format!("Tools, part {}", c + 1))?;
    }
    let store = Store::open_sqlite_dir(data, keyring_of(data)?).await?;
    let admin = store.list_users(&org).await?.into_iter().next().context("no admin user")?;
    let by = UserRef { org_id: org.clone(), user_id: admin.id.clone() };
    let environment = write_environment(data, org.as_str())?;
    eprintln!("creating {tools} tools with env vars, versions and artifacts …");
    let mut ids = Vec::with_capacity(tools);
    for i in 0..tools {
        let tool = store
            .create_tool(NewTool {
                org_id: org.clone(),
                name: ToolName::parse(&format!("tool_{i}")).map_err(|e| anyhow::anyhow!("{e}"))?,
                description: format!("Benchmark tool {i}."),
                tags: vec![],
                creator: by.clone(),
            })
            .await?;
        let name = |n: &str| EnvVarName::parse(n).map_err(|e| anyhow::anyhow!("{e}"));
        let changes = EnvVarChanges {
            inserts: vec![
                EnvVarInsert { name: name("GREETING")?, value: "Hello".into(), is_secret: false },
                EnvVarInsert { name: name("API_TOKEN")?, value: format!("token-{i:06}"), is_secret: true },
            ],
            updates: vec![],
            deletes: vec![],
        };
        store.modify_envvars(&org, &tool.id, &changes, 60, &by).await?;
        store
            .insert_version(NewVersion {
                org_id: org.clone(),
                tool_id: tool.id.clone(),
                version: Version { major: 1, minor: 0, patch: 0 },
                required_envvars: vec!["GREETING".into()],
                required_secret_envvars: vec!["API_TOKEN".into()],
                input_schema: json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}),
                takes_context: false,
                entrypoint: format!("tool_{i}.tool:run"),
                tool_commit_hash: "a".repeat(40),
                scaffold_hash: "b".repeat(64),
                project_directory: format!("tool_{i}"),
                content_digest: write_artifact(data, i)?,
                environment_key: environment.clone(),
                build_id: BuildId::generate(),
                output_schema: None,
                creator: by.clone(),
            })
            .await?;
        ids.push(tool.id);
    }
    eprintln!("recording {invocations} invocations …");
    let start = Timestamp::now().0 - invocations as i64 * 1_000;
    let mut n = 0;
    while n < invocations {
        let batch: Vec<NewInvocation> = (n..(n + BATCH).min(invocations))
            .map(|k| {
                let failed = k % 10 == 9;
                Ok(NewInvocation {
                    id: InvocationId::generate(),
                    org_id: org.clone(),
                    tool_id: ids[k % ids.len()].clone(),
                    version: Version { major: 1, minor: 0, patch: 0 },
                    succeeded: !failed,
                    output: (!failed).then(|| format!("Hello caller-{k} from tool {}", k % ids.len())),
                    exception_type: failed.then(|| "TimeoutError".to_owned()),
                    exception_message: failed.then(|| "the upstream service did not answer in time".to_owned()),
                    exception_stack_trace: if failed {
                        vec!["Traceback (most recent call last):".into(), "TimeoutError: upstream".into()]
                    } else {
                        vec![]
                    },
                    duration_ms: 5 + (k % 300) as i64,
                    inputs: json!({"name": format!("caller-{k}")}),
                    source: serde_json::from_value(
                        json!({"type": "direct", "user_id": by.user_id, "user_org_id": by.org_id}),
                    )?,
                    caller: by.clone(),
                    logs: format!("calling upstream for caller-{k}\n"),
                    created_at: Timestamp(start + k as i64 * 1_000),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        n += batch.len();
        store.record_invocations(batch).await?;
    }
    store.close().await;
    Ok(())
}

fn admin(data: &Path, args: &[&str]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let out = Command::new(toolsmith_bench::toolsmith_binary()?)
        .arg("admin")
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()?;
    let took = started.elapsed();
    if !out.status.success() {
        bail!("toolsmith admin {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    eprintln!("  {}", String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default());
    Ok(took)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let tools = env_number("BENCH_TOOLS", 1_000);
    let invocations = env_number("BENCH_INVOCATIONS", 100_000);
    let work = match std::env::var_os("BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    let server = Server::start(&["--rate-limits", "off"]).await?;
    let filled = Instant::now();
    fill(&server, tools, invocations).await?;
    let fill_secs = filled.elapsed().as_secs_f64();
    let data = server.data_dir().to_path_buf();
    let sizes = [
        ("database", dir_bytes(&data.join("toolsmith.db")) + dir_bytes(&data.join("toolsmith.db-wal"))),
        ("repositories", dir_bytes(&data.join("repos"))),
        ("artifacts", dir_bytes(&data.join("artifacts"))),
        ("environments", dir_bytes(&data.join("envs"))),
    ];

    let mut backups = Samples::default();
    let mut restores = Samples::default();
    for run in 0..RUNS {
        let backup = work.path().join(format!("backup-{run}"));
        // The server keeps running: a backup is taken from a live installation.
        backups.push(admin(&data, &["backup", backup.to_str().context("a non-UTF-8 path")?])?);
        let restored = work.path().join(format!("restored-{run}"));
        restores.push(admin(&restored, &["restore", backup.to_str().context("a non-UTF-8 path")?])?);
    }
    let backup_bytes = dir_bytes(&work.path().join("backup-0"));

    println!("toolsmith backup and restore benchmark ({RUNS} runs each; the server runs during backups)");
    println!();
    println!("| installation | size |");
    println!("|---|---|");
    println!("| {tools} tools (2 env vars each, one secret), 1 version each, {invocations} invocations | filled in {fill_secs:.1} s |");
    for (what, bytes) in sizes {
        println!("| {what} | {:.1} MiB |", bytes as f64 / 1048576.0);
    }
    println!("| backup directory | {:.1} MiB |", backup_bytes as f64 / 1048576.0);
    println!();
    println!("| measurement | p50 s | max s |");
    println!("|---|---|---|");
    println!(
        "| `toolsmith admin backup` (whole process) | {:.2} | {:.2} |",
        backups.percentile_ms(50.0) / 1000.0,
        backups.percentile_ms(100.0) / 1000.0
    );
    println!(
        "| `toolsmith admin restore` (whole process, opening the store included) | {:.2} | {:.2} |",
        restores.percentile_ms(50.0) / 1000.0,
        restores.percentile_ms(100.0) / 1000.0
    );
    Ok(())
}
