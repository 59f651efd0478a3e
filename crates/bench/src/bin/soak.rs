//! Soak test: a mixed load on one `toolsmith serve` process for a given time, printing once a
//! minute what a leak or a slowdown would show — the server's resident memory, its open
//! descriptors, the processes it runs (server and sandboxes), and per-operation latency — and
//! the same after a quiet minute at the end, to see whether memory comes back when idle.
//!
//! Twelve clients run at once: eight invoke (two tools, one of them with 10 inputs per call), one
//! lists and searches invocations, one browses the repository, one changes env vars every few
//! seconds (which replaces the tools' runtimes), and one publishes new versions and deprecates
//! old ones. Every answer is checked; an invocation lost to a runtime change counts as an error.
//!
//! Run with `cargo build --release -p toolsmith -p toolsmith-bench && target/release/soak
//! [minutes]` (default 30). It needs `uv` and the package index to publish, and reaches only
//! 127.0.0.1.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};
use toolsmith_bench::{Samples, Server};

const TOOL_PY: &str = "import os\n\ndef run(name: str) -> str:\n    \"\"\"Greet.\n\n    Args:\n        name: Who.\n    \"\"\"\n    return f\"{os.environ.get('GREETING', 'hello')}, {name}\"\n";
const PYPROJECT: &str = "[project]\nname = \"soak_tool\"\nversion = \"0.1.0\"\nrequires-python = \">=3.11\"\ndependencies = []\n\n[tool.toolsmith]\nentrypoint = \"soak_tool.tool:run\"\nenvvars = [\"GREETING\"]\nsecret_envvars = []\n";

/// Per operation: latencies and errors since the last report, and in all.
#[derive(Default)]
struct Stats {
    window: BTreeMap<&'static str, (Samples, usize)>,
    total: BTreeMap<&'static str, (usize, usize)>,
}

impl Stats {
    fn record(&mut self, op: &'static str, took: Duration, ok: bool) {
        let entry = self.window.entry(op).or_default();
        entry.0.push(took);
        let total = self.total.entry(op).or_default();
        total.0 += 1;
        if !ok {
            entry.1 += 1;
            total.1 += 1;
        }
    }
}

type Shared = Arc<Mutex<Stats>>;

struct Client {
    http: reqwest::Client,
    base: String,
    org: String,
    token: String,
    stats: Shared,
}

impl Client {
    async fn call(&self, op: &'static str, method: reqwest::Method, path: &str, body: Option<&Value>) -> Option<Value> {
        let started = Instant::now();
        let mut request =
            self.http.request(method, format!("{}/v1/{}{path}", self.base, self.org)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let result = async {
            let response = request.send().await.ok()?;
            let status = response.status().as_u16();
            let text = response.text().await.ok()?;
            Some((status, text))
        }
        .await;
        let (ok, value) = match result {
            Some((status, text)) if (200..300).contains(&status) => {
                let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let invocations_ok = value["invocation_results"]
                    .as_array()
                    .is_none_or(|results| results.iter().all(|r| r["succeeded"] == true));
                (invocations_ok, Some(value))
            }
            Some((status, text)) => {
                eprintln!("{op}: {status} {}", text.chars().take(200).collect::<String>());
                (false, None)
            }
            None => (false, None),
        };
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).record(op, started.elapsed(), ok);
        value
    }
}

fn invoke_body(inputs: usize) -> Value {
    let one = json!({
        "input_parameters": {"name": "soak"},
        "invocation_mode": "regular",
        "nonsensitive_user_variables": {},
        "sensitive_user_variables": {},
    });
    json!({ "inputs": vec![one; inputs] })
}

async fn create_and_publish(client: &Client, name: &str) -> anyhow::Result<String> {
    let created = client
        .call("setup", reqwest::Method::POST, "/tool/", Some(&json!({"name": name, "description": "soak", "tags": {}})))
        .await
        .context("create a tool")?;
    let tool = created["id"].as_str().context("no id")?.to_owned();
    let envvars = json!({"inserts": [{"name": "GREETING", "value": "hello", "is_secret": false}]});
    client.call("setup", reqwest::Method::POST, &format!("/tool/{tool}/envvar"), Some(&envvars)).await;
    client
        .call(
            "setup",
            reqwest::Method::POST,
            &format!("/tool/{tool}/version"),
            Some(&json!({"project_path": "soak_tool", "bump_type": "major"})),
        )
        .await
        .context("publish")?;
    Ok(tool)
}

/// Reads `/proc` for the server: resident memory (KiB), open descriptors, and the processes of
/// its tree (the server, its sandboxes and everything in them).
fn server_figures(pid: u32) -> (u64, usize, usize) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    let mut parents: BTreeMap<u32, u32> = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(p) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
            let Some(ppid) = stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)?.parse().ok()) else {
                continue;
            };
            parents.insert(p, ppid);
        }
    }
    let in_tree = |mut p: u32| {
        for _ in 0..64 {
            if p == pid {
                return true;
            }
            match parents.get(&p) {
                Some(&parent) if parent != 0 => p = parent,
                _ => return false,
            }
        }
        false
    };
    let processes = parents.keys().filter(|p| in_tree(**p)).count();
    (rss, fds, processes)
}

fn report(label: &str, pid: u32, stats: &Shared) {
    let (rss, fds, processes) = server_figures(pid);
    let mut stats = stats.lock().unwrap_or_else(|e| e.into_inner());
    let window = std::mem::take(&mut stats.window);
    let ops: Vec<String> = window
        .into_iter()
        .filter(|(op, _)| *op != "setup")
        .map(|(op, (mut samples, errors))| {
            let n = samples.len();
            format!("{op} {n}/{errors}e {:.1}/{:.1}", samples.percentile_ms(50.0), samples.percentile_ms(99.0))
        })
        .collect();
    println!("| {label} | {:.1} | {fds} | {processes} | {} |", rss as f64 / 1024.0, ops.join("; "));
}

/// Starts the server with the soak tool's project in its repository.
async fn start_server() -> anyhow::Result<Server> {
    let server = Server::start(&["--rate-limits", "off", "--runtime-idle-secs", "120"]).await?;
    server.push_files(
        &[
            ("soak_tool/pyproject.toml", PYPROJECT),
            ("soak_tool/soak_tool/__init__.py", ""),
            ("soak_tool/soak_tool/tool.py", TOOL_PY),
        ],
        "The soak tool",
    )?;
    Ok(server)
}

/// Calls a tool's newest version without end, `inputs` inputs a call.
async fn invoker(c: Client, stop: Arc<AtomicBool>, tool: String, op: &'static str, inputs: usize) {
    let body = invoke_body(inputs);
    while !stop.load(Ordering::Relaxed) {
        c.call(op, reqwest::Method::POST, &format!("/tool/{tool}/version/%3E%3D1/invoke"), Some(&body)).await;
    }
}

/// Lists one tool's invocations and searches all of them, in turn, without end.
async fn invocation_reader(c: Client, stop: Arc<AtomicBool>, tool: String) {
    while !stop.load(Ordering::Relaxed) {
        c.call(
            "list",
            reqwest::Method::GET,
            &format!("/tool/invocation?tool_id={tool}&limit=50&invocation_source_type=direct"),
            None,
        )
        .await;
        c.call(
            "search",
            reqwest::Method::GET,
            "/tool/invocation/search?query=soak&invocation_source_type=direct",
            None,
        )
        .await;
    }
}

/// Browses the repository and lists the tools, without end.
async fn browser(c: Client, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        c.call("browse", reqwest::Method::GET, "/tool/repo/directory?path=soak_tool&ref=main", None).await;
        c.call("browse", reqwest::Method::GET, "/tool/repo/file?path=soak_tool/pyproject.toml&ref=main", None).await;
        c.call("list tools", reqwest::Method::GET, "/tool/?limit=20", None).await;
    }
}

/// Changes an env var of each tool in turn every three seconds, which replaces its runtimes
/// while the invokers call it.
async fn env_changer(c: Client, stop: Arc<AtomicBool>, tools: [String; 2]) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let tool = &tools[(n % 2) as usize];
        let body = json!({"updates": [{"name": "GREETING", "value": format!("hello {n}")}]});
        c.call("envvar", reqwest::Method::POST, &format!("/tool/{tool}/envvar"), Some(&body)).await;
        n += 1;
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

/// Publishes a new version of `tool` every ten seconds and invokes it.
async fn publisher(c: Client, stop: Arc<AtomicBool>, tool: String) {
    while !stop.load(Ordering::Relaxed) {
        deprecate_all_but_newest_two(&c, &tool).await;
        let body = json!({"project_path": "soak_tool", "bump_type": "patch"});
        c.call("publish", reqwest::Method::POST, &format!("/tool/{tool}/version"), Some(&body)).await;
        c.call(
            "invoke new",
            reqwest::Method::POST,
            &format!("/tool/{tool}/version/%3E%3D1/invoke"),
            Some(&invoke_body(1)),
        )
        .await;
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

/// At most two live versions before publishing a third (the server allows three): deprecates
/// everything older than the newest two.
async fn deprecate_all_but_newest_two(c: &Client, tool: &str) {
    let Some(listed) = c.call("list versions", reqwest::Method::GET, &format!("/tool/{tool}/version"), None).await
    else {
        return;
    };
    let mut live: Vec<(u64, u64, u64)> = listed["tool_versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["deprecated"] != true)
        .filter_map(|v| {
            let v = &v["version"];
            Some((v["major"].as_u64()?, v["minor"].as_u64()?, v["patch"].as_u64()?))
        })
        .collect();
    live.sort();
    if live.len() > 2 {
        let (a, b, c_) = live[live.len() - 2];
        let spec = format!("%3C%3D{a}.{b}.{c_}");
        c.call("deprecate", reqwest::Method::DELETE, &format!("/tool/{tool}/version/{spec}"), None).await;
    }
}

/// The totals of every operation over the whole run.
fn print_totals(stats: &Shared) {
    println!("\n| operation | requests | errors |\n|---|---|---|");
    let stats = stats.lock().unwrap_or_else(|e| e.into_inner());
    for (op, (n, errors)) in &stats.total {
        println!("| {op} | {n} | {errors} |");
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let minutes: u64 = std::env::args().nth(1).map(|m| m.parse()).transpose()?.unwrap_or(30);
    let server = start_server().await?;
    let pid = server.pid();
    let stats: Shared = Arc::default();
    let client = |stats: &Shared| Client {
        http: reqwest::Client::new(),
        base: server.base.clone(),
        org: server.org.clone(),
        token: server.token.clone(),
        stats: stats.clone(),
    };
    let setup = client(&stats);
    let first = create_and_publish(&setup, "soak_one").await?;
    let second = create_and_publish(&setup, "soak_two").await?;
    let publisher_tool = create_and_publish(&setup, "soak_published").await?;

    println!("toolsmith soak: {minutes} minutes, 12 clients, server pid {pid}\n");
    println!("| minute | RSS MiB | open fds | processes | per operation: requests/errors p50/p99 ms |");
    println!("|---|---|---|---|---|");
    report("start", pid, &stats);

    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let tool = if i % 2 == 0 { first.clone() } else { second.clone() };
        let (op, inputs) = if i == 7 { ("invoke x10", 10) } else { ("invoke", 1) };
        tasks.push(tokio::spawn(invoker(client(&stats), stop.clone(), tool, op, inputs)));
    }
    tasks.push(tokio::spawn(invocation_reader(client(&stats), stop.clone(), first.clone())));
    tasks.push(tokio::spawn(browser(client(&stats), stop.clone())));
    tasks.push(tokio::spawn(env_changer(client(&stats), stop.clone(), [first.clone(), second.clone()])));
    tasks.push(tokio::spawn(publisher(client(&stats), stop.clone(), publisher_tool.clone())));

    let started = Instant::now();
    for minute in 1..=minutes {
        let next = Duration::from_secs(60 * minute);
        tokio::time::sleep(next.saturating_sub(started.elapsed())).await;
        report(&minute.to_string(), pid, &stats);
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    report("idle +1", pid, &stats);
    print_totals(&stats);
    Ok(())
}
