//! Operating one server process: stopping it without losing or cutting anything, asking it
//! whether it is ready for traffic, and backing it up and restoring it while it serves.

mod process;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use process::*;
use serde_json::{json, Value};

/// A server on a fresh SQLite data directory, signed in, with the probe tool published as
/// 1.0.0 (`GREETING=Hello`, secret `API_TOKEN=tok-0001`).
struct Installation {
    server: Server,
    data: tempfile::TempDir,
    auth: String,
    tool: String,
}

impl Installation {
    fn start(flags: &[&str]) -> Installation {
        let data = tempfile::tempdir().unwrap();
        let mut server = Server::start(data.path(), flags);
        server.wait_healthy();
        let printed = welcome(&[&server]);
        let auth = sign_in(&printed, server.port);
        let checkout = Checkout::clone(&server.api(), &auth);
        checkout.commit("probe", PROBE, "Add the probe tool");
        checkout.push_to(&server.api());
        let tool = create_tool(&server.api(), &auth, "probe");
        set_envvars(&server.api(), &auth, &tool, &[("GREETING", "Hello", false), ("API_TOKEN", "tok-0001", true)]);
        let (status, body) = publish(&server.api(), &auth, &tool, "probe");
        assert_eq!(status, 201, "{body}\n{}", server.logged());
        Installation { server, data, auth, tool }
    }

    fn invoke(&self, name: &str, seconds: f64) -> (u16, Value) {
        invoke(&self.server.api(), &self.auth, &self.tool, "1.0.0", json!({"name": name, "seconds": seconds}))
    }
}

/// Invokes in a thread of its own; joins to the status and the answer.
fn invoke_in_background(
    api: String,
    auth: String,
    tool: String,
    name: String,
    seconds: f64,
) -> std::thread::JoinHandle<(u16, Value)> {
    std::thread::spawn(move || invoke(&api, &auth, &tool, "1.0.0", json!({"name": name, "seconds": seconds})))
}

#[test]
fn sigterm_lets_running_invocations_finish_refuses_new_connections_and_loses_nothing() {
    let mut install = Installation::start(&["--rate-limits", "off", "--shutdown-grace-secs", "20"]);
    let (status, answer) = install.invoke("warm", 0.0);
    assert_eq!(status, 200, "{answer}");
    let (api, auth) = (install.server.api(), install.auth.clone());
    let checkout = Checkout::clone(&api, &auth);
    checkout.commit("slow", SLOW_BUILD, "A project that builds slowly");
    checkout.push_to(&api);
    let slow = create_tool(&api, &auth, "slow");

    // A publish and eight invocations are running when the signal comes.
    let publishing = {
        let (api, auth, slow) = (api.clone(), auth.clone(), slow.clone());
        std::thread::spawn(move || publish(&api, &auth, &slow, "slow"))
    };

    let running: Vec<_> = (0..8)
        .map(|i| {
            let api = install.server.api();
            invoke_in_background(api, install.auth.clone(), install.tool.clone(), format!("slow-{i}"), 1.5)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(600));
    let signalled = Instant::now();
    install.server.signal("TERM");
    std::thread::sleep(Duration::from_millis(200));
    let refused = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-m", "5", &format!("{}/healthz", install.server.base())])
        .status()
        .unwrap();
    assert_eq!(refused.code(), Some(7), "a new connection after SIGTERM is refused (curl: could not connect)");

    let exit = install.server.wait_exit(Duration::from_secs(20)).expect("the server exits within its grace");
    assert!(exit.success(), "the server exits 0 after a SIGTERM: {exit}\n{}", install.server.logged());
    let took = signalled.elapsed();
    for (i, client) in running.into_iter().enumerate() {
        let (status, answer) = client.join().unwrap();
        assert_eq!(status, 200, "invocation {i} got a complete answer: {answer}");
        assert_eq!(output(&answer), format!("Hello slow-{i}; token ******** (8)"));
    }
    let (status, body) = publishing.join().unwrap();
    assert_eq!(status, 201, "the publish under way finished: {body}");
    // The publish's build imports for three seconds from before the signal.
    assert!(took >= Duration::from_secs(2), "the server waited for the running requests ({took:?})");
    let logged = install.server.logged();
    assert!(logged.contains("every running request has finished"), "{logged}");

    let mut again = Server::start_on(install.data.path(), install.server.port, &["--rate-limits", "off"]);
    again.wait_healthy();
    let names = invoked_names(&all_invocations(&again.api(), &install.auth, &install.tool));
    let expected: BTreeSet<String> =
        (0..8).map(|i| format!("slow-{i}")).chain(std::iter::once("warm".to_owned())).collect();
    assert_eq!(names, expected, "the restarted server lists every acknowledged invocation");
    let (status, listed) = request("GET", &format!("{}/tool/{slow}/version", again.api()), &install.auth, None);
    assert_eq!(status, 200);
    assert_eq!(listed["tool_versions"].as_array().unwrap().len(), 1, "{listed}");
}

#[test]
fn a_request_running_past_the_grace_is_cut_and_the_server_still_exits_cleanly() {
    let mut install = Installation::start(&["--rate-limits", "off", "--shutdown-grace-secs", "2"]);
    let (status, _) = install.invoke("warm", 0.0);
    assert_eq!(status, 200);
    let client = invoke_in_background(
        install.server.api(),
        install.auth.clone(),
        install.tool.clone(),
        "endless".to_owned(),
        25.0,
    );
    std::thread::sleep(Duration::from_millis(500));
    let signalled = Instant::now();
    install.server.signal("INT");
    let exit = install.server.wait_exit(Duration::from_secs(10)).expect("the server exits soon after its grace");
    let took = signalled.elapsed();
    assert!(exit.success(), "{exit}\n{}", install.server.logged());
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(6), "it waited for its grace only: {took:?}");
    let (status, _) = client.join().unwrap();
    assert_ne!(status, 200, "the invocation that outlived the grace was cut");
    assert!(install.server.logged().contains("cut"), "{}", install.server.logged());
}

#[test]
fn readiness_needs_no_credentials_and_names_the_check_that_fails() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start(data.path(), &[]);
    server.wait_healthy();
    let (status, body) = request("GET", &format!("{}/readyz", server.base()), "", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);
    assert_eq!(body["failed"], json!([]));
    for check in ["database", "data_directory", "disk_space"] {
        assert_eq!(body["checks"][check]["ok"], true, "{body}");
    }
    assert!(body["checks"]["disk_space"]["free_mib"].as_u64().unwrap() > 512, "{body}");
    // The probe leaves nothing behind in the data directory.
    let stray: Vec<_> = std::fs::read_dir(data.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".readyz"))
        .collect();
    assert!(stray.is_empty());
    drop(server);

    // A floor no disk reaches: alive, but not ready.
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start(data.path(), &["--min-free-disk-mib", "1000000000"]);
    server.wait_healthy();
    let (status, body) = request("GET", &format!("{}/readyz", server.base()), "", None);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false);
    assert_eq!(body["failed"], json!(["disk_space"]), "{body}");
    assert_eq!(body["checks"]["database"]["ok"], true);
    assert!(body["checks"]["disk_space"]["error"].as_str().unwrap().contains("below the floor"), "{body}");
    let (status, _) = request_text("GET", &format!("{}/healthz", server.base()), "", None);
    assert_eq!(status, 200, "liveness is unchanged");
}

#[test]
fn readiness_fails_while_the_database_is_gone() {
    let db = Database::fresh();
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start(data.path(), &["--database-url", &db.url]);
    server.wait_healthy();
    let (status, body) = request("GET", &format!("{}/readyz", server.base()), "", None);
    assert_eq!(status, 200, "{body}");
    db.drop_now();
    let (status, body) = request("GET", &format!("{}/readyz", server.base()), "", None);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["failed"], json!(["database"]), "{body}");
    assert!(body["checks"]["database"]["error"].as_str().unwrap().contains("database"), "{body}");
}

#[test]
fn a_backup_taken_while_serving_restores_into_a_working_server() {
    let install = Installation::start(&["--rate-limits", "off"]);
    let (api, auth) = (install.server.api(), install.auth.clone());
    let checkout = Checkout::clone(&api, &auth);
    checkout.commit("probe", &[("README.md", "The probe tool.\n")], "Describe the probe");
    checkout.push_to(&api);
    let mut before = BTreeSet::new();
    for i in 0..5 {
        let (status, answer) = install.invoke(&format!("before-{i}"), 0.0);
        assert_eq!(status, 200, "{answer}");
        before.insert(format!("before-{i}"));
    }

    // Clients keep invoking while the backup is taken.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..3)
        .map(|c| {
            let (api, auth, tool, stop) = (api.clone(), auth.clone(), install.tool.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (status, _) = invoke(&api, &auth, &tool, "1.0.0", json!({"name": format!("during-{c}-{n}")}));
                    assert_eq!(status, 200);
                    n += 1;
                }
            })
        })
        .collect();
    let backups = tempfile::tempdir().unwrap();
    let backup = backups.path().join("b1");
    let out = admin(install.data.path(), None, &["backup", backup.to_str().unwrap()]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for thread in load {
        thread.join().unwrap();
    }
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("1 repositories, 1 artifacts, 1 environments, 2 key files"), "{said}");
    for key in ["secret-keys", "token.key"] {
        let mode = std::fs::metadata(backup.join("keys").join(key)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{key} stays private in the backup");
    }

    // Restoring needs an empty data directory.
    let refused = admin(install.data.path(), None, &["restore", backup.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let restored = tempfile::tempdir().unwrap();
    let target = restored.path().join("data");
    let out = admin(&target, None, &["restore", backup.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 organizations: default"));
    for key in ["secret-keys", "token.key"] {
        let mode = std::fs::metadata(target.join("keys").join(key)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // The original goes away; a fresh server on the restored data takes its place. Tokens the
    // old one issued still work: the token key came back too.
    drop(install.server);
    let mut server = Server::start(&target, &["--rate-limits", "off"]);
    server.wait_healthy();
    let api = server.api();
    let (status, tools) = request("GET", &format!("{api}/tool/"), &auth, None);
    assert_eq!(status, 200, "{tools}");
    assert_eq!(tools["tools"][0]["name"], "probe", "{tools}");
    assert_eq!(tools["tools"][0]["secret_envvars"], json!(["API_TOKEN"]), "{tools}");
    let (status, versions) = request("GET", &format!("{api}/tool/{}/version", install.tool), &auth, None);
    assert_eq!(status, 200);
    assert_eq!(versions["tool_versions"].as_array().unwrap().len(), 1, "{versions}");
    // The secret is still sealed in the database, opens with the restored keys, reaches the
    // tool and is masked in its output.
    let (status, answer) = invoke(&api, &auth, &install.tool, "1.0.0", json!({"name": "after"}));
    assert_eq!(status, 200, "{answer}\n{}", server.logged());
    assert_eq!(output(&answer), "Hello after; token ******** (8)");
    // The repository's history, through a clone.
    let clone = Checkout::clone(&api, &auth);
    let log = clone.git("-C repo log --format=%s");
    let subjects: Vec<&str> = log.lines().collect();
    assert_eq!(subjects.len(), 3, "{log}");
    assert_eq!(&subjects[..2], ["Describe the probe", "Add the probe tool"], "{log}");
    // Every invocation acknowledged before the backup began.
    let names = invoked_names(&all_invocations(&api, &auth, &install.tool));
    let missing: Vec<&String> = before.difference(&names).collect();
    assert!(missing.is_empty(), "missing after restore: {missing:?}");
    assert!(names.contains("after"));
}

#[test]
fn a_postgresql_installation_comes_back_from_pg_dump_and_the_file_backup() {
    let db = Database::fresh();
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start(data.path(), &["--rate-limits", "off", "--database-url", &db.url]);
    server.wait_healthy();
    let auth = sign_in(&welcome(&[&server]), server.port);
    let api = server.api();
    let checkout = Checkout::clone(&api, &auth);
    checkout.commit("probe", PROBE, "Add the probe tool");
    checkout.push_to(&api);
    let tool = create_tool(&api, &auth, "probe");
    set_envvars(&api, &auth, &tool, &[("GREETING", "Hello", false), ("API_TOKEN", "tok-0001", true)]);
    let (status, body) = publish(&api, &auth, &tool, "probe");
    assert_eq!(status, 201, "{body}");
    let (status, _) = invoke(&api, &auth, &tool, "1.0.0", json!({"name": "before"}));
    assert_eq!(status, 200);

    // The documented order: the database first, then the files.
    let backups = tempfile::tempdir().unwrap();
    let dump = backups.path().join("toolsmith.dump");
    sh(&format!("pg_dump --format=custom --file={} '{}'", dump.display(), db.url));
    let files = backups.path().join("files");
    let out = admin(data.path(), Some(&db.url), &["backup", files.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("pg_dump"), "the database is not in it, and it says so");
    assert!(!files.join("toolsmith.db").exists());
    drop(server);

    let restored_db = Database::fresh();
    sh(&format!("pg_restore --no-owner --dbname='{}' {}", restored_db.url, dump.display()));
    let without_url = admin(&backups.path().join("elsewhere"), None, &["restore", files.to_str().unwrap()]);
    assert!(!without_url.status.success(), "a PostgreSQL backup needs the restored database's URL");
    let target = backups.path().join("data");
    let out = admin(&target, Some(&restored_db.url), &["restore", files.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut server = Server::start(&target, &["--rate-limits", "off", "--database-url", &restored_db.url]);
    server.wait_healthy();
    let api = server.api();
    let (status, answer) = invoke(&api, &auth, &tool, "1.0.0", json!({"name": "after"}));
    assert_eq!(status, 200, "{answer}\n{}", server.logged());
    assert_eq!(output(&answer), "Hello after; token ******** (8)");
    let names = invoked_names(&all_invocations(&api, &auth, &tool));
    assert_eq!(names, BTreeSet::from(["before".to_owned(), "after".to_owned()]));
    let clone = Checkout::clone(&api, &auth);
    assert!(clone.git("-C repo log --format=%s").contains("Add the probe tool"));
}
