//! MCP benchmark: a warm `tools/call` of a trivial tool beside a warm native invoke of the same
//! version (what the MCP server adds to an invocation), and `tools/list` of an organization with
//! 1,000 tools, one page and every page.
//!
//! Run with `cargo build --release -p toolsmith -p toolsmith-bench && target/release/bench_mcp`.
//! The trivial tool is published once; the other 999 tools are recorded in the server's SQLite
//! database directly as versions of the same build (publishing 1,000 times would measure uv, not
//! the listing), so each of them could be called too. Rate limits are off; calls alternate
//! between the two surfaces, so that drift on a shared machine skews both alike.

use std::time::Instant;

use anyhow::{ensure, Context};
use serde_json::{json, Value};
use toolsmith_bench::{Samples, Server};
use toolsmith_domain::{BuildId, OrgId, ToolId, ToolName};
use toolsmith_store::secrets::{Keyring, SecretKey};
use toolsmith_store::{NewTool, NewVersion, Store, UserRef};

const WARMUP: usize = 200;
const CALLS: usize = 2_000;
const LISTS: usize = 500;
const WALKS: usize = 100;
const TOOLS: usize = 1_000;

const CALL_OVERHEAD_P50_MS: f64 = 0.3;
const LIST_P50_MS: f64 = 10.0;

const TOOL_FILES: [(&str, &str); 3] = [
    ("trivial_tool/pyproject.toml", include_str!("../../python/trivial_tool/pyproject.toml")),
    ("trivial_tool/trivial_tool/__init__.py", include_str!("../../python/trivial_tool/trivial_tool/__init__.py")),
    ("trivial_tool/trivial_tool/tool.py", include_str!("../../python/trivial_tool/trivial_tool/tool.py")),
];

/// One 2025-11-25 message to the MCP endpoint; the answer's `result`.
async fn rpc(client: &reqwest::Client, url: &str, token: &str, method: &str, params: Value) -> anyhow::Result<Value> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let r = client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(body.to_string())
        .send()
        .await?;
    let status = r.status();
    let answer: Value = r.json().await?;
    ensure!(status == 200 && answer.get("result").is_some(), "{method}: {status} {answer}");
    Ok(answer["result"].clone())
}

fn keyring_of(data: &std::path::Path) -> anyhow::Result<Keyring> {
    let text = std::fs::read_to_string(data.join("keys/secret-keys")).context("reading the server's keyring")?;
    let keys: Vec<SecretKey> = text.lines().filter_map(|l| SecretKey::from_hex(l.trim())).collect();
    Keyring::new(keys).context("an empty keyring")
}

struct Row {
    what: String,
    p50: f64,
    p99: f64,
    target: String,
}

impl Row {
    fn new(what: &str, mut samples: Samples, target: &str) -> Row {
        Row {
            what: what.into(),
            p50: samples.percentile_ms(50.0),
            p99: samples.percentile_ms(99.0),
            target: target.into(),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = Server::start(&["--rate-limits", "off"]).await?;
    server.push_files(&TOOL_FILES, "Benchmark tool")?;
    let client = reqwest::Client::new();
    let api = format!("{}/v1/{}/tool", server.base, server.org);
    let created: Value = client
        .post(format!("{api}/"))
        .bearer_auth(&server.token)
        .json(&json!({"name": "trivial_tool", "description": "Greets someone.", "tags": {}}))
        .send()
        .await?
        .json()
        .await?;
    let tool = created["id"].as_str().context("no tool id")?.to_owned();
    let r = client
        .post(format!("{api}/{tool}/version"))
        .bearer_auth(&server.token)
        .json(&json!({"project_path": "trivial_tool", "bump_type": "major"}))
        .send()
        .await?;
    ensure!(r.status() == 201, "publishing failed: {}", r.text().await?);

    // 999 more tools, each a version of the same build, so the organization has 1,000.
    let data = server.data_dir().to_owned();
    let store = Store::open_sqlite_dir(&data, keyring_of(&data)?).await?;
    let org = OrgId::parse(&server.org).map_err(|e| anyhow::anyhow!("{e}"))?;
    let tool_id: ToolId = tool.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let published = store.versions_of(&org, &tool_id).await?.pop().context("no published version")?;
    let by = UserRef { org_id: org.clone(), user_id: published.creator.user_id.clone() };
    eprintln!("recording {} more tools …", TOOLS - 1);
    for i in 1..TOOLS {
        let other = store
            .create_tool(NewTool {
                org_id: org.clone(),
                name: ToolName::parse(&format!("tool_{i:04}")).map_err(|e| anyhow::anyhow!("{e}"))?,
                description: format!("Benchmark tool {i}: greets someone in its own way."),
                tags: vec![],
                creator: by.clone(),
            })
            .await?;
        store
            .insert_version(NewVersion {
                org_id: org.clone(),
                tool_id: other.id,
                version: published.version,
                required_envvars: vec![],
                required_secret_envvars: vec![],
                input_schema: published.input_schema.clone(),
                takes_context: published.takes_context,
                entrypoint: published.entrypoint.clone(),
                tool_commit_hash: published.tool_commit_hash.clone(),
                scaffold_hash: published.scaffold_hash.clone(),
                project_directory: published.project_directory.clone(),
                content_digest: published.content_digest.clone(),
                environment_key: published.environment_key.clone(),
                build_id: BuildId::generate(),
                output_schema: published.output_schema.clone(),
                creator: by.clone(),
            })
            .await?;
    }
    store.close().await;

    let mcp = format!("{}/v1/{}/mcp", server.base, server.org);
    let invoke = format!("{api}/{tool}/version/{}/invoke", published.version);
    let invoke_body = json!({"inputs": [{"input_parameters": {"name": "bench"}, "invocation_mode": "regular",
        "nonsensitive_user_variables": {}, "sensitive_user_variables": {}}]})
    .to_string();
    let call_params = json!({"name": "trivial_tool", "arguments": {"name": "bench"}});
    let native = || async {
        let r = client
            .post(&invoke)
            .bearer_auth(&server.token)
            .header("content-type", "application/json")
            .body(invoke_body.clone())
            .send()
            .await?;
        let status = r.status();
        let body: Value = r.json().await?;
        ensure!(status == 200 && body["invocation_results"][0]["output"] == "hello, bench", "invoke: {status} {body}");
        anyhow::Ok(())
    };
    let call = || async {
        let result = rpc(&client, &mcp, &server.token, "tools/call", call_params.clone()).await?;
        ensure!(result["content"][0]["text"] == "hello, bench" && result["isError"] == false, "tools/call: {result}");
        anyhow::Ok(())
    };
    for _ in 0..WARMUP {
        native().await?;
        call().await?;
    }
    let (mut native_samples, mut call_samples) = (Samples::default(), Samples::default());
    for _ in 0..CALLS {
        let t = Instant::now();
        native().await?;
        native_samples.push(t.elapsed());
        let t = Instant::now();
        call().await?;
        call_samples.push(t.elapsed());
    }

    let mut first_page = Samples::default();
    for _ in 0..LISTS {
        let t = Instant::now();
        let result = rpc(&client, &mcp, &server.token, "tools/list", json!({})).await?;
        first_page.push(t.elapsed());
        ensure!(result["tools"].as_array().map(Vec::len) == Some(100), "a page of 100");
    }
    let mut walks = Samples::default();
    for _ in 0..WALKS {
        let t = Instant::now();
        let (mut cursor, mut seen) = (Value::Null, 0);
        loop {
            let result = rpc(&client, &mcp, &server.token, "tools/list", json!({"cursor": cursor})).await?;
            seen += result["tools"].as_array().map(Vec::len).unwrap_or_default();
            match result.get("nextCursor") {
                Some(next) => cursor = next.clone(),
                None => break,
            }
        }
        walks.push(t.elapsed());
        ensure!(seen == TOOLS, "the walk saw {seen} tools");
    }

    let native_row = Row::new("warm native invoke (`POST …/version/{v}/invoke`), sequential", native_samples, "");
    let call_row = Row::new("warm MCP `tools/call`, sequential", call_samples, "");
    let overhead = call_row.p50 - native_row.p50;
    let overhead_row = Row {
        what: "`tools/call` minus native invoke".into(),
        p50: overhead,
        p99: call_row.p99 - native_row.p99,
        target: format!(
            "≤ {CALL_OVERHEAD_P50_MS} ms p50: {}",
            if overhead <= CALL_OVERHEAD_P50_MS { "met" } else { "MISSED" }
        ),
    };
    let mut page_row = Row::new("`tools/list`, 1,000 tools: first page (100 tools)", first_page, "");
    page_row.target = format!("≤ {LIST_P50_MS} ms p50: {}", if page_row.p50 <= LIST_P50_MS { "met" } else { "MISSED" });
    let mut walk_row = Row::new("`tools/list`, 1,000 tools: every page (10 requests)", walks, "");
    walk_row.target = format!("≤ {LIST_P50_MS} ms p50: {}", if walk_row.p50 <= LIST_P50_MS { "met" } else { "MISSED" });

    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "bench_mcp: {cores} cores, load average {}; {CALLS} calls of each surface after {WARMUP} warm-up calls, \
         {LISTS} first pages, {WALKS} walks",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!();
    println!("| measurement | p50 ms | p99 ms | target |");
    println!("|---|---:|---:|---|");
    for row in [native_row, call_row, overhead_row, page_row, walk_row] {
        println!("| {} | {:.3} | {:.3} | {} |", row.what, row.p50, row.p99, row.target);
    }
    Ok(())
}
