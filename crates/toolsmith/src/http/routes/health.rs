//! `GET /readyz`: whether this server can do its work right now, for load balancers and
//! orchestrators deciding where to send requests. `GET /healthz` (in `docs`) stays the liveness
//! probe; a server that is alive but not ready should be taken out of rotation, not restarted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::app::AppState;

/// How long the database may take to answer before the server counts as not ready: a probe that
/// hangs for the pool's own timeout would tell the balancer nothing in time.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(5);

/// The outcome of one check.
struct Check {
    name: &'static str,
    ok: bool,
    details: Map<String, Value>,
}

impl Check {
    fn passed(name: &'static str) -> Check {
        Check { name, ok: true, details: Map::new() }
    }

    fn failed(name: &'static str, error: String) -> Check {
        let mut details = Map::new();
        details.insert("error".into(), Value::String(error));
        Check { name, ok: false, details }
    }
}

/// The data directory: the repositories' parent (`<data-dir>/repos`), which is where builds,
/// environments, artifacts and, with SQLite, the database write.
fn data_dir(state: &AppState) -> PathBuf {
    let repos = state.repos().root();
    repos.parent().unwrap_or(repos).to_path_buf()
}

async fn database(state: &AppState) -> Check {
    match tokio::time::timeout(DATABASE_TIMEOUT, state.store().ping()).await {
        Ok(Ok(())) => Check::passed("database"),
        Ok(Err(err)) => Check::failed("database", format!("the database does not answer: {err}")),
        Err(_) => Check::failed(
            "database",
            format!("the database did not answer within {} seconds", DATABASE_TIMEOUT.as_secs()),
        ),
    }
}

/// Creates, writes, syncs and removes a file of this process's own in `dir`: a read-only
/// remount, a full disk or a failing shared file system all show up here. Several servers may
/// share the directory, hence the host, process and random parts of the name.
fn probe_writable(dir: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host.trim().chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let name = format!(".readyz-{host}-{}-{:016x}", std::process::id(), rand::random::<u64>());
    let path = dir.join(name);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut file| file.write_all(b"ready\n").and_then(|()| file.sync_all()));
    let removed = std::fs::remove_file(&path);
    written.and(removed)
}

fn writable(dir: &Path) -> Check {
    match probe_writable(dir) {
        Ok(()) => Check::passed("data_directory"),
        Err(err) => Check::failed("data_directory", format!("cannot write in {}: {err}", dir.display())),
    }
}

fn free_space(dir: &Path, min_bytes: u64) -> Check {
    let stat = match rustix::fs::statvfs(dir) {
        Ok(stat) => stat,
        Err(err) => {
            return Check::failed("disk_space", format!("cannot read the free space of {}: {err}", dir.display()))
        }
    };
    // What an unprivileged writer may still use: root's reserve is no room to plan with.
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    let mut check = if free >= min_bytes {
        Check::passed("disk_space")
    } else {
        Check::failed(
            "disk_space",
            format!("{} MiB free in {}, below the floor of {} MiB", free >> 20, dir.display(), min_bytes >> 20),
        )
    };
    check.details.insert("free_mib".into(), json!(free >> 20));
    check.details.insert("min_free_mib".into(), json!(min_bytes >> 20));
    check
}

/// `GET /readyz`: 200 when the database answers, the data directory takes writes and its file
/// system has more free space than `--min-free-disk-mib`; 503 otherwise. Both answers carry
/// every check's outcome, and `failed` names the checks that did not pass. Needs no credentials.
pub async fn ready(State(state): State<AppState>) -> Response {
    let dir = data_dir(&state);
    let min = state.settings().min_free_disk_bytes;
    let disk = tokio::task::spawn_blocking(move || [writable(&dir), free_space(&dir, min)]);
    let database = database(&state).await;
    let disk = disk.await.unwrap_or_else(|err| {
        let why = format!("the check did not run: {err}");
        [Check::failed("data_directory", why.clone()), Check::failed("disk_space", why)]
    });
    let checks: Vec<Check> = std::iter::once(database).chain(disk).collect();
    let failed: Vec<&str> = checks.iter().filter(|c| !c.ok).map(|c| c.name).collect();
    let ready = failed.is_empty();
    if !ready {
        let reasons: Vec<String> =
            checks.iter().filter_map(|c| c.details.get("error").and_then(Value::as_str).map(str::to_owned)).collect();
        tracing::warn!(failed = ?failed, reasons = ?reasons, "not ready");
    }
    let body = json!({
        "ready": ready,
        "failed": failed,
        "checks": checks
            .iter()
            .map(|c| {
                let mut entry = c.details.clone();
                entry.insert("ok".into(), Value::Bool(c.ok));
                (c.name.to_owned(), Value::Object(entry))
            })
            .collect::<Map<String, Value>>(),
    });
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
