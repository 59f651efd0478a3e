//! Tools: create, list (filters, sorting, pages), modify, deprecate.

use reqwest::Method;
use serde_json::{json, Value};
use toolsmith_domain::Role;

use crate::both_backends;
use crate::support::{Backend, TestApp};

async fn create(app: &TestApp, body: Value) -> crate::support::Resp {
    app.request(Method::POST, "/v1/acme/tool/", &app.admin.token).op("create-tool").json(&body).send().await
}

async fn list(app: &TestApp, query: &str) -> crate::support::Resp {
    app.request(Method::GET, &format!("/v1/acme/tool/{query}"), &app.admin.token).op("get-tools").send().await
}

fn names(resp: &crate::support::Resp) -> Vec<String> {
    resp.body["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
}

both_backends!(created_tool_is_listed_with_every_field, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let r = create(
        &app,
        json!({"name": " get_weather ", "description": "Weather by city.", "tags": {"team": "core", "beta": null}}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 24);

    let tool = app.tool(&id).await;
    assert_eq!(tool["name"], "get_weather", "names are stripped");
    assert_eq!(tool["org_id"], "acme");
    assert_eq!(tool["description"], "Weather by city.");
    assert_eq!(tool["deprecated"], false);
    assert_eq!(tool["envvars"], json!([]));
    assert_eq!(tool["secret_envvars"], json!([]));
    assert_eq!(tool["creator"], json!({"org_id": "acme", "user_id": app.admin.id}));
    assert_eq!(tool["updated_by"], tool["creator"]);
    let mut tags = tool["tags"].as_array().unwrap().clone();
    tags.sort_by_key(|t| t["key"].as_str().unwrap().to_owned());
    assert_eq!(tags, vec![json!({"key": "beta", "value": null}), json!({"key": "team", "value": "core"})]);
    assert!(tool["created_at"].as_str().unwrap().ends_with('Z'));
});

both_backends!(create_validates_names_descriptions_and_tags, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    for (body, loc) in [
        (json!({"name": "Get-Weather", "description": "d", "tags": {}}), json!(["body", "name"])),
        (json!({"name": "", "description": "d", "tags": {}}), json!(["body", "name"])),
        (json!({"name": 7, "description": "d", "tags": {}}), json!(["body", "name"])),
        (json!({"description": "d", "tags": {}}), json!(["body", "name"])),
        (json!({"name": "ok", "description": "   ", "tags": {}}), json!(["body", "description"])),
        (json!({"name": "ok", "description": "d", "tags": {"a:b": "x"}}), json!(["body", "tags", "a:b", "[key]"])),
        (json!({"name": "ok", "description": "d", "tags": {"team": "c/d"}}), json!(["body", "tags", "team"])),
        (json!({"name": "ok", "description": "d", "tags": {"team": 3}}), json!(["body", "tags", "team"])),
        (json!({"name": "ok", "description": "d", "tags": ["x"]}), json!(["body", "tags"])),
    ] {
        let r = create(&app, body.clone()).await;
        assert_eq!(r.status, 422, "{body}: {}", r.text);
        assert_eq!(r.body["detail"][0]["loc"], loc, "{body}: {}", r.text);
    }
    let many: serde_json::Map<String, Value> = (0..21).map(|i| (format!("k{i}"), json!("v"))).collect();
    let r = create(&app, json!({"name": "ok", "description": "d", "tags": many})).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["detail"][0]["type"], "too_long");

    let r = create(&app, json!({"name": "a".repeat(65), "description": "d", "tags": {}})).await;
    assert_eq!((r.status, r.detail()), (400, "The tool name is too long."));
    let r = create(&app, json!({"name": "a".repeat(64), "description": "d", "tags": {}})).await;
    assert_eq!(r.status, 201);
    // Older clients send no tags at all.
    let r = create(&app, json!({"name": "no_tags", "description": "d"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let twenty: serde_json::Map<String, Value> = (0..20).map(|i| (format!("k {i}"), json!("v"))).collect();
    assert_eq!(create(&app, json!({"name": "twenty", "description": "d", "tags": twenty})).await.status, 201);

    for raw in ["not json", "[1,2]", "{\"name\": \"x\""] {
        let r = app.request(Method::POST, "/v1/acme/tool/", &app.admin.token).op("create-tool").body(raw).send().await;
        assert_eq!(r.status, 422, "{raw}");
    }
    let listed = list(&app, "?limit=20").await;
    assert_eq!(names(&listed).len(), 3, "nothing was created by the bad requests");
});

both_backends!(names_are_unique_among_live_tools_even_under_concurrency, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let body = json!({"name": "dup", "description": "d", "tags": {}});
    let attempts = (0..8).map(|_| create(&app, body.clone()));
    let results = futures_util::future::join_all(attempts).await;
    let created = results.iter().filter(|r| r.status == 201).count();
    assert_eq!(created, 1, "{:?}", results.iter().map(|r| r.status).collect::<Vec<_>>());
    for r in results.iter().filter(|r| r.status != 201) {
        assert_eq!((r.status, r.detail()), (409, "A tool with the same name already exists."));
    }
    let id = results.iter().find(|r| r.status == 201).unwrap().body["id"].as_str().unwrap().to_owned();
    let r =
        app.request(Method::DELETE, &format!("/v1/acme/tool/{id}"), &app.admin.token).op("deprecate-tool").send().await;
    assert_eq!(r.status, 204);
    assert_eq!(create(&app, body).await.status, 201, "deprecating frees the name");
});

both_backends!(listing_filters_sorts_and_pages, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let mut ids = Vec::new();
    for (name, tags) in [
        ("b_tool", json!({"team": "core", "env": "prod"})),
        ("a_tool", json!({"team": "edge"})),
        ("d_tool", json!({"team": null})),
        ("c_tool", json!({})),
        ("e_tool", json!({"team": "core"})),
    ] {
        let r = create(&app, json!({"name": name, "description": "d", "tags": tags})).await;
        ids.push(r.body["id"].as_str().unwrap().to_owned());
    }
    app.request(Method::DELETE, &format!("/v1/acme/tool/{}", ids[4]), &app.admin.token).send().await;

    assert_eq!(
        names(&list(&app, "").await),
        ["b_tool", "a_tool", "d_tool", "c_tool", "e_tool"],
        "creation order by default"
    );
    assert_eq!(names(&list(&app, "?sort_by=%2Bname").await), ["a_tool", "b_tool", "c_tool", "d_tool", "e_tool"]);
    assert_eq!(
        names(&list(&app, "?sort_by=+name").await),
        ["a_tool", "b_tool", "c_tool", "d_tool", "e_tool"],
        "a raw + arrives as a space"
    );
    assert_eq!(names(&list(&app, "?sort_by=-name").await), ["e_tool", "d_tool", "c_tool", "b_tool", "a_tool"]);
    assert_eq!(names(&list(&app, "?sort_by=-deprecated&sort_by=%2Bname").await)[0], "e_tool");
    assert_eq!(names(&list(&app, "?deprecated=false").await).len(), 4);
    assert_eq!(names(&list(&app, "?deprecated=true").await), ["e_tool"]);
    assert_eq!(names(&list(&app, &format!("?id={}&id={}", ids[1], ids[3])).await), ["a_tool", "c_tool"]);
    assert_eq!(names(&list(&app, "?tag=team:core").await), ["b_tool", "e_tool"]);
    assert_eq!(names(&list(&app, "?tag=team:*").await), ["b_tool", "a_tool", "d_tool", "e_tool"]);
    assert_eq!(names(&list(&app, "?tag=team:").await), ["d_tool"]);
    assert_eq!(names(&list(&app, "?tag=team:core&tag=env:prod").await), ["b_tool"], "tag filters combine with AND");
    assert_eq!(names(&list(&app, "?tag=nope:*").await), Vec::<String>::new());

    // Pages: every tool exactly once, tokens as integers, null on the last page.
    let mut seen = Vec::new();
    let mut token = 0;
    loop {
        let r = list(&app, &format!("?limit=2&continuation_token={token}&sort_by=%2Bname")).await;
        seen.extend(names(&r));
        if token == 0 {
            assert_eq!(r.body["filter_values"]["tags"], json!(["env", "team"]));
        } else {
            assert!(r.body["filter_values"].is_null(), "filter values only on the first page");
        }
        if !r.body["has_more"].as_bool().unwrap() {
            assert!(r.body["continuation_token"].is_null());
            break;
        }
        token = r.body["continuation_token"].as_i64().expect("integer token");
    }
    assert_eq!(seen, ["a_tool", "b_tool", "c_tool", "d_tool", "e_tool"]);

    for bad in [
        "?sort_by=%2Bcolor",
        "?sort_by=name",
        "?tag=team",
        "?limit=0",
        "?limit=21",
        "?limit=x",
        "?deprecated=maybe",
        "?id=xyz",
        "?continuation_token=-1",
    ] {
        let r = list(&app, bad).await;
        assert_eq!(r.status, 422, "{bad}: {}", r.text);
        assert_eq!(r.body["detail"][0]["loc"][0], "query", "{bad}");
    }
});

both_backends!(modify_changes_description_and_replaces_tags, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let id = app.create_tool("mod_me").await;
    let dev = app.user("acme", &[Role::Developer]).await;
    let modify = |body: Value, token: String| {
        let app = &app;
        let id = id.clone();
        async move {
            app.request(Method::POST, &format!("/v1/acme/tool/{id}"), &token).op("modify-tool").json(&body).send().await
        }
    };
    let r = modify(json!({"description": "New words.", "tags": {"x": "1", "y": null}}), dev.token.clone()).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let tool = app.tool(&id).await;
    assert_eq!(tool["description"], "New words.");
    assert_eq!(tool["tags"].as_array().unwrap().len(), 2);
    assert_eq!(tool["updated_by"]["user_id"], dev.id.as_str());
    assert_eq!(tool["creator"]["user_id"], app.admin.id.as_str());

    assert_eq!(modify(json!({"description": null, "tags": {"z": "2"}}), dev.token.clone()).await.status, 204);
    let tool = app.tool(&id).await;
    assert_eq!(tool["description"], "New words.", "null leaves the description alone");
    assert_eq!(tool["tags"], json!([{"key": "z", "value": "2"}]), "tags are replaced, not merged");
    assert_eq!(modify(json!({}), dev.token.clone()).await.status, 204);
    assert_eq!(app.tool(&id).await["tags"], json!([{"key": "z", "value": "2"}]));

    assert_eq!(modify(json!({"description": ""}), dev.token.clone()).await.status, 422);
    let r = app
        .request(Method::POST, "/v1/acme/tool/0123456789abcdef01234567", &dev.token)
        .op("modify-tool")
        .json(&json!({"description": "x"}))
        .send()
        .await;
    assert_eq!((r.status, r.detail()), (404, "The specified organization or tool does not exist."));
    let r = app
        .request(Method::POST, "/v1/acme/tool/not-an-id", &dev.token)
        .op("modify-tool")
        .json(&json!({}))
        .send()
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["detail"][0]["loc"], json!(["path", "tool_id"]));
});

both_backends!(a_nul_in_a_description_is_stored_as_a_replacement_character, |backend: Backend| async move {
    // PostgreSQL cannot store NUL in text; both backends keep the same replacement instead.
    let app = TestApp::spawn(backend).await;
    let r = create(&app, json!({"name": "nul", "description": "before\0after", "tags": {}})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(app.tool(&id).await["description"], "before\u{fffd}after");
    let r = app
        .request(Method::POST, &format!("/v1/acme/tool/{id}"), &app.admin.token)
        .op("modify-tool")
        .json(&json!({"description": "\0 again"}))
        .send()
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(app.tool(&id).await["description"], "\u{fffd} again");
});

both_backends!(deprecate_marks_the_tool_and_is_idempotent, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let id = app.create_tool("old_tool").await;
    for _ in 0..2 {
        let r = app
            .request(Method::DELETE, &format!("/v1/acme/tool/{id}"), &app.admin.token)
            .op("deprecate-tool")
            .send()
            .await;
        assert_eq!(r.status, 204, "{}", r.text);
    }
    assert_eq!(app.tool(&id).await["deprecated"], true);
    let r = app
        .request(Method::DELETE, "/v1/acme/tool/0123456789abcdef01234567", &app.admin.token)
        .op("deprecate-tool")
        .send()
        .await;
    assert_eq!((r.status, r.detail()), (404, "The specified organization or tool does not exist."));
});

both_backends!(another_organizations_tools_are_invisible, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let theirs = app.other_org("globex").await;
    let r = app
        .request(Method::POST, "/v1/globex/tool/", &theirs.token)
        .op("create-tool")
        .json(&json!({"name": "secret_plan", "description": "d", "tags": {}}))
        .send()
        .await;
    let their_id = r.body["id"].as_str().unwrap().to_owned();
    // Through acme's own path, globex's tool id does not exist.
    let r = list(&app, &format!("?id={their_id}")).await;
    assert_eq!(r.body["tools"], json!([]));
    let r = app
        .request(Method::POST, &format!("/v1/acme/tool/{their_id}"), &app.admin.token)
        .op("modify-tool")
        .json(&json!({"description": "mine now"}))
        .send()
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .request(Method::DELETE, &format!("/v1/acme/tool/{their_id}"), &app.admin.token)
        .op("deprecate-tool")
        .send()
        .await;
    assert_eq!(r.status, 404);
    // Same names in different organizations do not collide.
    assert_eq!(create(&app, json!({"name": "secret_plan", "description": "d", "tags": {}})).await.status, 201);
});
