//! Invoke benchmark: a trivial tool invoked through toolsmith, beside the same function served by
//! FastAPI + uvicorn with no isolation and run by a fresh Python process per call, plus first
//! invokes after publish and after restart, and sustained invocations with every record written.
//!
//! A second table splits the invoke into parts measured on their own: the server's HTTP and
//! authentication floor, an invoke refused before it runs, the runtime crate's zygote driven
//! in-process without the server, a bare Python fork and an `fdatasync`.
//!
//! Run with `cargo build --release -p toolsmith -p toolsmith-bench && target/release/bench_invoke`.
//! It needs `uv` and the package index (PyPI) to build the FastAPI baseline's environment. Rate
//! limits are switched off. Client, server and baselines share the machine's cores; the
//! measurements run one after the other, never at once, and the header shows the machine's load
//! average, since other work on it skews every figure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use serde_json::{json, Value};
use toolsmith_bench::{Samples, Server};
use toolsmith_runtime::{Pool, PoolConfig, RunOutcome, VersionRuntime, Zygote};

const WARMUP: usize = 200;
const SEQUENTIAL: usize = 2_000;
const CONCURRENCY: usize = 16;
const CONCURRENT_REQUESTS: usize = 4_000;
const SPAWN_SAMPLES: usize = 200;
const COLD_REPEATS: usize = 5;
const SUSTAINED_CONNECTIONS: usize = 32;
const SUSTAINED: Duration = Duration::from_secs(10);
const COMPONENT_SAMPLES: usize = 2_000;

const WARM_P50_MS: f64 = 3.0;
const WARM_P99_MS: f64 = 10.0;
const FIRST_INVOKE_MS: f64 = 100.0;
const INVOCATIONS_PER_SEC: f64 = 1_000.0;

/// What the trivial tool answers to the input every request carries.
const EXPECTED_OUTPUT: &str = "hello, bench";

const TOOL_FILES: [(&str, &str); 3] = [
    ("trivial_tool/pyproject.toml", include_str!("../../python/trivial_tool/pyproject.toml")),
    ("trivial_tool/trivial_tool/__init__.py", include_str!("../../python/trivial_tool/trivial_tool/__init__.py")),
    ("trivial_tool/trivial_tool/tool.py", include_str!("../../python/trivial_tool/trivial_tool/tool.py")),
];
const FASTAPI_APP: &str = include_str!("../../python/fastapi_app.py");
const FORK_PROBE: &str = include_str!("../../python/fork_probe.py");

/// The invoke request body with `inputs` identical inputs.
fn invoke_body(inputs: usize) -> String {
    let one = json!({
        "input_parameters": {"name": "bench"},
        "invocation_mode": "regular",
        "nonsensitive_user_variables": {},
        "sensitive_user_variables": {},
    });
    json!({ "inputs": vec![one; inputs] }).to_string()
}

/// One HTTP endpoint that runs the trivial function, toolsmith's or a baseline's.
#[derive(Clone)]
struct Endpoint {
    url: String,
    token: Option<String>,
    body: String,
    inputs: usize,
}

impl Endpoint {
    fn new(url: &str, token: Option<&str>, inputs: usize) -> Endpoint {
        Endpoint { url: url.to_owned(), token: token.map(str::to_owned), body: invoke_body(inputs), inputs }
    }

    /// Sends one request. A refusal (any status but 200) is returned, not raised, so that load
    /// phases can count them; a 200 whose results are wrong is an error, since a benchmark of
    /// wrong answers measures nothing.
    async fn call(&self, client: &reqwest::Client) -> anyhow::Result<Result<(), String>> {
        let mut request = client.post(&self.url).header("content-type", "application/json").body(self.body.clone());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        if status != 200 {
            return Ok(Err(format!("{status} {}", String::from_utf8_lossy(&bytes))));
        }
        let answer: Value = serde_json::from_slice(&bytes).context("a 200 answer that is not JSON")?;
        let results = answer["invocation_results"].as_array().context("no invocation_results")?;
        ensure!(results.len() == self.inputs, "{} results for {} inputs: {answer}", results.len(), self.inputs);
        for result in results {
            ensure!(result["succeeded"] == true && result["output"] == EXPECTED_OUTPUT, "unexpected result: {result}");
        }
        Ok(Ok(()))
    }

    async fn call_ok(&self, client: &reqwest::Client) -> anyhow::Result<()> {
        self.call(client).await?.map_err(|refusal| anyhow::anyhow!("{}: {refusal}", self.url))
    }
}

/// Latencies of a measurement, how long it took in all, and how many requests were refused.
struct Measured {
    samples: Samples,
    wall: Duration,
    refused: usize,
    first_refusal: Option<String>,
}

impl Measured {
    fn requests_per_sec(&self) -> f64 {
        self.samples.len() as f64 / self.wall.as_secs_f64()
    }
}

/// `n` requests one after the other on one client, hence one keep-alive connection.
async fn sequential(endpoint: &Endpoint, n: usize) -> anyhow::Result<Measured> {
    let client = reqwest::Client::new();
    for _ in 0..WARMUP {
        endpoint.call_ok(&client).await?;
    }
    let mut samples = Samples::default();
    let started = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        endpoint.call_ok(&client).await?;
        samples.push(t.elapsed());
    }
    Ok(Measured { samples, wall: started.elapsed(), refused: 0, first_refusal: None })
}

/// `total` requests shared by `connections` workers, each with its own connection.
async fn concurrent(endpoint: &Endpoint, connections: usize, total: usize) -> anyhow::Result<Measured> {
    let remaining = Arc::new(AtomicUsize::new(total));
    let started = Instant::now();
    let workers = (0..connections).map(|_| {
        let (endpoint, remaining) = (endpoint.clone(), remaining.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut samples = Samples::default();
            while remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok() {
                let t = Instant::now();
                endpoint.call_ok(&client).await?;
                samples.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(samples)
        })
    });
    let mut samples = Samples::default();
    for result in futures_util::future::join_all(workers).await {
        samples.extend(result??);
    }
    Ok(Measured { samples, wall: started.elapsed(), refused: 0, first_refusal: None })
}

/// `connections` workers sending requests for `duration`; refusals are counted, not fatal.
async fn sustained(endpoint: &Endpoint, connections: usize, duration: Duration) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let deadline = started + duration;
    let workers = (0..connections).map(|_| {
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut samples = Samples::default();
            let (mut refused, mut first_refusal) = (0, None);
            while Instant::now() < deadline {
                let t = Instant::now();
                match endpoint.call(&client).await? {
                    Ok(()) => samples.push(t.elapsed()),
                    Err(refusal) => {
                        refused += 1;
                        first_refusal.get_or_insert(refusal);
                    }
                }
            }
            Ok::<_, anyhow::Error>((samples, refused, first_refusal))
        })
    });
    let mut all = Measured { samples: Samples::default(), wall: Duration::ZERO, refused: 0, first_refusal: None };
    for result in futures_util::future::join_all(workers).await {
        let (samples, refused, first_refusal) = result??;
        all.samples.extend(samples);
        all.refused += refused;
        if all.first_refusal.is_none() {
            all.first_refusal = first_refusal;
        }
    }
    all.wall = started.elapsed();
    Ok(all)
}

/// One line of the results table.
struct Row {
    label: String,
    samples: Samples,
    requests_per_sec: Option<f64>,
    inputs: usize,
    target: String,
    component: bool,
}

impl Row {
    fn new(label: impl Into<String>, samples: Samples) -> Row {
        Row { label: label.into(), samples, requests_per_sec: None, inputs: 1, target: String::new(), component: false }
    }

    /// Marks a row that explains a headline figure rather than being one.
    fn component(mut self) -> Row {
        self.component = true;
        self
    }

    fn measured(label: impl Into<String>, measured: Measured, inputs: usize) -> Row {
        let rate = measured.requests_per_sec();
        let mut label = label.into();
        if measured.refused > 0 {
            label.push_str(&format!(
                " ({} refused, first: {})",
                measured.refused,
                measured.first_refusal.unwrap_or_default().chars().take(120).collect::<String>()
            ));
        }
        Row {
            label,
            samples: measured.samples,
            requests_per_sec: Some(rate),
            inputs,
            target: String::new(),
            component: false,
        }
    }

    fn target(mut self, target: String) -> Row {
        self.target = target;
        self
    }

    fn print(&mut self) {
        let rate = self.requests_per_sec.map_or("".to_owned(), |r| format!("{r:.0}"));
        let invocations = self.requests_per_sec.map_or("".to_owned(), |r| format!("{:.0}", r * self.inputs as f64));
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {rate} | {invocations} | {} |",
            self.label,
            self.samples.len(),
            self.samples.percentile_ms(50.0),
            self.samples.percentile_ms(99.0),
            self.samples.percentile_ms(100.0),
            self.target
        );
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

/// The interpreter `python3` resolves to; a version manager's shim in front of it would add its
/// own start-up to every spawned process.
fn real_python() -> anyhow::Result<PathBuf> {
    let out = Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output()?;
    ensure!(out.status.success(), "python3 does not run");
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

fn find_uv() -> anyhow::Result<PathBuf> {
    if let Some(uv) = std::env::var_os("TOOLSMITH_UV") {
        return Ok(PathBuf::from(uv));
    }
    let out = Command::new("python3").args(["-c", "import uv; print(uv.find_uv_bin())"]).output()?;
    if out.status.success() {
        return Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()));
    }
    Ok(PathBuf::from("uv"))
}

fn run_checked(command: &mut Command) -> anyhow::Result<String> {
    let out = command.output().with_context(|| format!("cannot run {command:?}"))?;
    ensure!(out.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?)
}

/// Writes the trivial tool's project (and the baseline scripts) under `root`.
fn write_python_files(root: &Path) -> anyhow::Result<()> {
    for (path, content) in
        TOOL_FILES.iter().copied().chain([("fastapi_app.py", FASTAPI_APP), ("fork_probe.py", FORK_PROBE)])
    {
        let target = root.join(path);
        std::fs::create_dir_all(target.parent().context("a file path without a directory")?)?;
        std::fs::write(target, content)?;
    }
    Ok(())
}

/// A uvicorn process serving the FastAPI baseline, killed when dropped.
struct Uvicorn {
    child: std::process::Child,
    url: String,
    versions: String,
}

impl Drop for Uvicorn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Uvicorn {
    /// Builds a throwaway environment with FastAPI and uvicorn under `root` and starts one worker.
    async fn start(root: &Path, python: &Path) -> anyhow::Result<Uvicorn> {
        let uv = find_uv()?;
        let venv = root.join("venv");
        run_checked(Command::new(&uv).args(["venv", "--quiet", "--python"]).arg(python).arg(&venv))?;
        let venv_python = venv.join("bin/python");
        // `uvicorn[standard]` brings uvloop and httptools, the event loop and parser a production
        // deployment uses; without them the baseline would be slower than it is in practice.
        run_checked(
            Command::new(&uv)
                .args(["pip", "install", "--quiet", "--python"])
                .arg(&venv_python)
                .args(["fastapi", "uvicorn[standard]"]),
        )?;
        let versions = run_checked(Command::new(&venv_python).args([
            "-c",
            "import fastapi, uvicorn, pydantic; print(f'fastapi {fastapi.__version__}, uvicorn {uvicorn.__version__}, pydantic {pydantic.VERSION}')",
        ]))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(&venv_python)
            .args(["-m", "uvicorn", "fastapi_app:app", "--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--workers", "1", "--no-access-log", "--log-level", "warning", "--app-dir"])
            .arg(root)
            .env("PYTHONPATH", root.join("trivial_tool"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let uvicorn =
            Uvicorn { child, url: format!("http://127.0.0.1:{port}/invoke"), versions: versions.trim().to_owned() };
        let endpoint = Endpoint::new(&uvicorn.url, None, 1);
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !matches!(endpoint.call(&client).await, Ok(Ok(()))) {
            ensure!(Instant::now() < deadline, "uvicorn did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(uvicorn)
    }
}

/// Runs the function in a new `python -I -S` per call, `total` times over `parallel` threads.
async fn fresh_processes(python: &Path, project: &Path, total: usize, parallel: usize) -> anyhow::Result<Measured> {
    const CALL: &str =
        "import sys; sys.path.insert(0, sys.argv[1]); from trivial_tool.tool import run; sys.stdout.write(run(sys.argv[2]))";
    let remaining = Arc::new(AtomicUsize::new(total));
    let started = Instant::now();
    let workers = (0..parallel).map(|_| {
        let (python, project, remaining) = (python.to_owned(), project.to_owned(), remaining.clone());
        tokio::task::spawn_blocking(move || {
            let mut samples = Samples::default();
            while remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok() {
                let t = Instant::now();
                let out = Command::new(&python).args(["-I", "-S", "-c", CALL]).arg(&project).arg("bench").output()?;
                samples.push(t.elapsed());
                ensure!(out.status.success() && out.stdout == EXPECTED_OUTPUT.as_bytes(), "the spawned call failed");
            }
            Ok::<_, anyhow::Error>(samples)
        })
    });
    let mut samples = Samples::default();
    for result in futures_util::future::join_all(workers).await {
        samples.extend(result??);
    }
    Ok(Measured { samples, wall: started.elapsed(), refused: 0, first_refusal: None })
}

/// fork + call + write to a pipe + exit + reap, in a Python process that imported the tool and
/// runs outside any sandbox: the least a fork-per-invocation design costs on this machine.
fn fork_cost(python: &Path, root: &Path) -> anyhow::Result<Samples> {
    let out = run_checked(
        Command::new(python)
            .arg(root.join("fork_probe.py"))
            .arg(root.join("trivial_tool"))
            .arg(COMPONENT_SAMPLES.to_string()),
    )?;
    let mut samples = Samples::default();
    for line in out.lines() {
        samples.push(Duration::from_micros(line.trim().parse()?));
    }
    Ok(samples)
}

/// A 4 KiB write followed by `fdatasync` in `dir`: the floor of any answer that waits for its
/// record to be durable. The server's data directory is a temporary directory too, so both sit
/// on the same file system.
fn fsync_cost(dir: &Path) -> anyhow::Result<Samples> {
    use std::io::{Seek, Write};
    let path = dir.join("bench-fsync-probe");
    let mut file = std::fs::File::create(&path)?;
    let block = [7u8; 4096];
    let mut samples = Samples::default();
    for _ in 0..200 {
        let t = Instant::now();
        file.rewind()?;
        file.write_all(&block)?;
        file.sync_data()?;
        samples.push(t.elapsed());
    }
    std::fs::remove_file(path)?;
    Ok(samples)
}

fn check_outcome(outcome: RunOutcome) -> anyhow::Result<()> {
    match outcome {
        RunOutcome::Returned { output, .. } if output == EXPECTED_OUTPUT => Ok(()),
        other => bail!("unexpected zygote outcome: {other:?}"),
    }
}

async fn zygote_call(zygote: &Zygote) -> anyhow::Result<()> {
    let context =
        json!({"invocation_mode": "regular", "nonsensitive_user_variables": {}, "sensitive_user_variables": {}});
    check_outcome(zygote.invoke(&json!({"name": "bench"}), &context).await)
}

/// The runtime crate on its own, driven in this process exactly as the server drives it: what
/// an invocation costs without HTTP, authentication, database reads and the durable record.
async fn measure_zygote(python: &Path, scratch: &Path) -> anyhow::Result<Vec<Row>> {
    let venv = scratch.join("tool-venv");
    run_checked(Command::new(find_uv()?).args(["venv", "--quiet", "--python"]).arg(python).arg(&venv))?;
    let base_prefix = run_checked(Command::new(python).args(["-c", "import sys; print(sys.base_prefix)"]))?;
    let pool = Pool::new(PoolConfig::default(), &scratch.join("runtime"))?;
    let runtime = VersionRuntime {
        identity: toolsmith_runtime::Identity::NOBODY,
        secrets: Default::default(),
        project: scratch.join("trivial_tool"),
        venv,
        base_prefix: PathBuf::from(base_prefix.trim()),
        entrypoint: "trivial_tool.tool:run".to_owned(),
        takes_context: false,
        env: Default::default(),
    };
    let (mut start, mut first) = (Samples::default(), Samples::default());
    for _ in 0..COLD_REPEATS {
        let t = Instant::now();
        let zygote = pool.start_unpooled(&runtime).await?;
        start.push(t.elapsed());
        let t = Instant::now();
        zygote_call(&zygote).await?;
        first.push(t.elapsed());
    }
    let zygote = Arc::new(pool.start_unpooled(&runtime).await?);
    for _ in 0..WARMUP {
        zygote_call(&zygote).await?;
    }
    let mut one_by_one = Samples::default();
    let started = Instant::now();
    for _ in 0..SEQUENTIAL {
        let t = Instant::now();
        zygote_call(&zygote).await?;
        one_by_one.push(t.elapsed());
    }
    let sequential_wall = started.elapsed();

    let remaining = Arc::new(AtomicUsize::new(CONCURRENT_REQUESTS));
    let started = Instant::now();
    let workers = (0..SUSTAINED_CONNECTIONS).map(|_| {
        let (zygote, remaining) = (zygote.clone(), remaining.clone());
        tokio::spawn(async move {
            let mut samples = Samples::default();
            while remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok() {
                let t = Instant::now();
                zygote_call(&zygote).await?;
                samples.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(samples)
        })
    });
    let mut at_once = Samples::default();
    for result in futures_util::future::join_all(workers).await {
        at_once.extend(result??);
    }
    let at_once = Measured { samples: at_once, wall: started.elapsed(), refused: 0, first_refusal: None };
    Ok(vec![
        Row::new("zygote start (sandbox, interpreter, import), runtime crate alone", start).component(),
        Row::new("first invocation on a just-started zygote, runtime crate alone", first).component(),
        Row::measured(
            "zygote invocation, sequential, runtime crate alone",
            Measured { samples: one_by_one, wall: sequential_wall, refused: 0, first_refusal: None },
            1,
        )
        .component(),
        Row::measured(format!("zygote invocation, {SUSTAINED_CONNECTIONS} at once, runtime crate alone"), at_once, 1)
            .component(),
    ])
}

/// Rows of a tool in the server's SQLite database, read with Python's `sqlite3` so that the
/// benchmark carries no database driver; `None` when the table cannot be read.
fn recorded_invocations(python: &Path, db: &Path, tool_id: &str) -> Option<u64> {
    const COUNT: &str = "import sqlite3, sys\nc = sqlite3.connect(f'file:{sys.argv[1]}?mode=ro', uri=True)\nprint(c.execute('SELECT count(*) FROM invocations WHERE tool_id = ?', (sys.argv[2],)).fetchone()[0])";
    let out = Command::new(python).args(["-c", COUNT]).arg(db).arg(tool_id).output().ok()?;
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

/// The 1-minute load average. Taken before the run only: the benchmark's own connections and
/// forks count in it afterwards, while before it shows whether other work shares the cores.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Server options for the run: rate limits off, room for every version this benchmark
/// publishes, and an invocation bound above the sustained load's 32 × 10 inputs where the
/// binary has such an option.
fn server_args() -> anyhow::Result<Vec<&'static str>> {
    let help = run_checked(Command::new(toolsmith_bench::toolsmith_binary()?).args(["serve", "--help"]))?;
    let mut args = vec!["--rate-limits", "off", "--max-active-versions", "16"];
    if help.contains("--max-concurrent-invocations") {
        args.extend(["--max-concurrent-invocations", "512"]);
    }
    Ok(args)
}

/// Publishes the trivial tool's project as a new version and returns the version string.
async fn publish(client: &reqwest::Client, api: &str, token: &str, tool: &str, bump: &str) -> anyhow::Result<String> {
    let r = client
        .post(format!("{api}/{tool}/version"))
        .bearer_auth(token)
        .json(&json!({"project_path": "trivial_tool", "bump_type": bump}))
        .send()
        .await?;
    let status = r.status();
    let body: Value = r.json().await?;
    ensure!(status == 201, "publishing failed: {status} {body}");
    Ok(body["new_version"].as_str().context("no new_version")?.to_owned())
}

/// Everything measured against the toolsmith server, or why the invoke endpoint could not be.
struct ToolsmithRows {
    rows: Vec<Row>,
    warm_p50_ms: f64,
    missing: Option<String>,
}

/// Publishes the trivial tool on a fresh server and measures every toolsmith row: warm, sustained,
/// first invoke after publish and after restart, and the server-side components.
async fn measure_toolsmith(python: &Path) -> anyhow::Result<ToolsmithRows> {
    let args = server_args()?;
    let mut server = Server::start(&args).await?;
    server.push_files(&TOOL_FILES, "Benchmark tool")?;
    let client = reqwest::Client::new();
    let api = format!("{}/v1/{}/tool", server.base, server.org);
    let created: Value = client
        .post(format!("{api}/"))
        .bearer_auth(&server.token)
        .json(&json!({"name": "trivial_tool", "description": "benchmark", "tags": {}}))
        .send()
        .await?
        .json()
        .await?;
    let tool = created["id"].as_str().context("no tool id")?.to_owned();
    let version = publish(&client, &api, &server.token, &tool, "major").await?;
    let invoke_url = |version: &str| format!("{api}/{tool}/version/{version}/invoke");
    let one = Endpoint::new(&invoke_url(&version), Some(&server.token), 1);

    let mut rows = Vec::new();
    let health = Probe { url: format!("{}/healthz", server.base), token: None, body: None, status: 200 };
    rows.push(Row::new("toolsmith `GET /healthz`, sequential", probe_sequential(&health).await?).component());
    let token = Some(server.token.clone());
    let listing = Probe { url: format!("{api}/?limit=1"), token: token.clone(), body: None, status: 200 };
    rows.push(
        Row::new("toolsmith authenticated `GET /tool/?limit=1`, sequential", probe_sequential(&listing).await?)
            .component(),
    );

    if let Err(refusal) = one.call(&reqwest::Client::new()).await? {
        return Ok(ToolsmithRows { rows, warm_p50_ms: f64::NAN, missing: Some(refusal) });
    }
    // A wrongly typed input passes through authentication, the tool and version reads and the
    // schema check, then stops with 400 before the runtime and the record.
    let mistyped = invoke_body(1).replace("\"bench\"", "5");
    let refused = Probe { url: invoke_url(&version), token, body: Some(mistyped), status: 400 };
    rows.push(
        Row::new(
            "invoke refused by the schema check (no run, no record), sequential",
            probe_sequential(&refused).await?,
        )
        .component(),
    );

    let mut warm = sequential(&one, SEQUENTIAL).await?;
    let warm_p50_ms = warm.samples.percentile_ms(50.0);
    let warm_p99_ms = warm.samples.percentile_ms(99.0);
    rows.push(Row::measured("**toolsmith** warm invoke, sequential, 1 connection", warm, 1).target(format!(
        "p50 ≤ {WARM_P50_MS} ms, p99 ≤ {WARM_P99_MS} ms: {}",
        verdict(warm_p50_ms <= WARM_P50_MS && warm_p99_ms <= WARM_P99_MS)
    )));
    rows.push(Row::measured(
        format!("**toolsmith** warm invoke, {CONCURRENCY} connections"),
        concurrent(&one, CONCURRENCY, CONCURRENT_REQUESTS).await?,
        1,
    ));

    let db = server.data_dir().join("toolsmith.db");
    for inputs in [1, 10] {
        let endpoint = Endpoint::new(&invoke_url(&version), Some(&server.token), inputs);
        let before = recorded_invocations(python, &db, &tool);
        let measured = sustained(&endpoint, SUSTAINED_CONNECTIONS, SUSTAINED).await?;
        let expected = (measured.samples.len() * inputs) as u64;
        let after = recorded_invocations(python, &db, &tool);
        let records = match (before, after) {
            (Some(b), Some(a)) => format!("{} of {expected} records", a.saturating_sub(b)),
            _ => "records not countable".to_owned(),
        };
        let rate = measured.requests_per_sec() * inputs as f64;
        rows.push(
            Row::measured(
                format!(
                    "**toolsmith** sustained, {SUSTAINED_CONNECTIONS} connections, {inputs} input(s) per request ({records})"
                ),
                measured,
                inputs,
            )
            .target(format!("≥ {INVOCATIONS_PER_SEC:.0} invocations/s: {}", verdict(rate >= INVOCATIONS_PER_SEC))),
        );
    }

    let (mut after_publish, mut publish_times) = (Samples::default(), Samples::default());
    for _ in 0..COLD_REPEATS {
        let t = Instant::now();
        let fresh = publish(&client, &api, &server.token, &tool, "patch").await?;
        publish_times.push(t.elapsed());
        let endpoint = Endpoint::new(&invoke_url(&fresh), Some(&server.token), 1);
        let t = Instant::now();
        endpoint.call_ok(&reqwest::Client::new()).await?;
        after_publish.push(t.elapsed());
    }
    let publish_max = after_publish.percentile_ms(100.0);
    rows.push(Row::new("publish of a new patch version (not an invoke)", publish_times).component());
    rows.push(
        Row::new("**toolsmith** first invoke after publish", after_publish)
            .target(format!("≤ {FIRST_INVOKE_MS} ms: {}", verdict(publish_max <= FIRST_INVOKE_MS))),
    );

    let (mut after_restart, mut startup, mut spawn_to_answer) =
        (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..COLD_REPEATS {
        let healthy = server.restart().await?;
        let t = Instant::now();
        one.call_ok(&reqwest::Client::new()).await?;
        let first = t.elapsed();
        after_restart.push(first);
        startup.push(healthy);
        spawn_to_answer.push(healthy + first);
    }
    let restart_max = after_restart.percentile_ms(100.0);
    rows.push(Row::new("restart, process start until `/healthz` answers", startup).component());
    rows.push(
        Row::new("**toolsmith** first invoke after restart (server already healthy)", after_restart)
            .target(format!("≤ {FIRST_INVOKE_MS} ms: {}", verdict(restart_max <= FIRST_INVOKE_MS))),
    );
    rows.push(Row::new("toolsmith restart: process start until the first invoke is answered", spawn_to_answer));

    // The same cold start split in two: a refused invoke first takes the server's own cold path
    // (connections, caches, the schema validator), so the invoke after it pays for the version's
    // zygote, its first run and the record.
    let (mut server_cold, mut zygote_cold) = (Samples::default(), Samples::default());
    for _ in 0..COLD_REPEATS {
        server.restart().await?;
        let client = reqwest::Client::new();
        let t = Instant::now();
        refused.send(&client).await?;
        server_cold.push(t.elapsed());
        let t = Instant::now();
        one.call_ok(&client).await?;
        zygote_cold.push(t.elapsed());
    }
    rows.push(Row::new("after restart: first invoke refused by the schema check (no zygote)", server_cold).component());
    rows.push(
        Row::new("after restart: the invoke after that one (zygote start, first run, record)", zygote_cold).component(),
    );
    Ok(ToolsmithRows { rows, warm_p50_ms, missing: None })
}

/// A request whose answer is not a tool's result, sent to find the server's floor without
/// tool code.
struct Probe {
    url: String,
    token: Option<String>,
    body: Option<String>,
    status: u16,
}

impl Probe {
    /// Sends the probe once and checks its status.
    async fn send(&self, client: &reqwest::Client) -> anyhow::Result<()> {
        let mut request = match &self.body {
            Some(body) => client.post(&self.url).header("content-type", "application/json").body(body.clone()),
            None => client.get(&self.url),
        };
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let r = request.send().await?;
        let status = r.status();
        r.bytes().await?;
        ensure!(status == self.status, "{}: {status}, expected {}", self.url, self.status);
        Ok(())
    }
}

/// Sequential probes over one connection after a warm-up.
async fn probe_sequential(probe: &Probe) -> anyhow::Result<Samples> {
    let client = reqwest::Client::new();
    for _ in 0..WARMUP {
        probe.send(&client).await?;
    }
    let mut samples = Samples::default();
    for _ in 0..SEQUENTIAL {
        let t = Instant::now();
        probe.send(&client).await?;
        samples.push(t.elapsed());
    }
    Ok(samples)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let python = real_python()?;
    let python_version = run_checked(Command::new(&python).arg("--version"))?;
    let scratch = tempfile::tempdir()?;
    write_python_files(scratch.path())?;

    let load_before = load_average();
    let toolsmith = measure_toolsmith(&python).await?;

    let mut rows = measure_zygote(&python, scratch.path()).await?;
    let uvicorn = Uvicorn::start(scratch.path(), &python).await?;
    let fastapi = Endpoint::new(&uvicorn.url, None, 1);
    let mut fastapi_warm = sequential(&fastapi, SEQUENTIAL).await?;
    let fastapi_p50_ms = fastapi_warm.samples.percentile_ms(50.0);
    rows.push(Row::measured("FastAPI + uvicorn, no isolation, sequential, 1 connection", fastapi_warm, 1));
    rows.push(Row::measured(
        format!("FastAPI + uvicorn, no isolation, {CONCURRENCY} connections"),
        concurrent(&fastapi, CONCURRENCY, CONCURRENT_REQUESTS).await?,
        1,
    ));
    rows.push(Row::measured(
        format!("FastAPI + uvicorn, no isolation, {SUSTAINED_CONNECTIONS} connections for {}s", SUSTAINED.as_secs()),
        sustained(&fastapi, SUSTAINED_CONNECTIONS, SUSTAINED).await?,
        1,
    ));
    let fastapi_versions = uvicorn.versions.clone();
    drop(uvicorn);

    let project = scratch.path().join("trivial_tool");
    rows.push(Row::measured(
        "fresh `python -I -S` process per call, sequential",
        fresh_processes(&python, &project, SPAWN_SAMPLES, 1).await?,
        1,
    ));
    rows.push(Row::measured(
        format!("fresh `python -I -S` process per call, {CONCURRENCY} in parallel"),
        fresh_processes(&python, &project, SPAWN_SAMPLES, CONCURRENCY).await?,
        1,
    ));
    rows.push(
        Row::new("Python fork + call + exit + reap, no sandbox", fork_cost(&python, scratch.path())?).component(),
    );
    rows.push(
        Row::new("4 KiB write + fdatasync, same file system as the data directory", fsync_cost(scratch.path())?)
            .component(),
    );

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "toolsmith invoke benchmark ({cores} cores, {}, {fastapi_versions}; one run, client and servers on this machine; 1-minute load average {load_before} before the run)",
        python_version.trim(),
    );
    let mut all: Vec<Row> = toolsmith.rows;
    all.extend(rows);
    let (mut components, mut headline): (Vec<Row>, Vec<Row>) = all.into_iter().partition(|row| row.component);
    for (title, rows) in [("", &mut headline), ("Where the time goes (components)", &mut components)] {
        println!();
        if !title.is_empty() {
            println!("{title}");
            println!();
        }
        println!("| measurement | n | p50 ms | p99 ms | max ms | req/s | invocations/s | target |");
        println!("|---|---|---|---|---|---|---|---|");
        for row in rows.iter_mut() {
            row.print();
        }
    }
    println!();
    match toolsmith.missing {
        Some(refusal) => println!("toolsmith invoke rows are missing: the endpoint answered {refusal}"),
        None => {
            let ratio = toolsmith.warm_p50_ms / fastapi_p50_ms;
            println!(
                "stretch target, warm sequential p50 ≤ 1.0× FastAPI + uvicorn: {ratio:.2}× ({})",
                verdict(ratio <= 1.0)
            );
        }
    }
    if toolsmith.warm_p50_ms.is_nan() {
        bail!("the toolsmith invoke endpoint is not available yet");
    }
    Ok(())
}
