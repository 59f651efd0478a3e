//! `POST /v1/{org}/tool/{tool_id}/envvar`.

use reqwest::Method;
use serde_json::{json, Value};
use toolsmith::app::Settings;
use toolsmith_store::EnvVarValue;

use crate::both_backends;
use crate::support::{org, Backend, Options, Resp, TestApp};

async fn modify(app: &TestApp, tool: &str, body: Value) -> Resp {
    app.request(Method::POST, &format!("/v1/acme/tool/{tool}/envvar"), &app.admin.token)
        .op("modify-tool-envvars")
        .json(&body)
        .send()
        .await
}

const INVALID: &str = "The specified environment variables to update or delete do not exist, or the environment variables to delete are used by non-deprecated tool versions.";
const CONFLICT: &str =
    "An environment variable with the same name as the one to insert exists or has been recently deleted.";

/// A value with bytes that trip up naive handling: NUL, quotes, backslashes, newlines, non-ASCII.
const AWKWARD: &str = "nul\u{0}quote\"back\\slash\nline\ttab émoji 🔑 \u{7f}";

fn value_of(values: &[EnvVarValue], name: &str) -> Option<(String, bool)> {
    values.iter().find(|v| v.name == name).map(|v| (v.value.clone(), v.is_secret))
}

both_backends!(inserts_updates_and_deletes_apply_and_secrets_survive_a_round_trip, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let tool = app.create_tool("with_env").await;
    let r = modify(
        &app,
        &tool,
        json!({"inserts": [
            {"name": "API_BASE", "value": "https://example.invalid", "is_secret": false},
            {"name": "API_KEY", "value": AWKWARD, "is_secret": true},
            {"name": "OLD", "value": "x", "is_secret": false}
        ]}),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let listed = app.tool(&tool).await;
    assert_eq!(listed["envvars"], json!(["API_BASE", "OLD"]));
    assert_eq!(listed["secret_envvars"], json!(["API_KEY"]));
    let values = app.store.envvar_values(&org("acme"), &tool.parse().unwrap()).await.unwrap();
    assert_eq!(value_of(&values, "API_KEY"), Some((AWKWARD.to_owned(), true)), "every byte survives encryption");
    assert_eq!(value_of(&values, "API_BASE"), Some(("https://example.invalid".to_owned(), false)));

    let r = modify(
        &app,
        &tool,
        json!({"updates": [{"name": "API_KEY", "value": "rotated"}], "deletes": [{"name": "OLD"}]}),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let values = app.store.envvar_values(&org("acme"), &tool.parse().unwrap()).await.unwrap();
    assert_eq!(value_of(&values, "API_KEY"), Some(("rotated".to_owned(), true)), "an update keeps the variable secret");
    assert_eq!(value_of(&values, "OLD"), None);
    assert_eq!(app.tool(&tool).await["envvars"], json!(["API_BASE"]));
    assert!(!app.tool(&tool).await.to_string().contains("rotated"), "no endpoint returns values");
});

both_backends!(updates_and_deletes_of_missing_names_fail_and_change_nothing, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let tool = app.create_tool("atomic").await;
    for body in [
        json!({"inserts": [{"name": "NEW", "value": "v", "is_secret": false}], "updates": [{"name": "MISSING", "value": "v"}]}),
        json!({"inserts": [{"name": "NEW", "value": "v", "is_secret": false}], "deletes": [{"name": "MISSING"}]}),
    ] {
        let r = modify(&app, &tool, body).await;
        assert_eq!((r.status, r.detail()), (400, INVALID));
        assert_eq!(app.tool(&tool).await["envvars"], json!([]), "the valid insert was not applied either");
    }
});

both_backends!(inserting_an_existing_or_recently_deleted_name_conflicts, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let tool = app.create_tool("tomb").await;
    let insert = json!({"inserts": [{"name": "TOKEN", "value": "v", "is_secret": true}]});
    assert_eq!(modify(&app, &tool, insert.clone()).await.status, 204);
    let r = modify(&app, &tool, insert.clone()).await;
    assert_eq!((r.status, r.detail()), (409, CONFLICT));
    assert_eq!(modify(&app, &tool, json!({"deletes": [{"name": "TOKEN"}]})).await.status, 204);
    let r = modify(&app, &tool, insert.clone()).await;
    assert_eq!((r.status, r.detail()), (409, CONFLICT), "within the tombstone window");

    let quick = TestApp::spawn_with(
        backend,
        Options {
            settings: Settings { envvar_tombstone: std::time::Duration::ZERO, ..Settings::default() },
            ..Options::default()
        },
    )
    .await;
    let tool = quick.create_tool("tomb").await;
    assert_eq!(modify(&quick, &tool, insert.clone()).await.status, 204);
    assert_eq!(modify(&quick, &tool, json!({"deletes": [{"name": "TOKEN"}]})).await.status, 204);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(modify(&quick, &tool, insert).await.status, 204, "after the window the name is free again");
});

both_backends!(malformed_changes_are_rejected_with_their_location, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let tool = app.create_tool("strict").await;
    for (body, loc) in [
        (
            json!({"inserts": [{"name": "lower", "value": "v", "is_secret": false}]}),
            json!(["body", "inserts", 0, "name"]),
        ),
        (
            json!({"inserts": [{"name": "1ST", "value": "v", "is_secret": false}]}),
            json!(["body", "inserts", 0, "name"]),
        ),
        (
            json!({"inserts": [{"name": "A-B", "value": "v", "is_secret": false}]}),
            json!(["body", "inserts", 0, "name"]),
        ),
        (json!({"inserts": [{"name": "OK", "value": "v"}]}), json!(["body", "inserts", 0, "is_secret"])),
        (json!({"inserts": [{"name": "OK", "value": 5, "is_secret": false}]}), json!(["body", "inserts", 0, "value"])),
        (json!({"updates": [{"value": "v"}]}), json!(["body", "updates", 0, "name"])),
        (json!({"deletes": "ALL"}), json!(["body", "deletes"])),
        (json!({"deletes": ["ALL"]}), json!(["body", "deletes", 0])),
        (
            json!({"inserts": [{"name": "TWICE", "value": "v", "is_secret": false}], "deletes": [{"name": "TWICE"}]}),
            json!(["body", "deletes", 0, "name"]),
        ),
        (
            json!({"updates": [{"name": "TWICE", "value": "a"}, {"name": " TWICE ", "value": "b"}]}),
            json!(["body", "updates", 1, "name"]),
        ),
    ] {
        let r = modify(&app, &tool, body.clone()).await;
        assert_eq!(r.status, 422, "{body}: {}", r.text);
        assert_eq!(r.body["detail"][0]["loc"], loc, "{body}: {}", r.text);
    }
    let r = modify(&app, "0123456789abcdef01234567", json!({})).await;
    assert_eq!((r.status, r.detail()), (404, "The specified organization or tool does not exist."));
});

#[tokio::test]
async fn secrets_are_not_stored_in_plaintext() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let tool = app.create_tool("at_rest").await;
    let marker = "very-distinctive-secret-value-81c3";
    let r = modify(&app, &tool, json!({"inserts": [{"name": "S", "value": marker, "is_secret": true}, {"name": "P", "value": "plain-marker-77", "is_secret": false}]})).await;
    assert_eq!(r.status, 204);
    let mut bytes = Vec::new();
    for file in ["toolsmith.db", "toolsmith.db-wal"] {
        if let Ok(b) = std::fs::read(app.dir.path().join(file)) {
            bytes.extend(b);
        }
    }
    let contains = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(contains("plain-marker-77"), "the check can see stored values");
    assert!(!contains(marker), "the secret is sealed at rest");
}

both_backends!(oversized_bodies_are_refused, |backend: Backend| async move {
    let app = TestApp::spawn_with(
        backend,
        Options { settings: Settings { max_body_bytes: 4096, ..Settings::default() }, ..Options::default() },
    )
    .await;
    let tool = app.create_tool("big").await;
    let r =
        modify(&app, &tool, json!({"inserts": [{"name": "BIG", "value": "x".repeat(8192), "is_secret": true}]})).await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert_eq!(r.detail(), "The request body is too large.");
    assert_eq!(app.tool(&tool).await["secret_envvars"], json!([]));
});

both_backends!(rotating_the_secret_key_reseals_values_under_the_new_key, |backend: Backend| async move {
    use toolsmith_store::secrets::{Keyring, SecretKey};
    let app = TestApp::spawn(backend).await;
    let tool = app.create_tool("rotated").await;
    let r = modify(&app, &tool, json!({"inserts": [{"name": "K", "value": AWKWARD, "is_secret": true}]})).await;
    assert_eq!(r.status, 204);
    let new_key = SecretKey::generate();
    let both = Keyring::new(vec![new_key.clone(), app.keyring.current().clone()]).unwrap();
    let rotated = toolsmith_store::Store::open(&app.database_url, both).await.unwrap();
    assert_eq!(rotated.reseal_secrets().await.unwrap(), 1);
    assert_eq!(rotated.reseal_secrets().await.unwrap(), 0, "nothing left under the old key");
    // The old key can now be retired: the new key alone opens the value.
    let only_new = toolsmith_store::Store::open(&app.database_url, Keyring::new(vec![new_key]).unwrap()).await.unwrap();
    let values = only_new.envvar_values(&org("acme"), &tool.parse().unwrap()).await.unwrap();
    assert_eq!(value_of(&values, "K"), Some((AWKWARD.to_owned(), true)));
    assert!(
        app.store.envvar_values(&org("acme"), &tool.parse().unwrap()).await.is_err(),
        "the old key alone no longer opens it"
    );
});
