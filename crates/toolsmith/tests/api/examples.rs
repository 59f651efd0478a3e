//! The sample tools in `examples/tools`, pushed into a real repository and published with real
//! uv: what tool authors see for each kind of project.

use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::{json, Value};

use crate::both_backends;
use crate::repo::{git, url};
use crate::support::{Backend, Resp, TestApp};

/// Pushes `examples/tools` into the organization's repository on `main`.
pub async fn push_samples(app: &TestApp) {
    push_samples_to(app, "acme", &app.admin).await;
}

/// Pushes `examples/tools` into `org`'s repository on `main`, as `user` of that organization.
pub async fn push_samples_to(app: &TestApp, org: &str, user: &crate::support::User) {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("w");
    let cloned = git(work.path(), &["clone", "--quiet", &url(app, org, org, user), dir.to_str().unwrap()]).await;
    assert!(cloned.ok, "{}", cloned.stderr);
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/tools");
    copy_dir(&examples, &dir.join("examples/tools"));
    assert!(git(&dir, &["add", "-A"]).await.ok);
    assert!(git(&dir, &["commit", "--quiet", "-m", "Samples"]).await.ok);
    let pushed = git(&dir, &["push", "--quiet", "origin", "main"]).await;
    assert!(pushed.ok, "{}", pushed.stderr);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "__pycache__" || name == ".venv" || name == ".pytest_cache" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

async fn publish(app: &TestApp, name: &str) -> (String, Resp) {
    let tool = app.create_tool(name).await;
    let r = app
        .request(Method::POST, &format!("/v1/acme/tool/{tool}/version"), &app.admin.token)
        .op("publish-tool-version")
        .json(&json!({"project_path": format!("examples/tools/{name}"), "bump_type": "major"}))
        .send()
        .await;
    (tool, r)
}

async fn schema_of(app: &TestApp, tool: &str) -> Value {
    let r = app
        .request(Method::GET, &format!("/v1/acme/tool/{tool}/version"), &app.admin.token)
        .op("get-tool-versions")
        .send()
        .await;
    r.body["tool_versions"][0]["input_schema"].clone()
}

both_backends!(the_sample_tools_publish_as_documented, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    push_samples(&app).await;

    let (tool, r) = publish(&app, "no_deps").await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        schema_of(&app, &tool).await["properties"]["text"],
        json!({"type": "string", "description": "The text to return."})
    );

    let (_, r) = publish(&app, "with_lock").await;
    assert_eq!(r.status, 201, "{}", r.text);
    let build = r.header("x-toolsmith-build-id").unwrap().to_owned();
    let log = app.request(Method::GET, &format!("/v1/acme/tool/build/{build}"), &app.admin.token).send().await;
    assert!(log.body["log"].as_str().unwrap().contains("uv.lock present"), "the committed lock is used: {}", log.text);

    let (_, r) = publish(&app, "failing_test").await;
    assert_eq!(r.status, 400);
    assert!(r.detail().contains("failed CI checks"), "{}", r.text);

    let (_, r) = publish(&app, "import_error").await;
    assert_eq!(r.status, 400);
    assert!(r.detail().contains("a_module_that_is_not_a_dependency"), "{}", r.text);

    let (tool, r) = publish(&app, "needs_env").await;
    assert_eq!(r.status, 400);
    assert!(r.detail().contains("GREETING_PREFIX") && r.detail().contains("API_TOKEN"), "{}", r.text);
    let inserted = app
        .request(Method::POST, &format!("/v1/acme/tool/{tool}/envvar"), &app.admin.token)
        .json(&json!({"inserts": [{"name": "GREETING_PREFIX", "value": "Hello", "is_secret": false}, {"name": "API_TOKEN", "value": "s3cret", "is_secret": true}]}))
        .send()
        .await;
    assert_eq!(inserted.status, 204);
    let r = app
        .request(Method::POST, &format!("/v1/acme/tool/{tool}/version"), &app.admin.token)
        .json(&json!({"project_path": "examples/tools/needs_env", "bump_type": "major"}))
        .send()
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let listed = app.request(Method::GET, &format!("/v1/acme/tool/{tool}/version"), &app.admin.token).send().await;
    assert_eq!(listed.body["tool_versions"][0]["required_envvars"], json!(["GREETING_PREFIX"]));
    assert_eq!(listed.body["tool_versions"][0]["required_secret_envvars"], json!(["API_TOKEN"]));

    let (tool, r) = publish(&app, "rich_signature").await;
    assert_eq!(r.status, 201, "{}", r.text);
    let schema = schema_of(&app, &tool).await;
    assert_eq!(schema["description"], "Plan a trip.");
    assert_eq!(schema["required"], json!(["trip", "travellers"]));
    assert_eq!(schema["additionalProperties"], false);
    let p = &schema["properties"];
    assert_eq!(p["trip"], json!({"$ref": "#/$defs/Trip", "description": "Where from, where to and for how long."}));
    assert_eq!(
        p["travellers"],
        json!({"type": "array", "items": {"type": "string"}, "description": "Names of everyone travelling."})
    );
    assert_eq!(p["budget"]["anyOf"], json!([{"type": "number"}, {"type": "null"}]));
    assert_eq!(p["budget"]["default"], Value::Null);
    assert_eq!(p["budget"]["description"], "Most the trip may cost, in euros; no limit when absent.");
    assert_eq!(
        p["mode"],
        json!({"enum": ["train", "plane", "car"], "default": "train", "description": "How to travel."})
    );
    assert_eq!(p["notes"]["default"], "");
    let defs = &schema["$defs"];
    assert_eq!(defs["Trip"]["properties"]["origin"], json!({"$ref": "#/$defs/Place"}));
    assert_eq!(defs["Trip"]["properties"]["nights"]["default"], 1);
    assert_eq!(defs["Trip"]["required"], json!(["origin", "destination"]));
    assert_eq!(defs["Place"]["properties"]["country"]["default"], "NL");
    assert_eq!(defs["Place"]["properties"]["country"]["description"], "ISO 3166 country code.");
    assert_eq!(defs["Place"]["required"], json!(["city"]));
});
