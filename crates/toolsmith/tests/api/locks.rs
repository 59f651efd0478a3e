//! The per-tool operation lock: held across server processes, never stuck after a crash.

use std::time::Duration;

use reqwest::Method;

use crate::both_backends;
use crate::support::{org, Backend, TestApp};

const IN_PROGRESS: &str = "A related operation is in progress.";

both_backends!(a_held_lock_makes_deprecation_wait_its_turn, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let tool = app.create_tool("locked").await;
    // Another server process on the same database holds the tool's lock (as a publish would).
    let other_process = toolsmith_store::Store::open(&app.database_url, app.keyring.clone()).await.unwrap();
    let lock = other_process
        .lock_tool(&org("acme"), &tool.parse().unwrap(), "publish", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("free");
    let r = app
        .request(Method::DELETE, &format!("/v1/acme/tool/{tool}"), &app.admin.token)
        .op("deprecate-tool")
        .send()
        .await;
    assert_eq!((r.status, r.detail()), (409, IN_PROGRESS));
    assert_eq!(app.tool(&tool).await["deprecated"], false);
    lock.release().await.unwrap();
    let r = app
        .request(Method::DELETE, &format!("/v1/acme/tool/{tool}"), &app.admin.token)
        .op("deprecate-tool")
        .send()
        .await;
    assert_eq!(r.status, 204);
    // The deprecation released its lock too.
    assert!(other_process
        .lock_tool(&org("acme"), &tool.parse().unwrap(), "publish", Duration::from_secs(30))
        .await
        .unwrap()
        .is_some());
});

both_backends!(a_crashed_holder_cannot_keep_the_lock, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let tool = app.create_tool("orphaned").await;
    let (url, keyring, tool_id) = (app.database_url.clone(), app.keyring.clone(), tool.clone());
    // A process takes the lock with a short lease and dies without releasing it: its runtime
    // (with the renewal task) is torn down and the guard is never dropped.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let store = toolsmith_store::Store::open(&url, keyring).await.unwrap();
            let lock = store
                .lock_tool(&org("acme"), &tool_id.parse().unwrap(), "publish", Duration::from_secs(1))
                .await
                .unwrap()
                .expect("free");
            std::mem::forget(lock);
        });
        rt.shutdown_background();
    })
    .join()
    .unwrap();
    let r = app
        .request(Method::DELETE, &format!("/v1/acme/tool/{tool}"), &app.admin.token)
        .op("deprecate-tool")
        .send()
        .await;
    assert_eq!(r.status, 409, "the lease has not run out yet");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = app
        .request(Method::DELETE, &format!("/v1/acme/tool/{tool}"), &app.admin.token)
        .op("deprecate-tool")
        .send()
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
});

both_backends!(a_live_holder_keeps_its_lock_past_the_first_lease, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let tool = app.create_tool("long_op").await;
    let lock = app
        .store
        .lock_tool(&org("acme"), &tool.parse().unwrap(), "publish", Duration::from_secs(1))
        .await
        .unwrap()
        .expect("free");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        app.store
            .lock_tool(&org("acme"), &tool.parse().unwrap(), "deprecate", Duration::from_secs(1))
            .await
            .unwrap()
            .is_none(),
        "renewed while held"
    );
    lock.release().await.unwrap();
    assert!(app
        .store
        .lock_tool(&org("acme"), &tool.parse().unwrap(), "deprecate", Duration::from_secs(1))
        .await
        .unwrap()
        .is_some());
});
