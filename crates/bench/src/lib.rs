//! Shared pieces of the benchmark programs: starting a real `toolsmith serve` process, signing in,
//! and measuring latency distributions.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A `toolsmith serve` process started for a benchmark, killed when dropped.
pub struct Server {
    child: Child,
    /// Base URL, e.g. `http://127.0.0.1:18123`.
    pub base: String,
    /// The bootstrap organization.
    pub org: String,
    /// A token of the bootstrap admin.
    pub token: String,
    _data: tempfile::TempDir,
    extra: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The release binary next to this benchmark's own executable.
pub fn toolsmith_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let dir = me.parent().context("executable without a directory")?;
    let bin = dir.join("toolsmith");
    if !bin.exists() {
        bail!("{} not found: run `cargo build --release -p toolsmith` first", bin.display());
    }
    Ok(bin)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Server {
    /// Starts the binary on a fresh data directory with the given extra arguments and signs in
    /// as the bootstrap admin.
    pub async fn start(extra: &[&str]) -> anyhow::Result<Server> {
        let data = tempfile::tempdir()?;
        let port = free_port()?;
        let base = format!("http://127.0.0.1:{port}");
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut child = spawn_serve(data.path(), &base, &extra, Stdio::piped())?;
        wait_healthy(&base, Duration::from_millis(20)).await?;
        let stdout = child.stdout.take().context("no stdout")?;
        let text = tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            let mut out = String::new();
            let mut stdout = stdout;
            while !out.contains("x-user-id") {
                match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => out.push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
            out
        })
        .await?;
        let field = |label: &str| -> anyhow::Result<String> {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_owned()))
                .with_context(|| format!("no {label} in the welcome message"))
        };
        let (org, user, key_id, key) =
            (field("organization:")?, field("admin user:")?, field("API key id:")?, field("API key:")?);
        let signed: serde_json::Value = reqwest::Client::new()
            .post(format!("{base}/v1/{org}/user/signin_with_api_key"))
            .header("x-api-key", key)
            .header("x-api-key-id", key_id)
            .header("x-user-id", user)
            .send()
            .await?
            .json()
            .await?;
        let token = signed["id_token"].as_str().context("no token")?.to_owned();
        Ok(Server { child, base, org, token, _data: data, extra })
    }

    /// Stops the server gracefully (SIGTERM, SIGKILL after 10 s) and starts it again on the same
    /// data directory, address and arguments; returns how long the new process took to answer
    /// `/healthz`. The organization and token stay valid, since both live in the data directory.
    pub async fn restart(&mut self) -> anyhow::Result<Duration> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                self.child.wait()?;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let started = Instant::now();
        // The welcome message is printed on first start only, so nothing is read from stdout.
        self.child = spawn_serve(self._data.path(), &self.base, &self.extra, Stdio::null())?;
        wait_healthy(&self.base, Duration::from_millis(2)).await?;
        Ok(started.elapsed())
    }

    /// Commits `files` (path inside the repository, content) to the organization's repository
    /// and pushes them to `main` through the service's git endpoint.
    pub fn push_files(&self, files: &[(&str, &str)], message: &str) -> anyhow::Result<()> {
        let work = tempfile::tempdir()?;
        let header = format!("http.extraHeader=Authorization: Bearer {}", self.token);
        let url = format!("{}/v1/{}/tool/git", self.base, self.org);
        run_git(work.path(), &["-c", &header, "clone", "--quiet", &url, "repo"])?;
        let repo = work.path().join("repo");
        for (path, content) in files {
            let target = repo.join(path);
            std::fs::create_dir_all(target.parent().context("a file path without a directory")?)?;
            std::fs::write(target, content)?;
        }
        run_git(&repo, &["add", "-A"])?;
        run_git(&repo, &["commit", "--quiet", "-m", message])?;
        run_git(&repo, &["-c", &header, "push", "--quiet", "origin", "main"])
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &Path {
        self._data.path()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the server process in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        rss_kib(Path::new(&format!("/proc/{}/status", self.child.id())))
    }
}

fn spawn_serve(data: &Path, base: &str, extra: &[String], stdout: Stdio) -> anyhow::Result<Child> {
    let listen = base.strip_prefix("http://").context("a base URL without http://")?;
    Ok(Command::new(toolsmith_binary()?)
        .arg("serve")
        .arg("--data-dir")
        .arg(data)
        .arg("--listen")
        .arg(listen)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()?)
}

async fn wait_healthy(base: &str, poll: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        if Instant::now() > deadline {
            bail!("the server did not come up");
        }
        tokio::time::sleep(poll).await;
    }
    Ok(())
}

// A fixed identity and no user or system configuration, so that the machine's git setup cannot
// change what is pushed.
fn run_git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("git")
        .args(["-c", "user.name=Bench", "-c", "user.email=bench@example.invalid"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()?;
    anyhow::ensure!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

fn rss_kib(status: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(status)?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).context("malformed VmRSS")?.parse()?)
}

/// Runs `url` with `connections` keep-alive clients for `duration`; returns the number of
/// requests and their latencies. Any status but 200 is an error.
pub async fn load(url: &str, token: &str, connections: usize, duration: Duration) -> anyhow::Result<Samples> {
    let client = reqwest::Client::new();
    let target: std::sync::Arc<(String, String)> = std::sync::Arc::new((url.to_owned(), token.to_owned()));
    drive(connections, duration, move || {
        let (client, target) = (client.clone(), target.clone());
        async move {
            let r = client.get(&target.0).bearer_auth(&target.1).send().await?;
            anyhow::ensure!(r.status() == 200, "status {}", r.status());
            r.bytes().await?;
            Ok(())
        }
    })
    .await
}

/// Calls `request` over and over from `workers` concurrent tasks for `duration`, and returns
/// the latency of every call; the first failed call fails the measurement.
pub async fn drive<F, Fut>(workers: usize, duration: Duration, request: F) -> anyhow::Result<Samples>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let deadline = Instant::now() + duration;
    let tasks = (0..workers).map(|_| {
        let request = request.clone();
        tokio::spawn(async move {
            let mut samples = Samples::default();
            while Instant::now() < deadline {
                let t = Instant::now();
                request().await?;
                samples.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(samples)
        })
    });
    let mut all = Samples::default();
    for result in futures_util::future::join_all(tasks).await {
        all.extend(result??);
    }
    Ok(all)
}

/// Latency samples of one measurement.
#[derive(Default)]
pub struct Samples(Vec<Duration>);

impl Samples {
    /// Records one sample.
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    /// Merges another set of samples.
    pub fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `p`-th percentile (0–100) in milliseconds.
    pub fn percentile_ms(&mut self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0.sort_unstable();
        let i = ((p / 100.0) * (self.0.len() - 1) as f64).round() as usize;
        self.0[i].as_secs_f64() * 1000.0
    }
}
