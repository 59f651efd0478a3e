//! Several `toolsmith serve` processes on one PostgreSQL database and one data directory, as
//! behind a load balancer: whatever a client does through one node, the other sees and honours
//! at once, and a node killed in the middle of its work leaves nothing the other trips over.
//! Every test has a database of its own and starts both nodes at the same moment on an empty
//! data directory (so first start, key files and migrations race too).

mod process;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use process::*;
use serde_json::json;

/// Two nodes of one installation.
struct Pair {
    a: Server,
    b: Server,
    auth: String,
    data: tempfile::TempDir,
    printed: String,
}

impl Pair {
    /// Starts two servers at once on a fresh data directory and `db`, with `flags`.
    fn start(db: &Database, flags: &[&str]) -> Pair {
        let data = tempfile::tempdir().unwrap();
        let mut args = vec!["--database-url", db.url.as_str()];
        args.extend_from_slice(flags);
        let mut a = Server::start(data.path(), &args);
        let mut b = Server::start(data.path(), &args);
        a.wait_healthy();
        b.wait_healthy();
        let printed = welcome(&[&a, &b]);
        let both = format!("{}{}", a.stdout.lock().unwrap(), b.stdout.lock().unwrap());
        assert_eq!(both.matches("first start").count(), 1, "exactly one node bootstraps: {both}");
        let auth = sign_in(&printed, a.port);
        Pair { a, b, auth, data, printed }
    }
}

/// Pushes the probe project through `through`, creates a tool for it with its env vars, and
/// publishes it through `through`; returns the tool id.
fn probe_tool(pair: &Pair, name: &str, through: &Server) -> String {
    let checkout = Checkout::clone(&through.api(), &pair.auth);
    checkout.commit("probe", PROBE, "Add the probe tool");
    checkout.push_to(&through.api());
    let tool = create_tool(&through.api(), &pair.auth, name);
    set_envvars(&through.api(), &pair.auth, &tool, &[("GREETING", "Hello", false), ("API_TOKEN", "tok-0001", true)]);
    let (status, body) = publish(&through.api(), &pair.auth, &tool, "probe");
    assert_eq!(status, 201, "{body}\n{}", through.logged());
    tool
}

/// Runs `script` in `n` shells released at the same moment; returns what each printed.
fn at_once(scripts: Vec<String>) -> Vec<String> {
    let barrier = Arc::new(Barrier::new(scripts.len()));
    let threads: Vec<_> = scripts
        .into_iter()
        .map(|script| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
                String::from_utf8_lossy(&out.stdout).trim().to_owned()
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn a_push_through_one_node_is_browsed_published_and_invoked_through_the_other() {
    let db = Database::fresh();
    let pair = Pair::start(&db, &["--rate-limits", "off"]);
    let (a, b, auth) = (&pair.a, &pair.b, &pair.auth);

    let checkout = Checkout::clone(&a.api(), auth);
    checkout.commit("probe", PROBE, "Add the probe tool");
    checkout.push_to(&a.api());

    // B reads the repository A wrote, with the push attributed (the attribution is a row A
    // stored in the shared database).
    let (status, commits) = request("GET", &format!("{}/tool/repo/commits", b.api()), auth, None);
    assert_eq!(status, 200, "{commits}");
    let newest = &commits["commits"][0];
    assert_eq!(newest["message"].as_str().map(str::trim), Some("Add the probe tool"), "{commits}");
    assert!(newest["committer"].is_object(), "the pusher through A is known to B: {commits}");
    let (status, file) =
        request_text("GET", &format!("{}/tool/repo/file?path=probe/probe/tool.py", b.api()), auth, None);
    assert_eq!(status, 200, "{file}");
    assert!(file.contains("def run(name: str"), "{file}");

    // B publishes what A received, and invokes it.
    let tool = create_tool(&b.api(), auth, "probe");
    set_envvars(&b.api(), auth, &tool, &[("GREETING", "Hello", false), ("API_TOKEN", "tok-0001", true)]);
    let (status, body) = publish(&b.api(), auth, &tool, "probe");
    assert_eq!(status, 201, "{body}\n{}", b.logged());
    assert_eq!(body["new_version"], "1.0.0");
    let (status, answer) = invoke(&b.api(), auth, &tool, "1.0.0", json!({"name": "via-b"}));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(output(&answer), "Hello via-b; token ******** (8)");
    // A runs the version B built, from the shared artifacts and environments.
    let (status, answer) = invoke(&a.api(), auth, &tool, "1.0.0", json!({"name": "via-a"}));
    assert_eq!(status, 200, "{answer}\n{}", a.logged());
    assert_eq!(output(&answer), "Hello via-a; token ******** (8)");
    // Both nodes list both invocations.
    for node in [a, b] {
        let names = invoked_names(&all_invocations(&node.api(), auth, &tool));
        assert_eq!(names, BTreeSet::from(["via-a".to_owned(), "via-b".to_owned()]));
    }
}

#[test]
fn two_publishes_of_one_tool_through_two_nodes_at_once_make_one_version() {
    let db = Database::fresh();
    let pair = Pair::start(&db, &["--rate-limits", "off"]);
    let (a, b, auth) = (&pair.a, &pair.b, &pair.auth);
    let tool = probe_tool(&pair, "probe", a);

    let publish_through = |node: &Server| {
        format!(
            "curl -s -o /dev/null -w '%{{http_code}}' -m 300 -X POST {}/tool/{tool}/version -H '{auth}' \
             -H 'content-type: application/json' -d '{{\"project_path\": \"probe\", \"bump_type\": \"minor\"}}'",
            node.api()
        )
    };
    // Two rounds: a tool may have three live versions.
    for round in 0..2 {
        let mut statuses = at_once(vec![publish_through(a), publish_through(b)]);
        statuses.sort();
        assert_eq!(statuses, ["201", "409"], "round {round}: one publish wins, the other is refused");
    }
    let (status, listed) = request("GET", &format!("{}/tool/{tool}/version", b.api()), auth, None);
    assert_eq!(status, 200);
    let mut versions: Vec<String> = listed["tool_versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| format!("{}.{}.{}", v["version"]["major"], v["version"]["minor"], v["version"]["patch"]))
        .collect();
    versions.sort();
    assert_eq!(versions, ["1.0.0", "1.1.0", "1.2.0"], "one minor version per round: {listed}");
}

#[test]
fn env_var_changes_and_deprecations_through_one_node_reach_the_next_invoke_on_the_other() {
    let db = Database::fresh();
    let pair = Pair::start(&db, &["--rate-limits", "off"]);
    let (a, b, auth) = (&pair.a, &pair.b, &pair.auth);
    let tool = probe_tool(&pair, "probe", a);

    // B's runtime for the version starts with the values of now.
    let (status, answer) = invoke(&b.api(), auth, &tool, "1.0.0", json!({"name": "Ada"}));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(output(&answer), "Hello Ada; token ******** (8)");

    update_envvars(&a.api(), auth, &tool, &[("GREETING", "Howdy")]);
    let (_, answer) = invoke(&b.api(), auth, &tool, "1.0.0", json!({"name": "Ada"}));
    assert_eq!(output(&answer), "Howdy Ada; token ******** (8)", "a plain value changed through A");

    update_envvars(&a.api(), auth, &tool, &[("API_TOKEN", "tok-000002")]);
    let (_, answer) = invoke(&b.api(), auth, &tool, "1.0.0", json!({"name": "Ada"}));
    assert_eq!(output(&answer), "Howdy Ada; token ******** (10)", "a secret changed through A");

    // A second version, deprecated through A: B refuses it at once and still runs the first.
    let (status, body) = publish(&a.api(), auth, &tool, "probe");
    assert_eq!(status, 201, "{body}");
    let (status, _) = invoke(&b.api(), auth, &tool, "2.0.0", json!({"name": "Ada"}));
    assert_eq!(status, 200);
    let (status, body) = request("DELETE", &format!("{}/tool/{tool}/version/%3D%3D2.0.0", a.api()), auth, None);
    assert!(status == 204 || status == 200, "{status} {body}");
    let (status, body) = invoke(&b.api(), auth, &tool, "2.0.0", json!({"name": "Ada"}));
    assert_eq!(status, 404, "a version deprecated through A is gone for B: {body}");
    let (status, _) = invoke(&b.api(), auth, &tool, "1.0.0", json!({"name": "Ada"}));
    assert_eq!(status, 200);

    // The whole tool, deprecated through A.
    let (status, body) = request("DELETE", &format!("{}/tool/{tool}", a.api()), auth, None);
    assert_eq!(status, 204, "{body}");
    let (status, body) = invoke(&b.api(), auth, &tool, "1.0.0", json!({"name": "Ada"}));
    assert_eq!(status, 404, "a tool deprecated through A is gone for B: {body}");
}

#[test]
fn rate_limits_and_unique_names_hold_across_nodes() {
    let db = Database::fresh();
    let pair = Pair::start(&db, &["--rate-limits", "on"]);
    let (a, b, auth) = (&pair.a, &pair.b, &pair.auth);

    // A key of its own, so that no earlier sign-in counts; sign-ins are limited to five a
    // minute per key.
    let out = admin(pair.data.path(), Some(&db.url), &["create-key", "--org", "default", "--description", "limits"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    let key_id = printed.lines().find_map(|l| l.strip_prefix("API key id: ")).unwrap().trim().to_owned();
    let secret = printed.lines().find_map(|l| l.strip_prefix("API key:    ")).unwrap().trim().to_owned();
    let user = pair.printed.lines().find_map(|l| l.trim().strip_prefix("admin user:")).unwrap().trim().to_owned();
    // All eight requests must fall into one one-minute window.
    let second = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() % 60;
    if second > 45 {
        std::thread::sleep(Duration::from_secs(61 - second));
    }
    let sign_in_through = |node: &Server| {
        format!(
            "curl -s -o /dev/null -w '%{{http_code}}' -X POST {}/user/signin_with_api_key \
             -H 'x-api-key: {secret}' -H 'x-api-key-id: {key_id}' -H 'x-user-id: {user}'",
            node.api()
        )
    };
    let scripts: Vec<String> = (0..8).map(|i| sign_in_through(if i % 2 == 0 { a } else { b })).collect();
    let statuses = at_once(scripts);
    let ok = statuses.iter().filter(|s| *s == "200").count();
    let limited = statuses.iter().filter(|s| *s == "429").count();
    assert_eq!((ok, limited), (5, 3), "five sign-ins a minute, however they are spread: {statuses:?}");

    // The same name created through both at once: one tool.
    for round in 0..5 {
        let name = format!("unique_{round}");
        let create_through = |node: &Server| {
            format!(
                "curl -s -o /dev/null -w '%{{http_code}}' -X POST {}/tool/ -H '{auth}' -H 'content-type: application/json' \
                 -d '{{\"name\": \"{name}\", \"description\": \"d\", \"tags\": {{}}}}'",
                node.api()
            )
        };
        let mut statuses = at_once(vec![create_through(a), create_through(b)]);
        statuses.sort();
        assert_eq!(statuses, ["201", "409"], "round {round}");
    }
    let (status, listed) = request("GET", &format!("{}/tool/?limit=20", a.api()), auth, None);
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["tools"].as_array().unwrap().len(), 5, "{listed}");
}

#[test]
fn a_node_killed_mid_publish_leaves_nothing_half_made_and_loses_no_acknowledged_invocation() {
    let db = Database::fresh();
    let lease = ["--rate-limits", "off", "--lock-lease-secs", "5"];
    let mut pair = Pair::start(&db, &lease);
    let auth = pair.auth.clone();
    let (a_api, b_api) = (pair.a.api(), pair.b.api());
    let probe = probe_tool(&pair, "probe", &pair.b);
    let checkout = Checkout::clone(&a_api, &auth);
    checkout.commit("stuck", STUCK, "A project whose build never ends");
    checkout.push_to(&a_api);
    let crashy = create_tool(&a_api, &auth, "crashy");
    set_envvars(&a_api, &auth, &crashy, &[("GREETING", "Hi", false), ("API_TOKEN", "tok-0002", true)]);

    // Clients invoke through A while it publishes, each remembering what A acknowledged.
    let acks = tempfile::tempdir().unwrap();
    let clients: Vec<_> = (0..6)
        .map(|i| {
            let script = format!(
                "for n in $(seq 1 400); do s=$(curl -s -o /dev/null -w '%{{http_code}}' -m 10 -X POST {a_api}/tool/{probe}/version/1.0.0/invoke \
                 -H '{auth}' -H 'content-type: application/json' \
                 -d '{{\"inputs\": [{{\"input_parameters\": {{\"name\": \"c{i}-'$n'\"}}, \"invocation_mode\": \"regular\"}}]}}'); \
                 echo \"c{i}-$n $s\" >> {}/{i}; [ \"$s\" = 000 ] && break; done",
                acks.path().display()
            );
            Command::new("sh").arg("-c").arg(script).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
        })
        .collect();
    let publish_stuck = format!(
        "curl -s -o /dev/null -w '%{{http_code}}' -m 120 -X POST {a_api}/tool/{crashy}/version -H '{auth}' \
         -H 'content-type: application/json' -d '{{\"project_path\": \"stuck\", \"bump_type\": \"major\"}}'"
    );
    let in_flight = Command::new("sh").arg("-c").arg(publish_stuck).stdout(Stdio::null()).spawn().unwrap();
    let build_started = Instant::now() + Duration::from_secs(30);
    let build_id = loop {
        let found = db.query(&format!("SELECT id FROM builds WHERE tool_id = '{crashy}' AND state = 'running'"));
        if !found.trim().is_empty() {
            break found.trim().to_owned();
        }
        assert!(Instant::now() < build_started, "the publish through A never started building");
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_secs(2));
    // SIGKILL: no destructor, no lock release, no cleanup, invocations cut mid-answer.
    pair.a.signal("KILL");
    pair.a.child.wait().unwrap();
    let _ = in_flight.wait_with_output();
    for mut client in clients {
        let _ = client.wait();
    }

    // B publishes the same tool once the dead node's lease has run out.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (status, body) = loop {
        let (status, body) = publish(&b_api, &auth, &crashy, "probe");
        if status != 409 || Instant::now() > deadline {
            break (status, body);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(status, 201, "{body}\n{}", pair.b.logged());
    let (_, listed) = request("GET", &format!("{b_api}/tool/{crashy}/version"), &auth, None);
    let versions = listed["tool_versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1, "the publish A was killed in left no version: {listed}");
    assert_eq!(versions[0]["project_directory"], "probe");
    assert_eq!(versions[0]["version"], json!({"major": 1, "minor": 0, "patch": 0}));
    let (status, build) = request("GET", &format!("{b_api}/tool/build/{build_id}"), &auth, None);
    assert_eq!(status, 200, "{build}");
    assert_eq!(build["state"], "failed", "A's build does not stay running: {build}");
    // Every environment that exists is complete.
    for org in std::fs::read_dir(pair.data.path().join("envs")).unwrap() {
        for entry in std::fs::read_dir(org.unwrap().path()).unwrap() {
            let entry = entry.unwrap();
            if !entry.file_name().to_string_lossy().starts_with('.') {
                assert!(entry.path().join(".complete").exists(), "{:?}", entry.path());
            }
        }
    }

    // Every invocation A answered 200 before it died is stored, and B lists it.
    let mut acknowledged = BTreeSet::new();
    for i in 0..6 {
        for line in std::fs::read_to_string(acks.path().join(i.to_string())).unwrap_or_default().lines() {
            if let Some((name, "200")) = line.split_once(' ') {
                acknowledged.insert(name.to_owned());
            }
        }
    }
    assert!(acknowledged.len() > 10, "clients were answered before the kill: {}", acknowledged.len());
    let stored = invoked_names(&all_invocations(&b_api, &auth, &probe));
    let lost: Vec<&String> = acknowledged.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged by A but not stored: {lost:?}");
}
