//! What a single-page application on another origin meets: CORS for the allowed origins only,
//! HEAD wherever GET works, and the refresh token in an httpOnly cookie on request, which a
//! cross-site page cannot use.

use reqwest::StatusCode;
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
        .request(reqwest::Method::OPTIONS, app.url(path))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type, refresh-token-transport");
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
    let answer = read(app.client.get(app.url("/v1/usage")).header("origin", SPA).send().await.unwrap()).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(header(&answer, "access-control-allow-origin"), Some(SPA));
    let exposed = header(&answer, "access-control-expose-headers").unwrap().to_ascii_lowercase();
    for needed in ["www-authenticate", "retry-after", "ratelimit", "x-request-id"] {
        assert!(exposed.contains(needed), "{exposed}");
    }
    assert!(header(&answer, "vary").unwrap().contains("Origin"));
    let other = read(app.client.get(app.url("/healthz")).header("origin", ELSEWHERE).send().await.unwrap()).await;
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
    for (path, status) in [
        ("/healthz", StatusCode::OK),
        ("/.well-known/jwks.json", StatusCode::OK),
        ("/openapi.json", StatusCode::OK),
        ("/v1/usage", StatusCode::UNAUTHORIZED),
    ] {
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
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|cookie| cookie.starts_with("__Host-flexauth_refresh="))
        .map(str::to_owned)
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().trim_start_matches("__Host-flexauth_refresh=").to_owned()
}

async fn with_cookie(app: &TestApp, path: &str, cookie: &str, origin: Option<&str>, opted_in: bool) -> Reply {
    let mut request = app.client.post(app.url(path)).header("cookie", format!("__Host-flexauth_refresh={cookie}"));
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    if opted_in {
        request = request.header("refresh-token-transport", "cookie");
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
            .header("refresh-token-transport", "cookie")
            .header("origin", SPA)
            .json(&json!({ "email": email, "password": PASSWORD }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    assert_eq!(login.body["data"]["refresh_token"], Value::Null, "the page never sees the refresh token");
    assert!(login.body["data"]["access_token"].as_str().unwrap().starts_with("eyJ"));
    let set = refresh_cookie(&login).expect("a refresh cookie");
    for attribute in ["; Path=/;", "; Max-Age=2592000", "; Secure", "; HttpOnly", "; SameSite=Strict"] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(set.starts_with("__Host-") && !set.to_lowercase().contains("domain="), "{set}");
    let first = cookie_value(&set);
    assert!(first.starts_with("eyJ"));

    // A cross-site form post carries the cookie but cannot send the header: nothing happens.
    let form = read(
        app.client
            .post(app.url("/v1/auth/refresh"))
            .header("cookie", format!("__Host-flexauth_refresh={first}"))
            .header("origin", ELSEWHERE)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("a=b")
            .send()
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

/// Logs `email` in with the cookie transport; returns the refresh token of the cookie.
async fn cookie_login(app: &TestApp, email: &str) -> String {
    let login = read(
        app.client
            .post(app.url("/v1/auth/login"))
            .header("refresh-token-transport", "cookie")
            .json(&json!({ "email": email, "password": PASSWORD }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    cookie_value(&refresh_cookie(&login).unwrap_or_else(|| panic!("{}", login.text)))
}

#[actix_web::test]
async fn a_refresh_cookie_planted_by_a_sibling_site_is_never_the_one_refreshed() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let (victim, attacker) = (unique_email("cookie-victim"), unique_email("cookie-planter"));
    app.verified_login(&env, &victim).await;
    app.verified_login(&env, &attacker).await;
    let (victims, attackers) = (cookie_login(&app, &victim).await, cookie_login(&app, &attacker).await);
    let refresh = |cookies: String| {
        let request = app.client.post(app.url("/v1/auth/refresh")).header("refresh-token-transport", "cookie");
        async move { read(request.header("cookie", cookies).send().await.unwrap()).await }
    };
    // A sibling subdomain can set a cookie for the parent domain under the old __Secure- name,
    // with a longer path, so that the browser sends it first: it is not read at all.
    let planted = refresh(format!("__Secure-flexauth_refresh={attackers}")).await;
    assert_eq!(planted.code(), "missing_token", "{}", planted.text);
    // Two refresh cookies (a client that does not enforce the __Host- prefix): refused, and
    // neither session rotates.
    let both = refresh(format!("__Host-flexauth_refresh={attackers}; __Host-flexauth_refresh={victims}")).await;
    assert_eq!((both.status, both.code()), (StatusCode::UNAUTHORIZED, "invalid_refresh_token"), "{}", both.text);
    let own = refresh(format!("__Host-flexauth_refresh={victims}")).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text);
    let me = app.get_with_bearer("/v1/auth/me", own.body["data"]["access_token"].as_str().unwrap()).await;
    assert_eq!(me.body["data"]["email"], victim.as_str(), "the victim's own session");
    app.stop().await;
}

#[actix_web::test]
async fn logout_through_the_cookie_ends_the_session_and_clears_the_cookie() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let email = unique_email("cookie-logout");
    app.verified_login(&env, &email).await;
    let token = cookie_login(&app, &email).await;
    // Without the header the cookie is ignored, as a cross-site form would send it.
    let ignored = with_cookie(&app, "/v1/auth/logout", &token, None, false).await;
    assert_eq!(ignored.code(), "missing_token", "{}", ignored.text);
    assert_eq!(
        with_cookie(&app, "/v1/auth/refresh", &token, None, true).await.status,
        StatusCode::OK,
        "still logged in"
    );

    let token = {
        let refreshed = with_cookie(&app, "/v1/auth/refresh", &token, None, true).await;
        cookie_value(&refresh_cookie(&refreshed).unwrap_or_else(|| panic!("{}", refreshed.text)))
    };
    let logout = with_cookie(&app, "/v1/auth/logout", &token, None, true).await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT, "{}", logout.text);
    let cleared = refresh_cookie(&logout).expect("the cookie is cleared");
    assert!(cleared.starts_with("__Host-flexauth_refresh=;") && cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(with_cookie(&app, "/v1/auth/refresh", &token, None, true).await.code(), "session_revoked");
    app.stop().await;
}

/// A reverse proxy that serves flexauth under `/auth`: it strips the prefix from the request
/// line, asks for the connection to close after the answer, and copies bytes both ways.
async fn prefix_stripping_proxy(upstream: std::sync::Arc<std::sync::OnceLock<String>>) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else { return };
            let upstream = upstream.get().cloned().expect("the upstream is known before the first request");
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let (request_line, rest) = head.split_once("\r\n").unwrap();
                let mut parts = request_line.splitn(3, ' ');
                let (method, target, version) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
                let Some(stripped) = target.strip_prefix("/auth") else {
                    let _ = client
                        .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                    return;
                };
                let rest = rest
                    .lines()
                    .filter(|line| !line.to_ascii_lowercase().starts_with("connection:"))
                    .collect::<Vec<_>>()
                    .join("\r\n");
                let forwarded = format!(
                    "{method} {} {version}\r\nconnection: close\r\n{rest}\r\n",
                    if stripped.is_empty() { "/" } else { stripped }
                );
                let mut server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
                server.write_all(forwarded.as_bytes()).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    port
}

#[actix_web::test]
async fn under_a_path_prefix_links_forms_and_cookies_carry_it_through_a_stripping_proxy() {
    let env = TestEnv::new().await;
    let upstream = std::sync::Arc::new(std::sync::OnceLock::new());
    let proxy_port = prefix_stripping_proxy(upstream.clone()).await;
    let public = format!("http://127.0.0.1:{proxy_port}/auth");
    let app = env.spawn_tuned(|settings| settings.public_url = url::Url::parse(&public).unwrap()).await;
    upstream.set(app.address.trim_start_matches("http://").to_owned()).unwrap();
    let proxied = app.via(public.clone());

    let email = unique_email("prefixed");
    assert_eq!(proxied.signup(&email).await.status, StatusCode::ACCEPTED);
    let mail = crate::helpers::wait_for_mail_to(env.smtp(), &email).await;
    let link = mail.first_link().unwrap();
    let path = link.strip_prefix(&public).unwrap_or_else(|| panic!("the link {link} is under {public}"));
    let page = proxied.get(path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    // The form posts where a browser resolves its action: against the page's URL.
    let action = page.text.split("action=\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap().to_owned();
    let page_url = url::Url::parse(&link).unwrap();
    let target = page_url.join(&action).unwrap();
    assert!(target.path().starts_with("/auth/"), "{target}");
    let token = path.split_once("token=").unwrap().1;
    let mut form = vec![("token", token)];
    if page.text.contains("name=\"password\"") {
        form.push(("password", PASSWORD));
    }
    let confirmed = read(app.client.post(target.as_str()).form(&form).send().await.unwrap()).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.text);

    let login = read(
        app.client
            .post(format!("{public}/v1/auth/login"))
            .header("refresh-token-transport", "cookie")
            .json(&json!({ "email": email, "password": PASSWORD }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    // The refresh cookie is a __Host- cookie: Path=/ whatever the prefix (docs/operations.md).
    assert!(refresh_cookie(&login).unwrap().contains("; Path=/;"), "{:?}", refresh_cookie(&login));
    let device = login
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|cookie| cookie.starts_with("flexauth_device="))
        .unwrap();
    assert!(device.contains("Path=/auth/v1/auth/login"), "{device}");
    app.stop().await;
}

/// The single-page application of the Chromium test. It runs in two phases around a reload;
/// each phase reports what it saw to the page's own server (`POST /report`), and the last
/// report is the verdict.
const SPA_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>flexauth SPA</title></head><body>
<pre id="log"></pre>
<script>
const API = "FLEXAUTH";
const seen = JSON.parse(sessionStorage.getItem("seen") || "{}");
async function report(final) {
  // Retried: a connection the page server dropped must not lose the verdict.
  for (let attempt = 0; attempt < 5; attempt += 1) {
    try { await fetch("/report", { method: "POST", body: JSON.stringify({ final, seen }) }); return; } catch (e) {}
  }
}
async function call(path, options) {
  const response = await fetch(API + path, Object.assign({ credentials: "include" }, options));
  let body = null;
  try { body = await response.json(); } catch (e) {}
  return { status: response.status, body };
}
const cookieMode = { "Content-Type": "application/json", "Refresh-Token-Transport": "cookie" };
async function main() {
  if (!sessionStorage.getItem("phase")) {
    const login = await call("/v1/auth/login", { method: "POST", headers: cookieMode, body: JSON.stringify({ email: "EMAIL", password: "PASSWORD" }) });
    seen.login = login.status;
    seen.login_refresh_token = login.body && login.body.data.refresh_token;
    const access = login.body && login.body.data.access_token;
    seen.usage = (await call("/v1/usage", { headers: { Authorization: "Bearer " + access } })).status;
    seen.cookie_visible = document.cookie.includes("flexauth_refresh");
    // Two attackers, now that a session exists: a page of the same site that is not on the
    // allow-list, and a page of another site. Each tries to read the API and posts a form to
    // logout; if either post were honoured, the refresh after the reload would fail.
    // Each frame says when its report is in (a message), then posts its form (a second load).
    // Only the form may time out: without the report the reload would lose it.
    await Promise.all(["STRANGER/", "CROSS_SITE/"].map(src => new Promise(resolve => {
      const frame = document.createElement("iframe");
      let loads = 0, reported = false;
      const done = () => { if (reported && loads >= 2) resolve(); };
      window.addEventListener("message", event => {
        if (event.source === frame.contentWindow && event.data === "reported") { reported = true; setTimeout(resolve, 5000); done(); }
      });
      frame.onload = () => { loads += 1; done(); };
      frame.src = src;
      document.body.appendChild(frame);
    })));
    sessionStorage.setItem("seen", JSON.stringify(seen));
    sessionStorage.setItem("phase", "reloaded");
    await report(false);
    location.reload();
    return;
  }
  // After the reload the page has no token at all: the cookie brings the session back.
  const refreshed = await call("/v1/auth/refresh", { method: "POST", headers: { "Refresh-Token-Transport": "cookie" } });
  seen.refresh_after_reload = refreshed.status;
  seen.refresh_body_token = refreshed.body && refreshed.body.data.refresh_token;
  const access = refreshed.body && refreshed.body.data.access_token;
  seen.usage_after_reload = (await call("/v1/usage", { headers: { Authorization: "Bearer " + access } })).status;
  seen.cookie_visible_after_reload = document.cookie.includes("flexauth_refresh");
  seen.logout = (await call("/v1/auth/logout", { method: "POST", headers: { "Refresh-Token-Transport": "cookie" } })).status;
  seen.refresh_after_logout = (await call("/v1/auth/refresh", { method: "POST", headers: { "Refresh-Token-Transport": "cookie" } })).status;
  await report(true);
}
main().catch(async (error) => { seen.error = String(error); await report(true); });
</script></body></html>"#;

/// A page of an origin that is not on the allow-list, framed by the SPA: its scripts try the
/// same API and report whether they could read anything.
const STRANGER_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>stranger</title></head><body>
<form id="attack" method="post" action="FLEXAUTH/v1/auth/logout" enctype="text/plain"><input name='{"scope":"current","x":"' value='"}'></form>
<script>
const attempt = (path, options) => fetch("FLEXAUTH" + path, Object.assign({ credentials: "include" }, options))
  .then(response => response.text().then(() => "read"))
  .catch(() => "blocked");
Promise.all([
  attempt("/healthz"),
  attempt("/v1/auth/logout", { method: "POST", headers: { "Refresh-Token-Transport": "cookie" } }),
]).then(async ([read, logout]) => {
  // The report is retried: a connection the page server dropped must not lose the verdict.
  for (let attempt = 0; attempt < 5; attempt += 1) {
    try { await fetch("/report", { method: "POST", body: JSON.stringify({ read, logout }) }); break; } catch (e) {}
  }
}).finally(() => { parent.postMessage("reported", "*"); document.getElementById("attack").submit(); });
</script></body></html>"#;

pub(crate) type Shared<T> = std::sync::Arc<std::sync::Mutex<T>>;

/// Serves `page` (set once every address is known) at `/` and collects the bodies posted to
/// `/report`.
pub(crate) async fn page_server(host: &str, page: Shared<String>, reports: Shared<Vec<Value>>) -> String {
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind((host, 0)).await.unwrap();
    let origin = format!("http://{host}:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let (page, reports) = (page.clone(), reports.clone());
            tokio::spawn(async move {
                let mut stream = tokio::io::BufReader::new(stream);
                let mut request_line = String::new();
                if stream.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                    return;
                }
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if stream.read_line(&mut line).await.is_err() {
                        return;
                    }
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                if stream.read_exact(&mut body).await.is_err() {
                    return;
                }
                let answer = if request_line.starts_with("POST /report") {
                    reports.lock().unwrap().push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                    "HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n".to_owned()
                } else if request_line.starts_with("GET / ") {
                    let page = page.lock().unwrap().clone();
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: \
                        {}\r\nconnection: close\r\n\r\n{page}",
                        page.len()
                    )
                } else {
                    "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned()
                };
                let _ = stream.get_mut().write_all(answer.as_bytes()).await;
            });
        }
    });
    origin
}

/// The single-page application in headless Chromium. Skipped unless `FLEXAUTH_TEST_CHROMIUM`
/// names the browser (`scripts/browser-up` installs it and CI sets it, with
/// FLEXAUTH_TEST_REQUIRE_CHROMIUM).
#[actix_web::test]
async fn a_single_page_app_on_an_allowed_origin_logs_in_refreshes_through_the_cookie_and_logs_out_in_chromium() {
    let Some(chromium) = std::env::var_os("FLEXAUTH_TEST_CHROMIUM").filter(|path| !path.is_empty()) else {
        flexauth_store::test_db::skip(
            "the Chromium test",
            "FLEXAUTH_TEST_CHROMIUM is not set (scripts/browser-up)",
            Some("FLEXAUTH_TEST_REQUIRE_CHROMIUM"),
        );
        return;
    };
    let env = TestEnv::new().await;
    let (spa_page, spa_reports) = (Shared::default(), Shared::default());
    let (stranger_page, stranger_reports) = (Shared::default(), Shared::default());
    let cross_site_reports = Shared::default();
    // flexauth, the SPA and the stranger are on 127.0.0.1, on other ports: other origins of
    // the same site, as an application on app.example.com and flexauth on auth.example.com
    // would be. 127.0.0.2 is another site.
    let spa_origin = page_server("127.0.0.1", spa_page.clone(), spa_reports.clone()).await;
    let stranger_origin = page_server("127.0.0.1", stranger_page.clone(), stranger_reports.clone()).await;
    let cross_site_origin = page_server("127.0.0.2", stranger_page.clone(), cross_site_reports.clone()).await;
    let app = env.spawn_with(&["--cors-origins", &spa_origin]).await;
    let email = unique_email("spa");
    app.verified_login(&env, &email).await;
    *spa_page.lock().unwrap() = SPA_PAGE
        .replace("FLEXAUTH", &app.address)
        .replace("STRANGER", &stranger_origin)
        .replace("CROSS_SITE", &cross_site_origin)
        .replace("EMAIL", &email)
        .replace("PASSWORD", PASSWORD);
    *stranger_page.lock().unwrap() = STRANGER_PAGE.replace("FLEXAUTH", &app.address);

    let profile = tempfile::tempdir().unwrap();
    let browser = tokio::process::Command::new(&chromium)
        // One renderer process for every frame: virtual time (the budget below) does not wait
        // for frames of other sites in processes of their own, and the budget could run out
        // while one of them was still at work. Cookie and CORS rules do not depend on it.
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--disable-site-isolation-trials",
        ])
        .args(["--disable-features=IsolateOrigins,site-per-process", "--virtual-time-budget=30000"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("{spa_origin}/"))
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(120), browser)
        .await
        .expect("Chromium finished")
        .expect("Chromium ran");
    let verdict = spa_reports.lock().unwrap().iter().find(|report| report["final"] == true).cloned();
    let verdict = verdict.unwrap_or_else(|| {
        panic!(
            "the SPA never finished; it reported {:?}, the attackers {:?} and {:?}; Chromium said: {}",
            spa_reports.lock().unwrap(),
            stranger_reports.lock().unwrap(),
            cross_site_reports.lock().unwrap(),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let seen = &verdict["seen"];
    assert_eq!(seen.get("error"), None, "{seen}");
    assert_eq!(seen["login"], 200, "{seen}");
    assert_eq!(seen["login_refresh_token"], Value::Null, "the page never holds the refresh token: {seen}");
    assert_eq!(seen["usage"], 200, "{seen}");
    assert_eq!(seen["cookie_visible"], false, "document.cookie does not show it: {seen}");
    assert_eq!(seen["refresh_after_reload"], 200, "the cookie survives the reload and both attackers' logouts: {seen}");
    assert_eq!(seen["refresh_body_token"], Value::Null, "{seen}");
    assert_eq!(seen["usage_after_reload"], 200, "{seen}");
    assert_eq!(seen["cookie_visible_after_reload"], false, "{seen}");
    assert_eq!(seen["logout"], 204, "{seen}");
    assert_eq!(seen["refresh_after_logout"], 401, "{seen}");
    for (who, reports) in [("same site, not allowed", &stranger_reports), ("another site", &cross_site_reports)] {
        let report = reports.lock().unwrap().first().cloned().unwrap_or_else(|| panic!("the {who} page reported"));
        assert_eq!(
            (report["read"].as_str(), report["logout"].as_str()),
            (Some("blocked"), Some("blocked")),
            "{who}: {report}"
        );
    }
    app.stop().await;
}
