use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{unique_email, TestApp, TestEnv, PASSWORD};

async fn login(app: &TestApp, email: &str, agent: &str) -> Value {
    let reply = app.login_as(email, PASSWORD, agent).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body["data"].clone()
}

fn access(session: &Value) -> &str {
    session["access_token"].as_str().unwrap()
}

fn refresh_token(session: &Value) -> &str {
    session["refresh_token"].as_str().unwrap()
}

#[actix_web::test]
async fn sessions_are_listed_with_their_client_and_revoked_one_by_one() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let email = unique_email("sessions");
    app.verified_login(&env, &email).await;
    let laptop = login(&app, &email, "Firefox on the laptop").await;
    let phone = login(&app, &email, "Safari on the phone").await;

    let listed = app.get_with_bearer("/v1/auth/sessions", access(&laptop)).await;
    assert_eq!(listed.status, StatusCode::OK);
    let sessions = listed.body["data"].as_array().unwrap();
    assert_eq!(sessions.len(), 3);
    let current: Vec<&Value> = sessions.iter().filter(|session| session["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["user_agent"], "Firefox on the laptop");
    assert_eq!(current[0]["ip"], "127.0.0.1");
    assert!(current[0]["created_at"].is_string() && current[0]["last_refreshed_at"].is_string());
    let phone_id = sessions.iter().find(|session| session["user_agent"] == "Safari on the phone").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    assert_eq!(
        app.delete_with_bearer(&format!("/v1/auth/sessions/{phone_id}"), access(&laptop)).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.refresh(refresh_token(&phone)).await.code(), "session_revoked");
    assert_eq!(app.refresh(refresh_token(&laptop)).await.status, StatusCode::OK);
    assert_eq!(
        app.get_with_bearer("/v1/auth/sessions", access(&laptop)).await.body["data"].as_array().unwrap().len(),
        2
    );

    // Another account's session looks like no session at all.
    let stranger = app.verified_login(&env, &unique_email("stranger")).await;
    let laptop_id = current[0]["id"].as_str().unwrap();
    let foreign = app.delete_with_bearer(&format!("/v1/auth/sessions/{laptop_id}"), access(&stranger)).await;
    assert_eq!((foreign.status, foreign.code()), (StatusCode::NOT_FOUND, "session_not_found"));
    assert_eq!(app.delete_with_bearer("/v1/auth/sessions/nonsense", access(&laptop)).await.code(), "session_not_found");
    app.stop().await;
}

#[actix_web::test]
async fn logout_scopes_end_the_others_or_every_session() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let email = unique_email("scopes");
    let mine = app.verified_login(&env, &email).await;
    let other = login(&app, &email, "other").await;

    let bad = app.post_json_with_bearer("/v1/auth/logout", access(&mine), json!({ "scope": "everything" })).await;
    assert_eq!((bad.status, bad.code()), (StatusCode::BAD_REQUEST, "invalid_scope"));

    assert_eq!(
        app.post_json_with_bearer("/v1/auth/logout", access(&mine), json!({ "scope": "others" })).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.refresh(refresh_token(&other)).await.code(), "session_revoked");
    let mine = app.refresh(refresh_token(&mine)).await.body["data"].clone();

    let third = login(&app, &email, "third").await;
    assert_eq!(
        app.post_json_with_bearer("/v1/auth/logout", access(&mine), json!({ "scope": "global" })).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.refresh(refresh_token(&mine)).await.code(), "session_revoked");
    assert_eq!(app.refresh(refresh_token(&third)).await.code(), "session_revoked");
    app.stop().await;
}

/// A revoked session's access token is refused at once on every instance, from memory on the
/// default one and by a database read with the per-request session check.
#[actix_web::test]
async fn a_revoked_sessions_access_token_is_refused_at_once_with_or_without_the_per_request_check() {
    let env = TestEnv::new().await;
    let from_memory = env.spawn().await;
    let checking = env.spawn_with(&["--verify-session-on-request", "true"]).await;
    let email = unique_email("window");
    let session = from_memory.verified_login(&env, &email).await;
    assert_eq!(checking.get_with_bearer("/v1/usage", access(&session)).await.status, StatusCode::OK);

    assert_eq!(from_memory.post_with_bearer("/v1/auth/logout", access(&session)).await.status, StatusCode::NO_CONTENT);
    for app in [&from_memory, &checking] {
        let refused = app.get_with_bearer("/v1/usage", access(&session)).await;
        assert_eq!((refused.status, refused.code()), (StatusCode::UNAUTHORIZED, "invalid_token"));
        assert!(refused.headers.get("www-authenticate").unwrap().to_str().unwrap().contains("revoked"));
    }
    from_memory.stop().await;
    checking.stop().await;
}
