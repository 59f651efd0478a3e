//! Versions, their effect on env vars and tool deprecation, and build records, on both backends.

use serde_json::json;
use toolsmith_domain::{EnvVarName, ToolName, Version};
use toolsmith_store::secrets::{Keyring, SecretKey};
use toolsmith_store::{BuildState, EnvVarChanges, EnvVarInsert, NewTool, NewVersion, Store, StoreError, UserRef};

async fn stores() -> Vec<(Store, tempfile::TempDir)> {
    let keyring = || Keyring::new(vec![SecretKey::generate()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::open_sqlite_dir(dir.path(), keyring()).await.unwrap();
    let base = std::env::var("TOOLSMITH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let url = toolsmith_store::testing::fresh_postgres_schema(&base).await.expect("PostgreSQL for the store tests");
    let postgres = Store::open(&url, keyring()).await.unwrap();
    vec![(sqlite, dir), (postgres, tempfile::tempdir().unwrap())]
}

fn admin() -> UserRef {
    UserRef { org_id: "acme".into(), user_id: "0123456789abcdef01234567".into() }
}

fn version(tool_id: &str, v: &str, envvars: &[&str]) -> NewVersion {
    NewVersion {
        org_id: "acme".into(),
        tool_id: tool_id.into(),
        version: Version::parse(v).unwrap(),
        required_envvars: envvars.iter().map(|s| s.to_string()).collect(),
        required_secret_envvars: vec![],
        input_schema: json!({"type": "object", "properties": {"x": {"type": "integer"}}}),
        takes_context: false,
        entrypoint: "pkg.tool:run".into(),
        tool_commit_hash: "a".repeat(40),
        scaffold_hash: "b".repeat(64),
        project_directory: "pkg".into(),
        content_digest: "c".repeat(64),
        environment_key: "d".repeat(64),
        build_id: "0123456789abcdef01234568".into(),
        creator: admin(),
    }
}

#[tokio::test]
async fn versions_count_block_env_var_deletes_and_follow_the_tool() {
    for (store, _dir) in stores().await {
        store.create_org("acme", "Acme").await.unwrap();
        let tool = store
            .create_tool(NewTool {
                org_id: "acme".into(),
                name: ToolName::parse("t").unwrap(),
                description: "d".into(),
                tags: vec![],
                creator: admin(),
            })
            .await
            .unwrap();
        let insert =
            |name: &str| EnvVarInsert { name: EnvVarName::parse(name).unwrap(), value: "v".into(), is_secret: false };
        store
            .modify_envvars(
                "acme",
                &tool.id,
                &EnvVarChanges { inserts: vec![insert("A"), insert("B")], ..Default::default() },
                60,
                &admin(),
            )
            .await
            .unwrap();

        let first = store.insert_version(version(&tool.id, "1.0.0", &["A"])).await.unwrap();
        let second = store.insert_version(version(&tool.id, "1.1.0", &[])).await.unwrap();
        assert_eq!((first.lambda_version, second.lambda_version), (1, 2));
        assert!(matches!(store.insert_version(version(&tool.id, "1.1.0", &[])).await, Err(StoreError::AlreadyExists)));
        let listed = store.versions_of("acme", &tool.id).await.unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].input_schema["properties"]["x"]["type"], "integer");
        assert_eq!(store.versions_of("other", &tool.id).await.unwrap().len(), 0, "scoped by organization");

        let delete =
            |name: &str| EnvVarChanges { deletes: vec![EnvVarName::parse(name).unwrap()], ..Default::default() };
        assert!(matches!(
            store.modify_envvars("acme", &tool.id, &delete("A"), 60, &admin()).await,
            Err(StoreError::EnvVarsInvalid)
        ));
        store.modify_envvars("acme", &tool.id, &delete("B"), 60, &admin()).await.unwrap();

        assert_eq!(
            store.deprecate_versions("acme", &tool.id, std::slice::from_ref(&first.id), &admin()).await.unwrap(),
            1
        );
        assert_eq!(
            store.deprecate_versions("acme", &tool.id, std::slice::from_ref(&first.id), &admin()).await.unwrap(),
            0
        );
        store.modify_envvars("acme", &tool.id, &delete("A"), 60, &admin()).await.unwrap();

        store.deprecate_tool("acme", &tool.id, &admin()).await.unwrap();
        assert!(store.versions_of("acme", &tool.id).await.unwrap().iter().all(|v| v.deprecated));
    }
}

#[tokio::test]
async fn build_records_keep_state_and_log() {
    for (store, _dir) in stores().await {
        store.create_org("acme", "Acme").await.unwrap();
        let id = store.start_build("acme", None, "publish", &admin()).await.unwrap();
        assert_eq!(store.get_build("acme", &id).await.unwrap().unwrap().state, BuildState::Running);
        store.finish_build("acme", &id, BuildState::Failed, "tests failed", "=== 1 failed ===").await.unwrap();
        let build = store.get_build("acme", &id).await.unwrap().unwrap();
        assert_eq!(
            (build.state, build.message.as_str(), build.log.as_str()),
            (BuildState::Failed, "tests failed", "=== 1 failed ===")
        );
        assert!(build.finished_at.is_some());
        assert!(store.get_build("other", &id).await.unwrap().is_none());

        let stale = store.start_build("acme", None, "publish", &admin()).await.unwrap();
        assert_eq!(store.fail_stale_builds(3600).await.unwrap(), 0, "a fresh build is not stale");
        assert_eq!(store.fail_stale_builds(-1).await.unwrap(), 1);
        assert_eq!(store.get_build("acme", &stale).await.unwrap().unwrap().state, BuildState::Failed);
    }
}
