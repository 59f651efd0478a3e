//! Publishing versions from the repository with real uv, listing and deprecating them.

use reqwest::Method;
use serde_json::{json, Value};

use crate::both_backends;
use crate::repo::{clone, commit_file, git, head};
use crate::support::{Backend, Resp, TestApp};

async fn publish(app: &TestApp, tool: &str, body: Value) -> Resp {
    app.request(Method::POST, &format!("/v1/acme/tool/{tool}/version"), &app.admin.token)
        .op("publish-tool-version")
        .json(&body)
        .send()
        .await
}

async fn versions(app: &TestApp, tool: &str, query: &str) -> Resp {
    app.request(Method::GET, &format!("/v1/acme/tool/{tool}/version{query}"), &app.admin.token)
        .op("get-tool-versions")
        .send()
        .await
}

fn numbers(r: &Resp) -> Vec<String> {
    r.body["tool_versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| format!("{}.{}.{}", v["version"]["major"], v["version"]["minor"], v["version"]["patch"]))
        .collect()
}

const PYPROJECT: &str =
    "[project]\nname = \"p\"\nversion = \"0.1.0\"\nrequires-python = \">=3.11\"\ndependencies = []\n\
[dependency-groups]\ndev = [\"pytest>=8\"]\n[tool.pytest.ini_options]\npythonpath = [\".\"]\n";

both_backends!(publish_list_and_deprecate_versions_of_the_scaffold, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let tool = app.create_tool("hello").await;
    let r = publish(&app, &tool, json!({"project_path": "hello_world", "bump_type": "major"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body, json!({"new_version": "1.0.0"}));
    assert!(r.header("x-toolsmith-build-id").is_some());

    let listed = versions(&app, &tool, "").await;
    let v = &listed.body["tool_versions"][0];
    assert_eq!(v["version"], json!({"major": 1, "minor": 0, "patch": 0}));
    assert_eq!(v["project_directory"], "hello_world");
    assert_eq!(v["lambda_version"], 1);
    assert_eq!(v["input_schema"]["required"], json!(["name"]));
    assert_eq!(v["input_schema"]["properties"]["excited"]["default"], false);
    assert_eq!(v["amigo_scaffold_commit_hash"], toolsmith_repo::scaffold::hash());
    assert_eq!(v["creator"], json!({"user_id": app.admin.id, "user_org_id": "acme"}));
    assert_eq!(v["content_digest"].as_str().unwrap().len(), 64);
    let main = app.request(Method::GET, "/v1/acme/tool/repo/branch/main", &app.admin.token).send().await;
    assert_eq!(v["tool_commit_hash"], main.body["latest_commit_sha"]);
    assert_eq!(listed.body["filter_values"]["creators"], json!([{"user_id": app.admin.id, "user_org_id": "acme"}]));

    for (bump, expected) in [("minor", "1.1.0"), ("patch", "1.1.1")] {
        let r = publish(&app, &tool, json!({"project_path": "hello_world", "bump_type": bump, "branch": "main"})).await;
        assert_eq!((r.status, r.body["new_version"].as_str()), (201, Some(expected)), "{}", r.text);
    }
    let r = publish(&app, &tool, json!({"project_path": "hello_world", "bump_type": "patch"})).await;
    assert_eq!(r.status, 400);
    assert!(r.detail().contains("active versions"), "{}", r.text);

    assert_eq!(
        numbers(&versions(&app, &tool, "?sort_by=-version.minor&sort_by=-version.patch").await),
        ["1.1.1", "1.1.0", "1.0.0"]
    );
    assert_eq!(numbers(&versions(&app, &tool, "?versions=%3E%3D1.1").await), ["1.1.0", "1.1.1"]);
    assert_eq!(numbers(&versions(&app, &tool, "?versions=~%3D1.1.0").await), ["1.1.0", "1.1.1"]);
    assert_eq!(numbers(&versions(&app, &tool, &format!("?creator=acme,{}", app.admin.id)).await).len(), 3);
    assert_eq!(numbers(&versions(&app, &tool, "?creator=acme,0123456789abcdef01234567").await).len(), 0);
    let page = versions(&app, &tool, "?limit=2").await;
    assert_eq!((numbers(&page).len(), page.body["continuation_token"].clone()), (2, json!(2)));
    let rest = versions(&app, &tool, "?limit=2&continuation_token=2").await;
    assert_eq!(numbers(&rest), ["1.1.1"]);
    assert!(rest.body["filter_values"].is_null());
    for bad in ["?versions=%3E%3Dbanana", "?sort_by=%2Bversion", "?limit=51", "?creator=nocomma"] {
        assert_eq!(versions(&app, &tool, bad).await.status, 422, "{bad}");
    }

    let r = app
        .request(Method::DELETE, &format!("/v1/acme/tool/{tool}/version/%3D%3D1.0.0"), &app.admin.token)
        .op("deprecate-tool-version")
        .send()
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(numbers(&versions(&app, &tool, "?deprecated=true").await), ["1.0.0"]);
    let r = app
        .request(Method::DELETE, &format!("/v1/acme/tool/{tool}/version/not%20a%20spec"), &app.admin.token)
        .op("deprecate-tool-version")
        .send()
        .await;
    assert_eq!(r.status, 422);
    let r = publish(&app, &tool, json!({"project_path": "hello_world", "bump_type": "minor"})).await;
    assert_eq!(r.body["new_version"], "1.2.0", "bumps follow the highest version ever published: {}", r.text);

    // Deprecating the tool deprecates every version; a deprecated tool cannot publish.
    assert_eq!(
        app.request(Method::DELETE, &format!("/v1/acme/tool/{tool}"), &app.admin.token).send().await.status,
        204
    );
    assert_eq!(numbers(&versions(&app, &tool, "?deprecated=false").await).len(), 0);
    let r = publish(&app, &tool, json!({"project_path": "hello_world", "bump_type": "patch"})).await;
    assert_eq!(r.status, 404);
});

both_backends!(publish_refuses_bad_projects_with_a_reason_and_a_build_log, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let tool = app.create_tool("broken").await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("w");
    assert!(clone(&app, &app.admin, &dir).await.ok);
    commit_file(
        &dir,
        "failing/pyproject.toml",
        format!("{PYPROJECT}[tool.toolsmith]\nentrypoint = \"p.tool:run\"\n").as_bytes(),
        "failing",
    )
    .await;
    commit_file(&dir, "failing/p/__init__.py", b"", "pkg").await;
    commit_file(&dir, "failing/p/tool.py", b"def run(x: int) -> int:\n    return x\n", "tool").await;
    commit_file(
        &dir,
        "failing/tests/test_p.py",
        b"from p.tool import run\n\ndef test_run():\n    assert run(1) == 2\n",
        "test",
    )
    .await;
    commit_file(&dir, "needs_env/pyproject.toml", format!("{PYPROJECT}[tool.toolsmith]\nentrypoint = \"p.tool:run\"\nenvvars = [\"BASE\"]\nsecret_envvars = [\"TOKEN\"]\n").as_bytes(), "env").await;
    commit_file(&dir, "needs_env/p/__init__.py", b"", "pkg").await;
    commit_file(&dir, "needs_env/p/tool.py", b"def run() -> str:\n    return 'ok'\n", "tool").await;
    commit_file(&dir, "nocontract/pyproject.toml", b"[project]\nname = \"n\"\n", "no contract").await;
    commit_file(&dir, "failing/LICENSE", b"MIT\n", "licence").await;
    assert!(git(&dir, &["push", "--quiet", "origin", "main"]).await.ok);

    let r = publish(&app, &tool, json!({"project_path": "failing", "bump_type": "major"})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.detail().contains("CI checks"), "{}", r.text);
    let build = r.header("x-toolsmith-build-id").unwrap().to_owned();
    let log = app.request(Method::GET, &format!("/v1/acme/tool/build/{build}"), &app.admin.token).send().await;
    assert_eq!(log.body["state"], "failed");
    assert!(log.body["log"].as_str().unwrap().contains("assert"), "{}", log.text);

    let r = publish(&app, &tool, json!({"project_path": "nocontract", "bump_type": "major"})).await;
    assert_eq!(r.status, 400);
    assert!(r.detail().contains("[tool.toolsmith]"), "{}", r.text);
    // No such directory, a directory without pyproject.toml, a file.
    for missing in ["nowhere", "failing/tests", "failing/LICENSE"] {
        let r = publish(&app, &tool, json!({"project_path": missing, "bump_type": "major"})).await;
        assert_eq!(r.status, 404, "{missing}: {}", r.text);
    }
    for bad in [
        json!({"project_path": "../etc", "bump_type": "major"}),
        json!({"project_path": "/abs", "bump_type": "major"}),
        json!({"project_path": "a", "bump_type": "huge"}),
        json!({"bump_type": "major"}),
    ] {
        assert_eq!(publish(&app, &tool, bad.clone()).await.status, 422, "{bad}");
    }

    let r = publish(&app, &tool, json!({"project_path": "needs_env", "bump_type": "major"})).await;
    assert_eq!(r.status, 400);
    assert!(r.detail().contains("BASE") && r.detail().contains("TOKEN"), "{}", r.text);
    let envvar = |body: Value| {
        app.request(Method::POST, &format!("/v1/acme/tool/{tool}/envvar"), &app.admin.token).json(&body).send()
    };
    let r = envvar(json!({"inserts": [{"name": "BASE", "value": "b", "is_secret": false}, {"name": "TOKEN", "value": "t", "is_secret": true}]})).await;
    assert_eq!(r.status, 204);
    let r = publish(&app, &tool, json!({"project_path": "needs_env", "bump_type": "major"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(numbers(&versions(&app, &tool, "").await), ["1.0.0"], "failed publishes left no version");
    // Now in use: the env vars cannot be deleted.
    let r = envvar(json!({"deletes": [{"name": "TOKEN"}]})).await;
    assert_eq!(r.status, 400);
});

both_backends!(publish_refuses_an_older_commit_and_runs_one_at_a_time, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let tool = app.create_tool("ordered").await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("w");
    assert!(clone(&app, &app.admin, &dir).await.ok);
    let first = head(&dir).await;

    let (a, b) = tokio::join!(
        publish(&app, &tool, json!({"project_path": "hello_world", "bump_type": "major"})),
        publish(&app, &tool, json!({"project_path": "hello_world", "bump_type": "major"}))
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [201, 409], "{} / {}", a.text, b.text);

    commit_file(&dir, "hello_world/NOTES.md", b"notes\n", "Notes").await;
    assert!(git(&dir, &["push", "--quiet", "origin", "main"]).await.ok);
    assert_eq!(publish(&app, &tool, json!({"project_path": "hello_world", "bump_type": "minor"})).await.status, 201);
    // main moves back to an ancestor of the newest version's commit.
    assert!(git(&dir, &["push", "--quiet", "--force", "origin", &format!("{first}:main")]).await.ok);
    let r = publish(&app, &tool, json!({"project_path": "hello_world", "bump_type": "minor"})).await;
    assert_eq!(r.status, 400);
    assert!(r.detail().contains("older than the last valid commit"), "{}", r.text);
});

both_backends!(hanging_builds_missing_packages_and_non_functions_fail_clearly, |backend: Backend| async move {
    use crate::support::Options;
    let options = Options {
        settings: toolsmith::app::Settings {
            build_step_timeout: std::time::Duration::from_secs(4),
            ..Default::default()
        },
        ..Options::default()
    };
    let app = TestApp::spawn_with(backend, options).await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("w");
    assert!(clone(&app, &app.admin, &dir).await.ok);
    let contract = "[tool.toolsmith]\nentrypoint = \"p.tool:run\"\n";
    commit_file(&dir, "hangs/pyproject.toml", format!("{PYPROJECT}{contract}").as_bytes(), "hangs").await;
    commit_file(&dir, "hangs/p/__init__.py", b"", "pkg").await;
    commit_file(&dir, "hangs/p/tool.py", b"def run() -> str:\n    return 'x'\n", "tool").await;
    commit_file(&dir, "hangs/tests/test_p.py", b"import time\n\ndef test_forever():\n    time.sleep(3600)\n", "test")
        .await;
    let missing_dep = "[project]\nname = \"p\"\nversion = \"0.1.0\"\nrequires-python = \">=3.11\"\ndependencies = [\"toolsmith-no-such-package-8c1f3a\"]\n";
    commit_file(&dir, "missing_dep/pyproject.toml", format!("{missing_dep}{contract}").as_bytes(), "missing dep").await;
    commit_file(&dir, "missing_dep/p/__init__.py", b"", "pkg").await;
    commit_file(&dir, "missing_dep/p/tool.py", b"def run() -> str:\n    return 'x'\n", "tool").await;
    commit_file(&dir, "not_function/pyproject.toml", format!("{PYPROJECT}{contract}").as_bytes(), "not fn").await;
    commit_file(&dir, "not_function/p/__init__.py", b"", "pkg").await;
    commit_file(&dir, "not_function/p/tool.py", b"run = 42\n", "tool").await;
    assert!(git(&dir, &["push", "--quiet", "origin", "main"]).await.ok);

    let tool = app.create_tool("trouble").await;
    let started = std::time::Instant::now();
    let r = publish(&app, &tool, json!({"project_path": "hangs", "bump_type": "major"})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.detail().contains("did not finish in time"), "{}", r.text);
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "the build step timeout ended it");

    let r = publish(&app, &tool, json!({"project_path": "missing_dep", "bump_type": "major"})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.detail().contains("resolving the dependencies failed")
            && r.detail().contains("toolsmith-no-such-package-8c1f3a"),
        "{}",
        r.text
    );

    let r = publish(&app, &tool, json!({"project_path": "not_function", "bump_type": "major"})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.detail().contains("not a function"), "{}", r.text);
    assert_eq!(numbers(&versions(&app, &tool, "").await).len(), 0);
});
