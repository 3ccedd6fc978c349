//! A session that ends, however it ends, has its access tokens refused at once on every
//! instance, from memory: no database read per request.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::check::database_operations;
use crate::helpers::{unique_email, wait_for_subject, TestApp, TestEnv, PASSWORD};
use crate::introspection::{introspect, register_client};
use crate::lifecycle::flexauth;

fn access(session: &Value) -> String {
    session["access_token"].as_str().unwrap().to_owned()
}

/// A fresh login of `email` on `app`.
async fn login(app: &TestApp, email: &str) -> Value {
    let reply = app.login(email).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body["data"].clone()
}

/// Ends the session of `victim` (logged in on `app` as `email`) the way `way` names, on `app`.
async fn end_session(env: &TestEnv, app: &TestApp, way: &str, email: &str, victim: &Value) {
    let token = access(victim);
    match way {
        "logout" => assert_eq!(app.post_with_bearer("/v1/auth/logout", &token).await.status, StatusCode::NO_CONTENT),
        "logout by refresh token" => {
            let reply = app.post("/v1/auth/logout", json!({ "refresh_token": victim["refresh_token"] })).await;
            assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
        }
        "session revoked" => {
            let other = access(&login(app, email).await);
            let listed = app.get_with_bearer("/v1/auth/sessions", &other).await;
            let id = listed.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .find(|session| session["current"] == false)
                .map(|session| session["id"].as_str().unwrap().to_owned())
                .unwrap();
            let reply = app.delete_with_bearer(&format!("/v1/auth/sessions/{id}"), &other).await;
            assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
        }
        "global logout from another session" => {
            let other = access(&login(app, email).await);
            let reply = app.post_json_with_bearer("/v1/auth/logout", &other, json!({ "scope": "global" })).await;
            assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
        }
        "password change from another session" => {
            let other = access(&login(app, email).await);
            let change = json!({ "current_password": PASSWORD, "new_password": "changed by the owner" });
            assert_eq!(
                app.post_json_with_bearer("/v1/auth/password/change", &other, change).await.status,
                StatusCode::NO_CONTENT
            );
        }
        "password reset" => {
            app.post("/v1/auth/password/forgot", json!({ "email": email })).await;
            let mail = wait_for_subject(env.smtp(), email, "Reset your password").await;
            let reset = json!({ "token": crate::helpers::token_of(&mail), "password": "reset by the owner" });
            assert!(app.post("/v1/auth/password/reset", reset).await.status.is_success());
        }
        "refresh token reuse" => {
            let first = victim["refresh_token"].as_str().unwrap();
            let second = app.refresh(first).await.body["data"]["refresh_token"].as_str().unwrap().to_owned();
            app.refresh(&second).await;
            assert_eq!(app.refresh(first).await.code(), "refresh_token_reused");
        }
        "disable" => {
            let id = app.get_with_bearer("/v1/auth/me", &token).await.body["data"]["id"].as_str().unwrap().to_owned();
            assert!(flexauth(env, &["accounts", "disable", &id]).0);
        }
        "delete" => assert_eq!(app.delete_with_bearer("/v1/auth/account", &token).await.status, StatusCode::NO_CONTENT),
        "address change undone" => {
            let asked = app
                .post_json_with_bearer(
                    "/v1/auth/email/change",
                    &token,
                    json!({ "new_email": unique_email("elsewhere") }),
                )
                .await;
            assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.text);
            let undo = wait_for_subject(env.smtp(), email, "Your account's email address is changing").await;
            assert!(crate::helpers::confirm_in_browser(app, &undo, "").await.text.contains("Change undone"));
        }
        other => panic!("no way {other}"),
    }
}

/// The checks the instance at `metrics` answered from memory and from the database so far.
async fn session_end_checks(app: &TestApp) -> (f64, f64) {
    let text = app.client.get(format!("{}/metrics", app.metrics_address.as_ref().unwrap())).send().await.unwrap();
    let text = text.text().await.unwrap();
    let value = |source: &str| {
        let prefix = format!("flexauth_session_end_checks_total{{answered_from=\"{source}\"}} ");
        text.lines().find_map(|line| line.strip_prefix(&prefix)).and_then(|value| value.parse().ok()).unwrap()
    };
    (value("memory"), value("database"))
}

/// Asks `app` with `token` on `/v1/usage`, `/v1/auth/check` and `/v1/auth/introspect` (as
/// `client`) until all three refuse it, for at most a second.
async fn refused_within_a_second(app: &TestApp, client: (&str, &str), token: &str, way: &str) {
    let ended = Instant::now();
    loop {
        let usage = app.get_with_bearer("/v1/usage", token).await;
        let check = app.get_with_bearer("/v1/auth/check", token).await;
        let introspected = introspect(app, client, token).await;
        let refused = [usage.status, check.status].map(|status| status == StatusCode::UNAUTHORIZED);
        if refused == [true, true] && introspected == json!({ "active": false }) {
            assert_eq!((usage.code(), check.code()), ("invalid_token", "invalid_token"), "{way}");
            return;
        }
        for reply in [&usage, &check] {
            assert!(matches!(reply.status, StatusCode::OK | StatusCode::UNAUTHORIZED), "{way}: {}", reply.text);
        }
        assert!(ended.elapsed() < Duration::from_secs(1), "{way}: the other instance still accepts the token");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn every_way_a_session_ends_is_refused_on_another_instance_within_a_second_from_memory() {
    let env = TestEnv::new().await;
    let first = env.spawn().await;
    // The workers of the counted instance look for work at production's pace where it is
    // announced (every 10 s, not the suite's 100 ms): their looks are not the checks'.
    let second = env
        .spawn_configured(
            &["--metrics-bind", "127.0.0.1:0"],
            |settings| settings.announced_work_poll_interval = flexauth_server::config::ANNOUNCED_WORK_POLL_INTERVAL,
            std::sync::Arc::new(crate::helpers::TestClock::default()),
        )
        .await;
    let (client_id, client_secret) = register_client(&env, "resource server");
    let client = (client_id.as_str(), client_secret.as_str());
    for way in [
        "logout",
        "logout by refresh token",
        "session revoked",
        "global logout from another session",
        "password change from another session",
        "password reset",
        "refresh token reuse",
        "disable",
        "delete",
        "address change undone",
    ] {
        let email = unique_email("ended");
        let victim = first.verified_login(&env, &email).await;
        let token = access(&victim);
        assert_eq!(second.get_with_bearer("/v1/usage", &token).await.status, StatusCode::OK, "{way}: live");
        assert_eq!(second.get_with_bearer("/v1/auth/check", &token).await.status, StatusCode::OK, "{way}: live");
        assert_eq!(introspect(&second, client, &token).await["active"], true, "{way}: live");
        end_session(&env, &first, way, &email, &victim).await;
        refused_within_a_second(&second, client, &token, way).await;
        // And at once on the instance that ended it (the operator's command is another process).
        if way != "disable" {
            assert_eq!(first.get_with_bearer("/v1/usage", &token).await.status, StatusCode::UNAUTHORIZED, "{way}");
        }
    }

    // Three hundred checks of a live token and of an ended one, on each endpoint, ask the
    // database nothing.
    let email = unique_email("counted");
    let live = access(&first.verified_login(&env, &email).await);
    let gone = first.login(&email).await.body["data"].clone();
    end_session(&env, &first, "logout", &email, &gone).await;
    let gone = access(&gone);
    refused_within_a_second(&second, client, &gone, "the counted logout").await;
    let before = session_end_checks(&second).await;
    let connections = database_operations(&second).await;
    for _ in 0..50 {
        assert_eq!(second.get_with_bearer("/v1/auth/check", &live).await.status, StatusCode::OK);
        assert_eq!(second.get_with_bearer("/v1/auth/check", &gone).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(introspect(&second, client, &live).await["active"], true);
        assert_eq!(introspect(&second, client, &gone).await["active"], false);
    }
    // /v1/usage counts each request (a write, every second, of the counts in memory): only its
    // session check is counted here.
    for _ in 0..50 {
        assert_eq!(second.get_with_bearer("/v1/usage", &live).await.status, StatusCode::OK);
        assert_eq!(second.get_with_bearer("/v1/usage", &gone).await.status, StatusCode::UNAUTHORIZED);
    }
    let after = session_end_checks(&second).await;
    let connections = database_operations(&second).await - connections;
    eprintln!(
        "300 session checks: {} from memory, {} from the database; {connections} database connections taken meanwhile",
        after.0 - before.0,
        after.1 - before.1
    );
    assert_eq!(after.0 - before.0, 300.0, "answered from memory: {before:?} then {after:?}");
    assert_eq!(after.1 - before.1, 0.0, "sent to the database: {before:?} then {after:?}");
    // The client list is read at most once a second, and the background worker polls now and
    // then; a read per request would take 300.
    assert!(connections < 60.0, "{connections} database connections for 300 checks");
    first.stop().await;
    second.stop().await;
}
