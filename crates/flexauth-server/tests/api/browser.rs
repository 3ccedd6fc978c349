//! What a single-page application on another origin meets: CORS for the allowed origins only,
//! HEAD wherever GET works, and the refresh token in an httpOnly cookie on request, which a
//! cross-site page cannot use.

use actix_web::http::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{read, unique_email, Reply, TestApp, TestEnv, PASSWORD};

const SPA: &str = "https://app.example.com";
const ELSEWHERE: &str = "https://evil.example";

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).and_then(|value| value.to_str().ok())
}

async fn preflight(app: &TestApp, origin: &str, path: &str) -> Reply {
    let request = app
        .client
        .request(actix_web::http::Method::OPTIONS, app.url(path))
        .insert_header(("origin", origin))
        .insert_header(("access-control-request-method", "POST"))
        .insert_header(("access-control-request-headers", "content-type, refresh-token-transport"));
    read(request.send().await.unwrap()).await
}

#[actix_web::test]
async fn cors_answers_the_allowed_origins_and_no_other() {
    let env = TestEnv::new().await;
    let app = env.spawn_with(&["--cors-origins", "https://app.example.com, http://localhost:5173"]).await;

    let allowed = preflight(&app, SPA, "/v1/auth/login").await;
    assert_eq!(allowed.status, StatusCode::NO_CONTENT, "{}", allowed.text);
    assert_eq!(header(&allowed, "access-control-allow-origin"), Some(SPA));
    assert_eq!(header(&allowed, "access-control-allow-credentials"), Some("true"));
    assert!(header(&allowed, "access-control-allow-methods").unwrap().contains("POST"));
    let headers = header(&allowed, "access-control-allow-headers").unwrap().to_ascii_lowercase();
    for needed in ["authorization", "content-type", "refresh-token-transport"] {
        assert!(headers.contains(needed), "{headers}");
    }

    let refused = preflight(&app, ELSEWHERE, "/v1/auth/login").await;
    assert_eq!(refused.status, StatusCode::METHOD_NOT_ALLOWED, "not a CORS answer");
    assert!(refused.headers.keys().all(|name| !name.as_str().starts_with("access-control-")), "{:?}", refused.headers);

    // An actual request: the allowed origin may read the answer and the headers it needs.
    let answer = read(app.client.get(app.url("/v1/usage")).insert_header(("origin", SPA)).send().await.unwrap()).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(header(&answer, "access-control-allow-origin"), Some(SPA));
    let exposed = header(&answer, "access-control-expose-headers").unwrap().to_ascii_lowercase();
    for needed in ["www-authenticate", "retry-after", "ratelimit", "x-request-id"] {
        assert!(exposed.contains(needed), "{exposed}");
    }
    assert!(header(&answer, "vary").unwrap().contains("Origin"));
    let other = read(app.client.get(app.url("/healthz")).insert_header(("origin", ELSEWHERE)).send().await.unwrap()).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(header(&other, "access-control-allow-origin"), None);
    app.stop().await;

    // Without an allow-list, nothing changes for anyone.
    let plain = env.spawn().await;
    let preflight = preflight(&plain, SPA, "/v1/auth/login").await;
    assert_eq!(preflight.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header(&preflight, "access-control-allow-origin"), None);
    plain.stop().await;
}

#[actix_web::test]
async fn head_answers_wherever_get_does() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    for (path, status) in
        [("/healthz", StatusCode::OK), ("/.well-known/jwks.json", StatusCode::OK), ("/openapi.json", StatusCode::OK), ("/v1/usage", StatusCode::UNAUTHORIZED)]
    {
        let get = app.get(path).await;
        let head = read(app.client.head(app.url(path)).send().await.unwrap()).await;
        assert_eq!((get.status, head.status), (status, status), "{path}");
        assert!(head.text.is_empty(), "{path}: HEAD sent a body");
        assert_eq!(header(&head, "content-type"), header(&get, "content-type"), "{path}");
    }
    app.stop().await;
}

fn refresh_cookie(reply: &Reply) -> Option<String> {
    reply
        .headers
        .get_all("set-cookie")
        .filter_map(|value| value.to_str().ok())
        .find(|cookie| cookie.starts_with("__Secure-flexauth_refresh="))
        .map(str::to_owned)
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().trim_start_matches("__Secure-flexauth_refresh=").to_owned()
}

async fn with_cookie(app: &TestApp, path: &str, cookie: &str, origin: Option<&str>, opted_in: bool) -> Reply {
    let mut request = app.client.post(app.url(path)).insert_header(("cookie", format!("__Secure-flexauth_refresh={cookie}")));
    if let Some(origin) = origin {
        request = request.insert_header(("origin", origin));
    }
    if opted_in {
        request = request.insert_header(("refresh-token-transport", "cookie"));
    }
    read(request.send().await.unwrap()).await
}

#[actix_web::test]
async fn the_refresh_token_can_live_in_an_httponly_cookie_that_other_sites_cannot_use() {
    let env = TestEnv::new().await;
    let app = env.spawn_with(&["--cors-origins", SPA]).await;
    let email = unique_email("cookie");
    app.verified_login(&env, &email).await;

    let login = read(
        app.client
            .post(app.url("/v1/auth/login"))
            .insert_header(("refresh-token-transport", "cookie"))
            .insert_header(("origin", SPA))
            .send_json(&json!({ "email": email, "password": PASSWORD }))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    assert_eq!(login.body["data"]["refresh_token"], Value::Null, "the page never sees the refresh token");
    assert!(login.body["data"]["access_token"].as_str().unwrap().starts_with("eyJ"));
    let set = refresh_cookie(&login).expect("a refresh cookie");
    for attribute in ["; Path=/v1/auth", "; Max-Age=2592000", "; Secure", "; HttpOnly", "; SameSite=Strict"] {
        assert!(set.contains(attribute), "{set}");
    }
    let first = cookie_value(&set);
    assert!(first.starts_with("eyJ"));

    // A cross-site form post carries the cookie but cannot send the header: nothing happens.
    let form = read(
        app.client
            .post(app.url("/v1/auth/refresh"))
            .insert_header(("cookie", format!("__Secure-flexauth_refresh={first}")))
            .insert_header(("origin", ELSEWHERE))
            .insert_header(("content-type", "application/x-www-form-urlencoded"))
            .send_body("a=b")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(form.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", form.text);
    assert!(refresh_cookie(&form).is_none());
    // A page of another origin that does send the header is refused too.
    let foreign = with_cookie(&app, "/v1/auth/refresh", &first, Some(ELSEWHERE), true).await;
    assert_eq!((foreign.status, foreign.code()), (StatusCode::FORBIDDEN, "origin_not_allowed"), "{}", foreign.text);

    // The allowed page refreshes through the cookie; two tabs sharing it both stay logged in.
    let (tab_a, tab_b) = futures_util::future::join(
        with_cookie(&app, "/v1/auth/refresh", &first, Some(SPA), true),
        with_cookie(&app, "/v1/auth/refresh", &first, Some(SPA), true),
    )
    .await;
    assert_eq!((tab_a.status, tab_b.status), (StatusCode::OK, StatusCode::OK), "{} / {}", tab_a.text, tab_b.text);
    assert_eq!(tab_a.body["data"]["refresh_token"], Value::Null);
    let second = cookie_value(&refresh_cookie(&tab_a).unwrap());
    assert_eq!(second, cookie_value(&refresh_cookie(&tab_b).unwrap()), "both tabs hold the same current token");
    assert_ne!(second, first);
    let third_reply = with_cookie(&app, "/v1/auth/refresh", &second, None, true).await;
    assert_eq!(third_reply.status, StatusCode::OK, "{}", third_reply.text);
    let third = cookie_value(&refresh_cookie(&third_reply).unwrap());

    // Reuse detection is the same as with body tokens: the grandparent ends the session.
    let reused = with_cookie(&app, "/v1/auth/refresh", &first, Some(SPA), true).await;
    assert_eq!(reused.code(), "refresh_token_reused", "{}", reused.text);
    let after = with_cookie(&app, "/v1/auth/refresh", &third, Some(SPA), true).await;
    assert_eq!(after.code(), "session_revoked");
    app.stop().await;
}

#[actix_web::test]
async fn logout_through_the_cookie_ends_the_session_and_clears_the_cookie() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let email = unique_email("cookie-logout");
    app.verified_login(&env, &email).await;
    let login = read(
        app.client
            .post(app.url("/v1/auth/login"))
            .insert_header(("refresh-token-transport", "cookie"))
            .send_json(&json!({ "email": email, "password": PASSWORD }))
            .await
            .unwrap(),
    )
    .await;
    let token = cookie_value(&refresh_cookie(&login).unwrap());
    // Without the header the cookie is ignored, as a cross-site form would send it.
    let ignored = with_cookie(&app, "/v1/auth/logout", &token, None, false).await;
    assert_eq!(ignored.code(), "missing_token", "{}", ignored.text);
    assert_eq!(with_cookie(&app, "/v1/auth/refresh", &token, None, true).await.status, StatusCode::OK, "still logged in");

    let token = {
        let refreshed = with_cookie(&app, "/v1/auth/refresh", &token, None, true).await;
        cookie_value(&refresh_cookie(&refreshed).unwrap_or_else(|| panic!("{}", refreshed.text)))
    };
    let logout = with_cookie(&app, "/v1/auth/logout", &token, None, true).await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT, "{}", logout.text);
    let cleared = refresh_cookie(&logout).expect("the cookie is cleared");
    assert!(cleared.starts_with("__Secure-flexauth_refresh=;") && cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(with_cookie(&app, "/v1/auth/refresh", &token, None, true).await.code(), "session_revoked");
    app.stop().await;
}
