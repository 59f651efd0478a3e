//! `POST /v1/{org}/user/signin_with_api_key`.

use reqwest::Method;
use toolsmith::bootstrap::create_api_key;

use crate::both_backends;
use crate::support::{org, Backend, TestApp};

async fn sign_in(app: &TestApp, org: &str, key: &str, key_id: &str, user: &str) -> crate::support::Resp {
    app.request(Method::POST, &format!("/v1/{org}/user/signin_with_api_key"), "")
        .header("x-api-key", key)
        .header("x-api-key-id", key_id)
        .header("x-user-id", user)
        .op("sign-in-with-api-key")
        .send()
        .await
}

both_backends!(a_key_signs_in_any_user_of_its_organization, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let (key_id, secret) = create_api_key(&app.store, &org("acme"), "test", None).await.unwrap();
    let r = sign_in(&app, "acme", &secret, key_id.as_str(), &app.admin.id).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let token = r.body["id_token"].as_str().unwrap();
    assert!(r.body["expires_at"].as_str().unwrap().ends_with('Z'));
    let tools = app.request(Method::GET, "/v1/acme/tool/", token).op("get-tools").send().await;
    assert_eq!(tools.status, 200, "the issued token works");
});

both_backends!(sign_in_refuses_every_kind_of_bad_key, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let (key_id, secret) = create_api_key(&app.store, &org("acme"), "test", None).await.unwrap();
    let (old_id, old_secret) = create_api_key(&app.store, &org("acme"), "expired", Some(-1)).await.unwrap();
    let (revoked_id, revoked_secret) = create_api_key(&app.store, &org("acme"), "revoked", None).await.unwrap();
    app.store.revoke_api_key(&org("acme"), &revoked_id).await.unwrap();
    let globex = app.other_org("globex").await;
    let (globex_key, globex_secret) = create_api_key(&app.store, &org("globex"), "theirs", None).await.unwrap();
    let admin = app.admin.id.clone();
    for (key, id, user) in [
        ("tsk_wrong", key_id.as_str(), admin.as_str()),
        (secret.as_str(), "0123456789abcdef01234567", admin.as_str()),
        (secret.as_str(), key_id.as_str(), "0123456789abcdef01234567"),
        (old_secret.as_str(), old_id.as_str(), admin.as_str()),
        (revoked_secret.as_str(), revoked_id.as_str(), admin.as_str()),
        (globex_secret.as_str(), globex_key.as_str(), admin.as_str()),
        (secret.as_str(), key_id.as_str(), globex.id.as_str()),
    ] {
        let r = sign_in(&app, "acme", key, id, user).await;
        assert_eq!(
            (r.status, r.detail()),
            (401, "API key not found, is incorrect, or the requested user is not found."),
            "{key} {id} {user}"
        );
    }
    let r = sign_in(&app, "nowhere", &secret, key_id.as_str(), &admin).await;
    assert_eq!((r.status, r.detail()), (404, "Specified organization is not found."));
    let r = app
        .request(Method::POST, "/v1/acme/user/signin_with_api_key", "")
        .header("x-api-key", &secret)
        .op("sign-in-with-api-key")
        .send()
        .await;
    assert_eq!(r.status, 422);
    let locs: Vec<String> =
        r.body["detail"].as_array().unwrap().iter().map(|e| e["loc"][1].as_str().unwrap().to_owned()).collect();
    assert_eq!(locs, ["x-api-key-id", "x-user-id"]);
});
