//! `POST /v1/auth/introspect` (RFC 7662) and the resource servers the operator registers with
//! `flexauth clients`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::check::{key_with_scopes, SCOPES};
use crate::helpers::{read, unique_email, Reply, TestApp, TestClock, TestEnv};
use crate::lifecycle::{database_holds, flexauth};

/// Registers a resource server with the operator's command; returns its id and secret.
pub fn register_client(env: &TestEnv, name: &str) -> (String, String) {
    let (ok, printed, stderr) = flexauth(env, &["clients", "create", name]);
    assert!(ok, "flexauth clients create: {stderr}");
    (printed["client_id"].as_str().unwrap().to_owned(), printed["client_secret"].as_str().unwrap().to_owned())
}

/// Introspects with the form `form`, authenticated as `client` when given.
pub async fn introspect_form(app: &TestApp, client: Option<(&str, &str)>, form: &[(&str, &str)]) -> Reply {
    let mut request = app.client.post(app.url("/v1/auth/introspect")).form(form);
    if let Some((id, secret)) = client {
        request = request.basic_auth(id, Some(secret));
    }
    read(request.send().await.unwrap()).await
}

/// What `client` learns of `token`; the answer must be a 200.
pub async fn introspect(app: &TestApp, client: (&str, &str), token: &str) -> Value {
    let reply = introspect_form(app, Some(client), &[("token", token)]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.headers.get("cache-control").unwrap(), "no-store");
    reply.body
}

fn fields(body: &Value) -> BTreeSet<&str> {
    body.as_object().unwrap().keys().map(String::as_str).collect()
}

#[actix_web::test]
async fn clients_are_registered_listed_and_deleted_by_the_operator_and_only_their_digest_is_stored() {
    let env = TestEnv::new().await;
    let (id, secret) = register_client(&env, "  billing API ");
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    assert!(secret.starts_with("fo_client_") && secret.len() == 53, "{secret}");
    let (other, _) = register_client(&env, "reports API");

    let (ok, listed, stderr) = flexauth(&env, &["clients", "list"]);
    assert!(ok, "{stderr}");
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|client| client["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["billing API", "reports API"]);
    assert_eq!(listed[0]["client_id"], id.as_str());
    assert!(listed[0].get("client_secret").is_none(), "a secret is printed once: {listed}");
    assert!(!database_holds(&env, &secret).await, "only the digest of the secret is stored");

    let (ok, deleted, stderr) = flexauth(&env, &["clients", "delete", &other]);
    assert!(ok, "{stderr}");
    assert_eq!(deleted, json!({ "client_id": other, "done": "deleted" }));
    let (ok, _, stderr) = flexauth(&env, &["clients", "delete", &other]);
    assert!(!ok && stderr.contains("no such client"), "{stderr}");
    let (ok, _, stderr) = flexauth(&env, &["clients", "delete", "not-an-id"]);
    assert!(!ok && stderr.contains("not a client id"), "{stderr}");
    let (ok, _, stderr) = flexauth(&env, &["clients", "create", " "]);
    assert!(!ok && stderr.contains("empty"), "{stderr}");
    assert_eq!(flexauth(&env, &["clients", "list"]).1.as_array().unwrap().len(), 1);
}

#[actix_web::test]
async fn introspection_answers_rfc_7662_for_every_kind_of_credential() {
    let env = TestEnv::new().await;
    let clock = std::sync::Arc::new(TestClock::default());
    let app = env.spawn_with_clock(&[SCOPES], clock.clone()).await;
    let (id, secret) = register_client(&env, "billing API");
    let client = (id.as_str(), secret.as_str());
    let login = app.verified_login(&env, &unique_email("introspected")).await;
    let jwt = login["access_token"].as_str().unwrap();
    let usage = app.get_with_bearer("/v1/usage", jwt).await.body["data"].clone();

    assert!(jwt.len() < 600, "flexauth's access tokens fit the form's 1024 characters: {}", jwt.len());
    // An access token: its owner, every declared scope, its own times, flexauth's iss and aud.
    let active = introspect(&app, client, jwt).await;
    assert_eq!(
        fields(&active),
        ["active", "aud", "exp", "iat", "iss", "scope", "sid", "sub", "token_type"].into_iter().collect()
    );
    assert_eq!(active["active"], true);
    assert_eq!(active["token_type"], "access_token");
    assert_eq!(active["sub"], usage["account_id"]);
    assert_eq!(active["sid"], usage["session_id"]);
    assert_eq!(active["scope"], "invoices:read invoices:write reports:read");
    let claims: Value = {
        use base64::Engine as _;
        let payload = jwt.split('.').nth(1).unwrap();
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    };
    for claim in ["exp", "iat", "iss", "aud"] {
        assert_eq!(active[claim], claims[claim], "{claim}");
    }

    // A key: its scopes, its creation as iat, no exp unless it has one.
    let (key, key_id) = key_with_scopes(&app, jwt, "billing", &["invoices:read"]).await;
    let active = introspect(&app, client, &key).await;
    assert_eq!(
        fields(&active),
        ["active", "aud", "iat", "iss", "key_id", "scope", "sub", "token_type"].into_iter().collect()
    );
    assert_eq!((&active["token_type"], &active["key_id"]), (&json!("api_key"), &json!(key_id)));
    assert_eq!((&active["scope"], &active["sub"]), (&json!("invoices:read"), &usage["account_id"]));
    let expiring = app
        .post_json_with_bearer("/v1/api-keys", jwt, json!({ "name": "expiring", "expires_at": "2099-01-01T00:00:00Z" }))
        .await;
    let expiring_key = expiring.body["data"]["key"].as_str().unwrap().to_owned();
    let active = introspect(&app, client, &expiring_key).await;
    assert_eq!((&active["exp"], &active["scope"]), (&json!(4_070_908_800_i64), &json!("")));

    // Anything else is exactly {"active": false}.
    let (revoked, revoked_id) = key_with_scopes(&app, jwt, "revoked", &[]).await;
    assert_eq!(app.delete_with_bearer(&format!("/v1/api-keys/{revoked_id}"), jwt).await.status, StatusCode::NO_CONTENT);
    let other = app.login(usage_email(&app, jwt).await.as_str()).await.body["data"].clone();
    let logged_out = other["access_token"].as_str().unwrap();
    assert_eq!(app.post_with_bearer("/v1/auth/logout", logged_out).await.status, StatusCode::NO_CONTENT);
    for (what, token) in [
        ("a refresh token", login["refresh_token"].as_str().unwrap()),
        ("a revoked key", revoked.as_str()),
        ("a logged-out session's access token", logged_out),
        ("garbage", "not a token"),
        ("an unknown key", "fo_live_0000000000000000000000000000000000000"),
        (
            "a key with a wrong checksum",
            &format!("{}{}", &key[..key.len() - 1], if key.ends_with('x') { 'y' } else { 'x' }),
        ),
        ("an empty token", ""),
    ] {
        assert_eq!(introspect(&app, client, token).await, json!({ "active": false }), "{what}");
    }
    // An access token past its exp, and a key past its expiry.
    clock.advance(time::Duration::hours(2));
    assert_eq!(introspect(&app, client, jwt).await, json!({ "active": false }), "an expired access token");
    clock.advance(time::Duration::days(365 * 80));
    assert_eq!(introspect(&app, client, &expiring_key).await, json!({ "active": false }), "an expired key");
    assert_eq!(introspect(&app, client, &key).await["active"], true, "a key without expiry lives on");
    app.stop().await;
}

async fn usage_email(app: &TestApp, jwt: &str) -> String {
    app.get_with_bearer("/v1/auth/me", jwt).await.body["data"]["email"].as_str().unwrap().to_owned()
}

#[actix_web::test]
async fn only_a_registered_client_may_introspect_and_a_deleted_one_is_refused_everywhere_within_a_second() {
    let env = TestEnv::new().await;
    let (first, second) = (env.spawn().await, env.spawn().await);
    let (id, secret) = register_client(&env, "billing API");
    let login = first.verified_login(&env, &unique_email("clients")).await;
    let jwt = login["access_token"].as_str().unwrap();
    let form = [("token", jwt)];

    let (_, other_secret) = register_client(&env, "reports API");
    let unknown = uuid::Uuid::new_v4().to_string();
    for (what, client) in [
        ("no credentials", None),
        ("another client's secret", Some((id.as_str(), other_secret.as_str()))),
        ("an unknown id", Some((unknown.as_str(), secret.as_str()))),
        ("an id that is no UUID", Some(("billing", secret.as_str()))),
        ("an empty secret", Some((id.as_str(), ""))),
    ] {
        let reply = introspect_form(&first, client, &form).await;
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::UNAUTHORIZED, "invalid_client"),
            "{what}: {}",
            reply.text
        );
        let challenge = reply.headers.get("www-authenticate").unwrap().to_str().unwrap();
        assert!(challenge.starts_with("Basic realm=\"flexauth\""), "{what}: {challenge}");
        assert!(!reply.text.contains("active"), "{what}: nothing about the token");
    }
    // A bearer credential is no client credential, whatever it is.
    let bearer = first.client.post(first.url("/v1/auth/introspect")).bearer_auth(jwt).form(&form);
    assert_eq!(read(bearer.send().await.unwrap()).await.code(), "invalid_client");
    // Nor does a bad form tell a stranger anything.
    let junk = first.client.post(first.url("/v1/auth/introspect")).body("{not a form");
    assert_eq!(read(junk.send().await.unwrap()).await.code(), "invalid_client");

    assert_eq!(introspect(&second, (&id, &secret), jwt).await["active"], true);
    let (ok, _, stderr) = flexauth(&env, &["clients", "delete", &id]);
    assert!(ok, "{stderr}");
    let deleted = Instant::now();
    for app in [&first, &second] {
        loop {
            let reply = introspect_form(app, Some((&id, &secret)), &form).await;
            if reply.status == StatusCode::UNAUTHORIZED {
                assert_eq!(reply.code(), "invalid_client");
                break;
            }
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
            assert!(deleted.elapsed() < Duration::from_millis(1500), "a deleted client still introspects");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    first.stop().await;
    second.stop().await;
}

#[actix_web::test]
async fn a_bad_introspection_request_gets_a_clear_4xx() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let (id, secret) = register_client(&env, "billing API");
    let client = Some((id.as_str(), secret.as_str()));

    let none = introspect_form(&app, client, &[("token_type_hint", "access_token")]).await;
    assert_eq!((none.status, none.code()), (StatusCode::BAD_REQUEST, "invalid_request"), "{}", none.text);
    let twice = introspect_form(&app, client, &[("token", "a"), ("token", "b")]).await;
    assert_eq!((twice.status, twice.code()), (StatusCode::BAD_REQUEST, "invalid_request"));
    let hints =
        introspect_form(&app, client, &[("token", "a"), ("token_type_hint", "x"), ("token_type_hint", "y")]).await;
    assert_eq!((hints.status, hints.code()), (StatusCode::BAD_REQUEST, "invalid_request"));
    let long_hint = "h".repeat(65);
    let hint = introspect_form(&app, client, &[("token", "a"), ("token_type_hint", &long_hint)]).await;
    assert_eq!((hint.status, hint.code()), (StatusCode::BAD_REQUEST, "invalid_request"));
    // An unknown hint is ignored, as RFC 7662 allows.
    let hinted = introspect_form(&app, client, &[("token", "a"), ("token_type_hint", "refresh_token")]).await;
    assert_eq!((hinted.status, &hinted.body), (StatusCode::OK, &json!({ "active": false })));

    let json_body =
        app.client.post(app.url("/v1/auth/introspect")).basic_auth(&id, Some(&secret)).json(&json!({ "token": "a" }));
    let json_reply = read(json_body.send().await.unwrap()).await;
    assert_eq!((json_reply.status, json_reply.code()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"));
    let long = "x".repeat(1025);
    let overlong = introspect_form(&app, client, &[("token", long.as_str())]).await;
    assert_eq!((overlong.status, overlong.code()), (StatusCode::BAD_REQUEST, "invalid_request"));
    let huge = "x".repeat(20 * 1024);
    let large = introspect_form(&app, client, &[("token", huge.as_str())]).await;
    assert_eq!((large.status, large.code()), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));
    let get = app.get("/v1/auth/introspect").await;
    assert_eq!((get.status, get.code()), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));
    app.stop().await;
}

/// The Python interpreter with authlib that `scripts/gateways-up` prepared, or why there is
/// none; a missing one fails the test when CI requires it.
pub fn authlib_python() -> Option<String> {
    match std::env::var("FLEXAUTH_TEST_AUTHLIB_PYTHON").ok().filter(|path| !path.is_empty()) {
        Some(python) => Some(python),
        None => {
            flexauth_store::test_db::skip(
                "the authlib test",
                "FLEXAUTH_TEST_AUTHLIB_PYTHON is not set (scripts/gateways-up)",
                Some("FLEXAUTH_TEST_REQUIRE_GATEWAYS"),
            );
            None
        }
    }
}

#[actix_web::test]
async fn a_python_resource_server_introspects_every_kind_of_token_with_authlib() {
    let Some(python) = authlib_python() else { return };
    let env = TestEnv::new().await;
    let app = env.spawn_with(&[SCOPES]).await;
    let (id, secret) = register_client(&env, "python API");
    let login = app.verified_login(&env, &unique_email("authlib")).await;
    let jwt = login["access_token"].as_str().unwrap();
    let (key, _) = key_with_scopes(&app, jwt, "python", &["reports:read"]).await;
    let (revoked, revoked_id) = key_with_scopes(&app, jwt, "revoked", &[]).await;
    assert_eq!(app.delete_with_bearer(&format!("/v1/api-keys/{revoked_id}"), jwt).await.status, StatusCode::NO_CONTENT);
    let ended =
        app.login(&usage_email(&app, jwt).await).await.body["data"]["access_token"].as_str().unwrap().to_owned();
    assert_eq!(app.post_with_bearer("/v1/auth/logout", &ended).await.status, StatusCode::NO_CONTENT);
    let tokens = json!({
        "access_token": jwt,
        "api_key": key,
        "refresh_token": login["refresh_token"],
        "revoked_key": revoked,
        "ended_session": ended,
        "garbage": "not a token",
    });

    let run = |client_id: &str, client_secret: &str| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/clients/authlib_introspect.py");
        let mut child = std::process::Command::new(&python)
            .args([script, &app.url("/v1/auth/introspect"), client_id, client_secret])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the authlib interpreter runs");
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(tokens.to_string().as_bytes()).unwrap();
        child
    };
    let wait = |child: std::process::Child| async move {
        let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
        assert!(output.status.success(), "authlib: {}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice::<Value>(&output.stdout).unwrap()
    };

    let answers = wait(run(&id, &secret)).await;
    assert_eq!(answers["access_token"]["status"], 200);
    let access = &answers["access_token"]["body"];
    assert_eq!((&access["active"], &access["token_type"]), (&json!(true), &json!("access_token")));
    assert_eq!(access["scope"], "invoices:read invoices:write reports:read");
    let api_key = &answers["api_key"]["body"];
    assert_eq!(
        (&api_key["active"], &api_key["token_type"], &api_key["scope"]),
        (&json!(true), &json!("api_key"), &json!("reports:read"))
    );
    assert_eq!(access["sub"], api_key["sub"]);
    for inactive in ["refresh_token", "revoked_key", "ended_session", "garbage"] {
        assert_eq!(answers[inactive], json!({ "status": 200, "body": { "active": false } }), "{inactive}");
    }
    let refused = wait(run(&id, "fo_client_wrong")).await;
    assert_eq!(refused["access_token"]["status"], 401);
    assert_eq!(refused["access_token"]["body"]["error"]["code"], "invalid_client");
    app.stop().await;
}
