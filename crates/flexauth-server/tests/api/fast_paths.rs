//! The rules the fast paths must keep: request counts kept in memory are not lost, a cached
//! verification is never granted to another token nor past its `exp`, refresh tokens of the
//! earlier format still work, and a revoked API key fails everywhere at once.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{json, Value};
use time::Duration;

use crate::helpers::{unique_email, TestClock, TestEnv};

fn part(token: &str, index: usize) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(index).unwrap()).unwrap()).unwrap()
}

fn requests_today(reply: &crate::helpers::Reply) -> u64 {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body["data"]["requests_today"].as_u64().unwrap()
}

#[actix_web::test]
async fn request_counts_survive_a_graceful_restart_and_add_up_across_instances() {
    let env = TestEnv::new().await;
    // No periodic write on this one: only the graceful stop can save its counts.
    let first = env.spawn_tuned(|settings| settings.usage_flush_interval = std::time::Duration::from_secs(3600)).await;
    let login = first.verified_login(&env, &unique_email("counted")).await;
    let access = login["access_token"].as_str().unwrap();
    for expected in 1..=3 {
        assert_eq!(requests_today(&first.get_with_bearer("/v1/usage", access).await), expected);
    }
    // A graceful stop writes what was counted in memory.
    first.stop().await;
    let second = env.spawn().await;
    assert_eq!(requests_today(&second.get_with_bearer("/v1/usage", access).await), 4);

    // Another instance starts from what is stored; each sees the other's requests once both
    // have flushed (every second).
    let third = env.spawn().await;
    assert!((4..=5).contains(&requests_today(&third.get_with_bearer("/v1/usage", access).await)));
    let mut made = 5;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        made += 1;
        let seen = requests_today(&second.get_with_bearer("/v1/usage", access).await);
        if seen == made {
            break;
        }
        assert!(seen < made, "counted {seen} of {made} requests");
        assert!(
            std::time::Instant::now() < deadline,
            "the other instance's request never showed up ({seen} of {made})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    second.stop().await;
    third.stop().await;
}

#[actix_web::test]
async fn a_cached_access_token_is_refused_once_expired_and_its_tampered_copies_never_pass() {
    let env = TestEnv::new().await;
    let clock = Arc::new(TestClock::default());
    let app = env.spawn_with_clock(&[], clock.clone()).await;
    let login = app.verified_login(&env, &unique_email("cached")).await;
    let access = login["access_token"].as_str().unwrap().to_owned();
    assert_eq!(app.get_with_bearer("/v1/usage", &access).await.status, StatusCode::OK);
    assert_eq!(app.get_with_bearer("/v1/usage", &access).await.status, StatusCode::OK, "now from the cache");

    // The cached token with another subject, and with a changed signature.
    let [header, _, signature] = access.split('.').collect::<Vec<_>>()[..] else { panic!("three parts") };
    let mut claims = part(&access, 1);
    claims["sub"] = json!(uuid::Uuid::new_v4().to_string());
    let other_subject =
        format!("{header}.{}.{signature}", URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()));
    let mut other_signature = access.clone();
    let last_but_one = other_signature.len() - 2;
    let flipped = if other_signature.as_bytes()[last_but_one] == b'A' { "B" } else { "A" };
    other_signature.replace_range(last_but_one..=last_but_one, flipped);
    for forged in [other_subject, other_signature] {
        let reply = app.get_with_bearer("/v1/usage", &forged).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
        assert_eq!(reply.code(), "invalid_token");
    }

    // At its exp the cached token stops, like any other.
    clock.advance(Duration::hours(1));
    let expired = app.get_with_bearer("/v1/usage", &access).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED, "{}", expired.text);
    assert!(expired.headers.get("www-authenticate").unwrap().to_str().unwrap().contains("expired"));
    app.stop().await;
}

#[actix_web::test]
async fn a_cached_token_of_a_revoked_session_is_refused_when_sessions_are_checked_per_request() {
    let env = TestEnv::new().await;
    let app = env.spawn_with(&["--verify-session-on-request", "true"]).await;
    let login = app.verified_login(&env, &unique_email("revoked")).await;
    let access = login["access_token"].as_str().unwrap();
    assert_eq!(app.get_with_bearer("/v1/usage", access).await.status, StatusCode::OK);
    let logout = app.post("/v1/auth/logout", json!({ "refresh_token": login["refresh_token"] })).await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT, "{}", logout.text);
    assert_eq!(
        app.get_with_bearer("/v1/usage", access).await.status,
        StatusCode::UNAUTHORIZED,
        "the cache holds the token, not the session"
    );
    app.stop().await;
}

#[actix_web::test]
async fn refresh_tokens_are_hmac_signed_and_one_signed_the_old_way_still_refreshes() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let login = app.verified_login(&env, &unique_email("upgrade")).await;
    let refresh = login["refresh_token"].as_str().unwrap();
    let header = part(refresh, 0);
    assert_eq!((header["alg"].as_str(), header["typ"].as_str()), (Some("HS256"), Some("rt+jwt")));
    let jwks = app.get("/.well-known/jwks.json").await.body;
    assert!(
        jwks["keys"].as_array().unwrap().iter().all(|key| key["kid"] != header["kid"]),
        "no JWKS key is named by a refresh token"
    );

    // The same claims signed as the previous version did: EdDSA with the access-token key.
    let pem = flexauth_store::test_db::generated_signing_key_pem(env.store()).await;
    let mut legacy_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    legacy_header.typ = Some("rt+jwt".into());
    legacy_header.kid = jwks["keys"][0]["kid"].as_str().map(str::to_owned);
    let legacy = jsonwebtoken::encode(
        &legacy_header,
        &part(refresh, 1),
        &jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap();
    let refreshed = app.refresh(&legacy).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text);
    let successor = refreshed.body["data"]["refresh_token"].as_str().unwrap();
    assert_eq!(part(successor, 0)["alg"], "HS256", "its successor is of the new kind");
    assert_eq!(app.refresh(successor).await.status, StatusCode::OK);
    app.stop().await;
}

#[actix_web::test]
async fn the_token_of_a_deleted_account_is_refused_by_usage_as_by_every_endpoint() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let login = app.verified_login(&env, &unique_email("deleted")).await;
    let access = login["access_token"].as_str().unwrap();
    let account_id = uuid::Uuid::parse_str(part(access, 1)["sub"].as_str().unwrap()).unwrap();
    // Counted once while the account exists, then deleted behind flexauth's back.
    assert_eq!(requests_today(&app.get_with_bearer("/v1/usage", access).await), 1);
    flexauth_store::test_db::delete_account(env.store(), account_id).await;
    // The next flush finds the account gone; from then on its token is refused.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let reply = app.get_with_bearer("/v1/usage", access).await;
        if reply.status == StatusCode::UNAUTHORIZED {
            assert_eq!(reply.code(), "invalid_token");
            break;
        }
        assert_eq!(reply.status, StatusCode::OK, "never a 5xx: {}", reply.text);
        assert!(std::time::Instant::now() < deadline, "the deleted account's token kept working");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // A new instance, which never counted for it, refuses it on the first request.
    let fresh = env.spawn().await;
    let reply = fresh.get_with_bearer("/v1/usage", access).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::UNAUTHORIZED, "invalid_token"), "{}", reply.text);
    app.stop().await;
    fresh.stop().await;
}

#[actix_web::test]
async fn an_unreachable_database_answers_503_unavailable_fast_and_everything_works_once_it_is_back() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let email = unique_email("outage");
    let login = app.verified_login(&env, &email).await;
    let refresh = login["refresh_token"].as_str().unwrap().to_owned();
    let access = login["access_token"].as_str().unwrap().to_owned();
    assert_eq!(requests_today(&app.get_with_bearer("/v1/usage", &access).await), 1);
    if !env.db.set_reachable(false) {
        return; // SQLite: a file cannot become unreachable under an open connection.
    }
    let login_body = json!({ "email": email, "password": crate::helpers::PASSWORD });
    for (what, reply) in [
        ("refresh", app.refresh(&refresh).await),
        ("login", app.post("/v1/auth/login", login_body.clone()).await),
        ("refresh again", app.refresh(&refresh).await),
    ] {
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            "{what}: {}",
            reply.text
        );
        assert_eq!(reply.headers.get("retry-after").and_then(|value| value.to_str().ok()), Some("2"), "{what}");
    }
    let ready = app.get("/readyz").await;
    assert_eq!((ready.status, ready.code()), (StatusCode::SERVICE_UNAVAILABLE, "not_ready"));
    // The request count is kept in memory meanwhile, and nothing needs a restart.
    assert_eq!(requests_today(&app.get_with_bearer("/v1/usage", &access).await), 2);

    assert!(env.db.set_reachable(true));
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
    let refreshed = app.refresh(&refresh).await;
    assert_eq!(
        refreshed.status,
        StatusCode::OK,
        "the refresh token was not spent by the failed attempts: {}",
        refreshed.text
    );
    assert_eq!(app.post("/v1/auth/login", login_body).await.status, StatusCode::OK);
    assert_eq!(requests_today(&app.get_with_bearer("/v1/usage", &access).await), 3);
    app.stop().await;
}

#[actix_web::test]
async fn a_draining_instance_is_not_ready_but_still_serves_until_it_stops() {
    let env = TestEnv::new().await;
    let app = env.spawn_with(&["--shutdown-drain", "1s"]).await;
    let login = app.verified_login(&env, &unique_email("draining")).await;
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
    let drain = app.drain.clone().unwrap();
    let draining = tokio::spawn(async move { drain.begin().await });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // Out of rotation at once, while requests in flight and new ones are still served.
    let ready = app.get("/readyz").await;
    assert_eq!((ready.status, ready.code()), (StatusCode::SERVICE_UNAVAILABLE, "not_ready"));
    assert_eq!(requests_today(&app.get_with_bearer("/v1/usage", login["access_token"].as_str().unwrap()).await), 1);
    assert_eq!(app.refresh(login["refresh_token"].as_str().unwrap()).await.status, StatusCode::OK);
    draining.await.unwrap();
    // After the drain delay the server stopped taking connections.
    assert!(app.client.get(app.url("/healthz")).send().await.is_err(), "the server still answers after its drain");
    app.stop().await;
}
