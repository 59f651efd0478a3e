//! Invocation records over HTTP: the listing and search endpoints against the contract, their
//! parameter errors, per-row permissions, and the logs extension. Rows are recorded through the
//! store, as the invoke endpoint records them; the last test invokes real tools and reads every
//! page with the models of Amigo's own Python SDK.

use std::collections::HashSet;
use std::path::PathBuf;

use reqwest::Method;
use serde_json::{json, Value};
use toolsmith_domain::time::Timestamp;
use toolsmith_domain::{ObjectId, Role, Version};
use toolsmith_store::{NewInvocation, NewVersion, UserRef};

use crate::both_backends;
use crate::examples::push_samples;
use crate::invoke::publish;
use crate::support::{contract, org, Backend, Options, Resp, TestApp};
use toolsmith::app::{Retention, Settings};

const CONVERSATION: &str = "c0c0c0c0c0c0c0c0c0c0c0c0";
const RUN: &str = "a1a1a1a1a1a1a1a1a1a1a1a1";

/// Publishes version records for a tool directly in the store (no build needed to list them).
async fn publish_records(app: &TestApp, tool: &str, versions: &[&str]) {
    for v in versions {
        app.store
            .insert_version(NewVersion {
                org_id: org("acme"),
                tool_id: tool.parse().unwrap(),
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
                build_id: toolsmith_domain::BuildId::generate(),
                output_schema: None,
                creator: UserRef { org_id: org("acme"), user_id: app.admin.id.parse().unwrap() },
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

/// The user an agent runtime calls tools as, which the fixture's invocations record as caller.
const RUNTIME_USER: &str = "fedcba9876543210fedcba98";

/// A succeeded (`output` set) or failed invocation `n` seconds into the test's timeline, called
/// by the user a direct source names, else by the agent runtime's user.
fn invocation(tool: &str, version: &str, n: i64, output: Option<&str>, source: Value) -> NewInvocation {
    let caller = match source["type"].as_str() {
        Some("direct") => source["user_id"].as_str().unwrap().to_owned(),
        _ => RUNTIME_USER.to_owned(),
    };
    NewInvocation {
        id: toolsmith_domain::InvocationId::generate(),
        org_id: org("acme"),
        tool_id: tool.parse().unwrap(),
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
        source: serde_json::from_value(source).unwrap(),
        caller: UserRef { org_id: org("acme"), user_id: caller.parse().unwrap() },
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
    idx.iter().map(|&i| rows[i].id.to_string()).collect()
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
            "caller": {"org_id": "acme", "user_id": RUNTIME_USER},
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
            expected =
                std::iter::once(rows[1].id.to_string()).chain(ordered.iter().map(|r| r.id.to_string())).collect();
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

/// Asks for every source type there is, contract or not.
const EVERY_SOURCE_TYPE: &str = "invocation_source_type=regular-conversation\
    &invocation_source_type=simulation-conversation&invocation_source_type=direct";

both_backends!(direct_invocations_are_listed_only_when_asked_for, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let (weather, _news, rows) = fixture(&app).await;
    let direct = invocation(&weather, "2.0.0", 6, Some("rain by noon"), direct_source(&app.admin.id));
    app.store.record_invocations(vec![direct.clone()]).await.unwrap();
    let token = app.admin.token.clone();

    // Without `invocation_source_type`, pages hold only the contract's source kinds, so every
    // answer validates against the contract's schema as it is (no record is set aside).
    let r = list(&app, &token, "").await;
    assert_eq!(ids(&r), pick(&rows, &[0, 1, 2, 3, 4]));
    let r = search(&app, &token, "?query=rain").await;
    assert_eq!(ids(&r), pick(&rows, &[4, 2]));
    let r = list(&app, &token, "?sort_by=-invocation_source.type&limit=1").await;
    assert_eq!(ids(&r), pick(&rows, &[3]), "the default holds whatever the order");

    // The extension value selects them; naming every kind lists everything.
    let r = list(&app, &token, "?invocation_source_type=direct").await;
    assert_eq!(ids(&r), vec![direct.id.to_string()]);
    assert_eq!(r.body["tool_invocations"][0]["invocation_source"], direct_source(&app.admin.id));
    assert_eq!(r.body["tool_invocations"][0]["caller"], json!({"org_id": "acme", "user_id": app.admin.id}));
    let r = list(&app, &token, &format!("?{EVERY_SOURCE_TYPE}")).await;
    assert_eq!(ids(&r), [pick(&rows, &[0, 1, 2, 3, 4]), vec![direct.id.to_string()]].concat());
    let r = search(&app, &token, "?query=rain&invocation_source_type=direct").await;
    assert_eq!(ids(&r), vec![direct.id.to_string()]);
    let r = search(&app, &token, &format!("?query=rain&{EVERY_SOURCE_TYPE}")).await;
    assert_eq!(ids(&r), vec![direct.id.to_string(), rows[4].id.to_string(), rows[2].id.to_string()]);

    // Paging the default listing skips the direct record wherever it sits.
    let r = list(&app, &token, "?sort_by=-created_at&limit=1").await;
    assert_eq!(ids(&r), pick(&rows, &[4]));
    let after = r.body["continuation_token"].as_i64().unwrap();
    let r = list(&app, &token, &format!("?sort_by=-created_at&limit=10&continuation_token={after}")).await;
    assert_eq!(ids(&r), pick(&rows, &[3, 2, 1, 0]));

    // A token naming the direct record is still a position in the default listing.
    let r = list(&app, &token, &format!("?{EVERY_SOURCE_TYPE}&sort_by=-created_at&limit=1")).await;
    assert_eq!(ids(&r), vec![direct.id.to_string()]);
    let direct_position = r.body["continuation_token"].as_i64().unwrap();
    let r = list(&app, &token, &format!("?sort_by=-created_at&continuation_token={direct_position}")).await;
    assert_eq!(ids(&r), pick(&rows, &[4, 3, 2, 1, 0]));
});

both_backends!(rows_are_visible_only_with_the_permission_of_their_source, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let (weather, _news, rows) = fixture(&app).await;
    let direct = invocation(&weather, "2.0.0", 6, Some("rain by noon"), direct_source(&app.admin.id));
    app.store.record_invocations(vec![direct.clone()]).await.unwrap();

    // A viewer reads every kind; an invoker and an agent runtime none, and are told so by empty
    // answers, not a 403.
    let viewer = app.user("acme", &[Role::Viewer]).await;
    let r = list(&app, &viewer.token, &format!("?{EVERY_SOURCE_TYPE}")).await;
    assert_eq!(ids(&r).len(), 6);
    for role in [Role::Invoker, Role::AgentRuntime] {
        let user = app.user("acme", &[role]).await;
        let r = list(&app, &user.token, "").await;
        assert_eq!((r.status, ids(&r).len(), r.body["has_more"].clone()), (200, 0, json!(false)), "{role}");
        let r = list(&app, &user.token, &format!("?{EVERY_SOURCE_TYPE}")).await;
        assert_eq!((r.status, ids(&r).len()), (200, 0), "{role}");
        let r = search(&app, &user.token, "?query=rain&invocation_source_type=direct").await;
        assert_eq!((r.status, ids(&r).len()), (200, 0), "{role}");
    }
    let invoker = app.user("acme", &[Role::Invoker]).await;
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
    let r = app.request(Method::GET, &path(rows[2].id.as_str()), &app.admin.token).send().await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body, json!({"invocation_id": rows[2].id, "logs": "step 3\n"}));
    let r = app.request(Method::GET, &path(ObjectId::generate().as_ref()), &app.admin.token).send().await;
    assert_eq!((r.status, r.detail()), (404, "The specified organization or invocation does not exist."));
    let r = app.request(Method::GET, &path("not-an-id"), &app.admin.token).send().await;
    assert_eq!((r.status, r.body["detail"][0]["loc"].clone()), (422, json!(["path", "invocation_id"])));
});

both_backends!(retention_deletes_old_records_in_the_background, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let weather = app.create_tool("weather").await;
    publish_records(&app, &weather, &["1.0.0"]).await;
    let now = Timestamp::now().0;
    let day = 86_400_000_000;
    let at = |n: i64, output: &str, created: i64| NewInvocation {
        created_at: Timestamp(created),
        ..invocation(&weather, "1.0.0", n, Some(output), regular_source())
    };
    let old: Vec<NewInvocation> = (0..5).map(|n| at(n, "stale forecast", now - 3 * day + n)).collect();
    let new: Vec<NewInvocation> = (0..3).map(|n| at(n, "fresh forecast", now - 60_000_000 + n)).collect();
    app.store.record_invocations(old.clone()).await.unwrap();
    app.store.record_invocations(new.clone()).await.unwrap();
    let token = app.admin.token.clone();
    let position = |r: &Resp| r.body["continuation_token"].as_i64().unwrap_or_else(|| panic!("{}", r.text));
    let oldest_first = position(&list(&app, &token, "?limit=2").await);
    let newest_first = position(&list(&app, &token, "?sort_by=-created_at&limit=7").await);
    let by_tool = position(&list(&app, &token, "?sort_by=%2Btool_id&limit=2").await);

    // A second server on the same database deletes what is older than a day, two records a
    // transaction, looking every 100 ms.
    let retention = Retention {
        max_age: std::time::Duration::from_secs(86_400),
        every: std::time::Duration::from_millis(100),
        batch: Some(2),
        pause: std::time::Duration::from_millis(5),
    };
    let settings = Settings { invocation_retention: Some(retention), ..Settings::default() };
    let _pruner = app.sibling(Options { settings, ..Options::default() }).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut r = list(&app, &token, "").await;
    while ids(&r).len() > new.len() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        r = list(&app, &token, "").await;
    }
    assert_eq!(ids(&r), pick(&new, &[0, 1, 2]), "the old records are gone, the new ones stay");
    let r = search(&app, &token, "?query=forecast").await;
    assert_eq!(ids(&r), pick(&new, &[2, 1, 0]));
    assert!(ids(&search(&app, &token, "?query=stale").await).is_empty());
    let logs = |id: &str| format!("/v1/acme/tool/invocation/{id}/logs");
    assert_eq!(app.request(Method::GET, &logs(old[0].id.as_str()), &token).send().await.status, 404);
    assert_eq!(app.request(Method::GET, &logs(new[0].id.as_str()), &token).send().await.status, 200);

    // Tokens naming deleted records: oldest first, the listing goes on with the oldest kept
    // record; newest first, nothing is left after them; in another order, their place is lost.
    let r = list(&app, &token, &format!("?continuation_token={oldest_first}")).await;
    assert_eq!((r.status, ids(&r)), (200, pick(&new, &[0, 1, 2])), "{}", r.text);
    let r = list(&app, &token, &format!("?sort_by=-created_at&continuation_token={newest_first}")).await;
    assert_eq!((r.status, ids(&r), r.body["has_more"].clone()), (200, vec![], json!(false)), "{}", r.text);
    let r = list(&app, &token, &format!("?sort_by=%2Btool_id&continuation_token={by_tool}")).await;
    assert_eq!((r.status, r.body["detail"][0]["loc"].clone()), (422, json!(["query", "continuation_token"])));
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

/// The directory of the Python test that parses pages with Amigo's SDK.
fn sdk_tests() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk")
}

/// The interpreter of the virtual environment `dev/test` makes under `target/`, which holds
/// Amigo's Python SDK at the version `tests/sdk/requirements.txt` pins.
fn sdk_python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/sdk-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing; dev/test creates it, or: python3 -m venv target/sdk-venv && \
         target/sdk-venv/bin/pip install -r crates/toolsmith/tests/sdk/requirements.txt",
        python.display()
    );
    python
}

both_backends!(amigo_sdk_models_parse_every_page, |backend: Backend| async move {
    let python = sdk_python();
    let app = TestApp::spawn(backend).await;
    push_samples(&app).await;
    let echo = publish(&app, "context_echo", None).await;
    let raises = publish(&app, "raises", None).await;
    let agent = app.user("acme", &[Role::AgentRuntime]).await;
    let out = tokio::process::Command::new(&python)
        .args(["-m", "unittest", "-v", "test_amigo_sdk_models"])
        .current_dir(sdk_tests())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("TOOLSMITH_URL", &app.base)
        .env("TOOLSMITH_ORG", "acme")
        .env("TOOLSMITH_ADMIN_TOKEN", &app.admin.token)
        .env("TOOLSMITH_ADMIN_ID", &app.admin.id)
        .env("TOOLSMITH_AGENT_TOKEN", &agent.token)
        .env("TOOLSMITH_AGENT_ID", &agent.id)
        .env("TOOLSMITH_ECHO_TOOL", &echo)
        .env("TOOLSMITH_RAISES_TOOL", &raises)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run the SDK's Python");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the SDK's models refused a page:\n{report}");
    let ran = report.lines().find_map(|l| l.strip_prefix("Ran ")?.split(' ').next()?.parse::<u32>().ok());
    assert!(ran.is_some_and(|n| n >= 7), "the SDK tests did not all run:\n{report}");
});
