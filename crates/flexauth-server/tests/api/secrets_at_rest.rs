use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{token_of, unique_email, wait_for_mail_to, wait_for_subject, TestEnv, PASSWORD};

fn refresh_secret(refresh_token: &str) -> String {
    let payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(refresh_token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    payload["rti"].as_str().unwrap().to_owned()
}

#[actix_web::test]
async fn a_database_dump_holds_no_plaintext_secret() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let email = unique_email("dump");
    app.signup(&email).await;
    let verification_token = token_of(&wait_for_mail_to(env.smtp(), &email).await);
    app.post("/v1/auth/verify", json!({ "token": verification_token })).await;
    let login = app.login(&email).await.body["data"].clone();
    let rotated = app.refresh(login["refresh_token"].as_str().unwrap()).await.body["data"].clone();
    let jwt = rotated["access_token"].as_str().unwrap();
    let api_key = app.post_json_with_bearer("/v1/api-keys", jwt, json!({ "name": "dump" })).await.body["data"]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    app.post("/v1/auth/password/forgot", json!({ "email": email })).await;
    let reset_token = token_of(&wait_for_subject(env.smtp(), &email, "Reset your password").await);
    let new_password = "the replacement passphrase";
    assert_eq!(
        app.post("/v1/auth/password/reset", json!({ "token": reset_token, "password": new_password })).await.status,
        StatusCode::OK
    );
    wait_for_subject(env.smtp(), &email, "Your password was reset").await;
    // Sent emails lose their bodies once the worker has recorded the delivery.
    let deadline = Instant::now() + Duration::from_secs(10);
    let secrets = [
        ("password", PASSWORD.to_owned()),
        ("new password", new_password.to_owned()),
        ("verification token", verification_token),
        ("refresh token", login["refresh_token"].as_str().unwrap().to_owned()),
        ("refresh secret", refresh_secret(login["refresh_token"].as_str().unwrap())),
        ("rotated refresh secret", refresh_secret(rotated["refresh_token"].as_str().unwrap())),
        ("API key", api_key.clone()),
        ("API key body", api_key["fo_live_".len()..].to_owned()),
        ("reset token", reset_token),
    ];
    loop {
        let dump = env.db.dump().await;
        assert!(dump.contains(&email), "the dump is readable: it contains the account's email");
        let leaked: Vec<&str> =
            secrets.iter().filter(|(_, secret)| dump.contains(secret.as_str())).map(|(name, _)| *name).collect();
        if leaked.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the database dump contains: {leaked:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop().await;
}
