//! Rate limits: the contract's numbers, its 429 text and headers, and limits that hold across
//! server processes on PostgreSQL.

use reqwest::Method;
use serde_json::json;

use crate::both_backends;
use crate::support::{org, Backend, Options, TestApp};
use toolsmith::config::Switch;

fn limited() -> Options {
    Options { rate_limits: Switch::On, ..Options::default() }
}

both_backends!(the_twenty_first_create_in_a_minute_is_refused, |backend: Backend| async move {
    let app = TestApp::spawn_with(backend, limited()).await;
    let mut last = None;
    for i in 0..21 {
        let r = app
            .request(Method::POST, "/v1/acme/tool/", &app.admin.token)
            .op("create-tool")
            .json(&json!({"name": format!("t{i}"), "description": "d", "tags": {}}))
            .send()
            .await;
        last = Some(r);
        let r = last.as_ref().unwrap();
        if r.status == 429 {
            break;
        }
        assert_eq!(r.status, 201);
        assert_eq!(r.header("x-ratelimit-limit"), Some("20"));
        assert_eq!(r.header("x-ratelimit-remaining"), Some((19 - i).to_string().as_str()));
    }
    let r = last.unwrap();
    // The minute may roll over mid-test; then the 21st simply lands in a fresh window.
    if r.status == 429 {
        assert_eq!(r.detail(), "The user has exceeded the rate limit of 20 requests per minute for this endpoint.");
        let retry: i64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry));
        assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
        assert!(r.header("x-ratelimit-reset").unwrap().parse::<i64>().unwrap() > 1_700_000_000);
        // Other endpoints and other users have their own budgets.
        let listed = app.request(Method::GET, "/v1/acme/tool/", &app.admin.token).op("get-tools").send().await;
        assert_eq!(listed.status, 200);
        let dev = app.user("acme", &[toolsmith_domain::Role::Developer]).await;
        let other = app
            .request(Method::POST, "/v1/acme/tool/", &dev.token)
            .op("create-tool")
            .json(&json!({"name": "by_dev", "description": "d", "tags": {}}))
            .send()
            .await;
        assert_eq!(other.status, 201);
    }
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_the_limit_holds_across_server_processes() {
    let first = TestApp::spawn_with(Backend::Postgres, limited()).await;
    let second = first.sibling(limited()).await;
    let (key_id, secret) = toolsmith::bootstrap::create_api_key(&first.store, &org("acme"), "k", None).await.unwrap();
    let mut statuses = Vec::new();
    for i in 0..6 {
        let app = if i % 2 == 0 { &first } else { &second };
        let r = app
            .request(Method::POST, "/v1/acme/user/signin_with_api_key", "")
            .header("x-api-key", &secret)
            .header("x-api-key-id", key_id.as_str())
            .header("x-user-id", &first.admin.id)
            .op("sign-in-with-api-key")
            .send()
            .await;
        statuses.push(r.status);
        if r.status == 429 {
            assert_eq!(r.detail(), "The user has exceeded the rate limit of 5 requests per minute for this endpoint.");
        }
    }
    // Unless the minute rolled over between calls, the sixth call overall is refused although
    // each process saw only three.
    assert!(statuses == [200, 200, 200, 200, 200, 429] || statuses.iter().all(|s| *s == 200), "{statuses:?}");
}
