//! Inputs at the edges of what the API accepts, and what the documents say about them: page
//! tokens past anything that exists, refs and paths where they arrive, an empty `X-ORG-ID`,
//! content types, oversized bodies and dates before git's clock could count them.

use reqwest::Method;
use serde_json::{json, Value};

use crate::both_backends;
use crate::document;
use crate::repo::{clone, commit_file, git};
use crate::support::{Backend, Resp, TestApp};

const COMMITS: &str = "/v1/{organization}/tool/repo/commits";
const BRANCHES: &str = "/v1/{organization}/tool/repo/branches";
const FILE: &str = "/v1/{organization}/tool/repo/file";
const FILES: &str = "/v1/{organization}/tool/repo/files";

async fn get(app: &TestApp, path: &str, template: &str) -> Resp {
    let r = app.request(Method::GET, path, &app.admin.token).send().await;
    document::check("get", template, &r);
    r
}

async fn post_files(app: &TestApp, body: Value) -> Resp {
    let r = app.request(Method::POST, "/v1/acme/tool/repo/files", &app.admin.token).json(&body).send().await;
    document::check("post", FILES, &r);
    r
}

/// The one problem of a 422, as `(loc, type, input)`.
fn problem(r: &Resp) -> (Value, String, Option<Value>) {
    assert_eq!(r.status, 422, "{}", r.text);
    let items = r.body["detail"].as_array().expect("a list of problems");
    assert_eq!(items.len(), 1, "{}", r.text);
    let p = &items[0];
    (p["loc"].clone(), p["type"].as_str().unwrap_or_default().to_owned(), p.get("input").cloned())
}

both_backends!(page_tokens_past_the_end_give_empty_pages, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let empty = json!({"commits": [], "has_more": false, "continuation_token": null});
    for query in [
        "continuation_token=9223372036854775807",
        "limit=100&continuation_token=9223372036854775807",
        // A page that starts beyond the 2^31 commits git can skip.
        "continuation_token=200000000",
        "continuation_token=2",
    ] {
        let r = get(&app, &format!("/v1/acme/tool/repo/commits?{query}"), COMMITS).await;
        assert_eq!((r.status, &r.body), (200, &empty), "{query}");
    }
    let r = get(&app, "/v1/acme/tool/repo/branches?limit=100&continuation_token=9223372036854775807", BRANCHES).await;
    assert_eq!((r.status, &r.body), (200, &json!({"branches": [], "has_more": false, "continuation_token": null})));

    // The compatible listings: an offset past the end is an empty page too.
    let tool = app.create_tool("paged").await;
    for (path, op, list) in [
        ("/v1/acme/tool/", "get-tools", "tools"),
        (&*format!("/v1/acme/tool/{tool}/version"), "get-tool-versions", "tool_versions"),
    ] {
        let r = app
            .request(Method::GET, &format!("{path}?continuation_token=9223372036854775807"), &app.admin.token)
            .op(op)
            .send()
            .await;
        assert_eq!(r.status, 200, "{op}: {}", r.text);
        assert_eq!((r.body[list].clone(), r.body["has_more"].clone()), (json!([]), json!(false)), "{op}");
    }
});

both_backends!(page_tokens_beyond_i64_are_out_of_range, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let documented = document::query_parameter("get", COMMITS, "continuation_token");
    assert_eq!(documented["maximum"], json!(i64::MAX));
    for (path, template) in [
        ("/v1/acme/tool/repo/commits", COMMITS),
        ("/v1/acme/tool/repo/branches", BRANCHES),
        ("/v1/acme/tool/", "/v1/{organization}/tool/"),
        ("/v1/acme/tool/invocation", "/v1/{organization}/tool/invocation"),
    ] {
        let r = get(&app, &format!("{path}?continuation_token=9223372036854775808"), template).await;
        let (loc, kind, input) = problem(&r);
        assert_eq!(loc, json!(["query", "continuation_token"]), "{path}");
        assert_eq!(kind, "less_than_equal", "{path}");
        assert_eq!(input, Some(json!("9223372036854775808")), "{path}");
        let r = get(&app, &format!("{path}?continuation_token=-99999999999999999999"), template).await;
        assert_eq!(problem(&r).1, "greater_than_equal", "{path}");
    }
});

both_backends!(repo_files_reports_body_fields_with_their_input, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let long = "a".repeat(256);
    for (body, loc, kind, input) in [
        (json!({"ref": "-x"}), json!(["body", "ref"]), "value_error", json!("-x")),
        (json!({"ref": ""}), json!(["body", "ref"]), "string_too_short", json!("")),
        (json!({"ref": long}), json!(["body", "ref"]), "string_too_long", json!(long)),
        (json!({"ref": null}), json!(["body", "ref"]), "string_type", json!(null)),
        (json!({"ref": 7}), json!(["body", "ref"]), "string_type", json!(7)),
        (
            json!({"paths": ["hello_world", "../etc/passwd"]}),
            json!(["body", "paths", 1]),
            "value_error",
            json!("../etc/passwd"),
        ),
        (json!({"paths": [".git/config"]}), json!(["body", "paths", 0]), "value_error", json!(".git/config")),
    ] {
        let r = post_files(&app, body.clone()).await;
        assert_eq!(problem(&r), (loc, kind.to_owned(), Some(input)), "{body}");
    }
    // Every problem at once.
    let r = post_files(&app, json!({"ref": "a..b", "paths": ["/abs", 3]})).await;
    let locs: Vec<Value> = r.body["detail"].as_array().unwrap().iter().map(|p| p["loc"].clone()).collect();
    assert_eq!(locs, [json!(["body", "ref"]), json!(["body", "paths", 0]), json!(["body", "paths", 1])]);
    // Absent fields take their defaults: `main`, no paths.
    let r = post_files(&app, json!({})).await;
    assert_eq!((r.status, r.body.clone()), (200, json!({"files": []})));
    let r = post_files(&app, json!({"paths": ["hello_world/pyproject.toml"]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["files"][0]["encoding"], "utf-8");
});

both_backends!(query_refs_and_paths_report_their_input, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let documented = document::query_parameter("get", FILE, "ref");
    assert_eq!((documented["minLength"].clone(), documented["maxLength"].clone()), (json!(1), json!(255)));
    let r = get(&app, "/v1/acme/tool/repo/file?path=hello_world/pyproject.toml&ref=", FILE).await;
    assert_eq!(problem(&r), (json!(["query", "ref"]), "string_too_short".to_owned(), Some(json!(""))));
    let r = get(&app, "/v1/acme/tool/repo/file?path=..%2Fx", FILE).await;
    assert_eq!(problem(&r), (json!(["query", "path"]), "value_error".to_owned(), Some(json!("../x"))));
    let r = get(&app, "/v1/acme/tool/repo/commits?ref=--all", COMMITS).await;
    assert_eq!(problem(&r), (json!(["query", "ref"]), "value_error".to_owned(), Some(json!("--all"))));
    let r = get(&app, "/v1/acme/tool/repo/commits?path=a%2F%2Fb", COMMITS).await;
    assert_eq!(problem(&r), (json!(["query", "path"]), "value_error".to_owned(), Some(json!("a//b"))));
});

both_backends!(an_empty_org_header_counts_as_absent, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    for (value, status) in [("", 200), (" ", 200), ("acme", 200), ("globex", 401)] {
        let r = app
            .request(Method::GET, "/v1/acme/tool/", &app.admin.token)
            .header("x-org-id", value)
            .op("get-tools")
            .send()
            .await;
        assert_eq!(r.status, status, "X-ORG-ID {value:?}: {}", r.text);
    }
});

both_backends!(files_are_sent_with_a_documented_content_type, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("tools");
    assert!(clone(&app, &app.admin, &dir).await.ok);
    commit_file(&dir, "data/blob.bin", &[0xff, 0x00, 0xfe, 0x80], "Add a binary file").await;
    let pushed = git(&dir, &["push", "--quiet", "origin", "main"]).await;
    assert!(pushed.ok, "{}", pushed.stderr);
    for (path, content_type) in
        [("hello_world/pyproject.toml", "text/plain; charset=utf-8"), ("data/blob.bin", "application/octet-stream")]
    {
        let r = get(&app, &format!("/v1/acme/tool/repo/file?path={path}"), FILE).await;
        assert_eq!((r.status, r.header("content-type")), (200, Some(content_type)), "{path}");
    }
});

both_backends!(dates_before_1973_filter_commits, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let all = get(&app, "/v1/acme/tool/repo/commits", COMMITS).await.body["commits"].as_array().unwrap().len();
    assert!(all >= 1);
    for (query, expected) in [
        // Git reads `@<seconds>` of fewer than nine digits as something other than a time.
        ("until=1972-06-01T00:00:00Z", 0),
        ("since=1972-06-01T00:00:00Z", all),
        ("until=1960-01-01T00:00:00Z", 0),
        ("since=1960-01-01T00:00:00Z", all),
        ("until=1970-01-01T00:00:00Z", 0),
        ("since=9999-12-31T23:59:59Z", 0),
    ] {
        let r = get(&app, &format!("/v1/acme/tool/repo/commits?{query}"), COMMITS).await;
        assert_eq!(r.status, 200, "{query}: {}", r.text);
        assert_eq!(r.body["commits"].as_array().unwrap().len(), expected, "{query}");
    }
});

both_backends!(oversized_bodies_answer_a_documented_413, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let tool = app.create_tool("big").await;
    // Just over the 1 MiB limit: the server answers on the declared length without reading the
    // body, and a body much larger than the socket buffers could still be in flight when it
    // closes the connection.
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat((1 << 20) + 1024));
    for (path, template) in [
        ("/v1/acme/tool/".to_owned(), "/v1/{organization}/tool/"),
        (format!("/v1/acme/tool/{tool}"), "/v1/{organization}/tool/{tool_id}"),
        (format!("/v1/acme/tool/{tool}/envvar"), "/v1/{organization}/tool/{tool_id}/envvar"),
        (format!("/v1/acme/tool/{tool}/version"), "/v1/{organization}/tool/{tool_id}/version"),
        (
            format!("/v1/acme/tool/{tool}/version/1.0.0/invoke"),
            "/v1/{organization}/tool/{tool_id}/version/{version}/invoke",
        ),
        ("/v1/acme/tool/test".to_owned(), "/v1/{organization}/tool/test"),
        ("/v1/acme/tool/repo/files".to_owned(), FILES),
    ] {
        let r = app.request(Method::POST, &path, &app.admin.token).body(big.clone()).send().await;
        assert_eq!((r.status, r.detail()), (413, "The request body is too large."), "{path}");
        document::check("post", template, &r);
    }
});
