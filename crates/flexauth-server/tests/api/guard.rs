//! The Rust guard (`flexauth-guard`) and the example API it protects
//! (`examples/resource-server`), against a live flexauth.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use flexauth_guard::{Caller, Credential, Guard, GuardSettings, Refusal, Scopes};
use reqwest::StatusCode;
use serde_json::Value;

use crate::check::{key_with_scopes, SCOPES};
use crate::helpers::{read, unique_email, Reply, TestApp, TestEnv, PUBLIC_URL};
use crate::introspection::register_client;
use crate::lifecycle::flexauth_with;

/// A guard for `app`, reached at its own address, with `client` for the keys.
fn guard_for(app: &TestApp, client: Option<&(String, String)>, tune: impl FnOnce(&mut GuardSettings)) -> Guard {
    let mut settings = GuardSettings::new(PUBLIC_URL);
    settings.base_url = Some(app.address.clone());
    if let Some((id, secret)) = client {
        settings = settings.with_client(id.clone(), secret.clone());
    }
    tune(&mut settings);
    Guard::new(settings).unwrap()
}

fn part(token: &str, index: usize) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(index).unwrap()).unwrap()).unwrap()
}

/// The claims of `token` signed again by a key flexauth never had, named `kid`.
fn signed_by_a_stranger(token: &str, kid: &str) -> String {
    let pem = flexauth_jwt::SigningKeyPair::generate_pem().unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.typ = Some("at+jwt".into());
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, &part(token, 1), &jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes()).unwrap())
        .unwrap()
}

/// The token with one character of its signature changed.
fn tampered(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let at = bytes.len() - 5;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

#[actix_web::test]
async fn the_guard_accepts_people_and_servers_and_refuses_everything_else() {
    let env = TestEnv::new().await;
    let app = env.spawn_with(&[SCOPES]).await;
    let client = register_client(&env, "rust API");
    let guard = guard_for(&app, Some(&client), |settings| settings.key_answers_kept_for = Duration::from_millis(300));
    let login = app.verified_login(&env, &unique_email("guarded")).await;
    let jwt = login["access_token"].as_str().unwrap();
    let usage = app.get_with_bearer("/v1/usage", jwt).await.body["data"].clone();

    let person = guard.authenticate_header(Some(&format!("Bearer {jwt}"))).await.unwrap();
    assert_eq!(
        person,
        Caller {
            account_id: usage["account_id"].as_str().unwrap().to_owned(),
            credential: Credential::AccessToken { session_id: usage["session_id"].as_str().unwrap().to_owned() },
            scopes: Scopes::Every,
        }
    );
    let (key, key_id) = key_with_scopes(&app, jwt, "rust", &["invoices:read"]).await;
    let server = guard.authenticate(&key).await.unwrap();
    assert_eq!(server.credential, Credential::ApiKey { key_id: key_id.clone() });
    assert!(server.has_scope("invoices:read") && !server.has_scope("invoices:write"));
    let lacking = server.require(["invoices:read", "invoices:write"]).unwrap_err();
    assert_eq!((lacking.status(), lacking.code()), (403, "insufficient_scope"));
    assert!(lacking.challenge().unwrap().ends_with(r#"scope="invoices:read invoices:write""#));

    let refused = |outcome: Result<Caller, Refusal>| outcome.unwrap_err();
    assert_eq!(refused(guard.authenticate_header(None).await), Refusal::Missing);
    assert_eq!(refused(guard.authenticate_header(Some("Basic abc")).await), Refusal::Missing);
    for (what, token, why) in [
        ("a refresh token", login["refresh_token"].as_str().unwrap().to_owned(), "the token is not an access token"),
        ("a tampered token", tampered(jwt), "the access token signature is invalid"),
        ("an unknown key", signed_by_a_stranger(jwt, "stranger"), "the access token was signed by an unknown key"),
        ("garbage", "not.a.token".to_owned(), "the access token is malformed"),
        (
            "an unknown API key",
            "fo_live_0000000000000000000000000000000000000".to_owned(),
            "the credential is not active",
        ),
    ] {
        let refusal = refused(guard.authenticate(&token).await);
        assert_eq!(refusal, Refusal::Invalid(why.into()), "{what}");
        assert_eq!(refusal.status(), 401, "{what}");
        assert!(refusal.challenge().unwrap().contains(r#"error="invalid_token""#), "{what}");
    }
    // Another audience, another issuer.
    for tune in [
        (|settings: &mut GuardSettings| settings.audience = "billing".into()) as fn(&mut GuardSettings),
        |settings: &mut GuardSettings| settings.issuer = "https://elsewhere.example".into(),
    ] {
        let other = guard_for(&app, None, tune);
        assert_eq!(
            refused(other.authenticate(jwt).await),
            Refusal::Invalid("the access token was issued for another party".into())
        );
    }
    // A guard without client credentials takes no keys.
    let tokens_only = guard_for(&app, None, |_| {});
    assert_eq!(
        refused(tokens_only.authenticate(&key).await),
        Refusal::Invalid("this service takes no API keys".into())
    );

    // A revoked key is refused once the answer kept for it is older than 300 ms.
    assert_eq!(app.delete_with_bearer(&format!("/v1/api-keys/{key_id}"), jwt).await.status, StatusCode::NO_CONTENT);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(refused(guard.authenticate(&key).await), Refusal::Invalid("the credential is not active".into()));

    // An ended session: verified offline, its token passes until its exp; introspected, not.
    let introspecting = guard_for(&app, Some(&client), |settings| settings.introspect_access_tokens = true);
    assert_eq!(
        introspecting.authenticate(jwt).await.unwrap().scopes,
        Scopes::Only(["invoices:read", "invoices:write", "reports:read"].map(str::to_owned).into())
    );
    assert_eq!(app.post_with_bearer("/v1/auth/logout", jwt).await.status, StatusCode::NO_CONTENT);
    let fresh = guard_for(&app, Some(&client), |settings| settings.introspect_access_tokens = true);
    assert_eq!(refused(fresh.authenticate(jwt).await), Refusal::Invalid("the credential is not active".into()));
    assert!(guard.authenticate(jwt).await.is_ok(), "offline verification cannot know of the logout");

    // Nobody answering: a 503, not a refusal of the credential.
    let unreachable = Guard::new({
        let mut settings = GuardSettings::new(PUBLIC_URL);
        settings.base_url = Some("http://127.0.0.1:9".into());
        settings
    })
    .unwrap();
    assert_eq!(refused(unreachable.authenticate(jwt).await), Refusal::Unavailable);
    app.stop().await;
}

/// The JWKS answers this instance gave so far: `(2xx, 3xx)`.
async fn jwks_answers(app: &TestApp) -> (f64, f64) {
    let text = app.client.get(format!("{}/metrics", app.metrics_address.as_ref().unwrap())).send().await.unwrap();
    let text = text.text().await.unwrap();
    let count = |class: &str| {
        text.lines()
            .filter(|line| {
                line.starts_with("flexauth_http_requests_total{")
                    && line.contains(r#"route="/.well-known/jwks.json""#)
                    && line.contains(&format!(r#"status="{class}""#))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    (count("2xx"), count("3xx"))
}

#[actix_web::test]
async fn the_jwks_is_fetched_once_per_max_age_revalidated_by_its_etag_and_again_for_an_unknown_kid_once_a_minute() {
    let env = TestEnv::new().await;
    let app = env.spawn_with(&["--jwks-max-age", "1s", "--metrics-bind", "127.0.0.1:0"]).await;
    let guard = guard_for(&app, None, |_| {});
    let login = app.verified_login(&env, &unique_email("jwks")).await;
    let jwt = login["access_token"].as_str().unwrap().to_owned();

    let start = jwks_answers(&app).await;
    for _ in 0..50 {
        guard.authenticate(&jwt).await.unwrap();
    }
    let fetched = jwks_answers(&app).await;
    assert_eq!((fetched.0 - start.0, fetched.1 - start.1), (1.0, 0.0), "50 verifications, one JWKS fetch");

    // Past its max-age the JWKS is revalidated: 304, and the keys in hand serve on.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    guard.authenticate(&jwt).await.unwrap();
    let revalidated = jwks_answers(&app).await;
    assert_eq!((revalidated.0 - fetched.0, revalidated.1 - fetched.1), (0.0, 1.0), "one revalidation by ETag");

    // Unknown kids: one fetch, then none for a minute however many come.
    for attempt in 0..20 {
        let stranger = signed_by_a_stranger(&jwt, &format!("stranger-{attempt}"));
        assert!(guard.authenticate(&stranger).await.is_err());
    }
    let after = jwks_answers(&app).await;
    assert_eq!(after.0 + after.1 - revalidated.0 - revalidated.1, 1.0, "twenty unknown kids, one fetch: {after:?}");
    app.stop().await;
}

async fn get_from(address: &str, path: &str, credential: Option<&str>) -> Reply {
    let client = reqwest::Client::new();
    let mut request = client.get(format!("http://{address}{path}"));
    if let Some(credential) = credential {
        request = request.bearer_auth(credential);
    }
    read(request.send().await.unwrap()).await
}

#[actix_web::test]
async fn the_example_resource_server_takes_tokens_and_keys_refuses_the_rest_and_survives_a_key_rotation() {
    let env = TestEnv::new().await;
    let app = env.spawn_with(&[SCOPES, "--jwks-max-age", "1s"]).await;
    let client = register_client(&env, "example API");
    let guard = guard_for(&app, Some(&client), |settings| settings.key_answers_kept_for = Duration::from_millis(300));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap().to_string();
    tokio::spawn(flexauth_example_resource_server::serve(listener, guard));

    let email = unique_email("example");
    let login = app.verified_login(&env, &email).await;
    let jwt = login["access_token"].as_str().unwrap();
    let account = app.get_with_bearer("/v1/auth/me", jwt).await.body["data"]["id"].clone();
    let (reader, reader_id) = key_with_scopes(&app, jwt, "reader", &["invoices:read"]).await;
    let (reporter, _) = key_with_scopes(&app, jwt, "reporter", &["reports:read"]).await;

    let me = get_from(&api, "/me", Some(jwt)).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    assert_eq!((&me.body["account_id"], &me.body["auth_method"]), (&account, &serde_json::json!("jwt")));
    assert_eq!(get_from(&api, "/invoices", Some(jwt)).await.status, StatusCode::OK, "a person holds every scope");
    let invoices = get_from(&api, "/invoices", Some(&reader)).await;
    assert_eq!(invoices.status, StatusCode::OK, "{}", invoices.text);
    assert_eq!(invoices.body["caller"]["key_id"], reader_id.as_str());
    assert_eq!(get_from(&api, "/me", Some(&reporter)).await.status, StatusCode::OK);

    let lacking = get_from(&api, "/invoices", Some(&reporter)).await;
    assert_eq!((lacking.status, lacking.code()), (StatusCode::FORBIDDEN, "insufficient_scope"));
    let challenge = lacking.headers.get("www-authenticate").unwrap().to_str().unwrap();
    assert!(challenge.ends_with(r#"scope="invoices:read""#), "{challenge}");
    for (what, credential) in [
        ("nothing", None),
        ("a tampered token", Some(tampered(jwt))),
        ("a refresh token", login["refresh_token"].as_str().map(str::to_owned)),
    ] {
        let refused = get_from(&api, "/me", credential.as_deref()).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{what}: {}", refused.text);
        assert!(
            refused.headers.get("www-authenticate").unwrap().to_str().unwrap().starts_with("Bearer realm"),
            "{what}"
        );
    }
    assert_eq!(app.delete_with_bearer(&format!("/v1/api-keys/{reader_id}"), jwt).await.status, StatusCode::NO_CONTENT);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let revoked = get_from(&api, "/invoices", Some(&reader)).await;
    assert_eq!((revoked.status, revoked.code()), (StatusCode::UNAUTHORIZED, "invalid_token"), "a revoked key");

    // flexauth rotates its key: tokens of the new key pass with no restart, the old ones too.
    let vars = [("FLEXAUTH_JWKS_MAX_AGE", "1s")];
    let (ok, rotated, stderr) = flexauth_with(&env, &["keys", "rotate", "--delay", "2s"], &vars);
    assert!(ok, "{stderr}");
    let new_kid = rotated["kid"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let newer = loop {
        let token = app.login(&email).await.body["data"]["access_token"].as_str().unwrap().to_owned();
        if part(&token, 0)["kid"] == new_kid.as_str() {
            break token;
        }
        assert!(std::time::Instant::now() < deadline, "the rotated key never signed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let after = get_from(&api, "/me", Some(&newer)).await;
    assert_eq!(after.status, StatusCode::OK, "a token of the rotated key: {}", after.text);
    assert_eq!(get_from(&api, "/me", Some(jwt)).await.status, StatusCode::OK, "a token of the old key");
    app.stop().await;
}

#[actix_web::test]
async fn an_actix_web_handler_that_takes_a_caller_runs_only_for_one() {
    use actix_web::{web, App, HttpResponse};

    let env = TestEnv::new().await;
    let app = env.spawn_with(&[SCOPES]).await;
    let client = register_client(&env, "actix API");
    let guard = guard_for(&app, Some(&client), |_| {});
    let service = actix_web::test::init_service(App::new().app_data(guard).route(
        "/invoices",
        web::get().to(|caller: Caller| async move {
            caller.require(["invoices:read"])?;
            Ok::<_, Refusal>(HttpResponse::Ok().body(caller.account_id))
        }),
    ))
    .await;
    let login = app.verified_login(&env, &unique_email("actix")).await;
    let jwt = login["access_token"].as_str().unwrap();
    let (reader, _) = key_with_scopes(&app, jwt, "reader", &["invoices:read"]).await;
    let (reporter, _) = key_with_scopes(&app, jwt, "reporter", &["reports:read"]).await;
    let account = app.get_with_bearer("/v1/auth/me", jwt).await.body["data"]["id"].as_str().unwrap().to_owned();

    let call = |credential: Option<String>| {
        let mut request = actix_web::test::TestRequest::get().uri("/invoices");
        if let Some(credential) = credential {
            request = request.insert_header(("authorization", format!("Bearer {credential}")));
        }
        actix_web::test::call_service(&service, request.to_request())
    };
    for credential in [jwt.to_owned(), reader] {
        let response = call(Some(credential)).await;
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(actix_web::test::read_body(response).await, account.as_bytes());
    }
    let lacking = call(Some(reporter)).await;
    assert_eq!(lacking.status().as_u16(), 403);
    let missing = call(None).await;
    assert_eq!(missing.status().as_u16(), 401);
    assert_eq!(missing.headers().get("www-authenticate").unwrap(), r#"Bearer realm="flexauth""#);
    let body: Value = serde_json::from_slice(&actix_web::test::read_body(missing).await).unwrap();
    assert_eq!(body["error"]["code"], "missing_token");
    app.stop().await;
}
