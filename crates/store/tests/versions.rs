//! Versions, their effect on env vars and tool deprecation, and build records, on both backends.

use serde_json::json;
use toolsmith_domain::{BuildId, EnvVarName, OrgId, ToolId, ToolName, UserId, Version};
use toolsmith_store::secrets::{Keyring, SecretKey};
use toolsmith_store::{BuildState, EnvVarChanges, EnvVarInsert, NewTool, NewVersion, Store, StoreError, Tool, UserRef};

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

fn org(slug: &str) -> OrgId {
    OrgId::parse(slug).unwrap()
}

fn admin() -> UserRef {
    UserRef { org_id: org("acme"), user_id: UserId::parse("0123456789abcdef01234567").unwrap() }
}

fn version(tool_id: &ToolId, v: &str, envvars: &[&str]) -> NewVersion {
    NewVersion {
        org_id: org("acme"),
        tool_id: tool_id.clone(),
        version: Version::parse(v).unwrap(),
        required_envvars: envvars.iter().map(|s| s.to_string()).collect(),
        required_secret_envvars: vec![],
        input_schema: json!({"type": "object", "properties": {"x": {"type": "integer"}}}),
        output_schema: None,
        takes_context: false,
        entrypoint: "pkg.tool:run".into(),
        tool_commit_hash: "a".repeat(40),
        scaffold_hash: "b".repeat(64),
        project_directory: "pkg".into(),
        content_digest: "c".repeat(64),
        environment_key: "d".repeat(64),
        build_id: BuildId::parse("0123456789abcdef01234568").unwrap(),
        creator: admin(),
    }
}

/// Creates the organization `acme` and a tool of it.
async fn acme_tool(store: &Store) -> Tool {
    store.create_org(&org("acme"), "Acme").await.unwrap();
    let tool = NewTool {
        org_id: org("acme"),
        name: ToolName::parse("t").unwrap(),
        description: "d".into(),
        tags: vec![],
        creator: admin(),
    };
    store.create_tool(tool).await.unwrap()
}

#[tokio::test]
async fn versions_count_block_env_var_deletes_and_follow_the_tool() {
    for (store, _dir) in stores().await {
        let tool = acme_tool(&store).await;
        let insert =
            |name: &str| EnvVarInsert { name: EnvVarName::parse(name).unwrap(), value: "v".into(), is_secret: false };
        store
            .modify_envvars(
                &org("acme"),
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
        let listed = store.versions_of(&org("acme"), &tool.id).await.unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].input_schema["properties"]["x"]["type"], "integer");
        assert_eq!(store.versions_of(&org("other"), &tool.id).await.unwrap().len(), 0, "scoped by organization");

        let delete =
            |name: &str| EnvVarChanges { deletes: vec![EnvVarName::parse(name).unwrap()], ..Default::default() };
        assert!(matches!(
            store.modify_envvars(&org("acme"), &tool.id, &delete("A"), 60, &admin()).await,
            Err(StoreError::EnvVarsInvalid)
        ));
        store.modify_envvars(&org("acme"), &tool.id, &delete("B"), 60, &admin()).await.unwrap();

        assert_eq!(
            store.deprecate_versions(&org("acme"), &tool.id, std::slice::from_ref(&first.id), &admin()).await.unwrap(),
            1
        );
        assert_eq!(
            store.deprecate_versions(&org("acme"), &tool.id, std::slice::from_ref(&first.id), &admin()).await.unwrap(),
            0
        );
        store.modify_envvars(&org("acme"), &tool.id, &delete("A"), 60, &admin()).await.unwrap();

        store.deprecate_tool(&org("acme"), &tool.id, &admin()).await.unwrap();
        assert!(store.versions_of(&org("acme"), &tool.id).await.unwrap().iter().all(|v| v.deprecated));
    }
}

#[tokio::test]
async fn build_records_keep_state_and_log() {
    for (store, _dir) in stores().await {
        store.create_org(&org("acme"), "Acme").await.unwrap();
        let id = store.start_build(&org("acme"), None, "publish", &admin()).await.unwrap();
        assert_eq!(store.get_build(&org("acme"), &id).await.unwrap().unwrap().state, BuildState::Running);
        store.finish_build(&org("acme"), &id, BuildState::Failed, "tests failed", "=== 1 failed ===").await.unwrap();
        let build = store.get_build(&org("acme"), &id).await.unwrap().unwrap();
        assert_eq!(
            (build.state, build.message.as_str(), build.log.as_str()),
            (BuildState::Failed, "tests failed", "=== 1 failed ===")
        );
        assert!(build.finished_at.is_some());
        assert!(store.get_build(&org("other"), &id).await.unwrap().is_none());

        let stale = store.start_build(&org("acme"), None, "publish", &admin()).await.unwrap();
        assert_eq!(store.fail_stale_builds(3600).await.unwrap(), 0, "a fresh build is not stale");
        assert_eq!(store.fail_stale_builds(-1).await.unwrap(), 1);
        assert_eq!(store.get_build(&org("acme"), &stale).await.unwrap().unwrap().state, BuildState::Failed);
    }
}

#[tokio::test]
async fn output_schemas_are_kept_and_read_back() {
    for (store, _dir) in stores().await {
        let tool = acme_tool(&store).await;
        let schema = json!({
            "type": "object",
            "properties": {"température": {"type": "number"}, "days": {"type": "array", "items": {"type": "string"}}},
            "required": ["température"],
        });
        let with = NewVersion { output_schema: Some(schema.clone()), ..version(&tool.id, "1.0.0", &[]) };
        let inserted = store.insert_version(with).await.unwrap();
        assert_eq!(inserted.output_schema.as_ref(), Some(&schema));
        store.insert_version(version(&tool.id, "1.1.0", &[])).await.unwrap();
        let scalar = NewVersion { output_schema: Some(json!({"type": "integer"})), ..version(&tool.id, "2.0.0", &[]) };
        store.insert_version(scalar).await.unwrap();

        let listed = store.versions_of(&org("acme"), &tool.id).await.unwrap();
        let schemas: Vec<(String, Option<serde_json::Value>)> =
            listed.iter().map(|v| (v.version.to_string(), v.output_schema.clone())).collect();
        assert_eq!(
            schemas,
            [
                ("1.0.0".to_owned(), Some(schema.clone())),
                ("1.1.0".to_owned(), None),
                ("2.0.0".to_owned(), Some(json!({"type": "integer"}))),
            ]
        );
        assert_eq!(listed[0], inserted, "what is read back is what insert answered");
    }
}

/// What a server before output schemas wrote: an organization, a tool and a version of it.
async fn record_before_output_schemas(conn: &mut sqlx::AnyConnection, tool: &ToolId, version: &str) {
    let admin = admin();
    sqlx::query(
        "INSERT INTO tools (org_id, id, name, description, deprecated, tags_json, creator_org, creator_user, \
         updated_by_org, updated_by_user, created_at, updated_at) \
         VALUES ('acme', $1, 't', 'd', 0, '[]', $2, $3, $2, $3, 1, 1)",
    )
    .bind(tool.as_str())
    .bind(admin.org_id.as_str())
    .bind(admin.user_id.as_str())
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO tool_versions (org_id, id, tool_id, major, minor, patch, required_envvars, \
         required_secret_envvars, input_schema, takes_context, entrypoint, tool_commit_hash, scaffold_hash, \
         project_directory, lambda_version, content_digest, environment_key, build_id, deprecated, creator_org, \
         creator_user, updated_by_org, updated_by_user, created_at, updated_at) \
         VALUES ('acme', $1, $2, 1, 0, 0, '[\"A\"]', '[]', '{\"type\": \"object\"}', 1, 'pkg.tool:run', 'abc', 'def', \
         'pkg', 1, 'digest', 'env', $3, 0, $4, $5, $4, $5, 2, 2)",
    )
    .bind(version)
    .bind(tool.as_str())
    .bind(BuildId::generate().as_str())
    .bind(admin.org_id.as_str())
    .bind(admin.user_id.as_str())
    .execute(&mut *conn)
    .await
    .unwrap();
}

#[tokio::test]
async fn versions_published_before_output_schemas_read_as_having_none() {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().unwrap();
    let urls = toolsmith_store::testing::empty_databases(dir.path()).await.expect("PostgreSQL for the store tests");
    for url in urls {
        toolsmith_store::testing::migrate_through(&url, 7).await.unwrap();
        let tool = ToolId::generate();
        let old = toolsmith_domain::VersionId::generate();
        {
            let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
            sqlx::query("INSERT INTO organizations (id, name, created_at) VALUES ('acme', 'Acme', 0)")
                .execute(&mut conn)
                .await
                .unwrap();
            record_before_output_schemas(&mut conn, &tool, old.as_str()).await;
            conn.close().await.unwrap();
        }

        let store = Store::open(&url, Keyring::new(vec![SecretKey::generate()]).unwrap()).await.unwrap();
        let listed = store.versions_of(&org("acme"), &tool).await.unwrap();
        assert_eq!(listed.len(), 1, "{url}");
        let before = &listed[0];
        assert_eq!((&before.id, &before.tool_id, before.output_schema.as_ref()), (&old, &tool, None), "{url}");
        assert_eq!(
            (before.version.to_string(), before.required_envvars.clone(), before.input_schema.clone()),
            ("1.0.0".to_owned(), vec!["A".to_owned()], json!({"type": "object"})),
            "{url}: the rest of the record is as it was"
        );
        assert_eq!(before.creator, admin(), "{url}");

        // Versions published from now on keep theirs, beside the old one.
        let schema = json!({"type": "string"});
        let new = NewVersion { output_schema: Some(schema.clone()), ..version(&tool, "1.1.0", &[]) };
        let new = store.insert_version(new).await.unwrap();
        assert_eq!(new.lambda_version, 2, "{url}");
        let listed = store.versions_of(&org("acme"), &tool).await.unwrap();
        let schemas: Vec<Option<serde_json::Value>> = listed.iter().map(|v| v.output_schema.clone()).collect();
        assert_eq!(schemas, [None, Some(schema)], "{url}");
    }
}
