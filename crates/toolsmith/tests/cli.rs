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
    let mut child = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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
