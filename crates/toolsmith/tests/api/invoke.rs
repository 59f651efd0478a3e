//! `POST /tool/{id}/version/{version}/invoke` and `POST /tool/test`, with the real sample tools
//! pushed into the organization's repository, published with uv and run in the sandbox.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use toolsmith_domain::Role;

use crate::both_backends;
use crate::examples::push_samples;
use crate::support::{Backend, Options, Resp, TestApp};

async fn set_envvars(app: &TestApp, tool: &str, body: Value) {
    let r = app
        .request(Method::POST, &format!("/v1/acme/tool/{tool}/envvar"), &app.admin.token)
        .op("modify-tool-envvars")
        .json(&body)
        .send()
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
}

/// Creates a tool and publishes the sample `name` as its version 1.0.0.
pub async fn publish(app: &TestApp, name: &str, envvars: Option<Value>) -> String {
    let tool = app.create_tool(name).await;
    if let Some(body) = envvars {
        set_envvars(app, &tool, body).await;
    }
    let r = app
        .request(Method::POST, &format!("/v1/acme/tool/{tool}/version"), &app.admin.token)
        .op("publish-tool-version")
        .json(&json!({"project_path": format!("examples/tools/{name}"), "bump_type": "major"}))
        .send()
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    tool
}

fn input(parameters: Value) -> Value {
    json!({
        "input_parameters": parameters,
        "invocation_mode": "regular",
        "nonsensitive_user_variables": {},
        "sensitive_user_variables": {},
    })
}

async fn invoke(app: &TestApp, tool: &str, version: &str, inputs: Vec<Value>) -> Resp {
    invoke_as(app, &app.admin.token, tool, version, inputs).await
}

async fn invoke_as(app: &TestApp, token: &str, tool: &str, version: &str, inputs: Vec<Value>) -> Resp {
    app.request(Method::POST, &format!("/v1/acme/tool/{tool}/version/{version}/invoke"), token)
        .op("invoke-tool-version")
        .json(&json!({"inputs": inputs}))
        .send()
        .await
}

fn outputs(r: &Resp) -> Vec<Value> {
    r.body["invocation_results"].as_array().unwrap().iter().map(|x| x["output"].clone()).collect()
}

both_backends!(invoking_published_samples_returns_results_in_order_and_records_them, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    push_samples(&app).await;
    let counter = publish(&app, "counter", None).await;
    let raises = publish(&app, "raises", None).await;
    let echo = publish(&app, "context_echo", None).await;

    // Every invocation is a fresh process: the module-level counter is 1 every time.
    let r = invoke(&app, &counter, "1.0.0", vec![input(json!({})); 3]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(outputs(&r), vec![json!("1"); 3]);
    assert_eq!(r.header("x-toolsmith-tool-version"), Some("1.0.0"));
    let r = invoke(&app, &counter, "1.0.0", vec![input(json!({}))]).await;
    assert_eq!(outputs(&r), vec![json!("1")]);
    assert!(r.body["invocation_results"][0]["duration_ms"].as_i64().unwrap() >= 0);

    // A specifier resolves to the highest live version; the header says which ran.
    let r = invoke(&app, &counter, "%3E%3D1%2C%3C2", vec![input(json!({}))]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-toolsmith-tool-version"), Some("1.0.0"));

    // A tool exception is a 200 with the exception.
    let r = invoke(&app, &raises, "1.0.0", vec![input(json!({"reason": "first"})), input(json!({}))]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let first = &r.body["invocation_results"][0];
    assert_eq!(first["succeeded"], false);
    assert_eq!(first["exception_type"], "ValueError");
    assert_eq!(first["exception_message"], "this tool always fails: first");
    assert!(first["exception_stack_trace"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l.as_str().unwrap().contains("raise ValueError")));
    assert_eq!(r.body["invocation_results"][1]["exception_message"], "this tool always fails: no reason given");

    // The context carries the mode and the user variables; sensitive values are masked in what
    // comes back.
    let r = invoke(
        &app,
        &echo,
        "1.0.0",
        vec![json!({
            "input_parameters": {"note": "ctx"},
            "invocation_mode": "conversation-simulation",
            "nonsensitive_user_variables": {"locale": "pt_PT"},
            "sensitive_user_variables": {"member_id": "member-4242"},
            "invocation_source": {
                "type": "simulation-conversation",
                "simulation_unit_test_set_run_id": "65f1c0ffee0000000000abcd",
                "unit_test_id": null,
                "run_index": 2,
                "invocation_metadata": {"type": "engage-user", "current_state_machine_and_version": ["sm", 1], "tool_call_round_index": 0}
            }
        })],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let echoed: Value = serde_json::from_str(r.body["invocation_results"][0]["output"].as_str().unwrap()).unwrap();
    assert_eq!(echoed["context"]["invocation_mode"], "conversation-simulation");
    assert_eq!(echoed["context"]["nonsensitive_user_variables"], json!({"locale": "pt_PT"}));
    assert_eq!(echoed["context"]["sensitive_user_variables"], json!({"member_id": "********"}));
    assert!(!r.text.contains("member-4242"));

    // Every invocation was recorded before the answers came back. Calls without a source are
    // direct calls, listed when asked for.
    let listed = app
        .request(
            Method::GET,
            &format!("/v1/acme/tool/invocation?tool_id={counter}&limit=100&invocation_source_type=direct"),
            &app.admin.token,
        )
        .op("get-tool-invocations")
        .send()
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let rows = listed.body["tool_invocations"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|row| row["invocation_status"]["output"] == "1"));
    assert_eq!(rows[0]["invocation_source"], json!({"type": "direct", "user_id": app.admin.id, "user_org_id": "acme"}));
    assert_eq!(rows[0]["caller"], json!({"org_id": "acme", "user_id": app.admin.id}));
    let simulated = app
        .request(
            Method::GET,
            &format!("/v1/acme/tool/invocation?tool_id={echo}&invocation_source_type=simulation-conversation"),
            &app.admin.token,
        )
        .op("get-tool-invocations")
        .send()
        .await;
    let rows = simulated.body["tool_invocations"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{}", simulated.text);
    assert_eq!(rows[0]["invocation_source"]["run_index"], 2);
    assert_eq!(rows[0]["caller"]["user_id"], app.admin.id.as_str());
    assert!(!simulated.text.contains("member-4242"), "sensitive user variables are never stored");
    let failed = app
        .request(
            Method::GET,
            &format!("/v1/acme/tool/invocation/search?query=first&tool_id={raises}&invocation_source_type=direct"),
            &app.admin.token,
        )
        .op("search-tool-invocations")
        .send()
        .await;
    assert_eq!(failed.status, 200, "{}", failed.text);
    assert_eq!(failed.body["tool_invocations"].as_array().unwrap().len(), 1, "{}", failed.text);
});

fn conversation_source(user: &str) -> Value {
    json!({
        "type": "regular-conversation",
        "user_id": user,
        "conversation_id": "c0c0c0c0c0c0c0c0c0c0c0c0",
        "interaction_id": null,
        "invocation_metadata": {
            "type": "state-transition",
            "current_state_machine_and_version": ["support", 3],
            "state_name": "lookup",
            "state_transition_index": 1,
            "tool_call_round_index": 0
        }
    })
}

fn with_source(note: &str, source: Value) -> Value {
    let mut input = input(json!({"note": note}));
    input["invocation_source"] = source;
    input
}

/// The records of a tool, of every source kind, oldest first.
async fn records(app: &TestApp, tool: &str) -> Vec<Value> {
    let path = format!(
        "/v1/acme/tool/invocation?tool_id={tool}&invocation_source_type=regular-conversation\
         &invocation_source_type=simulation-conversation&invocation_source_type=direct"
    );
    let r = app.request(Method::GET, &path, &app.admin.token).op("get-tool-invocations").send().await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["tool_invocations"].as_array().unwrap().clone()
}

both_backends!(attaching_a_source_takes_its_own_permission_and_the_caller_is_recorded, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    push_samples(&app).await;
    let echo = publish(&app, "context_echo", None).await;
    let developer = app.user("acme", &[Role::Developer]).await;
    let invoker = app.user("acme", &[Role::Invoker]).await;
    let runtime = app.user("acme", &[Role::AgentRuntime]).await;
    let someone_else = "0123456789abcdef01234567";

    // Without the permission, a source is refused with the contract's 403, before the body is
    // validated and before the tool is looked up; nothing runs and nothing is recorded.
    for user in [&developer, &invoker] {
        let r = invoke_as(&app, &user.token, &echo, "1.0.0", vec![with_source("a", conversation_source(someone_else))])
            .await;
        assert_eq!((r.status, r.detail()), (403, "Missing required permissions."), "{}", r.text);
        let r = invoke_as(&app, &user.token, &echo, "1.0.0", vec![with_source("b", json!({"type": "nonsense"}))]).await;
        assert_eq!(r.status, 403, "{}", r.text);
        let r = invoke_as(
            &app,
            &user.token,
            "ffffffffffffffffffffffff",
            "1.0.0",
            vec![with_source("c", conversation_source(someone_else))],
        )
        .await;
        assert_eq!(r.status, 403, "{}", r.text);
        // One input with a source is enough.
        let r = invoke_as(
            &app,
            &user.token,
            &echo,
            "1.0.0",
            vec![input(json!({"note": "d"})), with_source("e", conversation_source(someone_else))],
        )
        .await;
        assert_eq!(r.status, 403, "{}", r.text);
    }
    assert!(records(&app, &echo).await.is_empty());

    // Without a source (absent or null) they invoke as before: a direct call by themselves.
    let r = invoke_as(&app, &invoker.token, &echo, "1.0.0", vec![with_source("plain", Value::Null)]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // An agent runtime attaches a conversation of another user; the record keeps both.
    let r =
        invoke_as(&app, &runtime.token, &echo, "1.0.0", vec![with_source("agent", conversation_source(someone_else))])
            .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let rows = records(&app, &echo).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["invocation_source"], json!({"type": "direct", "user_id": invoker.id, "user_org_id": "acme"}));
    assert_eq!(rows[0]["caller"], json!({"org_id": "acme", "user_id": invoker.id}));
    assert_eq!(rows[1]["invocation_source"], conversation_source(someone_else));
    assert_eq!(rows[1]["caller"], json!({"org_id": "acme", "user_id": runtime.id}));

    // Nullable fields may be left out and are recorded as nulls; fields outside the shape are
    // dropped. What is recorded is exactly the contract's shape.
    let sparse = json!({
        "type": "simulation-conversation",
        "run_index": 4,
        "unknown": "dropped",
        "invocation_metadata": {"type": "tool-call-state", "current_state_machine_and_version": ["sm", 2], "state_name": "s"}
    });
    let r = invoke_as(&app, &runtime.token, &echo, "1.0.0", vec![with_source("sparse", sparse)]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let rows = records(&app, &echo).await;
    assert_eq!(
        rows[2]["invocation_source"],
        json!({
            "type": "simulation-conversation",
            "simulation_unit_test_set_run_id": null,
            "unit_test_id": null,
            "run_index": 4,
            "invocation_metadata": {"type": "tool-call-state", "current_state_machine_and_version": ["sm", 2], "state_name": "s"}
        })
    );

    // With the permission, a source outside the contract's shape is a 422 naming the field.
    let metadata = |m: Value| {
        let mut s = conversation_source(someone_else);
        s["invocation_metadata"] = m;
        s
    };
    let at = |rest: &[Value]| {
        let mut loc = vec![json!("body"), json!("inputs"), json!(0), json!("invocation_source")];
        loc.extend_from_slice(rest);
        Value::Array(loc)
    };
    for (source, loc, kind) in [
        (json!("regular"), at(&[]), "model_attributes_type"),
        (json!({"user_id": someone_else}), at(&[]), "union_tag_not_found"),
        (json!({"type": "direct", "user_id": someone_else, "user_org_id": "acme"}), at(&[]), "union_tag_invalid"),
        (
            json!({"type": "regular-conversation", "invocation_metadata": {"type": "engage-user", "current_state_machine_and_version": ["sm", 1], "tool_call_round_index": 0}}),
            at(&[json!("user_id")]),
            "missing",
        ),
        (
            json!({"type": "regular-conversation", "user_id": someone_else}),
            at(&[json!("invocation_metadata")]),
            "missing",
        ),
        (
            json!({"type": "simulation-conversation", "run_index": "2", "invocation_metadata": {"type": "engage-user", "current_state_machine_and_version": ["sm", 1], "tool_call_round_index": 0}}),
            at(&[json!("run_index")]),
            "int_type",
        ),
        (
            metadata(json!({"type": "state-transition"})),
            at(&[json!("invocation_metadata"), json!("current_state_machine_and_version")]),
            "missing",
        ),
        (metadata(json!({"type": "thinking"})), at(&[json!("invocation_metadata")]), "union_tag_invalid"),
        (metadata(json!([])), at(&[json!("invocation_metadata")]), "model_attributes_type"),
        (
            metadata(
                json!({"type": "engage-user", "current_state_machine_and_version": ["sm"], "tool_call_round_index": 0}),
            ),
            at(&[json!("invocation_metadata"), json!("current_state_machine_and_version"), json!(1)]),
            "missing",
        ),
        (
            metadata(
                json!({"type": "engage-user", "current_state_machine_and_version": ["sm", 1, 2], "tool_call_round_index": 0}),
            ),
            at(&[json!("invocation_metadata"), json!("current_state_machine_and_version")]),
            "too_long",
        ),
        (
            metadata(
                json!({"type": "engage-user", "current_state_machine_and_version": [1, "sm"], "tool_call_round_index": 0}),
            ),
            at(&[json!("invocation_metadata"), json!("current_state_machine_and_version"), json!(0)]),
            "string_type",
        ),
        (
            metadata(json!({"type": "tool-call-state", "current_state_machine_and_version": ["sm", 1]})),
            at(&[json!("invocation_metadata"), json!("state_name")]),
            "missing",
        ),
        (
            metadata(
                json!({"type": "engage-user", "current_state_machine_and_version": ["sm", 1], "tool_call_round_index": 0.5}),
            ),
            at(&[json!("invocation_metadata"), json!("tool_call_round_index")]),
            "int_type",
        ),
    ] {
        let r = invoke_as(&app, &runtime.token, &echo, "1.0.0", vec![with_source("bad", source.clone())]).await;
        assert_eq!(r.status, 422, "{source}: {}", r.text);
        assert_eq!(
            (r.body["detail"][0]["loc"].clone(), r.body["detail"][0]["type"].clone()),
            (loc, json!(kind)),
            "{source}: {}",
            r.text
        );
    }
    assert_eq!(records(&app, &echo).await.len(), 3, "nothing refused was recorded");
});

both_backends!(bad_invocations_are_refused_before_anything_runs, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    push_samples(&app).await;
    let tool = publish(&app, "no_deps", None).await;

    // Schema violations name the input and the field.
    let r = invoke(&app, &tool, "1.0.0", vec![input(json!({"text": "fine"})), input(json!({"text": 42}))]).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.detail().starts_with("The input parameters do not conform to the tool's input schema."), "{}", r.text);
    assert!(r.detail().contains("Input 2") && r.detail().contains("text"), "{}", r.text);
    let r = invoke(&app, &tool, "1.0.0", vec![input(json!({"unknown": 1}))]).await;
    assert_eq!(r.status, 400, "{}", r.text);

    // Eleven inputs, none, a missing mode, and a body that is not JSON are 422s.
    let r = invoke(&app, &tool, "1.0.0", vec![input(json!({"text": "x"})); 11]).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.body["detail"][0]["type"], "too_long");
    let r = invoke(&app, &tool, "1.0.0", vec![]).await;
    assert_eq!(r.status, 422, "{}", r.text);
    let r = invoke(&app, &tool, "1.0.0", vec![json!({"input_parameters": {"text": "x"}})]).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.body["detail"][0]["loc"], json!(["body", "inputs", 0, "invocation_mode"]));
    let r = app
        .request(Method::POST, &format!("/v1/acme/tool/{tool}/version/1.0.0/invoke"), &app.admin.token)
        .op("invoke-tool-version")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await;
    assert_eq!(r.status, 422, "{}", r.text);

    // Unknown and deprecated versions, and another organization's tool, are not found.
    let r = invoke(&app, &tool, "9.9.9", vec![input(json!({"text": "x"}))]).await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.detail(), "The specified organization, tool, or tool version does not exist.");
    let other = app.other_org("globex").await;
    let r = app
        .request(Method::POST, &format!("/v1/globex/tool/{tool}/version/1.0.0/invoke"), &other.token)
        .op("invoke-tool-version")
        .json(&json!({"inputs": [input(json!({"text": "x"}))]}))
        .send()
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = invoke(&app, &tool, "1.0.0", vec![input(json!({"text": "still here"}))]).await;
    assert_eq!(outputs(&r), vec![json!("still here")]);
    let r = app
        .request(Method::DELETE, &format!("/v1/acme/tool/{tool}/version/%3D%3D1.0.0"), &app.admin.token)
        .send()
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = invoke(&app, &tool, "1.0.0", vec![input(json!({"text": "x"}))]).await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = invoke(&app, &tool, ">=1", vec![input(json!({"text": "x"}))]).await;
    assert_eq!(r.status, 404, "{}", r.text);
});

both_backends!(
    env_vars_and_secrets_reach_the_tool_masked_and_hostile_tools_are_contained,
    |backend: Backend| async move {
        let mut options = Options::default();
        options.settings.runtime.network = toolsmith_runtime::Network::Off;
        options.settings.runtime.limits.timeout = Duration::from_secs(3);
        options.settings.runtime.limits.cpu_secs = 5;
        options.settings.runtime.limits.memory_bytes = 256 << 20;
        options.settings.runtime.limits.processes = 32;
        options.settings.runtime.limits.output_bytes = 64 << 10;
        let app = TestApp::spawn_with(backend, options).await;
        push_samples(&app).await;
        let secret = "tok-super-secret-0042";
        let tool = publish(
            &app,
            "hostile",
            Some(json!({"inserts": [{"name": "API_TOKEN", "value": secret, "is_secret": true}]})),
        )
        .await;
        let act = |action: String| {
            let app = &app;
            let tool = tool.clone();
            async move { invoke(app, &tool, "1.0.0", vec![input(json!({"action": action}))]).await }
        };

        // The secret reaches the tool and is masked wherever it would leave.
        let r = act("secret".into()).await;
        assert_eq!(outputs(&r), vec![json!("********")]);
        let r = act("environ".into()).await;
        let environ = r.body["invocation_results"][0]["output"].as_str().unwrap();
        assert!(environ.contains("API_TOKEN=********"), "{environ}");
        assert!(!r.text.contains(secret));
        assert!(
            !environ.contains("TOOLSMITH") && !environ.contains("CARGO"),
            "the server's environment leaked: {environ}"
        );

        // A new value reaches the next invocation (the runtime is replaced).
        set_envvars(&app, &tool, json!({"updates": [{"name": "API_TOKEN", "value": "tok-rotated-0043"}]})).await;
        let r = act("secret".into()).await;
        assert_eq!(outputs(&r), vec![json!("********")]);
        let listed = app
            .request(
                Method::GET,
                &format!("/v1/acme/tool/invocation?tool_id={tool}&sort_by=-created_at&limit=1"),
                &app.admin.token,
            )
            .op("get-tool-invocations")
            .send()
            .await;
        assert!(!listed.text.contains("tok-rotated-0043") && !listed.text.contains(secret), "{}", listed.text);

        // Nothing of the server is visible: not its data directory, database, keys, nor the
        // repository; the tool's own files and the system are read-only.
        let data = app.dir.path().to_string_lossy().into_owned();
        // Every published tool's files live under the artifacts directory; none is visible.
        let artifacts = format!("{data}/artifacts");
        let tool_files: Vec<String> = std::fs::read_dir(&artifacts)
            .map(|dir| dir.filter_map(|e| e.ok()).map(|e| e.path().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        assert!(!tool_files.is_empty(), "published tools have files under {artifacts}");
        let paths = [
            data.clone(),
            format!("{data}/keys/secret-keys"),
            format!("{data}/toolsmith.db"),
            "/proc/1/environ".into(),
            "/etc/shadow".into(),
        ];
        for path in paths.into_iter().chain(tool_files) {
            let r = act(format!("read:{path}")).await;
            let result = &r.body["invocation_results"][0];
            if result["succeeded"] == true {
                let text = result["output"].as_str().unwrap();
                assert!(
                    !text.contains("TOOLSMITH") && !text.contains("CARGO") && !text.contains(secret),
                    "{path}: {text}"
                );
            }
        }
        for path in ["/project/x", "/env/x", "/usr/x", "/etc/x"] {
            let r = act(format!("write:{path}")).await;
            assert_eq!(r.body["invocation_results"][0]["succeeded"], false, "{path} was writable: {}", r.text);
        }

        // Unbounded memory, CPU, processes and output are stopped, and a tool cannot kill its
        // parent; meanwhile the server answers other requests promptly.
        let spinning = {
            let app = &app;
            let tool = tool.clone();
            async move { invoke(app, &tool, "1.0.0", vec![input(json!({"action": "spin"}))]).await }
        };
        let probe = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let started = Instant::now();
            let r = app.request(Method::GET, "/v1/acme/tool/", &app.admin.token).send().await;
            (r.status, started.elapsed())
        };
        let (spun, (status, took)) = tokio::join!(spinning, probe);
        assert_eq!(status, 200);
        assert!(took < Duration::from_secs(1), "the server stalled for {took:?}");
        let result = &spun.body["invocation_results"][0];
        assert_eq!(result["succeeded"], false);
        assert_eq!(result["exception_type"], "TimeoutError", "{}", spun.text);

        let r = act("allocate".into()).await;
        assert_eq!(r.body["invocation_results"][0]["exception_type"], "MemoryError", "{}", r.text);
        let r = act("fork".into()).await;
        assert!(outputs(&r)[0].as_str().unwrap().starts_with("fork failed after"), "{}", r.text);
        let r = act("flood".into()).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let r = act("kill_parent".into()).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let r = act("connect:127.0.0.1:5432".into()).await;
        assert_eq!(r.body["invocation_results"][0]["succeeded"], false, "egress is off: {}", r.text);
        let port = app.base.rsplit(':').next().unwrap().trim_end_matches('/').to_owned();
        let r = act(format!("connect:127.0.0.1:{port}")).await;
        assert_eq!(r.body["invocation_results"][0]["succeeded"], false, "the server's own port: {}", r.text);

        // After all of it the tool still runs normally.
        let r = act("secret".into()).await;
        assert_eq!(outputs(&r), vec![json!("********")]);

        // Captured output is stored with the record (masked) and readable through the extension.
        let listed = app
            .request(
                Method::GET,
                &format!("/v1/acme/tool/invocation?tool_id={tool}&limit=100&invocation_source_type=direct"),
                &app.admin.token,
            )
            .op("get-tool-invocations")
            .send()
            .await;
        let flood = listed.body["tool_invocations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["inputs"]["action"] == "flood")
            .expect("the flood invocation is recorded")
            .clone();
        let logs = app
            .request(
                Method::GET,
                &format!("/v1/acme/tool/invocation/{}/logs", flood["id"].as_str().unwrap()),
                &app.admin.token,
            )
            .send()
            .await;
        assert_eq!(logs.status, 200, "{}", logs.text);
        let text = logs.body["logs"].as_str().unwrap();
        assert!(text.len() <= (64 << 10) + 200 && text.starts_with("xxxx"), "{} bytes", text.len());
    }
);

async fn test_tool(app: &TestApp, body: Value) -> Resp {
    app.request(Method::POST, "/v1/acme/tool/test", &app.admin.token).op("test-tool").json(&body).send().await
}

both_backends!(the_test_endpoint_builds_a_branch_and_runs_it_with_the_given_env, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    push_samples(&app).await;
    let body = |project: &str, inputs: Vec<Value>, env: Value, secret: Value| {
        json!({
            "inputs": inputs,
            "commit_branch": "main",
            "project_path": format!("examples/tools/{project}"),
            "required_envvars": env,
            "required_secret_envvars": secret,
        })
    };
    let r = test_tool(
        &app,
        body(
            "hostile",
            vec![input(json!({"action": "secret"})), input(json!({"action": "read:/project/pyproject.toml"}))],
            json!({}),
            json!({"API_TOKEN": "tested-secret-1"}),
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(outputs(&r)[0], json!("********"));
    assert!(outputs(&r)[1].as_str().unwrap().contains("hostile"));
    assert!(r.header("x-toolsmith-build-id").is_some(), "the first test builds");
    let again = test_tool(
        &app,
        body("hostile", vec![input(json!({"action": "secret"}))], json!({}), json!({"API_TOKEN": "tested-secret-2"})),
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert!(again.header("x-toolsmith-build-id").is_none(), "an unchanged branch is not built again");

    // Each 400 reason has its own message.
    let r = test_tool(
        &app,
        body("hostile", vec![input(json!({"action": "secret"}))], json!({"API_TOKEN": "a"}), json!({"API_TOKEN": "b"})),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.detail().contains("both secret and non-secret"), "{}", r.text);
    let r = test_tool(&app, body("hostile", vec![input(json!({"action": "secret"}))], json!({}), json!({}))).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.detail().contains("not declared in the request") && r.detail().contains("API_TOKEN"), "{}", r.text);
    let r =
        test_tool(&app, body("hostile", vec![input(json!({"action": 7}))], json!({}), json!({"API_TOKEN": "x"}))).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.detail().starts_with("The input parameters do not conform"), "{}", r.text);
    let r = test_tool(&app, body("failing_test", vec![input(json!({}))], json!({}), json!({}))).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.detail().contains("failed CI checks"), "{}", r.text);
    let r = test_tool(&app, body("import_error", vec![input(json!({}))], json!({}), json!({}))).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.detail().starts_with("Tool build has failed"), "{}", r.text);
    let r = test_tool(&app, body("does_not_exist", vec![input(json!({}))], json!({}), json!({}))).await;
    assert_eq!(r.status, 404, "{}", r.text);
    let mut missing_branch =
        body("hostile", vec![input(json!({"action": "secret"}))], json!({}), json!({"API_TOKEN": "x"}));
    missing_branch["commit_branch"] = json!("no-such-branch");
    let r = test_tool(&app, missing_branch.clone()).await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.detail(), "The specified organization or tool commit does not exist.");
    // The contract types the branch as any string, so an empty one is a branch that does not
    // exist, not a malformed request.
    for empty in ["", "  "] {
        missing_branch["commit_branch"] = json!(empty);
        let r = test_tool(&app, missing_branch.clone()).await;
        assert_eq!(r.status, 404, "{empty:?}: {}", r.text);
        assert_eq!(r.detail(), "The specified organization or tool commit does not exist.");
    }

    // Nothing of a test is recorded: it ran no published version.
    let listed = app.request(Method::GET, "/v1/acme/tool/invocation", &app.admin.token).send().await;
    assert_eq!(listed.body["tool_invocations"], json!([]), "{}", listed.text);
});

both_backends!(the_test_endpoint_allows_one_request_per_minute, |backend: Backend| async move {
    let options = Options { rate_limits: toolsmith::config::Switch::On, ..Options::default() };
    let app = TestApp::spawn_with(backend, options).await;
    let body = json!({"inputs": [input(json!({}))], "commit_branch": "nope", "project_path": "x", "required_envvars": {}, "required_secret_envvars": {}});
    let first = test_tool(&app, body.clone()).await;
    assert_eq!(first.status, 404, "{}", first.text);
    let second = test_tool(&app, body).await;
    assert_eq!(second.status, 429, "{}", second.text);
    assert!(second.detail().contains("1 request per minute"), "{}", second.text);
    assert!(second.header("retry-after").is_some());
});

both_backends!(invocations_beyond_the_concurrency_limit_are_refused_with_retry_after, |backend: Backend| async move {
    let mut options = Options::default();
    options.settings.runtime.max_concurrent = 1;
    options.settings.runtime.limits.timeout = Duration::from_secs(2);
    let app = TestApp::spawn_with(backend, options).await;
    push_samples(&app).await;
    let tool =
        publish(&app, "hostile", Some(json!({"inserts": [{"name": "API_TOKEN", "value": "x", "is_secret": true}]})))
            .await;
    let spinning = invoke(&app, &tool, "1.0.0", vec![input(json!({"action": "spin"}))]);
    let refused = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        invoke(&app, &tool, "1.0.0", vec![input(json!({"action": "secret"}))]).await
    };
    let (spun, refused) = tokio::join!(spinning, refused);
    assert_eq!(spun.body["invocation_results"][0]["exception_type"], "TimeoutError", "{}", spun.text);
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert_eq!(refused.header("retry-after"), Some("1"));
    // Once the slot is free again, invocations run.
    let r = invoke(&app, &tool, "1.0.0", vec![input(json!({"action": "secret"}))]).await;
    assert_eq!(r.status, 200, "{}", r.text);
});
