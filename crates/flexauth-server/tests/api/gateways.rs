//! The gateway configurations of docs/protecting-your-api.md, run: Debian's nginx
//! (`auth_request`) and Caddy (`forward_auth`) in front of a small upstream, asking a live
//! flexauth. What the upstream receives, and what the client gets back, is what is asserted.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::check::{key_with_scopes, SCOPES};
use crate::helpers::{read, unique_email, Reply, TestApp, TestEnv};

const PAGE: &str = include_str!("../../../../docs/protecting-your-api.md");

/// The first block of `language` in the page.
fn page_block(language: &str) -> String {
    let opening = format!("```{language}\n");
    let start = PAGE.find(&opening).unwrap_or_else(|| panic!("docs/protecting-your-api.md has a {language} block"));
    let rest = &PAGE[start + opening.len()..];
    rest[..rest.find("```").unwrap()].to_owned()
}

/// The path of the tool `variable` names, or why the test cannot run.
fn tool(variable: &str) -> Option<String> {
    match std::env::var(variable).ok().filter(|path| !path.is_empty()) {
        Some(path) => Some(path),
        None => {
            flexauth_store::test_db::skip(
                "a gateway test",
                &format!("{variable} is not set (scripts/gateways-up)"),
                Some("FLEXAUTH_TEST_REQUIRE_GATEWAYS"),
            );
            None
        }
    }
}

/// The upstream: answers every request with the `x-flexauth-*` headers it received, and keeps
/// the path of each request that reached it.
struct Upstream {
    address: String,
    reached: Arc<Mutex<Vec<String>>>,
}

async fn upstream() -> Upstream {
    let reached = Arc::new(Mutex::new(Vec::new()));
    let seen = reached.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let server = actix_web::HttpServer::new(move || {
        let seen = seen.clone();
        actix_web::App::new().default_service(actix_web::web::to(move |request: actix_web::HttpRequest| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(request.path().to_owned());
                let mut identity = serde_json::Map::new();
                for (name, value) in request.headers() {
                    if name.as_str().starts_with("x-flexauth-") {
                        identity.insert(name.as_str().to_owned(), json!(value.to_str().unwrap_or("<not text>")));
                    }
                }
                actix_web::HttpResponse::Ok().json(json!({ "path": request.path(), "identity": identity }))
            }
        }))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    Upstream { address, reached }
}

/// A gateway process, stopped when dropped.
struct Gateway {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

/// Stops the gateway as its operator would (SIGTERM): nginx's master then ends its workers. A
/// SIGKILL would end the master alone and leave each worker behind, still listening on the
/// test's port, for as long as the machine runs.
impl Drop for Gateway {
    fn drop(&mut self) {
        let _ =
            rustix::process::kill_process(rustix::process::Pid::from_child(&self.child), rustix::process::Signal::TERM);
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The page's configuration with its addresses replaced by the test's.
fn localised(config: &str, flexauth: &TestApp, upstream: &Upstream) -> String {
    let flexauth = flexauth.address.trim_start_matches("http://");
    config.replace("127.0.0.1:8080", flexauth).replace("127.0.0.1:3000", &upstream.address)
}

/// Waits until `gateway` listens; `Err` with its log when it ended first.
async fn wait_until_listening(gateway: &mut Gateway, log: &std::path::Path) -> Result<(), String> {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(&gateway.address).await.is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = gateway.child.try_wait() {
            return Err(format!(
                "the gateway ended with {status}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the gateway never listened: {}", std::fs::read_to_string(log).unwrap_or_default());
}

/// Starts a gateway with `start` on a free port until one listens: the port was free when it
/// was chosen, but another process of the suite may take it before the gateway binds it.
async fn started(mut start: impl FnMut(u16) -> (Gateway, std::path::PathBuf)) -> Gateway {
    for attempt in 1..=3 {
        let (mut gateway, log) = start(free_port());
        match wait_until_listening(&mut gateway, &log).await {
            Ok(()) => return gateway,
            Err(ended) if attempt < 3 && ended.to_lowercase().contains("address already in use") => continue,
            Err(ended) => panic!("{ended}"),
        }
    }
    unreachable!("the last attempt returns or panics")
}

async fn nginx(binary: &str, flexauth: &TestApp, upstream: &Upstream) -> Gateway {
    let block = localised(&page_block("nginx"), flexauth, upstream);
    started(|port| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().display().to_string();
        let site = block.replace("listen 80;", &format!("listen 127.0.0.1:{port};"));
        // As root, nginx's workers would run as nobody, who cannot read the test's directory.
        let user = if rustix::process::geteuid().is_root() { "user root;" } else { "" };
        let config = format!(
            "{user}\nworker_processes 1;\nerror_log {root}/error.log warn;\npid {root}/nginx.pid;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n access_log off;\n client_body_temp_path {root}/body;\n proxy_temp_path {root}/proxy;\n \
             fastcgi_temp_path {root}/fastcgi;\n uwsgi_temp_path {root}/uwsgi;\n scgi_temp_path {root}/scgi;\n{site}\n}}\n"
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, config).unwrap();
        let child = Command::new(binary)
            .args(["-p", &root, "-c", &path.display().to_string(), "-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let log = dir.path().join("error.log");
        (Gateway { child, address: format!("127.0.0.1:{port}"), _dir: dir }, log)
    })
    .await
}

async fn caddy(binary: &str, flexauth: &TestApp, upstream: &Upstream) -> Gateway {
    let block = localised(&page_block("caddyfile"), flexauth, upstream);
    started(|port| {
        let dir = tempfile::tempdir().unwrap();
        let site = block.replace("api.example.com {", &format!("http://127.0.0.1:{port} {{"));
        let config = format!("{{\n\tadmin off\n}}\n\n{site}");
        let path = dir.path().join("Caddyfile");
        std::fs::write(&path, config).unwrap();
        let log = dir.path().join("caddy.log");
        let child = Command::new(binary)
            .args(["run", "--adapter", "caddyfile", "--config", &path.display().to_string()])
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("caddy starts");
        (Gateway { child, address: format!("127.0.0.1:{port}"), _dir: dir }, log)
    })
    .await
}

/// A request to the API behind `gateway`, with `credential` and any `extra` headers.
async fn call(gateway: &Gateway, path: &str, credential: Option<&str>, extra: &[(&str, &str)]) -> Reply {
    let client = reqwest::Client::new();
    let mut request = client.get(format!("http://{}{path}", gateway.address));
    if let Some(credential) = credential {
        request = request.bearer_auth(credential);
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    read(request.send().await.unwrap()).await
}

fn challenge(reply: &Reply) -> String {
    reply.headers.get("www-authenticate").map(|value| value.to_str().unwrap().to_owned()).unwrap_or_default()
}

/// The whole walk through one gateway: who passes, what the upstream learns, who is refused
/// and how.
async fn a_gateway_passes_people_and_servers_and_refuses_the_rest(
    gateway: &Gateway,
    upstream: &Upstream,
    app: &TestApp,
    env: &TestEnv,
    name: &str,
) {
    let login = app.verified_login(env, &unique_email(name)).await;
    let jwt = login["access_token"].as_str().unwrap();
    let usage = app.get_with_bearer("/v1/usage", jwt).await.body["data"].clone();
    let account = usage["account_id"].as_str().unwrap();
    let (key, key_id) = key_with_scopes(app, jwt, name, &["invoices:read"]).await;
    let (reports_key, _) = key_with_scopes(app, jwt, &format!("{name} reports"), &["reports:read"]).await;
    let (revoked, revoked_id) = key_with_scopes(app, jwt, &format!("{name} revoked"), &["invoices:read"]).await;
    assert_eq!(app.delete_with_bearer(&format!("/v1/api-keys/{revoked_id}"), jwt).await.status, StatusCode::NO_CONTENT);

    // A person, with a forged identity header beside a valid token: the upstream gets the
    // token's owner, and no key id.
    let forged = [("x-flexauth-account-id", "00000000-0000-4000-8000-000000000000"), ("x-flexauth-key-id", "forged")];
    let person = call(gateway, "/reports/1", Some(jwt), &forged).await;
    assert_eq!(person.status, StatusCode::OK, "{name}: {}", person.text);
    let identity = &person.body["identity"];
    assert_eq!(identity["x-flexauth-account-id"], account, "{name}: {identity}");
    assert_eq!(identity["x-flexauth-auth-method"], "jwt", "{name}");
    assert_eq!(identity["x-flexauth-session-id"], usage["session_id"], "{name}");
    // Absent (nginx drops an empty header) or empty (Caddy copies it): never the forged one.
    assert!(
        identity.get("x-flexauth-key-id").is_none_or(|value| value == ""),
        "{name}: the forged key id is dropped: {identity}"
    );
    assert_eq!(identity["x-flexauth-scopes"], "invoices:read invoices:write reports:read", "{name}");
    assert_eq!(call(gateway, "/invoices/7", Some(jwt), &[]).await.status, StatusCode::OK, "{name}");

    // A server, on the route that needs invoices:read.
    let server = call(gateway, "/invoices/7", Some(&key), &forged).await;
    assert_eq!(server.status, StatusCode::OK, "{name}: {}", server.text);
    let identity = &server.body["identity"];
    assert_eq!(identity["x-flexauth-account-id"], account, "{name}: {identity}");
    assert_eq!(identity["x-flexauth-auth-method"], "api_key", "{name}");
    assert_eq!(identity["x-flexauth-key-id"], key_id.as_str(), "{name}");
    assert!(identity.get("x-flexauth-session-id").is_none_or(|value| value == ""), "{name}: {identity}");
    assert_eq!(identity["x-flexauth-scopes"], "invoices:read", "{name}");
    let reached = upstream.reached.lock().unwrap().len();

    // The refused: none reaches the upstream, each gets flexauth's status and challenge.
    let missing = call(gateway, "/reports/1", None, &forged).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED, "{name}: no credential");
    assert_eq!(challenge(&missing), r#"Bearer realm="flexauth""#, "{name}");
    for (what, credential) in [("a bad token", "not-a-token"), ("a revoked key", revoked.as_str())] {
        let refused = call(gateway, "/reports/1", Some(credential), &[]).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{name}: {what}");
        let text = challenge(&refused);
        assert!(text.starts_with(r#"Bearer realm="flexauth", error="invalid_token""#), "{name}: {what}: {text}");
    }
    let lacking = call(gateway, "/invoices/7", Some(&reports_key), &[]).await;
    assert_eq!(lacking.status, StatusCode::FORBIDDEN, "{name}: a key without invoices:read: {}", lacking.text);
    let text = challenge(&lacking);
    assert!(
        text.contains(r#"error="insufficient_scope""#) && text.ends_with(r#"scope="invoices:read""#),
        "{name}: {text}"
    );
    assert_eq!(upstream.reached.lock().unwrap().len(), reached, "{name}: a refused request reached the upstream");

    // A logout is refused through the gateway within a second, as everywhere.
    assert_eq!(app.post_with_bearer("/v1/auth/logout", jwt).await.status, StatusCode::NO_CONTENT);
    assert_eq!(
        call(gateway, "/reports/1", Some(jwt), &[]).await.status,
        StatusCode::UNAUTHORIZED,
        "{name}: logged out"
    );
}

#[actix_web::test]
async fn nginx_with_auth_request_as_the_page_configures_it() {
    let Some(binary) = tool("FLEXAUTH_TEST_NGINX") else { return };
    let env = TestEnv::new().await;
    let app = env.spawn_with(&[SCOPES]).await;
    let upstream = upstream().await;
    let gateway = nginx(&binary, &app, &upstream).await;
    a_gateway_passes_people_and_servers_and_refuses_the_rest(&gateway, &upstream, &app, &env, "nginx").await;
    app.stop().await;
}

#[actix_web::test]
async fn caddy_with_forward_auth_as_the_page_configures_it() {
    let Some(binary) = tool("FLEXAUTH_TEST_CADDY") else { return };
    let env = TestEnv::new().await;
    let app = env.spawn_with(&[SCOPES]).await;
    let upstream = upstream().await;
    let gateway = caddy(&binary, &app, &upstream).await;
    a_gateway_passes_people_and_servers_and_refuses_the_rest(&gateway, &upstream, &app, &env, "caddy").await;
    // Caddy passes flexauth's answer through whole: the JSON error too.
    let refused = call(&gateway, "/reports/1", Some("not-a-token"), &[]).await;
    assert_eq!(refused.body["error"]["code"], "invalid_token", "{}", refused.text);
    app.stop().await;
}

#[test]
fn the_page_shows_the_identity_headers_flexauth_sends() {
    for header in [
        "X-Flexauth-Account-Id",
        "X-Flexauth-Auth-Method",
        "X-Flexauth-Session-Id",
        "X-Flexauth-Key-Id",
        "X-Flexauth-Scopes",
    ] {
        let lower = header.to_ascii_lowercase().replace('-', "_");
        assert!(page_block("caddyfile").contains(header), "{header}");
        assert!(page_block("nginx").contains(&format!("$upstream_http_{lower}")), "{header}");
    }
}
