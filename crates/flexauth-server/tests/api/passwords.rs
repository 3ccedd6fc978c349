use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{token_of, unique_email, verify_path, wait_for_subject, TestEnv, PASSWORD};

const NEW_PASSWORD: &str = "a brand new passphrase";

#[actix_web::test]
async fn a_password_reset_by_email_works_once_and_ends_every_session() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let email = unique_email("reset");
    let first_session = app.verified_login(&env, &email).await;
    let second_session = app.login(&email).await.body["data"].clone();

    let known = app.post("/v1/auth/password/forgot", json!({ "email": email })).await;
    let unknown = app.post("/v1/auth/password/forgot", json!({ "email": unique_email("nobody") })).await;
    assert_eq!(known.status, StatusCode::ACCEPTED);
    assert_eq!((known.status, &known.body), (unknown.status, &unknown.body));

    let mail = wait_for_subject(env.smtp(), &email, "Reset your password").await;
    let link = verify_path(&mail);
    assert!(link.starts_with("/v1/auth/password/reset?token="));
    // Opening the link, as a mail scanner would, twice, spends nothing.
    for _ in 0..2 {
        let form = app.get(&link).await;
        assert_eq!(form.status, StatusCode::OK);
        assert!(form.text.contains("<form method=\"post\""));
        assert_eq!(form.headers.get("referrer-policy").unwrap(), "no-referrer");
    }

    let reset =
        app.post("/v1/auth/password/reset", json!({ "token": token_of(&mail), "password": NEW_PASSWORD })).await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.text);
    assert_eq!(reset.body, json!({ "data": { "password_reset": true } }));

    for session in [&first_session, &second_session] {
        let refused = app.refresh(session["refresh_token"].as_str().unwrap()).await;
        assert_eq!(refused.code(), "session_revoked");
    }
    assert_eq!(app.login(&email).await.code(), "invalid_credentials");
    assert_eq!(
        app.post("/v1/auth/login", json!({ "email": email, "password": NEW_PASSWORD })).await.status,
        StatusCode::OK
    );

    let twice = app
        .post("/v1/auth/password/reset", json!({ "token": token_of(&mail), "password": "yet another passphrase" }))
        .await;
    assert_eq!((twice.status, twice.code()), (StatusCode::BAD_REQUEST, "invalid_reset_token"));
    assert_eq!(app.get(&link).await.status, StatusCode::BAD_REQUEST);
    wait_for_subject(env.smtp(), &email, "Your password was reset").await;
    app.stop().await;
}

#[actix_web::test]
async fn the_reset_page_form_sets_the_password_and_refuses_a_weak_one() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let email = unique_email("form");
    app.verified_login(&env, &email).await;
    app.post("/v1/auth/password/forgot", json!({ "email": email })).await;
    let token = token_of(&wait_for_subject(env.smtp(), &email, "Reset your password").await);

    // Browsers may add a charset to the form's content type.
    let weak = app
        .post_raw(
            "/v1/auth/password/reset",
            Some("application/x-www-form-urlencoded; charset=UTF-8"),
            format!("token={token}&password=short").into_bytes(),
        )
        .await;
    assert_eq!(weak.status, StatusCode::BAD_REQUEST);
    // The same form again, with the reason beside the field and the link still in it.
    assert!(
        weak.text.contains("id=\"password-error\"") && weak.text.contains("at least 8 characters"),
        "{}",
        weak.text
    );
    assert!(weak.text.contains(&format!("value=\"{token}\"")), "the form still carries the link's token");
    let done = app.post_form("/v1/auth/password/reset", &[("token", &token), ("password", NEW_PASSWORD)]).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert!(done.text.contains("Password changed"));
    assert_eq!(
        app.post("/v1/auth/login", json!({ "email": email, "password": NEW_PASSWORD })).await.status,
        StatusCode::OK
    );

    let garbage = app.post("/v1/auth/password/reset", json!({ "token": "garbage", "password": NEW_PASSWORD })).await;
    assert_eq!((garbage.status, garbage.code()), (StatusCode::BAD_REQUEST, "invalid_reset_token"));
    app.stop().await;
}

#[actix_web::test]
async fn changing_the_password_keeps_the_callers_session_and_ends_the_others() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let email = unique_email("change");
    let mine = app.verified_login(&env, &email).await;
    let other = app.login(&email).await.body["data"].clone();
    let jwt = mine["access_token"].as_str().unwrap();

    let wrong = app
        .post_json_with_bearer(
            "/v1/auth/password/change",
            jwt,
            json!({ "current_password": "not it at all", "new_password": NEW_PASSWORD }),
        )
        .await;
    assert_eq!((wrong.status, wrong.code()), (StatusCode::BAD_REQUEST, "invalid_current_password"));
    let weak = app
        .post_json_with_bearer(
            "/v1/auth/password/change",
            jwt,
            json!({ "current_password": PASSWORD, "new_password": "short" }),
        )
        .await;
    assert_eq!((weak.status, weak.code()), (StatusCode::BAD_REQUEST, "password_too_short"));

    let changed = app
        .post_json_with_bearer(
            "/v1/auth/password/change",
            jwt,
            json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD }),
        )
        .await;
    assert_eq!(changed.status, StatusCode::NO_CONTENT, "{}", changed.text);
    assert_eq!(app.refresh(mine["refresh_token"].as_str().unwrap()).await.status, StatusCode::OK);
    assert_eq!(app.refresh(other["refresh_token"].as_str().unwrap()).await.code(), "session_revoked");
    assert_eq!(app.login(&email).await.code(), "invalid_credentials");
    assert_eq!(
        app.post("/v1/auth/login", json!({ "email": email, "password": NEW_PASSWORD })).await.status,
        StatusCode::OK
    );
    wait_for_subject(env.smtp(), &email, "Your password was changed").await;
    app.stop().await;
}
