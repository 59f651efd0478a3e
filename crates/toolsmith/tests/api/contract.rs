//! The service's own API description and documentation page.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;

use crate::support::{contract, Backend, TestApp};

#[tokio::test]
async fn openapi_document_describes_every_route_and_the_compatible_shapes() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let r = app.request(Method::GET, "/openapi.json", "").send().await;
    assert_eq!(r.status, 200);
    let doc = r.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let ours: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, methods)| methods.as_object().unwrap().keys().map(move |m| (m.clone(), path.clone())))
        .collect();
    // Every compatible operation is described under its contract path and operationId.
    let official = &contract().operation("get-tools");
    assert!(official.is_object());
    for (method, path, op) in [
        ("post", "/v1/{organization}/user/signin_with_api_key", "sign-in-with-api-key"),
        ("get", "/v1/{organization}/tool/", "get-tools"),
        ("post", "/v1/{organization}/tool/", "create-tool"),
        ("post", "/v1/{organization}/tool/{tool_id}", "modify-tool"),
        ("delete", "/v1/{organization}/tool/{tool_id}", "deprecate-tool"),
        ("post", "/v1/{organization}/tool/{tool_id}/envvar", "modify-tool-envvars"),
        ("post", "/v1/{organization}/tool/{tool_id}/version", "publish-tool-version"),
        ("get", "/v1/{organization}/tool/{tool_id}/version", "get-tool-versions"),
        ("delete", "/v1/{organization}/tool/{tool_id}/version/{versions}", "deprecate-tool-version"),
        ("get", "/v1/{organization}/tool/amigo_tool_scaffold.tar.gz", "get-tool-scaffold-release"),
        ("post", "/v1/{organization}/tool/{tool_id}/version/{version}/invoke", "invoke-tool-version"),
        ("post", "/v1/{organization}/tool/test", "test-tool"),
        ("get", "/v1/{organization}/tool/invocation", "get-tool-invocations"),
        ("get", "/v1/{organization}/tool/invocation/search", "search-tool-invocations"),
    ] {
        assert!(ours.contains(&(method.to_owned(), path.to_owned())), "{method} {path} is not described");
        assert_eq!(doc["paths"][path][method]["operationId"], op);
        // The documented statuses and messages are the contract's.
        let theirs = &contract().operation(op)["responses"];
        let mine = &doc["paths"][path][method]["responses"];
        for (status, response) in theirs.as_object().unwrap() {
            assert_eq!(mine[status]["description"], response["description"], "{op} {status}");
        }
    }
    // Extensions are marked as such.
    for (path, methods) in doc["paths"].as_object().unwrap() {
        for (method, op) in methods.as_object().unwrap() {
            let compatible = op["x-toolsmith-extension"] != Value::Bool(true);
            if compatible {
                assert!(path.starts_with("/v1/{organization}/"), "{method} {path} must be marked as an extension");
            }
        }
    }
}

#[tokio::test]
async fn documentation_page_is_served() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let r = app.request(Method::GET, "/docs", "").send().await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains("/openapi.json"));
    let r = app.request(Method::GET, "/healthz", "").send().await;
    assert_eq!((r.status, r.text.as_str()), (200, "ok"));
}
