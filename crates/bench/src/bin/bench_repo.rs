//! Repository benchmark: a full clone of a repository with 1,000 commits and 5,000 files through
//! toolsmith's git endpoint and, side by side, straight from `git daemon` on the same machine;
//! then requests per second of the directory and file browsing endpoints, and of the same three
//! reads made on the repository store in this process (no HTTP, no authentication, no database),
//! which tells how much of a request the repository read itself costs.
//!
//! Run with `cargo build --release -p toolsmith -p toolsmith-bench && target/release/bench_repo`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use toolsmith_bench::{Samples, Server};
use toolsmith_repo::{Limits, RepoStore};

const COMMITS: usize = 1_000;
const FILES: usize = 5_000;
const RUNS: usize = 5;

fn git(args: &[&str], dir: &Path) -> anyhow::Result<()> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()?;
    ensure!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// Writes the history with `git fast-import`: the first commit adds every file, each later one
/// changes five of them.
fn build_history(bare: &Path) -> anyhow::Result<()> {
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet", "--force"])
        .current_dir(bare)
        .env("GIT_DIR", bare)
        .stdin(Stdio::piped())
        .spawn()?;
    let mut input = std::io::BufWriter::new(child.stdin.take().context("stdin")?);
    let when = 1_767_225_600u64;
    for c in 0..COMMITS {
        writeln!(
            input,
            "commit refs/heads/main\ncommitter Bench <bench@example.invalid> {} +0000",
            when + c as u64 * 60
        )?;
        let message = format!("Commit {c}");
        writeln!(input, "data {}\n{message}", message.len())?;
        if c == 0 {
            for f in 0..FILES {
                let body = format!("# file {f}\nVALUE = {f}\n");
                writeln!(input, "M 100644 inline dir{:02}/file{f:04}.py\ndata {}\n{body}", f % 50, body.len())?;
            }
        } else {
            for k in 0..5 {
                let f = (c * 5 + k) % FILES;
                let body = format!("# file {f}\nVALUE = {}\n", c * 10 + k);
                writeln!(input, "M 100644 inline dir{:02}/file{f:04}.py\ndata {}\n{body}", f % 50, body.len())?;
            }
        }
        writeln!(input)?;
    }
    drop(input);
    ensure!(child.wait()?.success(), "fast-import failed");
    git(&["gc", "--quiet"], bare)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn time_clone(url: &str, extra: &[&str], work: &Path) -> anyhow::Result<f64> {
    let dest = work.join("clone");
    let _ = std::fs::remove_dir_all(&dest);
    let started = Instant::now();
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["clone", "--quiet", url, "clone"]);
    git(&args, work)?;
    Ok(started.elapsed().as_secs_f64())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = Server::start(&["--rate-limits", "off"]).await?;
    let bare = server.data_dir().join("repos").join(format!("{}.git", server.org));
    ensure!(bare.exists(), "the organization's repository was not created at {}", bare.display());
    build_history(&bare)?;

    let work = tempfile::tempdir()?;
    let host = server.base.trim_start_matches("http://");
    let through_toolsmith = format!("http://{host}/v1/{}/tool/git", server.org);
    let header = format!("http.extraHeader=Authorization: Bearer {}", server.token);

    let port = free_port()?;
    let repos = server.data_dir().join("repos");
    // `git daemon` runs `git-daemon` as a child of its own; started directly, killing it at the
    // end stops the server rather than leaving it behind.
    let exec_path = Command::new("git").arg("--exec-path").output()?;
    ensure!(exec_path.status.success(), "git --exec-path failed");
    let exec_path = String::from_utf8(exec_path.stdout)?;
    let mut daemon = Command::new(Path::new(exec_path.trim()).join("git-daemon"))
        .args(["--reuseaddr", "--export-all", "--listen=127.0.0.1", &format!("--port={port}")])
        .arg(format!("--base-path={}", repos.display()))
        .arg(&repos)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let direct = format!("git://127.0.0.1:{port}/{}.git", server.org);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        ensure!(Instant::now() < deadline, "git daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    }

    // One warm-up clone each, so that both read a warm page cache.
    time_clone(&through_toolsmith, &["-c", &header], work.path())?;
    time_clone(&direct, &[], work.path())?;
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..RUNS {
        ours.push(time_clone(&through_toolsmith, &["-c", &header], work.path())?);
        theirs.push(time_clone(&direct, &[], work.path())?);
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    let (ours, theirs) = (median(ours), median(theirs));

    println!(
        "toolsmith repository benchmark ({COMMITS} commits, {FILES} files, median of {RUNS} clones after one warm-up)"
    );
    println!();
    println!("| full clone | seconds | ratio |");
    println!("|---|---|---|");
    println!("| git daemon (git://, no HTTP, no auth) | {theirs:.3} | 1.00 |");
    println!("| toolsmith (HTTP, token auth, protocol v2) | {ours:.3} | {:.2} |", ours / theirs);
    println!();
    println!("| browsing endpoint (8 keep-alive connections, 5 s) | requests/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    let api = format!("{}/v1/{}/tool/repo", server.base, server.org);
    for (label, url) in [
        ("directory of 100 entries", format!("{api}/directory?path=dir07")),
        ("root directory with last commits", format!("{api}/directory?path=&include_last_commit=true")),
        ("file", format!("{api}/file?path=dir07/file0007.py")),
    ] {
        let samples = toolsmith_bench::load(&url, &server.token, 8, Duration::from_secs(5)).await?;
        row(label, samples);
    }
    println!();
    println!("| repository store in process (8 tasks, 5 s) | requests/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    let store = RepoStore::new(repos, Limits::default())?;
    // This process has read nothing yet: the first read walks the history from scratch.
    let cold = Instant::now();
    Read::RootWithLastCommits.run(&store, &server.org).await?;
    let cold = cold.elapsed().as_secs_f64() * 1000.0;
    for read in [Read::Directory, Read::RootWithLastCommits, Read::File] {
        let samples = load_store(&store, &server.org, read, 8, Duration::from_secs(5)).await?;
        row(read.label(), samples);
    }
    println!();
    println!("First root directory with last commits in this process (nothing cached): {cold:.1} ms");
    Ok(())
}

fn row(label: &str, mut samples: Samples) {
    println!(
        "| {label} | {:.0} | {:.2} | {:.2} |",
        samples.len() as f64 / 5.0,
        samples.percentile_ms(50.0),
        samples.percentile_ms(99.0)
    );
}

/// The three reads the browsing rows make, without HTTP.
#[derive(Clone, Copy)]
enum Read {
    Directory,
    RootWithLastCommits,
    File,
}

impl Read {
    fn label(self) -> &'static str {
        match self {
            Read::Directory => "directory of 100 entries",
            Read::RootWithLastCommits => "root directory with last commits",
            Read::File => "file",
        }
    }

    async fn run(self, store: &RepoStore, org: &str) -> anyhow::Result<()> {
        match self {
            Read::Directory => ensure!(store.list_directory(org, "main", "dir07", false).await?.len() == 100),
            Read::RootWithLastCommits => {
                let entries = store.list_directory(org, "main", "", true).await?;
                ensure!(entries.iter().all(|e| e.last_commit.is_some()), "an entry without a last commit");
            }
            Read::File => ensure!(!store.read_file(org, "main", "dir07/file0007.py").await?.bytes.is_empty()),
        }
        Ok(())
    }
}

/// Runs `read` from `tasks` concurrent tasks for `duration`.
async fn load_store(
    store: &RepoStore,
    org: &str,
    read: Read,
    tasks: usize,
    duration: Duration,
) -> anyhow::Result<Samples> {
    let (store, org) = (store.clone(), std::sync::Arc::<str>::from(org));
    toolsmith_bench::drive(tasks, duration, move || {
        let (store, org) = (store.clone(), org.clone());
        async move { read.run(&store, &org).await }
    })
    .await
}
