//! Zygotes with real sample tools: fresh state per invocation, env delivery, failures, limits,
//! and hostile tools contained. The sample projects need no dependencies, so a bare virtualenv
//! serves as their environment.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use toolsmith_runtime::{InvocationLimits, Pool, PoolConfig, RunOutcome, Secret, VersionRuntime};

fn base_prefix() -> PathBuf {
    let out = Command::new("python3").args(["-c", "import sys; print(sys.base_prefix)"]).output().unwrap();
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/tools").join(name)
}

struct Fixture {
    _dir: tempfile::TempDir,
    venv: PathBuf,
    pool: Arc<Pool>,
}

fn fixture(limits: InvocationLimits, network: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let venv = dir.path().join("venv");
    let made = Command::new("python3").args(["-m", "venv", "--without-pip"]).arg(&venv).status().unwrap();
    assert!(made.success());
    let network = if network { toolsmith_runtime::Network::Host } else { toolsmith_runtime::Network::Off };
    let config = PoolConfig { limits, network, ..PoolConfig::default() };
    let pool = Arc::new(Pool::new(config, &dir.path().join("runtime")).unwrap());
    Fixture { venv, pool, _dir: dir }
}

fn runtime(f: &Fixture, tool: &str, entrypoint: &str, env: &[(&str, &str)]) -> VersionRuntime {
    VersionRuntime {
        identity: toolsmith_runtime::Identity::NOBODY,
        secrets: Secret::default(),
        project: sample(tool),
        venv: f.venv.clone(),
        base_prefix: base_prefix(),
        entrypoint: entrypoint.to_owned(),
        takes_context: tool == "context_echo",
        env: Secret::new(env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
    }
}

fn returned(outcome: &RunOutcome) -> &str {
    match outcome {
        RunOutcome::Returned { output, .. } => output,
        other => panic!("expected a result, got {other:?}"),
    }
}

#[tokio::test]
async fn every_invocation_starts_from_the_imported_state() {
    let f = fixture(InvocationLimits::default(), false);
    let rt = runtime(&f, "counter", "counter.tool:run", &[]);
    let z = f.pool.zygote("counter", &rt).await.unwrap();
    for _ in 0..5 {
        assert_eq!(returned(&z.invoke(&json!({}), &json!({})).await), "1");
    }
    // Concurrent invocations each get their own child too.
    let runs = (0..8).map(|_| {
        let z = z.clone();
        async move { z.invoke(&json!({}), &json!({})).await }
    });
    for outcome in futures_join(runs).await {
        assert_eq!(returned(&outcome), "1");
    }
}

async fn futures_join<F: std::future::Future<Output = RunOutcome> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<RunOutcome> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn env_vars_reach_the_tool_and_a_changed_environment_replaces_the_zygote() {
    let f = fixture(InvocationLimits::default(), false);
    let rt = runtime(&f, "hostile", "hostile.tool:run", &[("API_TOKEN", "first-token-value")]);
    let z = f.pool.zygote("hostile", &rt).await.unwrap();
    assert_eq!(returned(&z.invoke(&json!({"action": "secret"}), &json!({})).await), "first-token-value");
    let environ = z.invoke(&json!({"action": "environ"}), &json!({})).await;
    assert!(!returned(&environ).contains("CARGO"), "the server's environment leaked: {environ:?}");

    let rt2 = runtime(&f, "hostile", "hostile.tool:run", &[("API_TOKEN", "second-token-value")]);
    let z2 = f.pool.zygote("hostile", &rt2).await.unwrap();
    assert!(!Arc::ptr_eq(&z, &z2));
    // The pool let go of the stale zygote: once its last user does too, it is gone.
    let stale = Arc::downgrade(&z);
    drop(z);
    assert!(stale.upgrade().is_none(), "the stale zygote is stopped");
    assert_eq!(returned(&z2.invoke(&json!({"action": "secret"}), &json!({})).await), "second-token-value");
}

#[tokio::test]
async fn exceptions_come_back_with_type_message_and_trace_and_context_arrives() {
    let f = fixture(InvocationLimits::default(), false);
    let z = f.pool.zygote("raises", &runtime(&f, "raises", "raises.tool:run", &[])).await.unwrap();
    match z.invoke(&json!({"reason": "bad day"}), &json!({})).await {
        RunOutcome::Raised { exception_type, message, trace, .. } => {
            assert_eq!(exception_type, "ValueError");
            assert_eq!(message, "this tool always fails: bad day");
            assert!(trace.iter().any(|l| l.contains("raises/tool.py")), "{trace:?}");
            assert!(!trace.iter().any(|l| l.contains("toolsmith_harness")), "{trace:?}");
        }
        other => panic!("{other:?}"),
    }
    let z = f.pool.zygote("echo", &runtime(&f, "context_echo", "context_echo.tool:run", &[])).await.unwrap();
    let context = json!({"invocation_mode": "regular", "nonsensitive_user_variables": {"locale": "en"}, "sensitive_user_variables": {}});
    let out = z.invoke(&json!({"note": "hi"}), &context).await;
    let out: serde_json::Value = serde_json::from_str(returned(&out)).unwrap();
    assert_eq!(out["context"], context);
}

#[tokio::test]
async fn hostile_tools_are_contained() {
    let limits = InvocationLimits {
        memory_bytes: 256 << 20,
        cpu_secs: 5,
        timeout: Duration::from_secs(3),
        output_bytes: 64 << 10,
        processes: 32,
        ..InvocationLimits::default()
    };
    let f = fixture(limits, false);
    let rt = runtime(&f, "hostile", "hostile.tool:run", &[("API_TOKEN", "tok-123456")]);
    let z = f.pool.zygote("hostile", &rt).await.unwrap();
    let run = |action: &str| {
        let z = z.clone();
        let input = json!({"action": action});
        async move { z.invoke(&input, &json!({})).await }
    };

    // Files outside the tool are not there; the tool's own are read-only.
    let data_dir = f._dir.path().to_string_lossy().into_owned();
    let repo_file = sample("hostile").join("pyproject.toml").to_string_lossy().into_owned();
    for path in [data_dir.as_str(), "/root/.bashrc", "/etc/shadow", repo_file.as_str()] {
        match run(&format!("read:{path}")).await {
            RunOutcome::Raised { exception_type, .. } => assert!(
                exception_type == "FileNotFoundError" || exception_type == "PermissionError",
                "{path}: {exception_type}"
            ),
            other => panic!("{path} was readable: {other:?}"),
        }
    }
    let environ = run("read:/proc/1/environ").await;
    if let RunOutcome::Returned { output, .. } = &environ {
        assert!(!output.contains("CARGO"), "{output}");
    }
    for path in ["/project/written", "/usr/written", "/env/written"] {
        assert!(matches!(run(&format!("write:{path}")).await, RunOutcome::Raised { .. }), "{path} was writable");
    }

    let started = Instant::now();
    assert!(
        matches!(run("allocate").await, RunOutcome::Raised { ref exception_type, .. } if exception_type == "MemoryError")
    );
    assert!(matches!(run("spin").await, RunOutcome::TimedOut { .. } | RunOutcome::Crashed { .. }));
    match run("fork").await {
        RunOutcome::Returned { output, .. } => assert!(output.starts_with("fork failed after"), "{output}"),
        other => panic!("{other:?}"),
    }
    // Printing runs into the file size limit (an OSError in the tool); what is kept is capped.
    match run("flood").await {
        RunOutcome::Raised { exception_type, logs, .. } => {
            assert_eq!(exception_type, "OSError");
            assert!(logs.starts_with("xxxx") && logs.len() < 80 << 10, "{} bytes kept", logs.len());
        }
        RunOutcome::TimedOut { .. } => {}
        other => panic!("{:?}", std::mem::discriminant(&other)),
    }
    match run("kill_parent").await {
        RunOutcome::Returned { .. } | RunOutcome::Raised { .. } => {}
        other => panic!("{other:?}"),
    }
    assert!(z.is_alive(), "the zygote survived its children");
    assert!(started.elapsed() < Duration::from_secs(30));

    // After all that, the zygote still answers promptly and no process was left behind.
    assert_eq!(returned(&run("secret").await), "tok-123456");
    let listing = run("read:/proc").await;
    let pids = returned(&listing).lines().filter(|l| l.chars().all(|c| c.is_ascii_digit())).count();
    assert!(pids <= 4, "leftover processes: {}", returned(&listing));

    // With egress off, nothing is reachable.
    assert!(matches!(run("connect:127.0.0.1:5432").await, RunOutcome::Raised { .. }));
}

#[tokio::test]
async fn a_file_written_to_tmp_does_not_reach_the_next_invocation() {
    let f = fixture(InvocationLimits::default(), false);
    let z = f.pool.zygote("hostile", &runtime(&f, "hostile", "hostile.tool:run", &[("API_TOKEN", "x")])).await.unwrap();
    assert!(matches!(
        z.invoke(&json!({"action": "write:/tmp/left-behind"}), &json!({})).await,
        RunOutcome::Returned { .. }
    ));
    assert!(matches!(
        z.invoke(&json!({"action": "read:/tmp/left-behind"}), &json!({})).await,
        RunOutcome::Raised { .. }
    ));
    // Each invocation's own scratch directory ($TMPDIR) exists and is writable, every time,
    // and is gone afterwards.
    let mut seen = Vec::new();
    for _ in 0..3 {
        let environ = z.invoke(&json!({"action": "environ"}), &json!({})).await;
        let tmpdir = returned(&environ).lines().find_map(|l| l.strip_prefix("TMPDIR=")).unwrap().to_owned();
        assert!(!seen.contains(&tmpdir), "a fresh scratch directory per invocation");
        let wrote = z.invoke(&json!({"action": format!("write:{tmpdir}/x")}), &json!({})).await;
        assert!(matches!(wrote, RunOutcome::Raised { .. }), "{tmpdir} outlived its invocation: {wrote:?}");
        seen.push(tmpdir);
    }
    let listed = z.invoke(&json!({"action": "read:/tmp"}), &json!({})).await;
    // Only scratch directories: the running invocation's, and perhaps the next one's, prepared.
    let names: Vec<&str> = returned(&listed).lines().collect();
    assert!(names.len() <= 2 && names.iter().all(|n| n.starts_with("invocation-")), "{names:?}");
}

#[tokio::test]
async fn idle_zygotes_are_stopped_and_busy_pools_refuse_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let venv = dir.path().join("venv");
    assert!(Command::new("python3").args(["-m", "venv", "--without-pip"]).arg(&venv).status().unwrap().success());
    let config = PoolConfig { idle_timeout: Duration::from_millis(300), max_concurrent: 2, ..PoolConfig::default() };
    let pool = Arc::new(Pool::new(config, &dir.path().join("runtime")).unwrap());
    pool.spawn_evictor();
    let f = Fixture { venv, pool: pool.clone(), _dir: dir };
    let z = pool.zygote("counter", &runtime(&f, "counter", "counter.tool:run", &[])).await.unwrap();
    assert_eq!(pool.running(), 1);
    let held = pool.try_permits(2).unwrap();
    assert!(pool.try_permits(1).is_err(), "a third invocation is refused, not queued");
    drop(held);
    assert!(pool.try_permits(1).is_ok());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(pool.running(), 0, "the idle zygote was stopped");
    let idle = Arc::downgrade(&z);
    drop(z);
    assert!(idle.upgrade().is_none(), "nothing but this test held the idle zygote");
    // The next use starts a new one.
    let z = pool.zygote("counter", &runtime(&f, "counter", "counter.tool:run", &[])).await.unwrap();
    assert_eq!(returned(&z.invoke(&json!({}), &json!({})).await), "1");
}
