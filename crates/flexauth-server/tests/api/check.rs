//! `/v1/auth/check`, the gateway check: whose a bearer credential is, in headers, answered from
//! memory.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{read, unique_email, Reply, TestApp, TestEnv};

pub const SCOPES: &str = "--api-key-scopes=invoices:read,invoices:write,reports:read";

/// Asks `app` whether `credential` may pass with the scopes of `query`.
pub async fn check(app: &TestApp, method: Method, credential: Option<&str>, query: &str) -> Reply {
    let mut request = app.client.request(method, app.url(&format!("/v1/auth/check{query}")));
    if let Some(credential) = credential {
        request = request.bearer_auth(credential);
    }
    read(request.send().await.unwrap()).await
}

pub fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).map(|value| value.to_str().unwrap())
}

/// Creates a key named `name` with `scopes` for the session of `jwt`; returns its secret and id.
pub async fn key_with_scopes(app: &TestApp, jwt: &str, name: &str, scopes: &[&str]) -> (String, String) {
    let created = app.post_json_with_bearer("/v1/api-keys", jwt, json!({ "name": name, "scopes": scopes })).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let data = &created.body["data"];
    (data["key"].as_str().unwrap().to_owned(), data["id"].as_str().unwrap().to_owned())
}

/// How many times the instance has taken a database connection (every query does).
pub async fn database_operations(app: &TestApp) -> f64 {
    let text = app.client.get(format!("{}/metrics", app.metrics_address.as_ref().unwrap())).send().await.unwrap();
    let text = text.text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("flexauth_db_connection_wait_seconds_count "))
        .and_then(|value| value.parse().ok())
        .unwrap()
}

#[actix_web::test]
async fn a_passed_check_names_the_caller_in_headers_and_counts_no_usage() {
    let env = TestEnv::new().await;
    let app = env.spawn_with(&[SCOPES]).await;
    let login = app.verified_login(&env, &unique_email("checked")).await;
    let jwt = login["access_token"].as_str().unwrap();
    let me = app.get_with_bearer("/v1/auth/me", jwt).await.body["data"]["id"].as_str().unwrap().to_owned();
    let session = app.get_with_bearer("/v1/usage", jwt).await.body["data"]["session_id"].as_str().unwrap().to_owned();

    // Every method: nginx asks with the original one, Caddy with GET.
    for method in [Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        let reply = check(&app, method.clone(), Some(jwt), "").await;
        assert_eq!(reply.status, StatusCode::OK, "{method}: {}", reply.text);
        assert_eq!(reply.text, "", "{method}: no body");
        assert_eq!(header(&reply, "x-flexauth-account-id"), Some(me.as_str()));
        assert_eq!(header(&reply, "x-flexauth-auth-method"), Some("jwt"));
        assert_eq!(header(&reply, "x-flexauth-session-id"), Some(session.as_str()));
        assert_eq!(header(&reply, "x-flexauth-key-id"), Some(""), "present and empty, for gateways that copy it");
        // An access token is its owner acting: every declared scope.
        assert_eq!(header(&reply, "x-flexauth-scopes"), Some("invoices:read invoices:write reports:read"));
        assert_eq!(header(&reply, "cache-control"), Some("no-store"));
    }

    let (key, key_id) = key_with_scopes(&app, jwt, "billing", &["invoices:read"]).await;
    let reply = check(&app, Method::GET, Some(&key), "?scope=invoices:read").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(header(&reply, "x-flexauth-account-id"), Some(me.as_str()));
    assert_eq!(header(&reply, "x-flexauth-auth-method"), Some("api_key"));
    assert_eq!(header(&reply, "x-flexauth-key-id"), Some(key_id.as_str()));
    assert_eq!(header(&reply, "x-flexauth-session-id"), Some(""));
    assert_eq!(header(&reply, "x-flexauth-scopes"), Some("invoices:read"));
    let listed = app.get_with_bearer("/v1/api-keys", jwt).await;
    assert_eq!(listed.body["data"][0]["scopes"], json!(["invoices:read"]));

    // A key created without scopes holds none, and still authenticates where none is asked.
    let (bare, _) = key_with_scopes(&app, jwt, "bare", &[]).await;
    let reply = check(&app, Method::GET, Some(&bare), "").await;
    assert_eq!((reply.status, header(&reply, "x-flexauth-scopes")), (StatusCode::OK, Some("")));

    // The checks counted nothing: this /v1/usage is the account's second today.
    let usage = app.get_with_bearer("/v1/usage", jwt).await;
    assert_eq!(usage.body["data"]["requests_today"], 2, "{}", usage.text);
    app.stop().await;
}

fn challenge(reply: &Reply) -> &str {
    header(reply, "www-authenticate").unwrap_or("<no challenge>")
}

#[actix_web::test]
async fn a_refused_check_says_why_in_the_status_the_code_and_the_challenge() {
    let env = TestEnv::new().await;
    let app = env.spawn_with(&[SCOPES]).await;
    let login = app.verified_login(&env, &unique_email("refused")).await;
    let jwt = login["access_token"].as_str().unwrap();
    let (key, key_id) = key_with_scopes(&app, jwt, "reader", &["invoices:read"]).await;

    let missing = check(&app, Method::GET, None, "").await;
    assert_eq!((missing.status, missing.code()), (StatusCode::UNAUTHORIZED, "missing_token"));
    assert_eq!(challenge(&missing), r#"Bearer realm="flexauth""#);

    for bad in ["not-a-token", "fo_live_0000000000000000000000000000000000000", "eyJhbGciOiJFZERTQSJ9.e30.x"] {
        let reply = check(&app, Method::GET, Some(bad), "").await;
        assert_eq!((reply.status, reply.code()), (StatusCode::UNAUTHORIZED, "invalid_token"), "{bad}");
        assert!(challenge(&reply).starts_with(r#"Bearer realm="flexauth", error="invalid_token""#), "{bad}");
    }

    // A scope the key lacks: 403, and the challenge names every scope asked for.
    let reply = check(&app, Method::GET, Some(&key), "?scope=invoices:read%20invoices:write").await;
    assert_eq!((reply.status, reply.code()), (StatusCode::FORBIDDEN, "insufficient_scope"), "{}", reply.text);
    let text = challenge(&reply);
    assert!(
        text.contains(r#"error="insufficient_scope""#) && text.ends_with(r#"scope="invoices:read invoices:write""#),
        "{text}"
    );
    assert_eq!(header(&reply, "x-flexauth-account-id"), None, "a refused check names nobody");
    // The parameter may repeat.
    let reply = check(&app, Method::GET, Some(&key), "?scope=invoices:read&scope=reports:read").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    // An access token holds every declared scope, and no other: a gateway's typo refuses all.
    assert_eq!(
        check(&app, Method::GET, Some(jwt), "?scope=invoices:write%20reports:read").await.status,
        StatusCode::OK
    );
    let typo = check(&app, Method::GET, Some(jwt), "?scope=invoice:write").await;
    assert_eq!((typo.status, typo.code()), (StatusCode::FORBIDDEN, "insufficient_scope"));
    // A scope that is no scope token is the gateway's mistake: 400.
    for query in ["?scope=%22quoted%22", "?scope=back%5Cslash", &format!("?scope={}", "x".repeat(65))] {
        let reply = check(&app, Method::GET, Some(jwt), query).await;
        assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "invalid_scope"), "{query}");
    }

    // A method no gateway forwards a request with.
    let trace = check(&app, Method::TRACE, Some(jwt), "").await;
    assert_eq!((trace.status, trace.code()), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));

    // A revoked key and an ended session are refused at once.
    assert_eq!(app.delete_with_bearer(&format!("/v1/api-keys/{key_id}"), jwt).await.status, StatusCode::NO_CONTENT);
    let revoked = check(&app, Method::GET, Some(&key), "").await;
    assert_eq!((revoked.status, revoked.code()), (StatusCode::UNAUTHORIZED, "invalid_token"));
    assert!(challenge(&revoked).contains("the API key is not valid"), "{}", challenge(&revoked));
    assert_eq!(app.post_with_bearer("/v1/auth/logout", jwt).await.status, StatusCode::NO_CONTENT);
    let ended = check(&app, Method::GET, Some(jwt), "").await;
    assert_eq!((ended.status, ended.code()), (StatusCode::UNAUTHORIZED, "invalid_token"));
    assert!(challenge(&ended).contains("revoked"), "{}", challenge(&ended));
    app.stop().await;
}

#[actix_web::test]
async fn checks_read_no_database_per_request() {
    let env = TestEnv::new().await;
    // The workers look for work at production's pace where it is announced (every 10 s, not
    // the suite's 100 ms): their looks are not the checks' and would blur the count.
    let app = env
        .spawn_configured(
            &[SCOPES, "--metrics-bind", "127.0.0.1:0"],
            |settings| settings.announced_work_poll_interval = flexauth_server::config::ANNOUNCED_WORK_POLL_INTERVAL,
            std::sync::Arc::new(crate::helpers::TestClock::default()),
        )
        .await;
    let login = app.verified_login(&env, &unique_email("cached")).await;
    let jwt = login["access_token"].as_str().unwrap();
    let (key, _) = key_with_scopes(&app, jwt, "cached", &["reports:read"]).await;
    let gone: Value = app.login(&login_email(&app, jwt).await).await.body["data"].clone();
    let gone = gone["access_token"].as_str().unwrap().to_owned();
    assert_eq!(app.post_with_bearer("/v1/auth/logout", &gone).await.status, StatusCode::NO_CONTENT);
    // Warm the caches once.
    assert_eq!(check(&app, Method::GET, Some(&key), "").await.status, StatusCode::OK);

    let before = database_operations(&app).await;
    let checks = 300;
    for _ in 0..checks / 3 {
        assert_eq!(check(&app, Method::GET, Some(jwt), "?scope=reports:read").await.status, StatusCode::OK);
        assert_eq!(check(&app, Method::GET, Some(&gone), "").await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(check(&app, Method::GET, Some(&key), "?scope=reports:read").await.status, StatusCode::OK);
    }
    let used = database_operations(&app).await - before;
    // The background worker's polls take a connection now and then (a few a second, and the
    // suite may be slow); a read per check would take 300, a read per key check 100.
    let allowed = 60.0;
    eprintln!(
        "{checks} checks took {used} database connections ({})",
        if env.is_postgres() { "PostgreSQL" } else { "SQLite" }
    );
    assert!(used < allowed, "{checks} checks took {used} database connections");
    app.stop().await;
}

async fn login_email(app: &TestApp, jwt: &str) -> String {
    app.get_with_bearer("/v1/auth/me", jwt).await.body["data"]["email"].as_str().unwrap().to_owned()
}
