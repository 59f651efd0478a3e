//! The binary as a newcomer meets it: first start prints a sign-in command that works as pasted,
//! and `toolsmith admin` manages organizations, users, grants and keys.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_toolsmith");

/// A running server; the reader of its stdout stays open as long as the server runs.
struct Running {
    child: Child,
    _stdout: Option<BufReader<std::process::ChildStdout>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `toolsmith serve` and returns it with everything it printed up to the sign-in command.
fn serve(data: &std::path::Path, port: u16) -> (Running, String) {
    let child = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    welcome(child)
}

/// Reads what a first start prints, up to the sign-in command, and keeps the server's stdout open.
fn welcome(mut child: Child) -> (Running, String) {
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut out = String::new();
    while !out.contains("x-user-id") {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => out.push_str(&line),
        }
    }
    (Running { child, _stdout: Some(reader) }, out)
}

fn sh(script: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn wait_healthy(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Command::new("curl")
        .args(["-sf", &format!("http://127.0.0.1:{port}/healthz")])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "server did not become healthy");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_printed_sign_in_command_works_and_the_walkthrough_runs_with_curl() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let (_server, printed) = serve(data.path(), port);
    wait_healthy(port);
    // The command as printed: from the `curl` line through its continuation line.
    let start = printed.find("curl -s").expect("a curl command is printed");
    let command: String = printed[start..].lines().take(2).collect::<Vec<_>>().join("\n");
    let signed = sh(&command);
    let token: serde_json::Value = serde_json::from_str(&signed).expect("the sign-in answers JSON");
    let token = token["id_token"].as_str().unwrap().to_owned();

    let api = format!("http://127.0.0.1:{port}/v1/default");
    let auth = format!("Authorization: Bearer {token}");
    let created = sh(&format!(
        "curl -s -X POST {api}/tool/ -H '{auth}' -H 'content-type: application/json' \
         -d '{{\"name\": \"get_weather\", \"description\": \"Weather.\", \"tags\": {{\"team\": \"core\"}}}}'"
    ));
    let id = serde_json::from_str::<serde_json::Value>(&created).unwrap()["id"].as_str().unwrap().to_owned();
    let listed = sh(&format!("curl -s '{api}/tool/?tag=team:core' -H '{auth}'"));
    assert!(listed.contains("get_weather"), "{listed}");
    let modified = sh(&format!(
        "curl -s -o /dev/null -w '%{{http_code}}' -X POST {api}/tool/{id} -H '{auth}' -H 'content-type: application/json' -d '{{\"description\": \"Better.\"}}'"
    ));
    assert_eq!(modified, "204");
    let deprecated = sh(&format!("curl -s -o /dev/null -w '%{{http_code}}' -X DELETE {api}/tool/{id} -H '{auth}'"));
    assert_eq!(deprecated, "204");
    let listed = sh(&format!("curl -s '{api}/tool/?id={id}' -H '{auth}'"));
    assert!(listed.contains("\"deprecated\":true") && listed.contains("Better."), "{listed}");
}

#[test]
fn a_second_start_does_not_bootstrap_again_and_admin_commands_manage_identity() {
    let data = tempfile::tempdir().unwrap();
    let admin = |args: &[&str]| {
        let out = Command::new(BIN).arg("admin").arg("--data-dir").arg(data.path()).args(args).output().unwrap();
        assert!(out.status.success(), "admin {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let created = admin(&["create-org", "globex"]);
    assert!(created.contains("organization globex created"), "{created}");
    let user = admin(&["create-user", "--org", "globex", "--role", "viewer"]).trim().to_owned();
    assert_eq!(user.len(), 24);
    admin(&["grant", "--org", "globex", "--user", &user, "--role", "developer"]);
    let users = admin(&["list-users", "--org", "globex"]);
    assert!(users.lines().any(|l| l.starts_with(&user) && l.contains("viewer") && l.contains("developer")), "{users}");
    let key = admin(&["create-key", "--org", "globex", "--description", "ci"]);
    let key_id = key.lines().find_map(|l| l.strip_prefix("API key id: ")).unwrap().trim().to_owned();
    let secret = key.lines().find_map(|l| l.strip_prefix("API key:    ")).unwrap().trim().to_owned();

    let bad = Command::new(BIN)
        .args(["admin", "--data-dir"])
        .arg(data.path())
        .args(["grant", "--org", "globex", "--user", &user, "--role", "root"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown role"));

    // Organizations exist already: serving does not bootstrap another one.
    let port = free_port();
    let mut child = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(data.path())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _server = Running { child, _stdout: None };
    wait_healthy(port);
    let signed = sh(&format!(
        "curl -s -X POST http://127.0.0.1:{port}/v1/globex/user/signin_with_api_key -H 'x-api-key: {secret}' -H 'x-api-key-id: {key_id}' -H 'x-user-id: {user}'"
    ));
    assert!(signed.contains("id_token"), "{signed}");
    admin(&["revoke-key", "--org", "globex", "--id", &key_id]);
    let refused = sh(&format!(
        "curl -s -o /dev/null -w '%{{http_code}}' -X POST http://127.0.0.1:{port}/v1/globex/user/signin_with_api_key -H 'x-api-key: {secret}' -H 'x-api-key-id: {key_id}' -H 'x-user-id: {user}'"
    ));
    assert_eq!(refused, "401");
    drop(_server);
    let mut printed = String::new();
    use std::io::Read;
    BufReader::new(stdout).read_to_string(&mut printed).unwrap();
    assert!(!printed.contains("first start"), "{printed}");
}

#[test]
fn invalid_configuration_is_refused_with_a_message_naming_the_option() {
    let out = Command::new(BIN).args(["serve", "--token-ttl-secs", "1"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--token-ttl-secs"));
    let out = Command::new(BIN).args(["serve", "--database-url", "mysql://x"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("postgres://"));
}

#[test]
fn rotating_the_secret_key_puts_a_new_key_in_front() {
    let data = tempfile::tempdir().unwrap();
    let out =
        Command::new(BIN).args(["admin", "--data-dir"]).arg(data.path()).arg("rotate-secret-key").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let keys = std::fs::read_to_string(data.path().join("keys/secret-keys")).unwrap();
    assert_eq!(keys.lines().count(), 2, "the new key is added in front of the old one");
}

#[test]
fn a_closed_stdout_does_not_stop_the_server() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(data.path())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Nobody reads the welcome message (`toolsmith serve | head -1` after head exits).
    drop(child.stdout.take());
    let _server = Running { child, _stdout: None };
    wait_healthy(port);
}

fn serve_with(data: &std::path::Path, port: u16, extra: &[&str]) -> (Running, String) {
    let child = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    welcome(child)
}

/// Signs in with the command the first start printed; the API base and the authorization header.
fn sign_in(printed: &str, port: u16) -> (String, String) {
    let start = printed.find("curl -s").unwrap();
    let signed: serde_json::Value =
        serde_json::from_str(&sh(&printed[start..].lines().take(2).collect::<Vec<_>>().join("\n"))).unwrap();
    let token = signed["id_token"].as_str().unwrap().to_owned();
    (format!("http://127.0.0.1:{port}/v1/default"), format!("Authorization: Bearer {token}"))
}

/// Starts the server again on existing data. It prints no welcome then: nothing to wait for but
/// health, which the caller waits for.
fn restart(data: &std::path::Path, port: u16, extra: &[&str]) -> Running {
    let child = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Running { child, _stdout: None }
}

#[test]
fn a_server_killed_in_the_middle_of_a_publish_leaves_nothing_half_made() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let lease = ["--lock-lease-secs", "5"];
    let (mut server, printed) = serve_with(data.path(), port, &lease);
    wait_healthy(port);
    let (api, auth) = sign_in(&printed, port);

    // A project whose tests never finish keeps the publish busy in its build.
    let work = tempfile::tempdir().unwrap();
    let git = |args: &str| {
        sh(&format!(
            "cd {} && git -c user.name=T -c user.email=t@example.invalid -c 'http.extraHeader={auth}' {args}",
            work.path().display()
        ))
    };
    git(&format!("clone --quiet {api}/tool/git repo"));
    let slow = work.path().join("repo/slow");
    std::fs::create_dir_all(slow.join("p")).unwrap();
    std::fs::create_dir_all(slow.join("tests")).unwrap();
    std::fs::write(
        slow.join("pyproject.toml"),
        "[project]\nname = \"p\"\nversion = \"0.1.0\"\nrequires-python = \">=3.11\"\ndependencies = []\n[dependency-groups]\ndev = [\"pytest>=8\"]\n\
         [tool.toolsmith]\nentrypoint = \"p.tool:run\"\n[tool.pytest.ini_options]\npythonpath = [\".\"]\n",
    )
    .unwrap();
    std::fs::write(slow.join("p/__init__.py"), "").unwrap();
    std::fs::write(slow.join("p/tool.py"), "def run() -> str:\n    return 'x'\n").unwrap();
    std::fs::write(slow.join("tests/test_slow.py"), "import time\n\ndef test_slow():\n    time.sleep(600)\n").unwrap();
    git("-C repo add -A && git -C repo -c user.name=T -c user.email=t@example.invalid commit --quiet -m slow");
    git("-C repo push --quiet origin main");
    let created = sh(&format!(
        "curl -s -X POST {api}/tool/ -H '{auth}' -H 'content-type: application/json' -d '{{\"name\": \"crashy\", \"description\": \"d\", \"tags\": {{}}}}'"
    ));
    let tool = serde_json::from_str::<serde_json::Value>(&created).unwrap()["id"].as_str().unwrap().to_owned();
    let publish = |path: &str| {
        format!(
            "curl -s -o /dev/null -w '%{{http_code}}' -m 120 -X POST {api}/tool/{tool}/version -H '{auth}' -H 'content-type: application/json' -d '{{\"project_path\": \"{path}\", \"bump_type\": \"major\"}}'"
        )
    };
    let in_flight = Command::new("sh").arg("-c").arg(publish("slow")).stdout(Stdio::null()).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(4));
    // SIGKILL: no destructor, no lock release, no cleanup.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let _ = in_flight.wait_with_output();

    let _server = restart(data.path(), port, &lease);
    wait_healthy(port);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = sh(&publish("hello_world"));
        if status != "409" || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(status, "201", "the next publish works once the dead holder's lease has run out");
    let listed: serde_json::Value =
        serde_json::from_str(&sh(&format!("curl -s {api}/tool/{tool}/version -H '{auth}'"))).unwrap();
    let versions = listed["tool_versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1, "the interrupted publish left no version: {listed}");
    assert_eq!(versions[0]["project_directory"], "hello_world");
    // Every environment that exists (one directory per organization, one per environment in
    // it) is complete; unfinished ones stay in staging, never trusted.
    for org in std::fs::read_dir(data.path().join("envs")).unwrap() {
        for entry in std::fs::read_dir(org.unwrap().path()).unwrap() {
            let entry = entry.unwrap();
            if !entry.file_name().to_string_lossy().starts_with('.') {
                assert!(entry.path().join(".complete").exists(), "{:?}", entry.path());
            }
        }
    }
}

#[test]
fn every_acknowledged_invocation_survives_a_killed_server() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let flags = ["--rate-limits", "off"];
    let (mut server, printed) = serve_with(data.path(), port, &flags);
    wait_healthy(port);
    let (api, auth) = sign_in(&printed, port);
    let created = sh(&format!(
        "curl -s -X POST {api}/tool/ -H '{auth}' -H 'content-type: application/json' -d '{{\"name\": \"hello\", \"description\": \"d\", \"tags\": {{}}}}'"
    ));
    let tool = serde_json::from_str::<serde_json::Value>(&created).unwrap()["id"].as_str().unwrap().to_owned();
    let published = sh(&format!(
        "curl -s -X POST {api}/tool/{tool}/version -H '{auth}' -H 'content-type: application/json' -d '{{\"project_path\": \"hello_world\", \"bump_type\": \"major\"}}'"
    ));
    assert!(published.contains("1.0.0"), "{published}");

    // Many clients invoke at once; the server is killed while they do.
    let acks = tempfile::tempdir().unwrap();
    let clients: Vec<_> = (0..24)
        .map(|i| {
            let script = format!(
                "for n in $(seq 1 40); do curl -s -o /dev/null -w '%{{http_code}}\\n' -m 10 -X POST {api}/tool/{tool}/version/1.0.0/invoke \
                 -H '{auth}' -H 'content-type: application/json' \
                 -d '{{\"inputs\": [{{\"input_parameters\": {{\"name\": \"c{i}-'$n'\"}}, \"invocation_mode\": \"regular\"}}]}}' >> {}/{i}; done",
                acks.path().display()
            );
            Command::new("sh").arg("-c").arg(script).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    for mut client in clients {
        let _ = client.wait();
    }
    let acknowledged: usize = (0..24)
        .map(|i| {
            std::fs::read_to_string(acks.path().join(i.to_string()))
                .unwrap_or_default()
                .lines()
                .filter(|l| *l == "200")
                .count()
        })
        .sum();
    assert!(acknowledged > 0, "some invocations finished before the kill");

    let _server = restart(data.path(), port, &flags);
    wait_healthy(port);
    let mut stored = 0;
    let mut token_arg = String::new();
    loop {
        let page: serde_json::Value = serde_json::from_str(&sh(&format!(
            "curl -s '{api}/tool/invocation?tool_id={tool}&limit=100&invocation_source_type=direct{token_arg}' -H '{auth}'"
        )))
        .unwrap();
        stored += page["tool_invocations"].as_array().unwrap().len();
        match page["continuation_token"].as_i64() {
            Some(next) => token_arg = format!("&continuation_token={next}"),
            None => break,
        }
    }
    assert!(stored >= acknowledged, "{acknowledged} invocations were acknowledged but only {stored} are stored");
}

/// The sample tools that publish, each with one input it accepts and a piece of what it answers.
const SAMPLES: &[(&str, &str, &str)] = &[
    ("no_deps", r#"{"text": "abc-echo"}"#, "abc-echo"),
    ("with_lock", r#"{"size_bytes": 3000}"#, "3.0 kB"),
    ("needs_env", r#"{"name": "Ada"}"#, "Hello Ada (API_TOKEN has 10 characters)"),
    (
        "rich_signature",
        r#"{"trip": {"origin": {"city": "Delft"}, "destination": {"city": "Porto"}}, "travellers": ["Ada"]}"#,
        "Porto",
    ),
    ("counter", "{}", "1"),
    ("context_echo", r#"{"note": "hi"}"#, "hi"),
    ("raises", "{}", "this tool always fails"),
    ("hostile", r#"{"action": "secret"}"#, "********"),
    ("intruder", r#"{"action": "probe"}"#, "\\\"seccomp\\\": \\\"2\\\""),
];

/// Pushes `examples/tools` through the server's git endpoint, then publishes and invokes every
/// sample that is meant to publish; returns the probe the intruder sample reported.
fn run_every_sample(api: &str, auth: &str, work: &std::path::Path) -> serde_json::Value {
    let git = |args: &str| {
        sh(&format!(
            "cd {} && git -c user.name=T -c user.email=t@example.invalid -c 'http.extraHeader={auth}' {args}",
            work.display()
        ))
    };
    git(&format!("clone --quiet {api}/tool/git repo"));
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    sh(&format!("cp -r {} {}/repo/examples", examples.display(), work.display()));
    git("-C repo add -A && git -C repo -c user.name=T -c user.email=t@example.invalid commit --quiet -m samples");
    git("-C repo push --quiet origin main");
    let mut probe = serde_json::Value::Null;
    for (name, input, expected) in SAMPLES {
        let created = sh(&format!(
            "curl -s -X POST {api}/tool/ -H '{auth}' -H 'content-type: application/json' -d '{{\"name\": \"{name}\", \"description\": \"d\", \"tags\": {{}}}}'"
        ));
        let tool = serde_json::from_str::<serde_json::Value>(&created).unwrap()["id"].as_str().unwrap().to_owned();
        let env = match *name {
            "needs_env" => {
                r#"{"inserts": [{"name": "GREETING_PREFIX", "value": "Hello", "is_secret": false}, {"name": "API_TOKEN", "value": "token-1234", "is_secret": true}]}"#
            }
            "hostile" => r#"{"inserts": [{"name": "API_TOKEN", "value": "token-1234", "is_secret": true}]}"#,
            "intruder" => {
                r#"{"inserts": [{"name": "API_TOKEN", "value": "token-1234", "is_secret": true}, {"name": "INTRUDER_AT_IMPORT", "value": "no", "is_secret": false}]}"#
            }
            _ => "",
        };
        if !env.is_empty() {
            sh(&format!(
                "curl -sf -X POST {api}/tool/{tool}/envvar -H '{auth}' -H 'content-type: application/json' -d '{env}'"
            ));
        }
        let published = sh(&format!(
            "curl -s -m 300 -X POST {api}/tool/{tool}/version -H '{auth}' -H 'content-type: application/json' -d '{{\"project_path\": \"examples/tools/{name}\", \"bump_type\": \"major\"}}'"
        ));
        assert!(published.contains("1.0.0"), "{name} did not publish: {published}");
        let answer = sh(&format!(
            "curl -s -m 60 -X POST {api}/tool/{tool}/version/1.0.0/invoke -H '{auth}' -H 'content-type: application/json' \
             -d '{{\"inputs\": [{{\"input_parameters\": {input}, \"invocation_mode\": \"regular\"}}]}}'"
        ));
        assert!(answer.contains("invocation_results") && answer.contains(expected), "{name}: {answer}");
        if *name == "intruder" {
            let parsed: serde_json::Value = serde_json::from_str(&answer).unwrap();
            probe = serde_json::from_str(parsed["invocation_results"][0]["output"].as_str().unwrap()).unwrap();
        }
    }
    probe
}

#[test]
fn every_sample_tool_runs_on_a_server_started_as_it_is() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let (_server, printed) = serve_with(data.path(), port, &["--rate-limits", "off"]);
    wait_healthy(port);
    let (api, auth) = sign_in(&printed, port);
    let work = tempfile::tempdir().unwrap();
    let probe = run_every_sample(&api, &auth, work.path());
    assert_ne!(probe["uid"], 0, "{probe}");
    assert_eq!(probe["cap_eff"], "0000000000000000", "{probe}");
}

#[test]
fn an_unprivileged_service_user_runs_every_sample_tool() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // Already unprivileged: the test above is this test.
        return;
    }
    // Everything the service user needs, readable by it: the binary, uv, and a data directory
    // it owns. The interpreter is the system's (the developer's may sit in a private home).
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(home.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let bin = home.path().join("toolsmith");
    std::fs::copy(BIN, &bin).unwrap();
    let uv = sh("python3 -c 'import uv; print(uv.find_uv_bin())' 2>/dev/null || command -v uv");
    std::fs::copy(uv.trim(), home.path().join("uv")).unwrap();
    let python = ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("a system Python");
    let data = home.path().join("data");
    std::fs::create_dir(&data).unwrap();
    sh(&format!("chown -R 65534:65534 {}", data.display()));
    let port = free_port();
    let child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&bin)
        .args(["serve", "--data-dir"])
        .arg(&data)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--rate-limits", "off", "--python", python])
        // Egress needs /dev/net/tun, which machines like this one keep for root: the service
        // user's tools run without network, its builds on the host's.
        .args(["--tool-network", "off", "--build-network", "host", "--uv"])
        .arg(home.path().join("uv"))
        .env("HOME", &data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (_server, printed) = welcome(child);
    wait_healthy(port);
    let (api, auth) = sign_in(&printed, port);
    let work = tempfile::tempdir().unwrap();
    let probe = run_every_sample(&api, &auth, work.path());
    assert_eq!(probe["uid"], 65534, "the service user's own uid, in a user namespace: {probe}");
    assert_eq!(probe["cap_eff"], "0000000000000000", "{probe}");
    assert_eq!(probe["seccomp"], "2", "{probe}");
}

/// The value of the first exposition line that starts with `series` (name and labels).
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn metrics_are_served_on_their_own_listener_and_move_with_the_work() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let metrics_port = free_port();
    let metrics_listen = format!("127.0.0.1:{metrics_port}");
    let (_server, printed) = serve_with(
        data.path(),
        port,
        &["--rate-limits", "off", "--invoke-timeout-secs", "2", "--metrics-listen", &metrics_listen],
    );
    wait_healthy(port);
    let (api, auth) = sign_in(&printed, port);
    let scrape = || sh(&format!("curl -sf http://{metrics_listen}/metrics"));
    assert!(scrape().contains("# TYPE toolsmith_runtimes_running gauge"));
    // Never on the API's own listener.
    assert_eq!(sh(&format!("curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{port}/metrics")), "404");

    // A tool that sleeps as long as it is asked to.
    let work = tempfile::tempdir().unwrap();
    let git = |args: &str| {
        sh(&format!(
            "cd {} && git -c user.name=T -c user.email=t@example.invalid -c 'http.extraHeader={auth}' {args}",
            work.path().display()
        ))
    };
    git(&format!("clone --quiet {api}/tool/git repo"));
    let sleeper = work.path().join("repo/sleeper");
    std::fs::create_dir_all(sleeper.join("sleeper")).unwrap();
    std::fs::write(
        sleeper.join("pyproject.toml"),
        "[project]\nname = \"sleeper\"\nversion = \"0.1.0\"\nrequires-python = \">=3.11\"\ndependencies = []\n[tool.toolsmith]\nentrypoint = \"sleeper.tool:run\"\n",
    )
    .unwrap();
    std::fs::write(sleeper.join("sleeper/__init__.py"), "").unwrap();
    std::fs::write(
        sleeper.join("sleeper/tool.py"),
        "import time\n\ndef run(seconds: float) -> str:\n    \"\"\"Sleep.\n\n    Args:\n        seconds: How long.\n    \"\"\"\n    time.sleep(seconds)\n    return 'awake'\n",
    )
    .unwrap();
    git("-C repo add -A && git -C repo -c user.name=T -c user.email=t@example.invalid commit --quiet -m sleeper");
    git("-C repo push --quiet origin main");
    let created = sh(&format!(
        "curl -s -X POST {api}/tool/ -H '{auth}' -H 'content-type: application/json' -d '{{\"name\": \"sleeper\", \"description\": \"d\", \"tags\": {{}}}}'"
    ));
    let tool = serde_json::from_str::<serde_json::Value>(&created).unwrap()["id"].as_str().unwrap().to_owned();
    let published = sh(&format!(
        "curl -s -X POST {api}/tool/{tool}/version -H '{auth}' -H 'content-type: application/json' -d '{{\"project_path\": \"sleeper\", \"bump_type\": \"major\"}}'"
    ));
    assert!(published.contains("1.0.0"), "{published}");
    let invoke = |seconds: &str| {
        sh(&format!(
            "curl -s -X POST {api}/tool/{tool}/version/1.0.0/invoke -H '{auth}' -H 'content-type: application/json' \
             -d '{{\"inputs\": [{{\"input_parameters\": {{\"seconds\": {seconds}}}, \"invocation_mode\": \"regular\"}}]}}'"
        ))
    };
    assert!(invoke("0").contains("awake"));
    assert!(invoke("0").contains("awake"));
    assert!(invoke("5").contains("TimeoutError"));
    // A changed environment: the next invocation starts a new runtime, a cold start.
    sh(&format!(
        "curl -sf -X POST {api}/tool/{tool}/envvar -H '{auth}' -H 'content-type: application/json' \
         -d '{{\"inserts\": [{{\"name\": \"MOOD\", \"value\": \"calm\", \"is_secret\": false}}]}}'"
    ));
    assert!(invoke("0").contains("awake"));

    let text = scrape();
    let series = format!(r#"{{org="default",tool="{tool}",version="1.0.0"}}"#);
    assert_eq!(metric(&text, &format!("faas_invocations_total{series}")), 4.0, "{text}");
    assert_eq!(metric(&text, &format!("faas_errors_total{series}")), 1.0, "{text}");
    assert_eq!(metric(&text, &format!("faas_timeouts_total{series}")), 1.0, "{text}");
    assert!(metric(&text, &format!("faas_coldstarts_total{series}")) >= 1.0, "{text}");
    assert!(metric(&text, &format!("faas_init_duration_seconds_count{series}")) >= 1.0, "{text}");
    assert_eq!(metric(&text, &format!("faas_invoke_duration_seconds_count{series}")), 4.0, "{text}");
    assert!(metric(&text, r#"toolsmith_publish_duration_seconds_count{outcome="succeeded"}"#) >= 1.0, "{text}");
    let invoke_route = r#"http_server_request_duration_seconds_count{http_request_method="POST",http_response_status_code="200",http_route="/v1/{org}/tool/{tool_id}/version/{version}/invoke"}"#;
    assert_eq!(metric(&text, invoke_route), 4.0, "{text}");
    assert!(text.contains("toolsmith_runtimes_running 1"), "{text}");
    assert!(text.contains("toolsmith_invocations_in_flight 0"), "{text}");
}
