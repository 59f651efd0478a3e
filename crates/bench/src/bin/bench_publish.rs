//! Publish benchmark: how long `POST /tool/{id}/version` takes for a tool without dependencies,
//! for the scaffold (whose tests need pytest), and for a tool with one PyPI dependency; each
//! published twice, to show the second publish reusing the environment of the first.
//!
//! Run with `cargo build --release -p toolsmith -p toolsmith-bench && target/release/bench_publish`.
//! It needs the package index (PyPI) for the dependencies; every run starts with an empty cache.

use std::time::Instant;

use anyhow::{ensure, Context};
use serde_json::json;
use toolsmith_bench::Server;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = Server::start(&["--rate-limits", "off"]).await?;
    server.push_files(
        &[
            ("no_deps/pyproject.toml", "[project]\nname = \"no_deps\"\nversion = \"0.1.0\"\nrequires-python = \">=3.11\"\ndependencies = []\n[tool.toolsmith]\nentrypoint = \"no_deps.tool:run\"\n"),
            ("no_deps/no_deps/__init__.py", ""),
            ("no_deps/no_deps/tool.py", "def run(text: str) -> str:\n    \"\"\"Echo.\n\n    Args:\n        text: What to echo.\n    \"\"\"\n    return text\n"),
            ("one_dep/pyproject.toml", "[project]\nname = \"one_dep\"\nversion = \"0.1.0\"\nrequires-python = \">=3.11\"\ndependencies = [\"humanize>=4\"]\n[tool.toolsmith]\nentrypoint = \"one_dep.tool:run\"\n"),
            ("one_dep/one_dep/__init__.py", ""),
            ("one_dep/one_dep/tool.py", "import humanize\n\ndef run(n: int) -> str:\n    return humanize.intcomma(n)\n"),
        ],
        "Benchmark tools",
    )?;

    let client = reqwest::Client::new();
    let api = format!("{}/v1/{}/tool", server.base, server.org);
    println!(
        "toolsmith publish benchmark (fresh data directory and uv cache; Amigo documents 1–5 minutes per publish)"
    );
    println!();
    println!("| tool | first publish (s) | second publish (s) |");
    println!("|---|---|---|");
    for (name, project) in [
        ("no dependencies, no tests", "no_deps"),
        ("the scaffold (tests need pytest)", "hello_world"),
        ("one PyPI dependency (humanize)", "one_dep"),
    ] {
        let created: serde_json::Value = client
            .post(format!("{api}/"))
            .bearer_auth(&server.token)
            .json(&json!({"name": project, "description": "benchmark", "tags": {}}))
            .send()
            .await?
            .json()
            .await?;
        let tool = created["id"].as_str().context("no tool id")?.to_owned();
        let mut times = Vec::new();
        for bump in ["major", "minor"] {
            let started = Instant::now();
            let r = client
                .post(format!("{api}/{tool}/version"))
                .bearer_auth(&server.token)
                .json(&json!({"project_path": project, "bump_type": bump}))
                .send()
                .await?;
            let status = r.status();
            let text = r.text().await?;
            ensure!(status == 201, "publishing {project} failed: {status} {text}");
            times.push(started.elapsed().as_secs_f64());
        }
        println!("| {name} | {:.2} | {:.2} |", times[0], times[1]);
    }
    Ok(())
}
