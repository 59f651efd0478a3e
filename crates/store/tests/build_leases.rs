//! Build records whose server died: failed once the lease of the lock they ran under is gone,
//! on both backends.

use std::time::Duration;

use toolsmith_domain::{BuildId, OrgId, ToolId, UserId};
use toolsmith_store::secrets::{Keyring, SecretKey};
use toolsmith_store::{BuildState, Store, UserRef};

/// A store on each backend, with its URL and keyring so that a second process can open it.
async fn stores() -> Vec<(Store, String, Keyring, tempfile::TempDir)> {
    let keyring = Keyring::new(vec![SecretKey::generate()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}", dir.path().join("toolsmith.db").display());
    let sqlite = Store::open(&sqlite_url, keyring.clone()).await.unwrap();
    let base = std::env::var("TOOLSMITH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let url = toolsmith_store::testing::fresh_postgres_schema(&base).await.expect("PostgreSQL for the store tests");
    let postgres = Store::open(&url, keyring.clone()).await.unwrap();
    vec![(sqlite, sqlite_url, keyring.clone(), dir), (postgres, url, keyring, tempfile::tempdir().unwrap())]
}

fn acme() -> OrgId {
    OrgId::parse("acme").unwrap()
}

fn admin() -> UserRef {
    UserRef { org_id: acme(), user_id: UserId::parse("0123456789abcdef01234567").unwrap() }
}

fn tool() -> ToolId {
    ToolId::parse("0123456789abcdef0123abcd").unwrap()
}

/// A server process that takes the tool's lock with a one-second lease, starts a publish build
/// under it and dies: its runtime (with the renewal task) is torn down, nothing is released and
/// the build record stays "running".
fn die_while_building(url: &str, keyring: Keyring) -> BuildId {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let build = rt.block_on(async {
            let store = Store::open(&url, keyring).await.unwrap();
            let lock =
                store.lock_tool(&acme(), &tool(), "publish", Duration::from_secs(1)).await.unwrap().expect("free");
            let build = store.start_build(&acme(), Some(&tool()), "publish", &admin()).await.unwrap();
            std::mem::forget(lock);
            build
        });
        rt.shutdown_background();
        build
    })
    .join()
    .unwrap()
}

async fn state(store: &Store, build: &BuildId) -> (BuildState, String) {
    let record = store.get_build(&acme(), build).await.unwrap().unwrap();
    (record.state, record.message)
}

#[tokio::test]
async fn taking_over_an_expired_lock_fails_the_dead_holders_build() {
    for (store, url, keyring, _dir) in stores().await {
        store.create_org(&acme(), "Acme").await.unwrap();
        let orphan = die_while_building(&url, keyring.clone());
        assert!(
            store.lock_tool(&acme(), &tool(), "publish", Duration::from_secs(30)).await.unwrap().is_none(),
            "the lease has not run out yet"
        );
        assert_eq!(state(&store, &orphan).await.0, BuildState::Running, "a held lock keeps its build alive");
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let lock =
            store.lock_tool(&acme(), &tool(), "publish", Duration::from_secs(30)).await.unwrap().expect("taken over");
        let (state_now, message) = state(&store, &orphan).await;
        assert_eq!(state_now, BuildState::Failed);
        assert!(message.contains("interrupted"), "{message}");
        // The new holder's own build is not touched by anything but its own end.
        let own = store.start_build(&acme(), Some(&tool()), "publish", &admin()).await.unwrap();
        assert_eq!(store.fail_stale_builds(3600).await.unwrap(), 0, "a build under a live lock is not stale");
        assert_eq!(state(&store, &own).await.0, BuildState::Running);
        store.finish_build(&acme(), &own, BuildState::Succeeded, "published 1.0.0", "").await.unwrap();
        lock.release().await.unwrap();
        assert_eq!(state(&store, &own).await.0, BuildState::Succeeded);
    }
}

#[tokio::test]
async fn the_sweep_fails_builds_whose_lease_ran_out_without_anyone_taking_the_lock() {
    for (store, url, keyring, _dir) in stores().await {
        store.create_org(&acme(), "Acme").await.unwrap();
        let orphan = die_while_building(&url, keyring.clone());
        let test_build = store.start_build(&acme(), None, "test", &admin()).await.unwrap();
        assert_eq!(store.fail_stale_builds(3600).await.unwrap(), 0, "the dead holder's lease still runs");
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(store.fail_stale_builds(3600).await.unwrap(), 1);
        assert_eq!(state(&store, &orphan).await.0, BuildState::Failed);
        assert_eq!(state(&store, &test_build).await.0, BuildState::Running, "a young test build holds no lock");
        assert_eq!(store.fail_stale_builds(-1).await.unwrap(), 1, "an old one is stale");
        assert_eq!(state(&store, &test_build).await.0, BuildState::Failed);
    }
}
