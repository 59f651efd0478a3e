//! The sandbox against the real bubblewrap: what code inside can and cannot see and do.

use std::time::Duration;

use toolsmith_runtime::{Limits, Mount, Sandbox};

fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

fn quick() -> Limits {
    Limits { timeout: Duration::from_secs(10), ..Limits::default() }
}

#[tokio::test]
async fn sees_its_mounts_and_private_tmp_but_nothing_of_the_host() {
    let project = tempfile::tempdir().unwrap();
    std::fs::write(project.path().join("tool.py"), "print('hi')").unwrap();
    let secret = tempfile::tempdir().unwrap();
    std::fs::write(secret.path().join("key"), "do-not-read").unwrap();
    let outcome = Sandbox::new()
        .mount(Mount::read_only_at(project.path(), "/project"))
        .limits(quick())
        .run(&sh(&format!(
            "cat /project/tool.py; echo; echo x > /tmp/w && cat /tmp/w; cat /etc/resolv.conf /etc/hosts /etc/passwd > /dev/null && echo ETC; \
             cat {}/key 2>/dev/null && echo LEAK; ls /work 2>/dev/null && echo LEAK; ls /root 2>/dev/null && echo LEAK; \
             echo y > /project/new 2>/dev/null && echo LEAK; echo y > /usr/new 2>/dev/null && echo LEAK; true",
            secret.path().display()
        )))
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&outcome.stdout);
    assert!(outcome.success(), "{}", outcome.tail(2000));
    assert!(out.contains("print('hi')"), "{out}");
    assert!(out.contains("x\n"), "/tmp is writable: {out}");
    assert!(out.contains("ETC"), "the visible /etc files are readable: {}", outcome.tail(2000));
    assert!(!out.contains("LEAK"), "{out}");
    assert!(!project.path().join("new").exists());
}

#[tokio::test]
async fn the_servers_environment_does_not_reach_the_sandbox() {
    // bubblewrap is PID 1 inside, and /proc/1/environ is readable there.
    std::env::set_var("TOOLSMITH_TEST_MARKER", "server-only-value-9931");
    let outcome = Sandbox::new()
        .env("VISIBLE", "yes")
        .limits(quick())
        .run(&sh("cat /proc/1/environ | tr '\\0' '\\n'; echo ---; env"))
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&outcome.stdout);
    assert!(!out.contains("server-only-value-9931"), "{out}");
    assert!(out.contains("VISIBLE=yes"));
}

#[tokio::test]
async fn network_is_off_unless_allowed() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let probe = format!("/usr/bin/python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2); print('CONNECTED')\"");
    let closed = Sandbox::new().limits(quick()).run(&sh(&probe)).await.unwrap();
    assert!(!String::from_utf8_lossy(&closed.stdout).contains("CONNECTED"));
    let open = Sandbox::new().network(toolsmith_runtime::Network::Host).limits(quick()).run(&sh(&probe)).await.unwrap();
    assert!(String::from_utf8_lossy(&open.stdout).contains("CONNECTED"), "{}", open.tail(2000));
}

fn processes_with(needle: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).contains(needle))
        .count()
}

#[tokio::test]
async fn the_timeout_kills_the_whole_process_tree() {
    let limits = Limits { timeout: Duration::from_millis(500), ..Limits::default() };
    let outcome = Sandbox::new().limits(limits).run(&sh("sleep 97.31 & sleep 97.31 & sleep 97.31")).await.unwrap();
    assert!(outcome.timed_out);
    assert!(!outcome.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(processes_with("97.31"), 0, "background children died with the sandbox");
}

#[tokio::test]
async fn output_memory_and_file_size_are_capped() {
    let limits = Limits { output_bytes: 1000, memory_bytes: 256 << 20, file_size_bytes: 1 << 20, ..quick() };
    let flood = Sandbox::new().limits(limits).run(&sh("head -c 50000000 /dev/zero")).await.unwrap();
    assert_eq!(flood.stdout.len(), 1000);
    assert!(flood.truncated);

    let big_file = Sandbox::new().limits(limits).run(&sh("head -c 5000000 /dev/zero > /tmp/big")).await.unwrap();
    assert!(!big_file.success(), "a file over the limit cannot be written");

    let hog = Sandbox::new()
        .limits(limits)
        .run(&["/usr/bin/python3", "-c", "x = bytearray(1024 * 1024 * 1024); print('ALLOCATED')"])
        .await
        .unwrap();
    assert!(!hog.success());
    assert!(String::from_utf8_lossy(&hog.stderr).contains("MemoryError"), "{}", hog.tail(2000));
}
