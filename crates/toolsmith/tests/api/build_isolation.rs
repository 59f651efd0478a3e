//! The build side of multi-tenant isolation, through the API: one organization's build cannot
//! change what another's tools run, a tool's tree is read as data, a test suite that forks
//! without end is stopped, and a build whose server died does not stay "running".

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::both_backends;
use crate::repo::{git, url};
use crate::support::{org, Backend, Resp, TestApp, User};

/// A working copy of `org`'s repository in `work`.
async fn checkout(app: &TestApp, org: &str, user: &User, work: &Path) -> PathBuf {
    let dir = work.join(org);
    let r = git(work, &["clone", "--quiet", &url(app, org, org, user), dir.to_str().unwrap()]).await;
    assert!(r.ok, "{}", r.stderr);
    dir
}

/// Writes `files` into the working copy, then commits and pushes everything to `main`.
async fn push_files(dir: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    push(dir).await;
}

async fn push(dir: &Path) {
    assert!(git(dir, &["add", "-A"]).await.ok);
    let c = git(dir, &["commit", "--quiet", "-m", "change"]).await;
    assert!(c.ok, "{}", c.stderr);
    let p = git(dir, &["push", "--quiet", "origin", "main"]).await;
    assert!(p.ok, "{}", p.stderr);
}

async fn create_tool(app: &TestApp, org: &str, user: &User, name: &str) -> String {
    let r = app
        .request(Method::POST, &format!("/v1/{org}/tool/"), &user.token)
        .op("create-tool")
        .json(&json!({"name": name, "description": format!("The {name} tool."), "tags": {}}))
        .send()
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["id"].as_str().unwrap().to_owned()
}

async fn publish(app: &TestApp, org: &str, user: &User, tool: &str, project: &str) -> Resp {
    app.request(Method::POST, &format!("/v1/{org}/tool/{tool}/version"), &user.token)
        .op("publish-tool-version")
        .json(&json!({"project_path": project, "bump_type": "major"}))
        .send()
        .await
}

async fn test_endpoint(app: &TestApp, project: &str) -> Resp {
    app.request(Method::POST, "/v1/acme/tool/test", &app.admin.token)
        .op("test-tool")
        .json(&json!({
            "inputs": [{"input_parameters": {}, "invocation_mode": "regular"}],
            "commit_branch": "main",
            "project_path": project,
            "required_envvars": {},
            "required_secret_envvars": {},
        }))
        .send()
        .await
}

/// The output of a tool's single invocation without parameters.
async fn invoke(app: &TestApp, org: &str, user: &User, tool: &str) -> Value {
    let r = app
        .request(Method::POST, &format!("/v1/{org}/tool/{tool}/version/1.0.0/invoke"), &user.token)
        .op("invoke-tool-version")
        .json(&json!({"inputs": [{
            "input_parameters": {},
            "invocation_mode": "regular",
            "nonsensitive_user_variables": {},
            "sensitive_user_variables": {},
        }]}))
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let result = &r.body["invocation_results"][0];
    assert_eq!(result["succeeded"], true, "{result}");
    result["output"].clone()
}

async fn build_record(app: &TestApp, build: &str) -> Value {
    let r = app.request(Method::GET, &format!("/v1/acme/tool/build/{build}"), &app.admin.token).send().await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

/// A build answer's message without the build's own id.
fn without_build_id(detail: &str) -> String {
    detail.split(" (build log:").next().unwrap_or_default().to_owned()
}

/// A path dependency whose build backend (in its own tree, `backend-path = ["."]`) waits for
/// the wheel of `six` to appear in the uv cache it is given, appends to its `six.py` and
/// reports which files it rewrote in the wheel it builds.
const ATTACK_BACKEND: &str = r#"
import os, time, zipfile

def _rewrite_cached_six():
    rewritten = []
    cache = os.environ.get("UV_CACHE_DIR", "/")
    deadline = time.time() + 60
    while not rewritten and time.time() < deadline:
        for root, _dirs, files in os.walk(cache):
            if "six.py" in files:
                path = os.path.join(root, "six.py")
                try:
                    with open(path, "a") as f:
                        f.write("\nPOISONED = True\n")
                    rewritten.append(path)
                except OSError as e:
                    rewritten.append("could not rewrite %s: %s" % (path, e))
        time.sleep(0.2)
    return rewritten

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    rewritten = _rewrite_cached_six()
    name = "evil-1.0-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as z:
        z.writestr("evil/__init__.py", "REWRITTEN = %r\n" % (rewritten,))
        z.writestr("evil-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n")
        z.writestr("evil-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("evil-1.0.dist-info/RECORD", "")
    return name
"#;

both_backends!(
    a_build_backend_rewriting_cached_wheels_cannot_reach_another_organization,
    |backend: Backend| async move {
        let app = TestApp::spawn(backend).await;
        let work = tempfile::tempdir().unwrap();

        // The attacker publishes first: its dependency's backend rewrites every cached `six` it sees.
        let attacker = checkout(&app, "acme", &app.admin, work.path()).await;
        push_files(
            &attacker,
            &[
                (
                    "attack/pyproject.toml",
                    "[project]\nname = \"attack\"\nversion = \"0.1.0\"\nrequires-python = \">=3.11\"\n\
                 dependencies = [\"six\", \"evil\"]\n[tool.uv.sources]\nevil = { path = \"evil\" }\n\
                 [tool.toolsmith]\nentrypoint = \"attack.tool:run\"\n",
                ),
                ("attack/attack/__init__.py", ""),
                (
                    "attack/attack/tool.py",
                    "import json\n\nimport evil\nimport six\n\n\ndef run() -> str:\n    \
                 return json.dumps({\"poisoned\": getattr(six, \"POISONED\", False), \"rewritten\": evil.REWRITTEN})\n",
                ),
                (
                    "attack/evil/pyproject.toml",
                    "[build-system]\nrequires = []\nbuild-backend = \"backend\"\nbackend-path = [\".\"]\n\
                 [project]\nname = \"evil\"\nversion = \"1.0\"\n",
                ),
                ("attack/evil/backend.py", ATTACK_BACKEND),
            ],
        )
        .await;
        let attack = create_tool(&app, "acme", &app.admin, "attack").await;
        let r = publish(&app, "acme", &app.admin, &attack, "attack").await;
        assert_eq!(r.status, 201, "{}", r.text);
        let seen: Value =
            serde_json::from_str(invoke(&app, "acme", &app.admin, &attack).await.as_str().unwrap()).unwrap();
        let rewritten = seen["rewritten"].as_array().unwrap();
        // The attack is real: the backend found a cached `six` and rewrote it, which shows in the
        // attacker's own environment (built from the cache its backend could write).
        assert!(!rewritten.is_empty() && !rewritten[0].as_str().unwrap().starts_with("could not"), "{seen}");
        assert_eq!(seen["poisoned"], true, "{seen}");

        // Another organization's tool importing `six` runs the genuine module.
        let beta = app.other_org("beta").await;
        let victim = checkout(&app, "beta", &beta, work.path()).await;
        push_files(
            &victim,
            &[
                (
                    "victim/pyproject.toml",
                    "[project]\nname = \"victim\"\nversion = \"0.1.0\"\nrequires-python = \">=3.11\"\n\
                 dependencies = [\"six\"]\n[tool.toolsmith]\nentrypoint = \"victim.tool:run\"\n",
                ),
                ("victim/victim/__init__.py", ""),
                (
                    "victim/victim/tool.py",
                    "import six\n\n\ndef run() -> str:\n    \
                 return \"poisoned\" if getattr(six, \"POISONED\", False) else \"six \" + six.__version__\n",
                ),
            ],
        )
        .await;
        let tool = create_tool(&app, "beta", &beta, "victim").await;
        let r = publish(&app, "beta", &beta, &tool, "victim").await;
        assert_eq!(r.status, 201, "{}", r.text);
        let output = invoke(&app, "beta", &beta, &tool).await;
        assert!(output.as_str().unwrap().starts_with("six 1."), "the other organization's tool changed: {output}");

        // The attacker's later builds do not find its poisoned wheel either: its backend ran with a
        // cache of that build's own.
        push_files(&attacker, &[("plain/pyproject.toml", "[project]\nname = \"plain\"\nversion = \"0.1.0\"\nrequires-python = \">=3.10\"\ndependencies = [\"six\"]\n[tool.toolsmith]\nentrypoint = \"plain.tool:run\"\n"), ("plain/plain/__init__.py", ""), ("plain/plain/tool.py", "import six\n\n\ndef run() -> str:\n    return \"poisoned\" if getattr(six, \"POISONED\", False) else \"genuine\"\n")]).await;
        let plain = create_tool(&app, "acme", &app.admin, "plain").await;
        let r = publish(&app, "acme", &app.admin, &plain, "plain").await;
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(invoke(&app, "acme", &app.admin, &plain).await, "genuine");
    }
);

both_backends!(linked_project_files_are_refused_alike_whatever_they_point_at, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let work = tempfile::tempdir().unwrap();
    let dir = checkout(&app, "acme", &app.admin, work.path()).await;
    // A file only the server may read, and a path where nothing is.
    let secret = app.dir.path().join("server-secret.key");
    std::fs::write(&secret, "not for tools").unwrap();
    let absent = app.dir.path().join("no-such-file.key");
    let contract = "[project]\nname = \"p\"\nversion = \"0.1.0\"\nrequires-python = \">=3.11\"\ndependencies = []\n\
                    [tool.toolsmith]\nentrypoint = \"p.tool:run\"\n";
    for (project, target) in
        [("present", secret.as_path()), ("absent", absent.as_path()), ("zero", Path::new("/dev/zero"))]
    {
        std::fs::create_dir_all(dir.join(project)).unwrap();
        std::os::unix::fs::symlink(target, dir.join(project).join("pyproject.toml")).unwrap();
    }
    std::fs::create_dir_all(dir.join("lock")).unwrap();
    std::fs::write(dir.join("lock/pyproject.toml"), contract).unwrap();
    std::os::unix::fs::symlink(&secret, dir.join("lock/uv.lock")).unwrap();
    push(&dir).await;
    let tool = app.create_tool("linked").await;

    let before = resident_bytes();
    let started = Instant::now();
    let mut answers = Vec::new();
    for project in ["present", "absent", "zero"] {
        for r in [publish(&app, "acme", &app.admin, &tool, project).await, test_endpoint(&app, project).await] {
            assert_eq!(r.status, 400, "{project}: {}", r.text);
            assert!(r.detail().contains("pyproject.toml is a symbolic link"), "{project}: {}", r.text);
            answers.push(without_build_id(r.detail()));
        }
    }
    assert!(answers.iter().all(|a| *a == answers[0]), "one answer whether the target exists or not: {answers:#?}");
    assert!(started.elapsed() < Duration::from_secs(30), "nothing was read from /dev/zero");
    let grown = resident_bytes().saturating_sub(before);
    assert!(grown < 256 << 20, "the server grew by {} MiB", grown >> 20);
    for r in [publish(&app, "acme", &app.admin, &tool, "lock").await, test_endpoint(&app, "lock").await] {
        assert_eq!(r.status, 400, "{}", r.text);
        assert!(r.detail().contains("uv.lock is a symbolic link"), "{}", r.text);
        assert!(!r.text.contains("not for tools"));
    }
});

/// The resident memory of this process, which hosts the server under test.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib << 10
}

/// Runs git with `input` on its standard input and returns its trimmed output.
async fn git_with_input(dir: &Path, args: &[&str], input: &str) -> String {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).await.unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "git {args:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

both_backends!(trees_with_dot_dot_or_git_entries_are_refused_at_publish_and_test, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let work = tempfile::tempdir().unwrap();
    let dir = checkout(&app, "acme", &app.admin, work.path()).await;
    // Trees `git add` would never make, written with git's plumbing and pushed as they are.
    let contract = "[project]\nname = \"p\"\nversion = \"0.1.0\"\nrequires-python = \">=3.11\"\ndependencies = []\n\
                    [tool.toolsmith]\nentrypoint = \"p.tool:run\"\n";
    let pyproject = git_with_input(&dir, &["hash-object", "-w", "--stdin"], contract).await;
    let hook =
        git_with_input(&dir, &["hash-object", "-w", "--stdin"], "[core]\n\tfsmonitor = touch /tmp/pwned\n").await;
    let inner = git_with_input(&dir, &["mktree"], &format!("100644 blob {hook}\tconfig\n")).await;
    let mut top = git(&dir, &["ls-tree", "HEAD"]).await.stdout;
    for name in ["..", ".git", ".Git"] {
        let project = git_with_input(
            &dir,
            &["mktree"],
            &format!("100644 blob {pyproject}\tpyproject.toml\n040000 tree {inner}\t{name}\n"),
        )
        .await;
        let dirname = match name {
            ".." => "dotdot",
            ".git" => "dotgit",
            _ => "dotgit_mixed_case",
        };
        top.push_str(&format!("040000 tree {project}\t{dirname}\n"));
    }
    let tree = git_with_input(&dir, &["mktree"], &top).await;
    let commit = git(&dir, &["commit-tree", &tree, "-p", "HEAD", "-m", "crafted"]).await.stdout.trim().to_owned();
    assert!(git(&dir, &["update-ref", "refs/heads/main", &commit]).await.ok);
    let pushed = git(&dir, &["push", "--quiet", "origin", "main"]).await;
    assert!(pushed.ok, "{}", pushed.stderr);
    let tool = app.create_tool("crafted").await;
    for (project, entry) in [("dotdot", "\"..\""), ("dotgit", "\".git\""), ("dotgit_mixed_case", "\".Git\"")] {
        let published = publish(&app, "acme", &app.admin, &tool, project).await;
        let tested = test_endpoint(&app, project).await;
        for r in [published, tested] {
            assert_eq!(r.status, 400, "{project}: {}", r.text);
            assert!(r.detail().starts_with("Tool build has failed:"), "{}", r.text);
            assert!(r.detail().contains(&format!("entry named {entry}")), "{project}: {}", r.text);
            let build = r.header("x-toolsmith-build-id").unwrap().to_owned();
            assert_eq!(build_record(&app, &build).await["state"], "failed");
        }
    }
});

/// Host processes whose command line is exactly `argv`.
fn processes_running(argv: &[&str]) -> usize {
    let wanted: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()))
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == wanted))
        .count()
}

both_backends!(
    a_test_suite_starting_hundreds_of_processes_is_stopped_by_the_process_limit,
    |backend: Backend| async move {
        let app = TestApp::spawn(backend).await;
        // What the test's processes run, distinct per backend (both run at once in this process).
        let sentinel = if backend == Backend::Sqlite { "6061" } else { "6062" };
        let work = tempfile::tempdir().unwrap();
        let dir = checkout(&app, "acme", &app.admin, work.path()).await;
        push_files(
        &dir,
        &[
            (
                "bomb/pyproject.toml",
                "[project]\nname = \"bomb\"\nversion = \"0.1.0\"\nrequires-python = \">=3.11\"\ndependencies = []\n\
                 [dependency-groups]\ndev = [\"pytest>=8\"]\n[tool.toolsmith]\nentrypoint = \"bomb.tool:run\"\n\
                 [tool.pytest.ini_options]\npythonpath = [\".\"]\n",
            ),
            ("bomb/bomb/__init__.py", ""),
            ("bomb/bomb/tool.py", "def run() -> str:\n    return 'ok'\n"),
            // 300 processes, left running: the limit must stop the test, and the end of the
            // build must take whatever it started.
            (
                "bomb/tests/test_bomb.py",
                &format!(
                    "import subprocess\n\n\ndef test_three_hundred_processes():\n    \
                     children = [subprocess.Popen([\"sleep\", \"{sentinel}\"]) for _ in range(300)]\n    \
                     assert len(children) == 300\n"
                ),
            ),
        ],
    )
    .await;
        let tool = app.create_tool("bomb").await;
        let started = Instant::now();
        let r = publish(&app, "acme", &app.admin, &tool, "bomb").await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert!(r.detail().starts_with("The tool build has failed CI checks:"), "{}", r.text);
        assert!(
            r.detail().contains("Resource temporarily unavailable") || r.detail().contains("BlockingIOError"),
            "the process limit stopped the test: {}",
            r.text
        );
        assert!(started.elapsed() < Duration::from_secs(240), "it failed fast, not at the step's timeout");
        // The end of the sandbox's PID namespace takes every process in it (with a cgroup, before
        // the step ends; without, a moment later).
        let deadline = Instant::now() + Duration::from_secs(10);
        while processes_running(&["sleep", sentinel]) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(processes_running(&["sleep", sentinel]), 0, "nothing the tests started outlived the build");
        // The server goes on serving.
        let r = app.request(Method::GET, "/v1/acme/tool/", &app.admin.token).op("get-tools").send().await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
);

both_backends!(a_build_whose_server_died_is_failed_once_its_lease_runs_out, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let tool = app.create_tool("orphan").await;
    let (url, keyring, tool_id, user) = (
        app.database_url.clone(),
        app.keyring.clone(),
        tool.clone(),
        toolsmith_store::UserRef { org_id: org("acme"), user_id: app.admin.id.parse().unwrap() },
    );
    // A server process takes the tool's lock with a one-second lease, starts publishing and
    // dies: its runtime (with the lease's renewal) is torn down and nothing is released.
    let orphan = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let build = rt.block_on(async {
            let store = toolsmith_store::Store::open(&url, keyring).await.unwrap();
            let lock = store
                .lock_tool(&org("acme"), &tool_id.parse().unwrap(), "publish", Duration::from_secs(1))
                .await
                .unwrap()
                .expect("free");
            let build =
                store.start_build(&org("acme"), Some(&tool_id.parse().unwrap()), "publish", &user).await.unwrap();
            std::mem::forget(lock);
            build
        });
        rt.shutdown_background();
        build
    })
    .join()
    .unwrap();
    assert_eq!(build_record(&app, orphan.as_str()).await["state"], "running");
    let r = publish(&app, "acme", &app.admin, &tool, "hello_world").await;
    assert_eq!((r.status, r.detail()), (409, "A related operation is in progress."), "the lease still runs");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // The next publish takes the lock over, and with it the dead holder's build is failed.
    let r = publish(&app, "acme", &app.admin, &tool, "hello_world").await;
    assert_eq!(r.status, 201, "{}", r.text);
    let record = build_record(&app, orphan.as_str()).await;
    assert_eq!(record["state"], "failed", "{record}");
    assert!(record["message"].as_str().unwrap().contains("interrupted"), "{record}");
    assert!(record["finished_at"].is_string());
    let own = r.header("x-toolsmith-build-id").unwrap().to_owned();
    assert_eq!(build_record(&app, &own).await["state"], "succeeded");
});
