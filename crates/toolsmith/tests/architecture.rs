//! The invariants of docs/ARCHITECTURE.md that a reading of the source can check. Each test
//! names the invariant it guards; a failure means the code drifted from the map, and either the
//! code or the map (with its reason) must change.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

/// Every `.rs` file under `dir`, with its text.
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("source");
                out.push((path, text));
            }
        }
    }
    assert!(!out.is_empty(), "no sources under {}", dir.display());
    out
}

/// The lines of `text` outside `#[cfg(test)]` modules (which sit at the end of a file).
fn production(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or(text)
}

fn offenders(dirs: &[&str], forbidden: &[&str]) -> Vec<String> {
    let root = workspace();
    let mut found = Vec::new();
    for dir in dirs {
        for (path, text) in sources(&root.join(dir)) {
            for (n, line) in production(&text).lines().enumerate() {
                if forbidden.iter().any(|f| line.contains(f)) && !line.trim_start().starts_with("//") {
                    found.push(format!("{}:{}: {}", path.strip_prefix(&root).unwrap().display(), n + 1, line.trim()));
                }
            }
        }
    }
    found
}

/// Invariant 2: only `toolsmith-store` contains SQL.
#[test]
fn only_the_store_speaks_sql() {
    let sql = ["sqlx::", "SELECT ", "INSERT INTO", "UPDATE ", "DELETE FROM", "CREATE TABLE"];
    let found = offenders(
        &["crates/domain/src", "crates/repo/src", "crates/runtime/src", "crates/builder/src", "crates/toolsmith/src"],
        &sql,
    );
    assert!(found.is_empty(), "SQL outside the store:\n{}", found.join("\n"));
    for krate in ["domain", "repo", "runtime", "builder", "toolsmith"] {
        let manifest = std::fs::read_to_string(workspace().join("crates").join(krate).join("Cargo.toml")).unwrap();
        assert!(!manifest.contains("sqlx"), "crates/{krate} depends on sqlx");
    }
}

/// Invariant 1: the use cases know nothing of HTTP; only `http` does.
#[test]
fn use_cases_know_no_http() {
    let found = offenders(&["crates/toolsmith/src/service"], &["axum", "crate::http", "StatusCode", "HeaderValue"]);
    assert!(found.is_empty(), "HTTP in the use-case layer:\n{}", found.join("\n"));
}

/// Invariant 1: every response body is a type of `http::wire`; routes build none with `json!`.
#[test]
fn routes_answer_with_wire_types() {
    let found = offenders(&["crates/toolsmith/src/http/routes"], &["Json(json!", "Json(serde_json::json!"]);
    assert!(found.is_empty(), "a body built inline:\n{}", found.join("\n"));
}

/// Invariant 7: routes call use cases, not the store. The exceptions are the probes, which check
/// the database itself, and the git protocol, whose pushes are attributed as they stream.
#[test]
fn routes_call_use_cases_not_the_store() {
    let root = workspace();
    let allowed = ["health.rs", "docs.rs", "git.rs"];
    let mut found = Vec::new();
    for (path, text) in sources(&root.join("crates/toolsmith/src/http/routes")) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !allowed.contains(&name.as_str()) && production(&text).contains(".store()") {
            found.push(name);
        }
    }
    assert!(found.is_empty(), "routes that reach into the store: {found:?}");
}

/// Invariant 8: git runs in `toolsmith-repo` only, on its hermetic configuration.
#[test]
fn only_the_repository_crate_runs_git() {
    let found = offenders(
        &["crates/toolsmith/src", "crates/builder/src", "crates/runtime/src", "crates/domain/src", "crates/store/src"],
        &["Command::new(\"git\")"],
    );
    assert!(found.is_empty(), "git run outside toolsmith-repo:\n{}", found.join("\n"));
}

/// Invariant 9: the domain is pure: no I/O, no async runtime, no database.
#[test]
fn the_domain_does_no_io() {
    let manifest = std::fs::read_to_string(workspace().join("crates/domain/Cargo.toml")).unwrap();
    for dependency in ["tokio", "sqlx", "reqwest", "axum"] {
        assert!(!manifest.contains(dependency), "the domain depends on {dependency}");
    }
    let found = offenders(&["crates/domain/src"], &["std::fs", "std::process", "std::net"]);
    assert!(found.is_empty(), "I/O in the domain:\n{}", found.join("\n"));
}

/// Invariant 5: no process-wide mutable state: caches live in the application's state, so that
/// two servers in one process (as the tests run them) never share one.
#[test]
fn no_process_wide_state() {
    let found = offenders(
        &["crates/toolsmith/src", "crates/builder/src", "crates/repo/src", "crates/store/src"],
        &["static CACHE", "OnceLock<Mutex", "lazy_static!", "static mut "],
    );
    assert!(found.is_empty(), "process-wide state:\n{}", found.join("\n"));
}
