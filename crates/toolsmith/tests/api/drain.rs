//! Replacing or stopping a version's runtime drains it: invocations running on the old runtime
//! finish there, new ones go to the new runtime, and none is lost to an env var change or a
//! deprecation.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::both_backends;
use crate::examples::push_samples;
use crate::support::{Backend, TestApp};

async fn publish_intruder(app: &TestApp) -> String {
    let tool = app.create_tool("intruder").await;
    let r = app
        .request(Method::POST, &format!("/v1/acme/tool/{tool}/envvar"), &app.admin.token)
        .op("modify-tool-envvars")
        .json(&json!({"inserts": [
            {"name": "API_TOKEN", "value": "token-0", "is_secret": true},
            {"name": "INTRUDER_AT_IMPORT", "value": "no", "is_secret": false},
        ]}))
        .send()
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = app
        .request(Method::POST, &format!("/v1/acme/tool/{tool}/version"), &app.admin.token)
        .op("publish-tool-version")
        .json(&json!({"project_path": "examples/tools/intruder", "bump_type": "major"}))
        .send()
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    tool
}

/// Invokes `hold:<seconds>` on `version` in a loop until `until`; returns every result and the
/// statuses of refused requests.
async fn invoker(
    base: String,
    token: String,
    tool: String,
    version: &'static str,
    seconds: f64,
    until: Instant,
) -> (Vec<Value>, Vec<u16>) {
    let client = reqwest::Client::new();
    let mut results = Vec::new();
    let mut refused = Vec::new();
    while Instant::now() < until {
        let r = client
            .post(format!("{base}/v1/acme/tool/{tool}/version/{version}/invoke"))
            .bearer_auth(&token)
            .json(&json!({"inputs": [{
                "input_parameters": {"action": format!("hold:{seconds}")},
                "invocation_mode": "regular",
                "nonsensitive_user_variables": {},
                "sensitive_user_variables": {},
            }]}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        if status == 200 {
            let body: Value = r.json().await.unwrap();
            results.push(body["invocation_results"][0].clone());
        } else {
            refused.push(status);
        }
    }
    (results, refused)
}

both_backends!(env_var_changes_during_invocations_lose_none, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    push_samples(&app).await;
    let tool = publish_intruder(&app).await;
    let until = Instant::now() + Duration::from_secs(6);
    let invokers: Vec<_> = (0..4)
        .map(|_| tokio::spawn(invoker(app.base.clone(), app.admin.token.clone(), tool.clone(), "1.0.0", 0.15, until)))
        .collect();
    let mut changes = 0;
    while Instant::now() < until {
        let r = app
            .request(Method::POST, &format!("/v1/acme/tool/{tool}/envvar"), &app.admin.token)
            .op("modify-tool-envvars")
            .json(&json!({"updates": [{"name": "API_TOKEN", "value": format!("token-{changes}")}]}))
            .send()
            .await;
        assert_eq!(r.status, 204, "{}", r.text);
        changes += 1;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let mut total = 0;
    for handle in invokers {
        let (results, refused) = handle.await.unwrap();
        assert!(refused.is_empty(), "requests were refused: {refused:?}");
        for result in &results {
            assert_eq!(result["succeeded"], true, "an invocation was lost to an env var change: {result}");
        }
        total += results.len();
    }
    assert!(changes >= 20 && total >= 40, "{changes} changes during {total} invocations");
});

both_backends!(deprecating_a_version_lets_its_running_invocations_finish, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    push_samples(&app).await;
    let tool = publish_intruder(&app).await;
    // Warm the runtime, then start invocations that run for a while.
    let until = Instant::now() + Duration::from_millis(300);
    let warm = invoker(app.base.clone(), app.admin.token.clone(), tool.clone(), "1.0.0", 0.0, until).await;
    assert!(warm.1.is_empty(), "{:?}", warm.1);
    let running: Vec<_> = (0..4)
        .map(|_| {
            let until = Instant::now() + Duration::from_millis(10);
            tokio::spawn(invoker(app.base.clone(), app.admin.token.clone(), tool.clone(), "1.0.0", 3.0, until))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = app
        .request(Method::DELETE, &format!("/v1/acme/tool/{tool}/version/%3D%3D1.0.0"), &app.admin.token)
        .op("deprecate-tool-version")
        .send()
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    for handle in running {
        let (results, refused) = handle.await.unwrap();
        assert!(refused.is_empty(), "{refused:?}");
        for result in &results {
            assert_eq!(result["succeeded"], true, "a running invocation was lost to the deprecation: {result}");
        }
    }
    // New invocations of the deprecated version are refused as not found.
    let after = invoker(
        app.base.clone(),
        app.admin.token.clone(),
        tool.clone(),
        "1.0.0",
        0.0,
        Instant::now() + Duration::from_millis(50),
    )
    .await;
    assert!(after.0.is_empty() && after.1.iter().all(|s| *s == 404), "{after:?}");
});
