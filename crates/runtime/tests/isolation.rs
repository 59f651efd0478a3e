//! The sandbox against the `intruder` sample tool at the runtime's level: who the code runs as,
//! what it can see of the kernel, of concurrent invocations and of its zygote, and that its
//! memory, processes and scratch space are bounded per invocation. (The same attacks run through
//! the HTTP API in the toolsmith crate's suite.)

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use toolsmith_runtime::{Identity, InvocationLimits, Pool, PoolConfig, RunOutcome, Secret, VersionRuntime};

fn base_prefix() -> PathBuf {
    let out = Command::new("python3").args(["-c", "import sys; print(sys.base_prefix)"]).output().unwrap();
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

struct Fixture {
    _dir: tempfile::TempDir,
    pool: Arc<Pool>,
    runtime: VersionRuntime,
}

fn fixture(limits: InvocationLimits, tmp_bytes: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let venv = dir.path().join("venv");
    assert!(Command::new("python3").args(["-m", "venv", "--without-pip"]).arg(&venv).status().unwrap().success());
    let config = PoolConfig { limits, tmp_bytes, ..PoolConfig::default() };
    let pool = Arc::new(Pool::new(config, &dir.path().join("runtime")).unwrap());
    let runtime = VersionRuntime {
        project: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/tools/intruder"),
        venv,
        base_prefix: base_prefix(),
        entrypoint: "intruder.tool:run".into(),
        takes_context: true,
        env: Secret::new(vec![("API_TOKEN".into(), "token-of-the-tool".into())]),
        identity: Identity { uid: 1_999_000_001, gid: 1_999_000_001 },
        secrets: Secret::new(vec!["token-of-the-tool".into()]),
    };
    Fixture { _dir: dir, pool, runtime }
}

async fn report(f: &Fixture, action: &str, context: Value) -> Value {
    let z = f.pool.zygote("intruder", &f.runtime).await.unwrap();
    match z.invoke(&json!({ "action": action }), &context).await {
        RunOutcome::Returned { output, .. } => serde_json::from_str(&output).unwrap(),
        other => panic!("{action}: {other:?}"),
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[tokio::test]
async fn the_code_runs_unprivileged_filtered_and_not_dumpable() {
    let f = fixture(InvocationLimits::default(), 64 << 20);
    let probe = report(&f, "probe", json!({})).await;
    if is_root() {
        assert_eq!(probe["uid"], 1_999_000_001, "{probe}");
        assert_eq!(probe["euid"], 1_999_000_001);
        assert_eq!(probe["groups"], json!([]));
    }
    assert_ne!(probe["uid"], 0);
    assert_eq!(probe["cap_eff"], "0000000000000000");
    assert_eq!(probe["cap_prm"], "0000000000000000");
    assert_eq!(probe["seccomp"], "2", "a seccomp filter applies");
    assert_eq!(probe["no_new_privs"], "1");
    assert_eq!(probe["dumpable"], 0);
    assert_eq!(probe["proc_sys_writable"], false);
    assert_eq!(probe["root_writable"], false);

    let sysctl = report(&f, "sysctl", json!({})).await;
    for (path, result) in sysctl.as_object().unwrap() {
        assert_ne!(result, "ok", "{path} took a write");
    }
    let syscalls = report(&f, "syscalls", json!({})).await;
    for (name, result) in syscalls.as_object().unwrap() {
        assert_eq!(result, "EPERM", "{name}: {result}");
    }
}

#[tokio::test]
async fn an_invocation_cannot_read_or_forge_a_concurrent_one() {
    let f = fixture(InvocationLimits::default(), 64 << 20);
    let marker = "sensitive-value-of-the-victim-7f3a";
    let victim_context = json!({
        "invocation_mode": "regular",
        "nonsensitive_user_variables": {},
        "sensitive_user_variables": {"password": marker},
    });
    let z = f.pool.zygote("intruder", &f.runtime).await.unwrap();
    let victim = {
        let z = z.clone();
        let context = victim_context.clone();
        tokio::spawn(async move { z.invoke(&json!({"action": "hold:2"}), &context).await })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stolen = report(&f, &format!("steal:{marker}"), json!({})).await;
    assert_eq!(stolen["found_anywhere"], false, "{stolen:#}");
    for (fd, result) in stolen["fds"].as_object().unwrap() {
        assert_ne!(result, "ok", "PID 1's descriptor {fd} was readable: {stolen:#}");
    }
    for (fd, result) in stolen["forged"].as_object().unwrap() {
        assert_ne!(result, "ok", "PID 1's descriptor {fd} took a forged answer: {stolen:#}");
    }
    assert_eq!(stolen["ptrace"], "EPERM");
    assert_eq!(stolen["process_vm_readv"], "EPERM");
    match victim.await.unwrap() {
        RunOutcome::Returned { output, .. } => {
            assert!(serde_json::from_str::<Value>(&output).unwrap()["held"].as_u64().unwrap() > 0)
        }
        other => panic!("the victim was disturbed: {other:?}"),
    }
    // After the victim ended, the zygote, whose memory every later child starts from, holds
    // no trace of its request or answer. Read from outside, as the server could.
    let later = report(&f, "probe", json!({})).await;
    assert_eq!(later["seccomp"], "2");
    if is_root() {
        let pid = z.sandbox_pid().expect("the zygote's pid");
        assert!(!memory_holds(pid, marker.as_bytes()), "the zygote kept the victim's sensitive value");
    }
}

/// Whether the readable memory of host process `pid` contains `needle`.
fn memory_holds(pid: u32, needle: &[u8]) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(span), Some(perms)) = (fields.next(), fields.next()) else { continue };
        let path = fields.nth(3).unwrap_or("");
        if !perms.starts_with('r') || path.starts_with('[') && path != "[heap]" && path != "[stack]" {
            continue;
        }
        let (start, end) = span.split_once('-').unwrap();
        let (start, end) = (u64::from_str_radix(start, 16).unwrap(), u64::from_str_radix(end, 16).unwrap());
        let mut region = vec![0u8; (end - start) as usize];
        if mem.seek(SeekFrom::Start(start)).is_err() || mem.read_exact(&mut region).is_err() {
            continue;
        }
        if region.windows(needle.len()).any(|w| w == needle) {
            return true;
        }
    }
    false
}

#[tokio::test]
async fn memory_processes_and_scratch_space_are_bounded_per_invocation() {
    let limits = InvocationLimits { memory_bytes: 256 << 20, processes: 24, ..InvocationLimits::default() };
    let f = fixture(limits, 32 << 20);
    // Four children of 120 MiB each stay under the per-process limit but not under the
    // invocation's.
    let memory = report(&f, "memory:4:120", json!({})).await;
    let killed = memory["children"].as_array().unwrap().iter().filter(|s| *s == "killed").count();
    assert!(killed >= 1, "the invocation held more than its memory: {memory}");
    let processes = report(&f, "processes:200", json!({})).await;
    assert!(processes["started"].as_u64().unwrap() < 24, "{processes}");
    assert_eq!(processes["error"], "EAGAIN");
    for dir in ["/tmp", "/dev/shm"] {
        let fill = report(&f, &format!("fill:{dir}:64"), json!({})).await;
        assert_eq!(fill["error"], "ENOSPC", "{dir}: {fill}");
        assert!(fill["written_mib"].as_u64().unwrap() <= 32);
    }
    assert_eq!(report(&f, "leave:/dev/shm/left", json!({})).await["left"], "ok");
    assert_eq!(report(&f, "find:/dev/shm/left", json!({})).await["exists"], false);
    assert_eq!(report(&f, "leave:/dev/left", json!({})).await["left"], "EROFS");
    // The zygote lived through all of it.
    assert_eq!(report(&f, "probe", json!({})).await["seccomp"], "2");
}

#[tokio::test]
async fn a_stopped_runtime_takes_all_its_processes_with_it() {
    let f = fixture(InvocationLimits::default(), 64 << 20);
    let z = f.pool.zygote("intruder", &f.runtime).await.unwrap();
    assert_eq!(report(&f, "processes:3", json!({})).await["started"], 3);
    let pid = z.sandbox_pid().expect("the zygote's pid");
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    f.pool.evict(&["intruder".to_owned()]);
    drop(z);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    // Gone, or a zombie waiting for whoever inherited it to reap it.
    let alive = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()) != Some("Z"))
            .unwrap_or(false)
    };
    while alive(pid) {
        assert!(std::time::Instant::now() < deadline, "the zygote {pid} outlived its sandbox");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
