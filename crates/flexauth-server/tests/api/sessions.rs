use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};

use std::sync::Arc;

use crate::helpers::{unique_email, TestClock, TestEnv};

fn tokens(data: &Value) -> (String, String) {
    (data["access_token"].as_str().unwrap().to_owned(), data["refresh_token"].as_str().unwrap().to_owned())
}

#[actix_web::test]
async fn login_returns_exactly_the_contract_shape_and_the_token_opens_usage_and_me() {
    let env = TestEnv::new().await;
    // Frozen, so the day of the usage counter cannot change between two requests.
    let app = env.spawn_with_clock(&[], Arc::new(TestClock::frozen())).await;
    let email = unique_email("flow");
    let data = app.verified_login(&env, &email).await;
    let mut keys: Vec<&str> = data.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["access_token", "expires_in", "refresh_token", "token_type"]);
    assert_eq!(data["token_type"], "bearer");
    assert_eq!(data["expires_in"], 3600);
    let (access, refresh) = tokens(&data);
    assert!(access.starts_with("eyJ") && refresh.starts_with("eyJ"));

    let usage = app.get_with_bearer("/v1/usage", &access).await;
    assert_eq!(usage.status, StatusCode::OK);
    assert_eq!(usage.body["data"]["auth_method"], "jwt");
    assert_eq!(usage.body["data"]["requests_today"], 1);
    assert_eq!(app.get_with_bearer("/v1/usage", &access).await.body["data"]["requests_today"], 2);

    let me = app.get_with_bearer("/v1/auth/me", &access).await;
    assert_eq!(me.body["data"]["email"], email.as_str());
    assert_eq!(me.body["data"]["email_verified"], true);
    assert_eq!(me.body["data"]["id"], usage.body["data"]["account_id"]);
    app.stop().await;
}

#[actix_web::test]
async fn refresh_rotates_and_the_parent_inside_the_grace_window_gets_the_same_pair() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let (_, first) = tokens(&app.verified_login(&env, &unique_email("rotate")).await);
    let rotated = app.refresh(&first).await;
    assert_eq!(rotated.status, StatusCode::OK);
    let (access, second) = tokens(&rotated.body["data"]);
    assert_ne!(second, first);
    assert_eq!(app.get_with_bearer("/v1/usage", &access).await.status, StatusCode::OK);

    // A second tab still holding the first token.
    let replay = app.refresh(&first).await;
    assert_eq!(replay.status, StatusCode::OK);
    assert_eq!(replay.body, rotated.body, "the same pair, byte for byte");
    // The live token keeps working.
    assert_eq!(app.refresh(&second).await.status, StatusCode::OK);
    app.stop().await;
}

#[actix_web::test]
async fn reuse_after_the_grace_window_revokes_the_whole_session() {
    let env = TestEnv::new().await;
    let clock = Arc::new(TestClock::default());
    let app = env.spawn_with_clock(&[], clock.clone()).await;
    let (_, first) = tokens(&app.verified_login(&env, &unique_email("reuse")).await);
    let (_, second) = tokens(&app.refresh(&first).await.body["data"]);
    clock.advance(time::Duration::seconds(10));

    let reuse = app.refresh(&first).await;
    assert_eq!(reuse.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reuse.code(), "refresh_token_reused");
    let live = app.refresh(&second).await;
    assert_eq!(live.status, StatusCode::UNAUTHORIZED);
    assert_eq!(live.code(), "session_revoked");
    app.stop().await;
}

#[actix_web::test]
async fn twenty_concurrent_refreshes_of_one_token_yield_one_lineage() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let (_, token) = tokens(&app.verified_login(&env, &unique_email("race")).await);
    let replies = join_all((0..20).map(|_| app.refresh(&token))).await;
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert_eq!(reply.body, replies[0].body);
    }
    let (_, child) = tokens(&replies[0].body["data"]);
    assert_eq!(app.refresh(&child).await.status, StatusCode::OK);
    app.stop().await;
}

#[actix_web::test]
async fn logout_by_access_token_or_refresh_token_ends_the_session() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let email = unique_email("logout");
    let (access, refresh) = tokens(&app.verified_login(&env, &email).await);
    let logout = app.post_with_bearer("/v1/auth/logout", &access).await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    assert_eq!(app.refresh(&refresh).await.code(), "session_revoked");

    let (_, refresh) = tokens(&app.login(&email).await.body["data"]);
    let logout = app.post("/v1/auth/logout", json!({ "refresh_token": refresh })).await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    assert_eq!(app.refresh(&refresh).await.code(), "session_revoked");

    assert_eq!(app.post_raw("/v1/auth/logout", None, Vec::new()).await.code(), "missing_token");
    app.stop().await;
}
