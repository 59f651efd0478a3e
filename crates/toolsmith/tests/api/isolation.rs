//! Isolation against a hostile tenant, through the API: the `intruder` sample tool, published
//! and invoked like any tool, attacks the kernel, concurrent invocations, its zygote and the
//! host, and each test asserts the attack failed and the victim is unaffected.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::both_backends;
use crate::examples::{push_samples, push_samples_to};
use crate::support::{Backend, Options, Resp, TestApp, User};

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Creates the tool `intruder` in `org` with the env vars it declares (`API_TOKEN` a secret with
/// value `secret`) and publishes the sample as its 1.0.0.
async fn publish_intruder(app: &TestApp, org: &str, user: &User, secret: &str) -> String {
    let r = app
        .request(Method::POST, &format!("/v1/{org}/tool/"), &user.token)
        .op("create-tool")
        .json(&json!({"name": "intruder", "description": "Attacks its sandbox.", "tags": {}}))
        .send()
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let tool = r.body["id"].as_str().unwrap().to_owned();
    let body = json!({"inserts": [
        {"name": "API_TOKEN", "value": secret, "is_secret": true},
        {"name": "INTRUDER_AT_IMPORT", "value": "no", "is_secret": false},
    ]});
    {
        let r = app
            .request(Method::POST, &format!("/v1/{org}/tool/{tool}/envvar"), &user.token)
            .op("modify-tool-envvars")
            .json(&body)
            .send()
            .await;
        assert_eq!(r.status, 204, "{}", r.text);
    }
    let r = app
        .request(Method::POST, &format!("/v1/{org}/tool/{tool}/version"), &user.token)
        .op("publish-tool-version")
        .json(&json!({"project_path": "examples/tools/intruder", "bump_type": "major"}))
        .send()
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    tool
}

async fn invoke_as(app: &TestApp, org: &str, user: &User, tool: &str, inputs: Vec<Value>) -> Resp {
    app.request(Method::POST, &format!("/v1/{org}/tool/{tool}/version/1.0.0/invoke"), &user.token)
        .op("invoke-tool-version")
        .json(&json!({ "inputs": inputs }))
        .send()
        .await
}

fn action(action: &str, sensitive: Value) -> Value {
    json!({
        "input_parameters": {"action": action},
        "invocation_mode": "regular",
        "nonsensitive_user_variables": {},
        "sensitive_user_variables": sensitive,
    })
}

/// Runs one action as acme's admin and returns its report.
async fn report(app: &TestApp, tool: &str, what: &str) -> Value {
    let r = invoke_as(app, "acme", &app.admin, tool, vec![action(what, json!({}))]).await;
    report_of(&r, what)
}

fn report_of(r: &Resp, what: &str) -> Value {
    assert_eq!(r.status, 200, "{what}: {}", r.text);
    let result = &r.body["invocation_results"][0];
    assert_eq!(result["succeeded"], true, "{what}: {result}");
    serde_json::from_str(result["output"].as_str().unwrap()).unwrap()
}

both_backends!(tool_code_runs_unprivileged_and_cannot_touch_the_kernel, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    push_samples(&app).await;
    let tool = publish_intruder(&app, "acme", &app.admin, "token-of-acme").await;

    let probe = report(&app, &tool, "probe").await;
    assert_ne!(probe["uid"], 0, "{probe}");
    assert_ne!(probe["euid"], 0);
    assert_eq!(probe["groups"], json!([]));
    assert_eq!(probe["cap_eff"], "0000000000000000", "no capabilities: {probe}");
    assert_eq!(probe["cap_prm"], "0000000000000000");
    assert_eq!(probe["seccomp"], "2", "a seccomp filter applies");
    assert_eq!(probe["no_new_privs"], "1");
    assert_eq!(probe["dumpable"], 0);
    assert_eq!(probe["proc_sys_writable"], false);
    assert_eq!(probe["root_writable"], false);
    let mounts: Vec<&str> = probe["mounts"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(mounts.contains(&"/project") && mounts.contains(&"/env") && mounts.contains(&"/tmp"), "{mounts:?}");
    assert!(!mounts.iter().any(|m| m.contains("toolsmith-data") || m.starts_with("/var/lib")), "{mounts:?}");

    for (path, result) in report(&app, &tool, "sysctl").await.as_object().unwrap() {
        assert_ne!(result, "ok", "{path} took a write");
    }
    for (call, result) in report(&app, &tool, "syscalls").await.as_object().unwrap() {
        assert_eq!(result, "EPERM", "{call}: {result}");
    }

    // Another organization's tools run as another host user.
    let globex = app.other_org("globex").await;
    push_samples_to(&app, "globex", &globex).await;
    let theirs = publish_intruder(&app, "globex", &globex, "token-of-globex").await;
    let r = invoke_as(&app, "globex", &globex, &theirs, vec![action("probe", json!({}))]).await;
    let their_probe = report_of(&r, "probe");
    assert_ne!(their_probe["uid"], probe["uid"], "two organizations share a uid");
    if running_as_root() {
        let base = u64::from(toolsmith::app::DEFAULT_SANDBOX_UID_BASE);
        for p in [&probe, &their_probe] {
            let uid = p["uid"].as_u64().unwrap();
            assert!(uid > base && (uid - base) % 2 == 0, "a run identity of the sandbox range: {uid}");
        }
    }
});

both_backends!(an_invocation_cannot_read_or_forge_a_concurrent_one, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    push_samples(&app).await;
    let tool = publish_intruder(&app, "acme", &app.admin, "token-of-acme").await;
    let marker = "victims-password-5b9e0c11";

    let victim = {
        let app_base = (app.base.clone(), app.admin.token.clone());
        let tool = tool.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            client
                .post(format!("{}/v1/acme/tool/{tool}/version/1.0.0/invoke", app_base.0))
                .bearer_auth(&app_base.1)
                .json(&json!({"inputs": [action("hold:2", json!({"password": marker}))]}))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    let stolen = report(&app, &tool, &format!("steal:{marker}")).await;
    assert_eq!(stolen["found_anywhere"], false, "{stolen:#}");
    for (fd, result) in stolen["fds"].as_object().unwrap() {
        assert_ne!(result, "ok", "the zygote's descriptor {fd} was readable: {stolen:#}");
    }
    for (fd, result) in stolen["forged"].as_object().unwrap() {
        assert_ne!(result, "ok", "the zygote's descriptor {fd} took a forged answer: {stolen:#}");
    }
    assert_eq!(stolen["ptrace"], "EPERM");
    assert_eq!(stolen["process_vm_readv"], "EPERM");

    let answered = victim.await.unwrap();
    let result = &answered["invocation_results"][0];
    assert_eq!(result["succeeded"], true, "{answered}");
    let output: Value = serde_json::from_str(result["output"].as_str().unwrap()).unwrap();
    assert!(output["held"].as_u64().unwrap() > 0, "the victim's own answer, not a forged one: {output}");

    // What was recorded is the victim's answer too (both calls are direct ones).
    let listed = app
        .request(
            Method::GET,
            &format!("/v1/acme/tool/invocation?tool_id={tool}&limit=10&invocation_source_type=direct"),
            &app.admin.token,
        )
        .op("get-tool-invocations")
        .send()
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert!(!listed.text.contains("forged by the intruder"), "{}", listed.text);
    for row in listed.body["tool_invocations"].as_array().unwrap() {
        let output = row["invocation_status"]["output"].as_str().unwrap_or_default();
        assert!(!output.contains(marker), "a recorded output holds the victim's value: {row}");
    }
});

both_backends!(memory_processes_and_scratch_space_are_bounded_per_invocation, |backend: Backend| async move {
    let mut options = Options::default();
    options.settings.runtime.limits.memory_bytes = 256 << 20;
    options.settings.runtime.limits.processes = 24;
    options.settings.runtime.tmp_bytes = 32 << 20;
    let app = TestApp::spawn_with(backend, options).await;
    push_samples(&app).await;
    let tool = publish_intruder(&app, "acme", &app.admin, "token-of-acme").await;

    // Four children of 120 MiB each: each under the per-process limit, together over the
    // invocation's.
    let memory = report(&app, &tool, "memory:4:120").await;
    let killed = memory["children"].as_array().unwrap().iter().filter(|s| *s == "killed").count();
    assert!(killed >= 1, "the invocation held more than its memory: {memory}");
    let processes = report(&app, &tool, "processes:200").await;
    assert!(processes["started"].as_u64().unwrap() < 24, "{processes}");
    for dir in ["/tmp", "/dev/shm"] {
        let fill = report(&app, &tool, &format!("fill:{dir}:64")).await;
        assert_eq!(fill["error"], "ENOSPC", "{dir}: {fill}");
    }
    // Nothing written survives to the next invocation, and /dev takes no files.
    for path in ["/dev/shm/left", "/tmp/left"] {
        assert_eq!(report(&app, &tool, &format!("leave:{path}")).await["left"], "ok");
        assert_eq!(report(&app, &tool, &format!("find:{path}")).await["exists"], false, "{path} survived");
    }
    assert_eq!(report(&app, &tool, "leave:/dev/left").await["left"], "EROFS");
    assert_eq!(report(&app, &tool, "probe").await["seccomp"], "2", "the runtime lived through it");
});

both_backends!(a_secret_printed_at_import_is_masked_in_the_error, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    push_samples(&app).await;
    let secret = "secret-token-printed-at-import-91";
    let tool = publish_intruder(&app, "acme", &app.admin, secret).await;
    let r = app
        .request(Method::POST, &format!("/v1/acme/tool/{tool}/envvar"), &app.admin.token)
        .op("modify-tool-envvars")
        .json(&json!({"updates": [{"name": "INTRUDER_AT_IMPORT", "value": "leak"}]}))
        .send()
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = invoke_as(&app, "acme", &app.admin, &tool, vec![action("probe", json!({}))]).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(!r.text.contains(secret), "{}", r.text);
    assert!(r.text.contains("cannot start: the token is ********"), "{}", r.text);
});

both_backends!(egress_reaches_the_internet_but_never_the_host, |backend: Backend| async move {
    let internet = toolsmith_runtime::testnet::Internet::start().expect("a test network");
    let app = TestApp::spawn(backend).await;
    push_samples(&app).await;
    let tool = publish_intruder(&app, "acme", &app.admin, "token-of-acme").await;

    let reached = report(&app, &tool, &format!("connect:{}", internet.addr())).await;
    assert_eq!(reached["connected"], true, "{reached}");
    assert!(reached["received"].as_str().unwrap().contains(internet.greeting()), "{reached}");

    // A listener on the host's loopback, PostgreSQL, the host's own addresses and the
    // link-local metadata address are out of reach.
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut targets = vec![
        format!("127.0.0.1:{port}"),
        format!("10.0.2.2:{port}"),
        "127.0.0.1:5432".to_owned(),
        "10.0.2.2:5432".to_owned(),
        "169.254.169.254:80".to_owned(),
    ];
    for address in host_addresses() {
        targets.push(format!("{address}:{port}"));
        targets.push(format!("{address}:5432"));
    }
    for target in targets {
        let r = report(&app, &tool, &format!("connect:{target}")).await;
        assert_eq!(r["connected"], false, "{target} was reachable: {r}");
    }
});

both_backends!(with_the_network_off_nothing_is_reachable, |backend: Backend| async move {
    let internet = toolsmith_runtime::testnet::Internet::start().expect("a test network");
    let mut options = Options::default();
    options.settings.runtime.network = toolsmith_runtime::Network::Off;
    let app = TestApp::spawn_with(backend, options).await;
    push_samples(&app).await;
    let tool = publish_intruder(&app, "acme", &app.admin, "token-of-acme").await;
    for target in [internet.addr().to_string(), "127.0.0.1:5432".to_owned(), "10.0.2.2:5432".to_owned()] {
        let r = report(&app, &tool, &format!("connect:{target}")).await;
        assert_eq!(r["connected"], false, "{target} was reachable: {r}");
    }
});

/// The host's own IPv4 addresses other than loopback.
fn host_addresses() -> Vec<String> {
    let out = std::process::Command::new("ip").args(["-4", "-o", "addr", "show"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().nth(3))
        .filter_map(|cidr| cidr.split('/').next())
        .filter(|a| !a.starts_with("127."))
        .map(str::to_owned)
        .collect()
}
