//! Registry benchmark: idle memory of `toolsmith serve`, and requests per second of
//! `GET /v1/{org}/tool/` on SQLite with 1,000 tools, for a few query shapes.
//!
//! Run with `cargo build --release -p toolsmith -p toolsmith-bench && target/release/bench_registry`.
//! Rate limits are switched off (they would cap a single user at 50 requests a minute). Client
//! and server share the machine's cores, as they would with any local load tool.

use std::time::{Duration, Instant};

use toolsmith_bench::Server;

const TOOLS: usize = 1_000;
const CONNECTIONS: usize = 16;
const DURATION: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = Server::start(&["--rate-limits", "off"]).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_kib = server.rss_kib()?;

    let client = reqwest::Client::new();
    let tools = format!("{}/v1/{}/tool/", server.base, server.org);
    let started = Instant::now();
    for i in 0..TOOLS {
        let tags = if i % 10 == 0 { serde_json::json!({"team": "core"}) } else { serde_json::json!({"team": "edge"}) };
        let body =
            serde_json::json!({"name": format!("tool_{i:04}"), "description": "A benchmark tool.", "tags": tags});
        let r = client.post(&tools).bearer_auth(&server.token).json(&body).send().await?;
        anyhow::ensure!(r.status() == 201, "create failed: {}", r.status());
    }
    let create_secs = started.elapsed().as_secs_f64();

    println!(
        "toolsmith registry benchmark (SQLite, {TOOLS} tools, {CONNECTIONS} keep-alive connections, {}s per row)",
        DURATION.as_secs()
    );
    println!();
    println!("| measurement | value |");
    println!("|---|---|");
    println!("| idle RSS after start | {:.1} MiB |", idle_kib as f64 / 1024.0);
    println!("| creating {TOOLS} tools, one at a time | {:.0} creates/s |", TOOLS as f64 / create_secs);
    println!();
    println!("| GET /v1/{{org}}/tool/ query | requests/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    for (label, query) in [
        ("first page (limit 10, filter values)", ""),
        ("limit=20, sort_by=+name", "?limit=20&sort_by=%2Bname"),
        ("tag=team:core, limit=20", "?tag=team:core&limit=20"),
        ("deep page (continuation_token=980)", "?limit=20&continuation_token=980"),
    ] {
        let url = format!("{tools}{query}");
        let mut samples = toolsmith_bench::load(&url, &server.token, CONNECTIONS, DURATION).await?;
        let count = samples.len();
        println!(
            "| {label} | {:.0} | {:.2} | {:.2} |",
            count as f64 / DURATION.as_secs_f64(),
            samples.percentile_ms(50.0),
            samples.percentile_ms(99.0)
        );
    }
    println!();
    println!("| RSS after the load | {:.1} MiB |", server.rss_kib()? as f64 / 1024.0);
    Ok(())
}
