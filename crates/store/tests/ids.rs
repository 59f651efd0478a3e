//! Typed ids on both backends: users, roles and API keys addressed by them, and rows whose ids
//! do not parse (changed behind the store's back), which are reported as corrupt records rather
//! than read as something else or panicking.

use serde_json::json;
use sqlx::Connection;
use toolsmith_domain::time::Timestamp;
use toolsmith_domain::{ApiKeyId, InvocationId, InvocationSource, OrgId, Role, ToolName, UserId, Version};
use toolsmith_store::secrets::{Keyring, SecretKey};
use toolsmith_store::{
    ApiKeyRecord, InvocationQuery, NewInvocation, NewTool, Store, StoreError, ToolQuery, UserRecord, UserRef,
};

/// A store on each backend, with its URL for writing rows behind its back.
async fn stores() -> Vec<(Store, String, tempfile::TempDir)> {
    let keyring = || Keyring::new(vec![SecretKey::generate()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}", dir.path().join("toolsmith.db").display());
    let sqlite = Store::open(&sqlite_url, keyring()).await.unwrap();
    let base = std::env::var("TOOLSMITH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let url = toolsmith_store::testing::fresh_postgres_schema(&base).await.expect("PostgreSQL for the store tests");
    let postgres = Store::open(&url, keyring()).await.unwrap();
    vec![(sqlite, sqlite_url, dir), (postgres, url, tempfile::tempdir().unwrap())]
}

fn org(slug: &str) -> OrgId {
    OrgId::parse(slug).unwrap()
}

#[tokio::test]
async fn roles_follow_the_user_and_the_organization_they_belong_to() {
    for (store, _url, _dir) in stores().await {
        let (acme, partner) = (org("acme"), org("partner"));
        store.create_org(&acme, "Acme").await.unwrap();
        store.create_org(&partner, "Partner").await.unwrap();
        let user = UserId::generate();
        let record = store.create_user(&partner, &user, "ada").await.unwrap();
        assert_eq!(record, UserRecord { org_id: partner.clone(), id: user.clone(), name: "ada".into() });
        assert!(matches!(store.create_user(&partner, &user, "again").await, Err(StoreError::AlreadyExists)));
        assert_eq!(store.get_user(&partner, &user).await.unwrap(), Some(record.clone()));
        assert_eq!(store.get_user(&acme, &user).await.unwrap(), None, "a user belongs to one organization");
        assert_eq!(store.list_users(&partner).await.unwrap(), [record]);

        // A user of the partner organization granted a role in acme.
        let ada = UserRef { org_id: partner.clone(), user_id: user.clone() };
        store.grant_role(&acme, &ada, Role::Viewer).await.unwrap();
        store.grant_role(&acme, &ada, Role::Viewer).await.unwrap();
        let access = store.access(&acme, &ada).await.unwrap();
        assert!(access.org_exists && access.user_exists);
        assert_eq!(access.roles, [Role::Viewer]);
        assert_eq!(store.roles_of(&acme, &ada).await.unwrap(), [Role::Viewer]);
        assert!(store.roles_of(&partner, &ada).await.unwrap().is_empty(), "the grant is acme's only");
        let namesake = UserRef { org_id: acme.clone(), user_id: user.clone() };
        let access = store.access(&acme, &namesake).await.unwrap();
        assert!(!access.user_exists && access.roles.is_empty(), "the same id in another organization is another user");
        let access = store.access(&org("nowhere"), &ada).await.unwrap();
        assert!(!access.org_exists && access.user_exists && access.roles.is_empty());

        assert!(store.revoke_role(&acme, &ada, Role::Viewer).await.unwrap());
        assert!(!store.revoke_role(&acme, &ada, Role::Viewer).await.unwrap());
        assert!(store.access(&acme, &ada).await.unwrap().roles.is_empty());
    }
}

#[tokio::test]
async fn api_keys_are_found_by_organization_and_id() {
    for (store, _url, _dir) in stores().await {
        let acme = org("acme");
        store.create_org(&acme, "Acme").await.unwrap();
        let key = ApiKeyRecord {
            org_id: acme.clone(),
            id: ApiKeyId::generate(),
            secret_sha256: "e".repeat(64),
            description: "ci".into(),
            expires_at: Some(Timestamp(5)),
            revoked_at: None,
        };
        store.create_api_key(&key).await.unwrap();
        assert!(matches!(store.create_api_key(&key).await, Err(StoreError::AlreadyExists)));
        assert_eq!(store.get_api_key(&acme, &key.id).await.unwrap(), Some(key.clone()));
        assert_eq!(store.get_api_key(&org("other"), &key.id).await.unwrap(), None);
        assert_eq!(store.get_api_key(&acme, &ApiKeyId::generate()).await.unwrap(), None);
        assert_eq!(store.list_api_keys(&acme).await.unwrap(), std::slice::from_ref(&key));
        assert!(store.revoke_api_key(&acme, &key.id).await.unwrap());
        assert!(!store.revoke_api_key(&acme, &key.id).await.unwrap());
        assert!(store.get_api_key(&acme, &key.id).await.unwrap().unwrap().revoked_at.is_some());
    }
}

/// Runs `sql` on the database directly, as someone editing it by hand would.
async fn behind_the_store(url: &str, sql: &str, id: &str) {
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let done = sqlx::query(sql).bind(id).execute(&mut conn).await.unwrap();
    assert_eq!(done.rows_affected(), 1, "{sql}");
    conn.close().await.unwrap();
}

/// Whether `result` is the corrupt-record error naming `column`.
fn corrupt_in<T: std::fmt::Debug>(result: Result<T, StoreError>, column: &str) -> bool {
    matches!(&result, Err(StoreError::Corrupt(message)) if message.contains(column))
}

#[tokio::test]
async fn a_row_whose_id_does_not_parse_is_a_corrupt_record() {
    sqlx::any::install_default_drivers();
    for (store, url, _dir) in stores().await {
        let acme = org("acme");
        store.create_org(&acme, "Acme").await.unwrap();
        let admin = UserRef { org_id: acme.clone(), user_id: UserId::generate() };
        store.create_user(&acme, &admin.user_id, "admin").await.unwrap();
        let tool = |name: &str| NewTool {
            org_id: acme.clone(),
            name: ToolName::parse(name).unwrap(),
            description: "d".into(),
            tags: vec![],
            creator: admin.clone(),
        };
        let broken = store.create_tool(tool("broken")).await.unwrap();
        let intact = store.create_tool(tool("intact")).await.unwrap();
        let tools = ToolQuery { limit: 10, ..Default::default() };
        assert_eq!(store.list_tools(&acme, &tools).await.unwrap().tools.len(), 2);

        behind_the_store(&url, "UPDATE tools SET creator_user = 'root' WHERE id = $1", broken.id.as_str()).await;
        assert!(corrupt_in(store.get_tool(&acme, &broken.id).await, "creator_user"));
        assert!(corrupt_in(store.list_tools(&acme, &tools).await, "creator_user"));
        assert_eq!(store.get_tool(&acme, &intact.id).await.unwrap().unwrap(), intact, "other rows read as before");

        let build = store.start_build(&acme, Some(&intact.id), "publish", &admin).await.unwrap();
        behind_the_store(&url, "UPDATE builds SET tool_id = 'TOOL' WHERE id = $1", build.as_str()).await;
        assert!(corrupt_in(store.get_build(&acme, &build).await, "tool_id"));

        let source: InvocationSource =
            serde_json::from_value(json!({"type": "direct", "user_id": admin.user_id, "user_org_id": "acme"})).unwrap();
        let invocation = NewInvocation {
            id: InvocationId::generate(),
            org_id: acme.clone(),
            tool_id: intact.id.clone(),
            version: Version::parse("1.0.0").unwrap(),
            succeeded: true,
            output: Some("ok".into()),
            exception_type: None,
            exception_message: None,
            exception_stack_trace: vec![],
            duration_ms: 1,
            inputs: json!({}),
            source,
            caller: admin.clone(),
            logs: String::new(),
            created_at: Timestamp(1),
        };
        store.record_invocations(vec![invocation.clone()]).await.unwrap();
        let got = store.get_invocation(&acme, &invocation.id).await.unwrap().unwrap();
        assert_eq!((got.id, got.tool_id, got.caller), (invocation.id.clone(), intact.id.clone(), Some(admin.clone())));
        behind_the_store(&url, "UPDATE invocations SET caller_user_id = 'Admin' WHERE id = $1", invocation.id.as_str())
            .await;
        assert!(corrupt_in(store.get_invocation(&acme, &invocation.id).await, "caller_user_id"));
        let all = InvocationQuery { filter: Default::default(), sort: vec![], limit: 10, after: 0 };
        assert!(corrupt_in(store.list_invocations(&acme, &all).await, "caller_user_id"));

        behind_the_store(&url, "UPDATE users SET id = 'admin' WHERE id = $1", admin.user_id.as_str()).await;
        assert!(corrupt_in(store.list_users(&acme).await, "id"));
    }
}
