//! Invocation records over HTTP: the listing and search endpoints against the contract, their
//! parameter errors, per-row permissions, and the logs extension. Rows are recorded through the
//! store, as the invoke endpoint records them.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{json, Value};
use toolsmith_domain::time::Timestamp;
use toolsmith_domain::{ObjectId, Role, Version};
use toolsmith_store::{NewInvocation, NewVersion, UserRef};

use crate::both_backends;
use crate::support::{contract, Backend, Resp, TestApp};

const CONVERSATION: &str = "c0c0c0c0c0c0c0c0c0c0c0c0";
const RUN: &str = "a1a1a1a1a1a1a1a1a1a1a1a1";

/// Publishes version records for a tool directly in the store (no build needed to list them).
async fn publish_records(app: &TestApp, tool: &str, versions: &[&str]) {
    for v in versions {
        app.store
            .insert_version(NewVersion {
                org_id: "acme".into(),
                tool_id: tool.into(),
                version: Version::parse(v).unwrap(),
                required_envvars: vec![],
                required_secret_envvars: vec![],
                input_schema: json!({"type": "object"}),
                takes_context: false,
                entrypoint: "pkg.tool:run".into(),
                tool_commit_hash: "a".repeat(40),
                scaffold_hash: "b".repeat(64),
                project_directory: "pkg".into(),
                content_digest: "c".repeat(64),
                environment_key: "d".repeat(64),
                build_id: ObjectId::generate().to_string(),
                creator: UserRef { org_id: "acme".into(), user_id: app.admin.id.clone() },
            })
            .await
            .unwrap();
    }
}

fn regular_source() -> Value {
    json!({
        "type": "regular-conversation",
        "user_id": "0123456789abcdef01234567",
        "conversation_id": CONVERSATION,
        "interaction_id": "0123456789abcdef0123456a",
        "invocation_metadata": {
            "type": "state-transition",
            "current_state_machine_and_version": ["support", 3],
            "state_name": "lookup",
            "state_transition_index": 1,
            "tool_call_round_index": 0
        }
    })
}

fn simulation_source() -> Value {
    json!({
        "type": "simulation-conversation",
        "simulation_unit_test_set_run_id": RUN,
        "unit_test_id": null,
        "run_index": 0,
        "invocation_metadata": {
            "type": "engage-user",
            "current_state_machine_and_version": ["support", 3],
            "tool_call_round_index": 1
        }
    })
}

fn direct_source(user: &str) -> Value {
    json!({"type": "direct", "user_id": user, "user_org_id": "acme"})
}

/// A succeeded (`output` set) or failed invocation `n` seconds into the test's timeline.
fn invocation(tool: &str, version: &str, n: i64, output: Option<&str>, source: Value) -> NewInvocation {
    NewInvocation {
        id: ObjectId::generate().to_string(),
        org_id: "acme".into(),
        tool_id: tool.into(),
        version: Version::parse(version).unwrap(),
        succeeded: output.is_some(),
        output: output.map(str::to_owned),
        exception_type: output.is_none().then(|| "KeyError".to_owned()),
        exception_message: output.is_none().then(|| "'city' is missing from the forecast".to_owned()),
        exception_stack_trace: if output.is_none() {
            vec!["Traceback (most recent call last):".into(), "  File \"/tool/forecast.py\", line 9, in run".into()]
        } else {
            vec![]
        },
        duration_ms: 40 + n,
        inputs: json!({"city": "Lyon", "n": n}),
        source,
        logs: format!("step {n}\n"),
        created_at: Timestamp(1_760_000_000_000_000 + n * 1_000_000),
    }
}

/// Two tools; `weather` has versions 1.0.0, 1.1.0 and 2.0.0. Returns the tool ids and the
/// recorded invocations in creation order.
async fn fixture(app: &TestApp) -> (String, String, Vec<NewInvocation>) {
    let weather = app.create_tool("weather").await;
    let news = app.create_tool("news").await;
    publish_records(app, &weather, &["1.0.0", "1.1.0", "2.0.0"]).await;
    publish_records(app, &news, &["1.0.0"]).await;
    let rows = vec![
        invocation(&weather, "1.0.0", 1, Some("sunny, 21 degrees"), regular_source()),
        invocation(&weather, "1.1.0", 2, None, regular_source()),
        invocation(&weather, "2.0.0", 3, Some("rain expected"), simulation_source()),
        invocation(&news, "1.0.0", 4, Some("three headlines"), simulation_source()),
        invocation(&news, "1.0.0", 5, Some("headline about rain"), regular_source()),
    ];
    app.store.record_invocations(rows.clone()).await.unwrap();
    (weather, news, rows)
}

async fn list(app: &TestApp, token: &str, query: &str) -> Resp {
    app.request(Method::GET, &format!("/v1/acme/tool/invocation{query}"), token).op("get-tool-invocations").send().await
}

async fn search(app: &TestApp, token: &str, query: &str) -> Resp {
    app.request(Method::GET, &format!("/v1/acme/tool/invocation/search{query}"), token)
        .op("search-tool-invocations")
        .send()
        .await
}

fn ids(r: &Resp) -> Vec<String> {
    r.body["tool_invocations"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect()
}

fn pick(rows: &[NewInvocation], idx: &[usize]) -> Vec<String> {
    idx.iter().map(|&i| rows[i].id.clone()).collect()
}

both_backends!(listing_returns_records_as_the_contract_shapes_them, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let (weather, _news, rows) = fixture(&app).await;
    let r = list(&app, &app.admin.token, "").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(ids(&r), pick(&rows, &[0, 1, 2, 3, 4]), "creation order by default");
    assert_eq!((r.body["has_more"].clone(), r.body["continuation_token"].clone()), (json!(false), Value::Null));

    let ok = &r.body["tool_invocations"][0];
    assert_eq!(
        *ok,
        json!({
            "id": rows[0].id,
            "org_id": "acme",
            "created_at": "2025-10-09T08:53:21.000Z",
            "updated_at": "2025-10-09T08:53:21.000Z",
            "invocation_status": {"succeeded": true, "output": "sunny, 21 degrees"},
            "invocation_source": regular_source(),
            "duration_ms": 41,
            "tool_id": weather,
            "tool_version": {"major": 1, "minor": 0, "patch": 0},
            "inputs": {"city": "Lyon", "n": 1},
        })
    );
    let failed = &r.body["tool_invocations"][1];
    assert_eq!(
        failed["invocation_status"],
        json!({
            "succeeded": false,
            "exception_message": "'city' is missing from the forecast",
            "exception_type": "KeyError",
            "exception_stack_trace": ["Traceback (most recent call last):", "  File \"/tool/forecast.py\", line 9, in run"],
        })
    );
    assert_eq!(r.body["tool_invocations"][2]["invocation_source"], simulation_source());
});

both_backends!(listing_filters_sorts_and_pages, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let (weather, news, rows) = fixture(&app).await;
    let token = app.admin.token.clone();
    for (query, expected) in [
        (format!("?tool_id={weather}"), vec![0, 1, 2]),
        (format!("?tool_id={weather}&version=%3E%3D1.1"), vec![1, 2]),
        (format!("?tool_id={weather}&tool_id={news}&version=%3D%3D1.*&version="), vec![0, 1, 3, 4]),
        (format!("?tool_id={weather}&tool_id={news}&version=~%3D2.0&version=%3E1"), vec![2]),
        ("?invocation_source_type=simulation-conversation".into(), vec![2, 3]),
        (format!("?conversation_id={CONVERSATION}&succeeded=true"), vec![0, 4]),
        (format!("?simulation_unit_test_set_run_id={RUN}"), vec![2, 3]),
        ("?succeeded=false".into(), vec![1]),
        ("?sort_by=-created_at".into(), vec![4, 3, 2, 1, 0]),
        ("?sort_by=%2Binvocation_source.type&sort_by=-version.minor".into(), vec![1, 4, 0, 3, 2]),
        ("?sort_by=+invocation_status.succeeded&sort_by=-tool_id".into(), vec![1, 0, 2, 3, 4]),
    ] {
        let r = list(&app, &token, &query).await;
        assert_eq!(r.status, 200, "{query}: {}", r.text);
        let mut expected = pick(&rows, &expected);
        if query.contains("-tool_id") {
            // Tool ids are random: the expected order depends on which one is larger.
            let succeeded: Vec<&NewInvocation> = rows.iter().filter(|r| r.succeeded).collect();
            let mut ordered: Vec<&NewInvocation> = succeeded.clone();
            ordered.sort_by(|a, b| b.tool_id.cmp(&a.tool_id).then(b.created_at.cmp(&a.created_at)));
            expected = std::iter::once(rows[1].id.clone()).chain(ordered.iter().map(|r| r.id.clone())).collect();
        }
        assert_eq!(ids(&r), expected, "{query}");
    }

    // Pages of two: every row exactly once, tokens until the last page.
    let mut seen = Vec::new();
    let mut token_value = 0;
    loop {
        let r = list(&app, &token, &format!("?limit=2&sort_by=-created_at&continuation_token={token_value}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        seen.extend(ids(&r));
        assert_eq!(r.body["has_more"], json!(!r.body["continuation_token"].is_null()));
        match r.body["continuation_token"].as_i64() {
            Some(next) => token_value = next,
            None => break,
        }
    }
    assert_eq!(seen, pick(&rows, &[4, 3, 2, 1, 0]));

    let r = list(&app, &token, "?limit=0").await;
    assert_eq!(
        (ids(&r).len(), r.body["has_more"].clone(), r.body["continuation_token"].clone()),
        (0, json!(true), json!(0))
    );
});

both_backends!(listing_rejects_malformed_parameters, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let (weather, news, _rows) = fixture(&app).await;
    let token = app.admin.token.clone();
    for query in [format!("?tool_id={weather}&tool_id={news}&version=%3E1"), "?version=%3E1".to_owned()] {
        let r = list(&app, &token, &query).await;
        assert_eq!(
            (r.status, r.detail()),
            (400, "The `tool_id` and `version` query parameters are not the same length."),
            "{query}"
        );
    }
    for (query, loc) in [
        ("?tool_id=nope".to_owned(), json!(["query", "tool_id", 0])),
        (format!("?tool_id={weather}&tool_id={weather}"), json!(["query", "tool_id"])),
        (format!("?tool_id={weather}&version=%3E%3Dbanana"), json!(["query", "version", 0])),
        ("?invocation_source_type=email".to_owned(), json!(["query", "invocation_source_type", 0])),
        ("?conversation_id=123".to_owned(), json!(["query", "conversation_id", 0])),
        ("?simulation_unit_test_set_run_id=x".to_owned(), json!(["query", "simulation_unit_test_set_run_id", 0])),
        ("?succeeded=maybe".to_owned(), json!(["query", "succeeded"])),
        ("?limit=101".to_owned(), json!(["query", "limit"])),
        ("?limit=-1".to_owned(), json!(["query", "limit"])),
        ("?continuation_token=-5".to_owned(), json!(["query", "continuation_token"])),
        ("?continuation_token=987654321".to_owned(), json!(["query", "continuation_token"])),
        ("?sort_by=name".to_owned(), json!(["query", "sort_by", 0])),
        ("?sort_by=%2Bversion".to_owned(), json!(["query", "sort_by", 0])),
    ] {
        let r = list(&app, &token, &query).await;
        assert_eq!(r.status, 422, "{query}: {}", r.text);
        assert_eq!(r.body["detail"][0]["loc"], loc, "{query}: {}", r.text);
    }
    // Every problem is reported at once.
    let r = list(&app, &token, "?limit=500&succeeded=perhaps&sort_by=%2Bcolor").await;
    assert_eq!(r.body["detail"].as_array().unwrap().len(), 3, "{}", r.text);
});

both_backends!(search_finds_words_in_the_chosen_fields, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let (weather, _news, rows) = fixture(&app).await;
    let token = app.admin.token.clone();
    let q = |field: &str| format!("&query_against=invocation_status.{field}");
    for (query, expected) in [
        ("?query=rain".to_owned(), vec![4, 2]),
        ("?query=RAIN%20headline".to_owned(), vec![4]),
        (format!("?query=rain{}", q("output")), vec![4, 2]),
        ("?query=forecast".to_owned(), vec![1]),
        (format!("?query=forecast{}", q("exception_message")), vec![1]),
        (format!("?query=forecast{}", q("output")), vec![]),
        (format!("?query=keyerror{}", q("exception_type")), vec![1]),
        (format!("?query=keyerror{}", q("exception_stack_trace")), vec![]),
        (format!("?query=tool%20forecast{}", q("exception_stack_trace")), vec![1]),
        (format!("?query=forecast{}{}", q("exception_type"), q("exception_message")), vec![1]),
        ("?query=head*".to_owned(), vec![4, 3]),
        ("?query=head".to_owned(), vec![]),
        (format!("?query=rain&tool_id={weather}"), vec![2]),
        ("?query=rain&invocation_source_type=regular-conversation".to_owned(), vec![4]),
        (format!("?query=rain&simulation_unit_test_set_run_id={RUN}"), vec![2]),
        (format!("?query=rain&conversation_id={CONVERSATION}"), vec![4]),
        ("?query=rain&succeeded=false".to_owned(), vec![]),
        ("?query=rain&limit=1".to_owned(), vec![4]),
    ] {
        let r = search(&app, &token, &query).await;
        assert_eq!(r.status, 200, "{query}: {}", r.text);
        assert_eq!(ids(&r), pick(&rows, &expected), "{query}");
    }
    let hit = search(&app, &token, "?query=sunny").await;
    assert_eq!(hit.body["tool_invocations"][0]["invocation_status"]["output"], "sunny, 21 degrees");

    // Whatever the query holds, it is words to look for, never syntax.
    for raw in ["\"", "*", ":", "&", "'", "(", "\\", "rain\" OR \"x", "rain:*", "!rain | (", "NEAR(rain", ""] {
        let encoded: String = url_encode(raw);
        let r = search(&app, &token, &format!("?query={encoded}")).await;
        assert_eq!(r.status, 200, "{raw:?}: {}", r.text);
    }

    for (query, loc) in [
        ("", json!(["query", "query"])),
        ("?query=x&query_against=invocation_status.logs", json!(["query", "query_against", 0])),
        (
            "?query=x&query_against=invocation_status.output&query_against=invocation_status.output",
            json!(["query", "query_against"]),
        ),
        ("?query=x&tool_id=zz", json!(["query", "tool_id", 0])),
        ("?query=x&limit=0", json!(["query", "limit"])),
        ("?query=x&succeeded=2", json!(["query", "succeeded"])),
    ] {
        let r = search(&app, &token, query).await;
        assert_eq!(r.status, 422, "{query}: {}", r.text);
        assert_eq!(r.body["detail"][0]["loc"], loc, "{query}: {}", r.text);
    }
});

fn url_encode(raw: &str) -> String {
    raw.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

both_backends!(rows_are_visible_only_with_the_permission_of_their_source, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let (weather, _news, rows) = fixture(&app).await;
    let direct = invocation(&weather, "2.0.0", 6, Some("rain by noon"), direct_source(&app.admin.id));
    app.store.record_invocations(vec![direct.clone()]).await.unwrap();

    // Direct calls are toolsmith's own source type, outside the contract's schema, so these
    // answers are checked by hand.
    let everything = app.request(Method::GET, "/v1/acme/tool/invocation", &app.admin.token).send().await;
    assert_eq!(ids(&everything).len(), 6);
    assert_eq!(everything.body["tool_invocations"][5]["invocation_source"], direct_source(&app.admin.id));
    let r = app
        .request(Method::GET, "/v1/acme/tool/invocation?invocation_source_type=direct", &app.admin.token)
        .send()
        .await;
    assert_eq!(ids(&r), vec![direct.id.clone()]);
    let r = app.request(Method::GET, "/v1/acme/tool/invocation/search?query=rain", &app.admin.token).send().await;
    assert_eq!(ids(&r), vec![direct.id.clone(), rows[4].id.clone(), rows[2].id.clone()]);

    // A viewer reads every kind; an invoker none, and is told so by empty answers, not a 403.
    let viewer = app.user("acme", &[Role::Viewer]).await;
    let r = app.request(Method::GET, "/v1/acme/tool/invocation", &viewer.token).send().await;
    assert_eq!(ids(&r).len(), 6);
    let invoker = app.user("acme", &[Role::Invoker]).await;
    let r = list(&app, &invoker.token, "").await;
    assert_eq!((r.status, ids(&r).len(), r.body["has_more"].clone()), (200, 0, json!(false)));
    let r = list(&app, &invoker.token, "?invocation_source_type=regular-conversation").await;
    assert_eq!((r.status, ids(&r).len()), (200, 0));
    let r = search(&app, &invoker.token, "?query=rain").await;
    assert_eq!((r.status, ids(&r).len()), (200, 0));
    let logs = format!("/v1/acme/tool/invocation/{}/logs", rows[0].id);
    let r = app.request(Method::GET, &logs, &invoker.token).send().await;
    assert_eq!((r.status, r.detail()), (404, "The specified organization or invocation does not exist."));

    // Another organization's records do not exist for this one, and its admin cannot reach ours.
    let other = app.other_org("globex").await;
    let r =
        app.request(Method::GET, "/v1/globex/tool/invocation", &other.token).op("get-tool-invocations").send().await;
    assert_eq!((r.status, ids(&r).len()), (200, 0));
    let r = list(&app, &other.token, "").await;
    assert_eq!((r.status, r.detail()), (404, "Specified organization does not exist."));
    let r = search(&app, &other.token, "?query=rain").await;
    assert_eq!((r.status, r.detail()), (404, "The organization is not found."));
    let r = app.request(Method::GET, &logs.replace("acme", "globex"), &other.token).send().await;
    assert_eq!(r.status, 404);
    let r = app.request(Method::GET, "/v1/acme/tool/invocation", "").op("get-tool-invocations").send().await;
    assert_eq!(r.status, 401);
});

both_backends!(logs_extension_returns_what_the_tool_printed, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let (_weather, _news, rows) = fixture(&app).await;
    let path = |id: &str| format!("/v1/acme/tool/invocation/{id}/logs");
    let r = app.request(Method::GET, &path(&rows[2].id), &app.admin.token).send().await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body, json!({"invocation_id": rows[2].id, "logs": "step 3\n"}));
    let r = app.request(Method::GET, &path(&ObjectId::generate().to_string()), &app.admin.token).send().await;
    assert_eq!((r.status, r.detail()), (404, "The specified organization or invocation does not exist."));
    let r = app.request(Method::GET, &path("not-an-id"), &app.admin.token).send().await;
    assert_eq!((r.status, r.body["detail"][0]["loc"].clone()), (422, json!(["path", "invocation_id"])));
});

#[tokio::test]
async fn openapi_document_describes_the_invocation_endpoints() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let doc = app.request(Method::GET, "/openapi.json", "").send().await.body;
    for (path, op) in [
        ("/v1/{organization}/tool/invocation", "get-tool-invocations"),
        ("/v1/{organization}/tool/invocation/search", "search-tool-invocations"),
    ] {
        let mine = &doc["paths"][path]["get"];
        assert_eq!(mine["operationId"], op);
        assert!(mine.get("x-toolsmith-extension").is_none(), "{op} is a compatible operation");
        for (status, response) in contract().operation(op)["responses"].as_object().unwrap() {
            assert_eq!(mine["responses"][status]["description"], response["description"], "{op} {status}");
        }
        let params: HashSet<&str> =
            mine["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        for p in contract().operation(op)["parameters"].as_array().unwrap() {
            let name = p["name"].as_str().unwrap();
            if p["in"] == "query" {
                assert!(params.contains(name), "{op} does not describe {name}");
            }
        }
    }
    let logs = &doc["paths"]["/v1/{organization}/tool/invocation/{invocation_id}/logs"]["get"];
    assert_eq!(logs["x-toolsmith-extension"], json!(true));
}
