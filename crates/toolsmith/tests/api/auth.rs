//! Authentication, tenancy and permissions, checked on every endpoint.

use reqwest::Method;
use serde_json::{json, Value};
use toolsmith::identity::token::TokenSigner;
use toolsmith_domain::Role;

use crate::both_backends;
use crate::support::{Backend, TestApp};

/// Every guarded endpoint: operation, method, path (with `{tool}` for a tool id) and a valid body.
fn endpoints() -> Vec<(&'static str, Method, &'static str, Option<Value>)> {
    vec![
        ("get-tools", Method::GET, "/v1/{org}/tool/", None),
        ("create-tool", Method::POST, "/v1/{org}/tool/", Some(json!({"name": "x", "description": "d", "tags": {}}))),
        ("modify-tool", Method::POST, "/v1/{org}/tool/{tool}", Some(json!({"description": "d"}))),
        ("deprecate-tool", Method::DELETE, "/v1/{org}/tool/{tool}", None),
        ("modify-tool-envvars", Method::POST, "/v1/{org}/tool/{tool}/envvar", Some(json!({}))),
    ]
}

fn path(template: &str, org: &str, tool: &str) -> String {
    template.replace("{org}", org).replace("{tool}", tool)
}

async fn call(
    app: &TestApp,
    op: &'static str,
    method: &Method,
    path: &str,
    body: &Option<Value>,
    token: &str,
) -> crate::support::Resp {
    let mut req = app.request(method.clone(), path, token).op(op);
    if let Some(body) = body {
        req = req.json(body);
    }
    req.send().await
}

both_backends!(every_endpoint_refuses_missing_bad_expired_and_foreign_tokens, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let tool = app.create_tool("guarded").await;
    let (expired, _) = TokenSigner::new(app.token_key.clone()).issue("acme", &app.admin.id, -60);
    let (forged, _) = TokenSigner::new(vec![1; 32]).issue("acme", &app.admin.id, 3600);
    let unknown_user = app.token("acme", "0123456789abcdef01234567");
    for (op, method, template, body) in endpoints() {
        let p = path(template, "acme", &tool);
        for token in ["", "garbage", "a.b.c", expired.as_str(), forged.as_str(), unknown_user.as_str()] {
            let r = call(&app, op, &method, &p, &body, token).await;
            assert_eq!((r.status, r.detail()), (401, "Invalid authorization credentials."), "{op} with {token:?}");
        }
        // A token presented as coming from another organization than it does.
        let r = app.request(method.clone(), &p, &app.admin.token).header("x-org-id", "globex").op(op).send().await;
        assert_eq!(r.status, 401, "{op} with a mismatched X-ORG-ID");
    }
});

both_backends!(every_endpoint_requires_its_permission, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let tool = app.create_tool("guarded").await;
    let nobody = app.user("acme", &[]).await;
    for (op, method, template, body) in endpoints() {
        let r = call(&app, op, &method, &path(template, "acme", &tool), &body, &nobody.token).await;
        assert_eq!((r.status, r.detail()), (403, "Missing required permissions."), "{op}");
    }
    // An invoker reads tools but changes nothing.
    let invoker = app.user("acme", &[Role::Invoker]).await;
    for (op, method, template, body) in endpoints() {
        let r = call(&app, op, &method, &path(template, "acme", &tool), &body, &invoker.token).await;
        let expected = if op == "get-tools" { 200 } else { 403 };
        assert_eq!(r.status, expected, "{op}: {}", r.text);
    }
    // 403 comes before body validation: a caller without rights learns nothing about the shape.
    let r = app.request(Method::POST, "/v1/acme/tool/", &invoker.token).op("create-tool").body("not json").send().await;
    assert_eq!(r.status, 403);
});

both_backends!(another_organizations_token_sees_nothing, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let tool = app.create_tool("acme_only").await;
    let outsider = app.other_org("globex").await;
    for (op, method, template, body) in endpoints() {
        let into_acme = call(&app, op, &method, &path(template, "acme", &tool), &body, &outsider.token).await;
        let into_nowhere = call(&app, op, &method, &path(template, "no-such-org", &tool), &body, &outsider.token).await;
        assert_eq!(into_acme.status, 404, "{op}: {}", into_acme.text);
        assert_eq!(
            (into_acme.status, &into_acme.body),
            (into_nowhere.status, &into_nowhere.body),
            "{op}: indistinguishable from a missing organization"
        );
    }
});

both_backends!(a_user_granted_a_role_in_another_organization_can_use_it, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    app.create_tool("shared").await;
    let partner = app.other_org("globex").await;
    app.store
        .grant_role(&crate::support::org("acme"), &crate::support::user_ref("globex", &partner.id), Role::Viewer)
        .await
        .unwrap();
    let r = app
        .request(Method::GET, "/v1/acme/tool/", &partner.token)
        .header("x-org-id", "globex")
        .op("get-tools")
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["tools"].as_array().unwrap().len(), 1);
    // Viewing does not include creating.
    let r = app
        .request(Method::POST, "/v1/acme/tool/", &partner.token)
        .op("create-tool")
        .json(&json!({"name": "theirs", "description": "d", "tags": {}}))
        .send()
        .await;
    assert_eq!(r.status, 403);
});

both_backends!(git_style_basic_credentials_are_accepted_when_they_match_the_token, |backend: Backend| async move {
    use base64::Engine;
    let app = TestApp::spawn(backend).await;
    let basic = |user: &str| {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", app.admin.token)))
    };
    let r = app
        .request(Method::GET, "/v1/acme/tool/", "")
        .header("authorization", &basic(&format!("acme_{}", app.admin.id)))
        .op("get-tools")
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app
        .request(Method::GET, "/v1/acme/tool/", "")
        .header("authorization", &basic("globex_0123456789abcdef01234567"))
        .op("get-tools")
        .send()
        .await;
    assert_eq!(r.status, 401, "the user name must name the token's user");
});

both_backends!(unknown_routes_and_methods_answer_in_the_envelope, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let r = app.request(Method::GET, "/v1/acme/nothing-here", &app.admin.token).send().await;
    assert_eq!((r.status, r.detail()), (404, "Not Found"));
    let r = app.request(Method::PUT, "/v1/acme/tool/", &app.admin.token).send().await;
    assert_eq!((r.status, r.detail()), (405, "Method Not Allowed"));
});
