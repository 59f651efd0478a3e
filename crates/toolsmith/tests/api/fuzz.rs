//! Random requests to every endpoint that reads caller input: query strings, JSON bodies and
//! path segments. Whatever is sent, the answer is never a 5xx, and it is one the documents
//! describe: the contract's for compatible operations, `/openapi.json`'s for all of them.

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::Method;
use serde_json::{Map, Value};

use crate::both_backends;
use crate::document;
use crate::support::{Backend, TestApp};

/// HTTP round trips are slow next to a parser call, so the API properties run fewer cases.
const CASES: u32 = 64;

/// Runs a property whose body makes requests: proptest drives it from a blocking section of the
/// test's runtime, each case awaiting its requests there.
fn run<S: Strategy>(
    strategy: S,
    test: impl Fn(S::Value) -> futures_util::future::BoxFuture<'static, Result<(), TestCaseError>>,
) where
    S::Value: Clone + std::fmt::Debug,
{
    let handle = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        let mut runner = TestRunner::new(Config { cases: CASES, failure_persistence: None, ..Config::default() });
        if let Err(e) = runner.run(&strategy, |value| handle.block_on(test(value))) {
            panic!("{e}");
        }
    });
}

/// Values that sit on the edges of what the endpoints accept: numbers at and past the limits of
/// `i64`, empty and blank text, refs and paths that try to escape, specifiers, dates, and anything
/// else.
fn text_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "9223372036854775807", "9223372036854775808", "-9223372036854775808", "99999999999999999999999",
            "-1", "0", "1", "100", "101", "", " ", "true", "maybe", "+name", "-name", " deprecated", "team:core",
            "team:", ":x", "==1.0.0", ">=1,<2", "~=1", "1.2.3", "18446744073709551616.0.0", "main", "-x", "--all",
            "../etc/passwd", "/", ".git/config", "a//b", "hello_world/pyproject.toml", "0123456789abcdef01234567",
            "2026-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1960-01-01T00:00:00+01:00",
            "*", "\u{0}", "é", "\u{202e}", "%", "%%", "a\nb",
        ])
        .prop_map(str::to_owned),
        1 => any::<String>(),
        1 => "[a-z0-9_:*=<>.,/ +-]{0,12}",
    ]
}

/// Query parameter names the endpoints read, and some they do not.
fn query_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "limit", "continuation_token", "id", "deprecated", "sort_by", "tag", "versions", "creator", "query",
            "field", "tool_id", "version", "ref", "path", "since", "until", "include_last_commit",
            "include_changed_files", "include_stats", "invocation_source_type", "conversation_id",
        ])
        .prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

/// A number for a numeric parameter: at the edges of the ranges the endpoints document and of
/// the integer types behind them.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            i64::MAX.to_string(),
            i64::MIN.to_string(),
            (i64::MAX / 20).to_string(),
            (i32::MAX as i64 + 1).to_string(),
            "18446744073709551616".to_owned(),
        ]),
        any::<i64>().prop_map(|n| n.to_string()),
        (-2i64..130).prop_map(|n| n.to_string()),
    ]
}

/// One query parameter: a numeric one with a number, or any name with any value.
fn pair() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        (prop::sample::select(vec!["limit", "continuation_token"]).prop_map(str::to_owned), number()),
        (query_name(), text_value()),
    ]
}

fn query() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::vec(pair(), 0..6).prop_map(|pairs| {
            let mut s = form_urlencoded::Serializer::new(String::new());
            for (k, v) in &pairs {
                s.append_pair(k, v);
            }
            s.finish()
        }),
        // Raw, not necessarily well-formed, query strings.
        1 => "[a-z_=&%0-9+;]{0,30}",
    ]
}

/// Body field names the endpoints read.
const FIELDS: &[&str] = &[
    "name",
    "description",
    "tags",
    "inserts",
    "updates",
    "deletes",
    "value",
    "is_secret",
    "project_path",
    "bump_type",
    "branch",
    "commit_branch",
    "inputs",
    "input_parameters",
    "invocation_mode",
    "nonsensitive_user_variables",
    "sensitive_user_variables",
    "invocation_source",
    "ref",
    "paths",
    "type",
    "user_id",
    "conversation_id",
];

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("JSON numbers are finite", |f| f.is_finite()).prop_map(Value::from),
        text_value().prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(FIELDS).prop_map(str::to_owned), inner), 0..4)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// A request body: mostly an object of known fields with random values, sometimes any JSON
/// value, sometimes not JSON at all.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec((prop::sample::select(FIELDS).prop_map(str::to_owned), json_value()), 0..6)
            .prop_map(|fields| serde_json::to_vec(&Value::Object(fields.into_iter().collect::<Map<_, _>>())).unwrap()),
        1 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => prop::collection::vec(any::<u8>(), 0..32),
    ]
}

/// What a request is checked against: the contract's operation, when it is a compatible one,
/// and the path in `/openapi.json`.
struct Target {
    method: Method,
    path: String,
    template: &'static str,
    op: Option<&'static str>,
    /// Whether the path surely reaches the operation. One with an empty segment may instead get
    /// the router's 404 or 405, which no operation documents, and so may one with a `.` or `..`
    /// segment, which the client resolves before sending (even percent-encoded, as URLs do).
    routed: bool,
}

fn target(method: Method, path: String, template: &'static str, op: Option<&'static str>) -> Target {
    Target { method, path, template, op, routed: true }
}

/// Sends one request and checks the answer; a 5xx fails the case.
async fn probe(app: &TestApp, t: &Target, query: Option<&str>, body: Option<&[u8]>) -> Result<(), TestCaseError> {
    let url = match query {
        Some(q) => format!("{}?{q}", t.path),
        None => t.path.clone(),
    };
    let mut call = app.request(t.method.clone(), &url, &app.admin.token);
    if let Some(b) = body {
        call = call.body(b.to_vec());
    }
    if let Some(op) = t.op.filter(|_| t.routed) {
        call = call.op(op);
    }
    let r = call.send().await;
    prop_assert!(r.status < 500, "{} {} answered {}: {}", t.method, url, r.status, r.text);
    if !t.routed && matches!(r.detail(), "Not Found" | "Method Not Allowed") {
        return Ok(());
    }
    document::check(t.method.as_str(), t.template, &r);
    if r.status == 422 {
        let items = r.body["detail"].as_array().cloned().unwrap_or_default();
        prop_assert!(!items.is_empty(), "422 without problems: {}", r.text);
        for item in items {
            prop_assert!(item["loc"].is_array() && item["msg"].is_string() && item["type"].is_string(), "{}", item);
        }
    }
    Ok(())
}

both_backends!(random_query_strings_never_answer_5xx, |backend: Backend| async move {
    let app = std::sync::Arc::new(TestApp::spawn(backend).await);
    let tool = app.create_tool("fuzzed").await;
    let targets = std::sync::Arc::new(vec![
        target(Method::GET, "/v1/acme/tool/".into(), "/v1/{organization}/tool/", Some("get-tools")),
        target(
            Method::GET,
            format!("/v1/acme/tool/{tool}/version"),
            "/v1/{organization}/tool/{tool_id}/version",
            Some("get-tool-versions"),
        ),
        target(
            Method::GET,
            "/v1/acme/tool/invocation".into(),
            "/v1/{organization}/tool/invocation",
            Some("get-tool-invocations"),
        ),
        target(
            Method::GET,
            "/v1/acme/tool/invocation/search".into(),
            "/v1/{organization}/tool/invocation/search",
            Some("search-tool-invocations"),
        ),
        target(Method::GET, "/v1/acme/tool/repo/file".into(), "/v1/{organization}/tool/repo/file", None),
        target(Method::GET, "/v1/acme/tool/repo/directory".into(), "/v1/{organization}/tool/repo/directory", None),
        target(Method::GET, "/v1/acme/tool/repo/commits".into(), "/v1/{organization}/tool/repo/commits", None),
        target(Method::GET, "/v1/acme/tool/repo/branches".into(), "/v1/{organization}/tool/repo/branches", None),
    ]);
    run(query(), move |q| {
        let (app, targets) = (app.clone(), targets.clone());
        Box::pin(async move {
            for t in targets.iter() {
                probe(&app, t, Some(&q), None).await?;
            }
            Ok(())
        })
    });
});

both_backends!(random_bodies_never_answer_5xx, |backend: Backend| async move {
    let app = std::sync::Arc::new(TestApp::spawn(backend).await);
    let tool = app.create_tool("fuzzed").await;
    let targets = std::sync::Arc::new(vec![
        target(Method::POST, "/v1/acme/tool/".into(), "/v1/{organization}/tool/", Some("create-tool")),
        target(Method::POST, format!("/v1/acme/tool/{tool}"), "/v1/{organization}/tool/{tool_id}", Some("modify-tool")),
        target(
            Method::POST,
            format!("/v1/acme/tool/{tool}/envvar"),
            "/v1/{organization}/tool/{tool_id}/envvar",
            Some("modify-tool-envvars"),
        ),
        target(
            Method::POST,
            format!("/v1/acme/tool/{tool}/version"),
            "/v1/{organization}/tool/{tool_id}/version",
            Some("publish-tool-version"),
        ),
        target(Method::POST, "/v1/acme/tool/test".into(), "/v1/{organization}/tool/test", Some("test-tool")),
        target(
            Method::POST,
            format!("/v1/acme/tool/{tool}/version/1.0.0/invoke"),
            "/v1/{organization}/tool/{tool_id}/version/{version}/invoke",
            Some("invoke-tool-version"),
        ),
        target(Method::POST, "/v1/acme/tool/repo/files".into(), "/v1/{organization}/tool/repo/files", None),
    ]);
    run(body(), move |b| {
        let (app, targets) = (app.clone(), targets.clone());
        Box::pin(async move {
            for t in targets.iter() {
                probe(&app, t, None, Some(&b)).await?;
            }
            Ok(())
        })
    });
});

both_backends!(random_path_segments_never_answer_5xx, |backend: Backend| async move {
    let app = std::sync::Arc::new(TestApp::spawn(backend).await);
    let tool = std::sync::Arc::new(app.create_tool("fuzzed").await);
    run(text_value(), move |segment| {
        let (app, tool) = (app.clone(), tool.clone());
        Box::pin(async move {
            let s = utf8_percent_encode(&segment, NON_ALPHANUMERIC).to_string();
            let routed = !matches!(segment.as_str(), "" | "." | "..");
            let mut targets = [
                target(
                    Method::GET,
                    format!("/v1/acme/tool/{s}/version"),
                    "/v1/{organization}/tool/{tool_id}/version",
                    Some("get-tool-versions"),
                ),
                target(
                    Method::DELETE,
                    format!("/v1/acme/tool/{tool}/version/{s}"),
                    "/v1/{organization}/tool/{tool_id}/version/{versions}",
                    Some("deprecate-tool-version"),
                ),
                target(
                    Method::GET,
                    format!("/v1/acme/tool/repo/branch/{s}"),
                    "/v1/{organization}/tool/repo/branch/{branch_name}",
                    None,
                ),
                target(
                    Method::GET,
                    format!("/v1/acme/tool/invocation/{s}/logs"),
                    "/v1/{organization}/tool/invocation/{invocation_id}/logs",
                    None,
                ),
                target(
                    Method::GET,
                    format!("/v1/acme/tool/build/{s}"),
                    "/v1/{organization}/tool/build/{build_id}",
                    None,
                ),
            ];
            for t in &mut targets {
                t.routed = routed;
                probe(&app, t, None, None).await?;
            }
            // An invocation of a version named by the segment (the tool has none).
            let mut invoke = target(
                Method::POST,
                format!("/v1/acme/tool/{tool}/version/{s}/invoke"),
                "/v1/{organization}/tool/{tool_id}/version/{version}/invoke",
                Some("invoke-tool-version"),
            );
            invoke.routed = routed;
            let body = br#"{"inputs": [{"input_parameters": {}, "invocation_mode": "regular"}]}"#;
            probe(&app, &invoke, None, Some(body)).await
        })
    });
});
