//! Webhooks through the real server: endpoints added with the `flexauth webhooks` commands, a
//! receiver that verifies every delivery with the official Standard Webhooks library, events
//! of every type once per change, a receiver down and back, a restart, two instances, a
//! receiver that hangs, and a secret rotation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flexauth_domain::system::Clock as _;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{
    confirm_in_browser, eventually, token_of, unique_email, wait_for_subject, TestClock, TestEnv, PASSWORD,
};
use crate::lifecycle::{flexauth, flexauth_with};
use crate::mfa::code_at;

/// What the receiver answers.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    /// 204 to every message it verifies.
    Accept = 0,
    /// 503 to everything.
    Fail = 1,
    /// Reads the message and never answers.
    Hang = 2,
}

/// A message the receiver verified.
#[derive(Clone, Debug)]
struct Delivery {
    id: String,
    body: Value,
    /// The indices of the secrets that verify it.
    verified_by: Vec<usize>,
}

#[derive(Default)]
struct ReceiverState {
    secrets: Mutex<Vec<String>>,
    mode: AtomicU8,
    deliveries: Mutex<Vec<Delivery>>,
    refused: Mutex<Vec<String>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// An HTTP/1.1 receiver on loopback, as an operator's application would run one.
struct Receiver {
    port: u16,
    state: Arc<ReceiverState>,
}

impl Receiver {
    async fn start(secrets: &[&str]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(ReceiverState::default());
        *state.secrets.lock().unwrap() = secrets.iter().map(|secret| (*secret).to_owned()).collect();
        let receiver = Self { port, state };
        receiver.serve(listener);
        receiver
    }

    fn serve(&self, listener: TcpListener) {
        let state = self.state.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let connection = tokio::spawn(handle(stream, state.clone()));
                state.tasks.lock().unwrap().push(connection);
            }
        });
        self.state.tasks.lock().unwrap().push(accepting);
    }

    /// Closes the listener and every connection: flexauth's connections are refused.
    fn stop(&self) {
        for task in self.state.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Listens again on the same port.
    async fn restart(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.serve(listener);
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/flexauth", self.port)
    }

    fn set_mode(&self, mode: Mode) {
        self.state.mode.store(mode as u8, Ordering::SeqCst);
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.state.deliveries.lock().unwrap().clone()
    }

    fn refused(&self) -> Vec<String> {
        self.state.refused.lock().unwrap().clone()
    }

    /// Waits until deliveries hold `count` messages with distinct ids.
    async fn wait_for(&self, count: usize, attempts: impl FnOnce() -> Value) -> Vec<Delivery> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let deliveries = self.deliveries();
            let distinct: std::collections::HashSet<_> =
                deliveries.iter().map(|delivery| delivery.id.clone()).collect();
            if distinct.len() >= count {
                return deliveries;
            }
            if std::time::Instant::now() > deadline {
                let counts: HashMap<String, usize> =
                    by_type(&deliveries).into_iter().map(|(kind, data)| (kind, data.len())).collect();
                panic!(
                    "timed out waiting for {count} webhook messages; {} came: {counts:#?}; refused: {:?}; the attempts \
                        flexauth lists: {:#}",
                    distinct.len(),
                    self.refused(),
                    attempts()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Serves one connection: each request is verified with every secret, by the official
/// Standard Webhooks library, and answered as the mode says.
async fn handle(mut stream: TcpStream, state: Arc<ReceiverState>) {
    let mut buffer = Vec::new();
    loop {
        let head_end = loop {
            if let Some(at) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(read) => buffer.extend_from_slice(&chunk[..read]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        let mut headers = http::HeaderMap::new();
        for line in head.lines().skip(1).filter(|line| !line.is_empty()) {
            let (name, value) = line.split_once(':').unwrap();
            headers
                .append(http::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(), value.trim().parse().unwrap());
        }
        let length: usize = headers.get("content-length").map_or(0, |value| value.to_str().unwrap().parse().unwrap());
        while buffer.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(read) => buffer.extend_from_slice(&chunk[..read]),
            }
        }
        let body = buffer[head_end..head_end + length].to_vec();
        buffer.drain(..head_end + length);
        let mode = state.mode.load(Ordering::SeqCst);
        if mode == Mode::Hang as u8 {
            std::future::pending::<()>().await;
        }
        let answer: &[u8] = if mode == Mode::Fail as u8 {
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 20\r\n\r\ndown for maintenance"
        } else {
            let secrets = state.secrets.lock().unwrap().clone();
            let verified_by: Vec<usize> = secrets
                .iter()
                .enumerate()
                .filter(|(_, secret)| standardwebhooks::Webhook::new(secret).unwrap().verify(&body, &headers).is_ok())
                .map(|(index, _)| index)
                .collect();
            let id = headers.get("webhook-id").map(|id| id.to_str().unwrap().to_owned()).unwrap_or_default();
            if verified_by.is_empty() {
                state.refused.lock().unwrap().push(id);
                b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n"
            } else {
                let body = serde_json::from_slice(&body).unwrap();
                state.deliveries.lock().unwrap().push(Delivery { id, body, verified_by });
                b"HTTP/1.1 204 No Content\r\n\r\n"
            }
        };
        if stream.write_all(answer).await.is_err() {
            return;
        }
    }
}

/// Adds an endpoint with `flexauth webhooks add`; returns its id and secret.
fn add_endpoint(env: &TestEnv, url: &str, events: &str) -> (String, String) {
    let (ok, printed, stderr) = flexauth_with(
        env,
        &["webhooks", "add", url, "--events", events],
        &[("FLEXAUTH_WEBHOOKS_ALLOW_PRIVATE", "true")],
    );
    assert!(ok, "{stderr}");
    (printed["id"].as_str().unwrap().to_owned(), printed["secret"].as_str().unwrap().to_owned())
}

const ALLOW_PRIVATE: &[&str] = &["--webhooks-allow-private", "true"];

/// Retries within a second instead of after five: the tests wait for them.
fn quick_retries(settings: &mut flexauth_server::config::Settings) {
    settings.webhook_delivery.retry_delays = vec![std::time::Duration::from_millis(300).try_into().unwrap(); 20];
}

/// The `sid` of an access token, read without checking it (other tests check signatures).
fn session_id(token: &str) -> String {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["sid"].as_str().unwrap().to_owned()
}

/// The deliveries of each type.
fn by_type(deliveries: &[Delivery]) -> HashMap<String, Vec<Value>> {
    let mut types: HashMap<String, Vec<Value>> = HashMap::new();
    for delivery in deliveries {
        types
            .entry(delivery.body["type"].as_str().unwrap().to_owned())
            .or_default()
            .push(delivery.body["data"].clone());
    }
    types
}

fn ids_are_unique(deliveries: &[Delivery]) {
    let mut seen = HashMap::new();
    for delivery in deliveries {
        if let Some(earlier) = seen.insert(delivery.id.clone(), delivery.body.clone()) {
            panic!("webhook-id {} delivered twice: {earlier} and {}", delivery.id, delivery.body);
        }
    }
}

#[actix_web::test]
async fn every_event_type_reaches_the_receiver_once_per_change_signed_as_standard_webhooks_says() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start(&[]).await;
    let (endpoint, secret) = add_endpoint(&env, &receiver.url(), "*");
    *receiver.state.secrets.lock().unwrap() = vec![secret];
    let clock = Arc::new(TestClock::default());
    let app = env.spawn_with_clock(ALLOW_PRIVATE, clock.clone()).await;
    let (email, moved) = (unique_email("hooked"), unique_email("hooked-moved"));

    // Sign-up, confirmation, login: account.created, account.verified, session.created.
    let first = app.verified_login(&env, &email).await;
    let access = first["access_token"].as_str().unwrap().to_owned();
    let me = app.get_with_bearer("/v1/auth/me", &access).await;
    let account_id = me.body["data"]["id"].as_str().unwrap().to_owned();
    let second = app.login(&email).await.body["data"].clone();

    // A key made and revoked, and one that ends with the account.
    let key = app.post_json_with_bearer("/v1/api-keys", &access, json!({ "name": "billing" })).await;
    assert_eq!(key.status, StatusCode::CREATED, "{}", key.text);
    let key_id = key.body["data"]["id"].as_str().unwrap().to_owned();
    let revoked = app.delete_with_bearer(&format!("/v1/api-keys/{key_id}"), &access).await;
    assert!(revoked.status.is_success(), "{}", revoked.text);
    let kept = app.post_json_with_bearer("/v1/api-keys", &access, json!({ "name": "ci" })).await;
    let kept_id = kept.body["data"]["id"].as_str().unwrap().to_owned();

    // A password change ends the other session; a logout the caller's.
    let changed = app
        .post_json_with_bearer(
            "/v1/auth/password/change",
            &access,
            json!({ "current_password": PASSWORD, "new_password": "a changed passphrase" }),
        )
        .await;
    assert_eq!(changed.status, StatusCode::NO_CONTENT, "{}", changed.text);
    assert_eq!(app.post_with_bearer("/v1/auth/logout", &access).await.status, StatusCode::NO_CONTENT);

    // A reset ends every session.
    let third = app.post("/v1/auth/login", json!({ "email": email, "password": "a changed passphrase" })).await;
    assert_eq!(third.status, StatusCode::OK);
    assert_eq!(app.post("/v1/auth/password/forgot", json!({ "email": email })).await.status, StatusCode::ACCEPTED);
    let reset_mail = wait_for_subject(env.smtp(), &email, "Reset your password").await;
    let reset =
        app.post("/v1/auth/password/reset", json!({ "token": token_of(&reset_mail), "password": PASSWORD })).await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.text);

    // A spent refresh token after the grace window ends its session.
    let fourth = app.login(&email).await.body["data"].clone();
    let spent = fourth["refresh_token"].as_str().unwrap();
    assert_eq!(app.refresh(spent).await.status, StatusCode::OK);
    clock.advance(time::Duration::seconds(10));
    assert_eq!(app.refresh(spent).await.code(), "refresh_token_reused");

    // The address moves.
    let fifth = app.login(&email).await.body["data"].clone();
    let fifth_access = fifth["access_token"].as_str().unwrap();
    let asked = app.post_json_with_bearer("/v1/auth/email/change", fifth_access, json!({ "new_email": moved })).await;
    assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.text);
    let confirmation = wait_for_subject(env.smtp(), &moved, "Confirm your new email address").await;
    confirm_in_browser(&app, &confirmation, PASSWORD).await;

    // A second factor: added, a recovery code spent at a login, new codes, removed.
    let enrolment = app.post_json_with_bearer("/v1/auth/mfa/totp", fifth_access, json!({ "name": "phone" })).await;
    assert_eq!(enrolment.status, StatusCode::CREATED, "{}", enrolment.text);
    let totp = enrolment.body["data"]["secret"].as_str().unwrap().to_owned();
    let factor_id = enrolment.body["data"]["factor_id"].as_str().unwrap().to_owned();
    let confirmed = app
        .post_json_with_bearer(
            &format!("/v1/auth/mfa/totp/{factor_id}/confirm"),
            fifth_access,
            json!({ "code": code_at(&totp, clock.now()) }),
        )
        .await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.text);
    let codes = confirmed.body["data"]["recovery_codes"].as_array().unwrap().clone();
    let challenge = app.login(&moved).await;
    assert_eq!(challenge.code(), "mfa_required");
    let sixth = app
        .post(
            "/v1/auth/login/mfa",
            json!({ "mfa_token": challenge.body["error"]["mfa_token"], "recovery_code": codes[0] }),
        )
        .await;
    assert_eq!(sixth.status, StatusCode::OK, "{}", sixth.text);
    let sixth_access = sixth.body["data"]["access_token"].as_str().unwrap();
    assert_eq!(app.post_with_bearer("/v1/auth/mfa/recovery-codes", sixth_access).await.status, StatusCode::OK);
    let removed = app.delete_with_bearer(&format!("/v1/auth/mfa/{factor_id}"), sixth_access).await;
    assert!(removed.status.is_success(), "{}", removed.text);

    // Delivered before the account goes: an erasure takes the address out of the messages
    // still waiting.
    receiver.wait_for(22, || flexauth(&env, &["webhooks", "deliveries", &endpoint]).1).await;

    // The operator disables, enables and deletes the account.
    for command in ["disable", "enable", "delete"] {
        let (ok, _, stderr) = flexauth(&env, &["accounts", command, &account_id]);
        assert!(ok, "{command}: {stderr}");
    }

    // Sessions: first, second, third, fourth, fifth, sixth made; each ended once.
    let expected = [
        ("account.created", 1),
        ("account.verified", 1),
        ("account.email_changed", 1),
        ("account.disabled", 1),
        ("account.enabled", 1),
        ("account.deleted", 1),
        ("session.created", 6),
        ("session.ended", 6),
        ("password.changed", 1),
        ("password.reset", 1),
        ("api_key.created", 2),
        ("api_key.revoked", 2),
        ("mfa.factor_added", 1),
        ("mfa.factor_removed", 1),
        ("mfa.recovery_code_used", 1),
        ("mfa.recovery_codes_regenerated", 1),
    ];
    let total = expected.iter().map(|(_, count)| count).sum();
    let deliveries = receiver.wait_for(total, || flexauth(&env, &["webhooks", "deliveries", &endpoint]).1).await;
    // Nothing more comes: a moment later the count is the same.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let deliveries = {
        let again = receiver.deliveries();
        assert_eq!(again.len(), deliveries.len(), "no extra message: {:#?}", &again[deliveries.len()..]);
        again
    };
    ids_are_unique(&deliveries);
    assert!(receiver.refused().is_empty(), "every message verified");
    let types = by_type(&deliveries);
    for (kind, count) in expected {
        assert_eq!(types.get(kind).map_or(0, Vec::len), count, "{kind}: {:#?}", types.get(kind));
    }
    assert_eq!(types.len(), expected.len(), "{:?}", types.keys());

    // The data: ids, the address where the event is about it, the client; nothing secret.
    for data in deliveries.iter().map(|delivery| &delivery.body["data"]) {
        assert_eq!(data["account_id"], account_id.as_str(), "{data}");
    }
    assert_eq!(types["account.created"][0]["email"], email.as_str());
    assert_eq!(types["account.verified"][0]["email"], email.as_str());
    assert_eq!(types["account.email_changed"][0]["email"], moved.as_str());
    assert_eq!(types["session.created"][0]["ip"], "127.0.0.1");
    let mut reasons: Vec<&str> = types["session.ended"].iter().map(|data| data["reason"].as_str().unwrap()).collect();
    reasons.sort_unstable();
    assert_eq!(
        reasons,
        ["account_disabled", "account_disabled", "logout", "password_change", "password_reset", "refresh_token_reuse"]
    );
    for (reason, session) in [("password_change", &second), ("logout", &first), ("refresh_token_reuse", &fourth)] {
        let sid = session_id(session["access_token"].as_str().unwrap());
        assert!(
            types["session.ended"].iter().any(|data| data["reason"] == reason && data["session_id"] == sid.as_str()),
            "{reason} for {sid}: {:#?}",
            types["session.ended"]
        );
    }
    let key_reasons: HashMap<&str, &str> = types["api_key.revoked"]
        .iter()
        .map(|data| (data["key_id"].as_str().unwrap(), data["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(key_reasons, HashMap::from([(key_id.as_str(), "revoked"), (kept_id.as_str(), "account_disabled")]));
    assert_eq!(types["mfa.factor_added"][0]["factor_id"], factor_id.as_str());
    assert_eq!(types["mfa.factor_removed"][0]["factor_id"], factor_id.as_str());
    let everything =
        serde_json::to_string(&deliveries.iter().map(|delivery| &delivery.body).collect::<Vec<_>>()).unwrap();
    for secret in [PASSWORD, "a changed passphrase", spent, &totp, codes[0].as_str().unwrap(), &token_of(&reset_mail)] {
        assert!(!everything.contains(secret), "a message holds a secret");
    }
    for token in ["fo_live_", "token=", "whsec_"] {
        assert!(!everything.contains(token), "a message holds {token}");
    }
    app.stop().await;
}

#[actix_web::test]
async fn a_receiver_down_then_back_a_restart_and_two_instances_lose_nothing_and_repeat_nothing() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start(&[]).await;
    let (endpoint, secret) = add_endpoint(&env, &receiver.url(), "account.created");
    *receiver.state.secrets.lock().unwrap() = vec![secret];
    receiver.stop();
    let first = env.spawn_configured(ALLOW_PRIVATE, quick_retries, Arc::new(TestClock::default())).await;
    let mut addresses = Vec::new();
    for index in 0..5 {
        let email = unique_email(&format!("while-down-{index}"));
        assert_eq!(first.signup(&email).await.status, StatusCode::ACCEPTED);
        addresses.push(email);
    }
    // The receiver refuses connections: every message is tried and rescheduled.
    let attempts = eventually("failed attempts for every sign-up", || {
        let listed = flexauth(&env, &["webhooks", "deliveries", &endpoint]).1;
        let failed: std::collections::HashSet<String> = listed
            .as_array()?
            .iter()
            .filter(|attempt| attempt["outcome"] == "retrying")
            .map(|attempt| attempt["webhook_id"].as_str().unwrap().to_owned())
            .collect();
        (failed.len() >= 5).then_some(listed)
    })
    .await;
    assert!(attempts[0]["error"].as_str().unwrap().contains("onnection refused"), "{attempts:#}");
    let (_, listed, _) = flexauth(&env, &["webhooks", "list"]);
    assert_eq!(listed[0]["state"], "failing", "{listed:#}");

    // flexauth restarts while the receiver is still down; more sign-ups meanwhile.
    first.stop().await;
    let first = env.spawn_configured(ALLOW_PRIVATE, quick_retries, Arc::new(TestClock::default())).await;
    let second = env.spawn_configured(ALLOW_PRIVATE, quick_retries, Arc::new(TestClock::default())).await;
    for index in 0..10 {
        let email = unique_email(&format!("two-instances-{index}"));
        let instance = if index % 2 == 0 { &first } else { &second };
        assert_eq!(instance.signup(&email).await.status, StatusCode::ACCEPTED);
        addresses.push(email);
    }

    // The receiver comes back: every event arrives, none twice, whichever instance sent it.
    receiver.restart().await;
    let deliveries =
        receiver.wait_for(addresses.len(), || flexauth(&env, &["webhooks", "deliveries", &endpoint]).1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let deliveries = {
        let again = receiver.deliveries();
        assert_eq!(again.len(), deliveries.len(), "no message came twice");
        again
    };
    ids_are_unique(&deliveries);
    let mut received: Vec<&str> =
        deliveries.iter().map(|delivery| delivery.body["data"]["email"].as_str().unwrap()).collect();
    received.sort_unstable();
    addresses.sort_unstable();
    assert_eq!(received, addresses.iter().map(String::as_str).collect::<Vec<_>>());
    let (_, listed, _) = flexauth(&env, &["webhooks", "list"]);
    assert_eq!(listed[0]["state"], "active", "a success clears the failing state: {listed:#}");
    first.stop().await;
    second.stop().await;
}

#[actix_web::test]
async fn a_receiver_that_hangs_holds_up_neither_logins_nor_another_endpoint() {
    let env = TestEnv::new().await;
    let hanging = Receiver::start(&[]).await;
    hanging.set_mode(Mode::Hang);
    let healthy = Receiver::start(&[]).await;
    healthy.set_mode(Mode::Accept);
    let (stuck, _) = add_endpoint(&env, &hanging.url(), "session.created");
    let (_, secret) = add_endpoint(&env, &healthy.url(), "session.created");
    *healthy.state.secrets.lock().unwrap() = vec![secret];
    // Each attempt to the hanging receiver ends at a 15-second deadline: no attempt of it can
    // be recorded before then.
    let app = env
        .spawn_configured(
            ALLOW_PRIVATE,
            |settings| settings.webhook_timeout = std::time::Duration::from_secs(15),
            Arc::new(TestClock::default()),
        )
        .await;
    let email = unique_email("hung");
    app.verified_login(&env, &email).await;
    for _ in 0..20 {
        assert_eq!(app.login(&email).await.status, StatusCode::OK, "a login waited for no receiver");
    }
    // Every login's event reaches the healthy endpoint while the first messages of the other
    // still hang: had the healthy messages waited behind them, an attempt to the hanging
    // receiver would have ended (and been recorded) first.
    healthy.wait_for(21, || Value::Null).await;
    let (_, attempts, _) = flexauth(&env, &["webhooks", "deliveries", &stuck]);
    assert_eq!(attempts, json!([]), "no attempt to the hanging receiver has ended yet");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let timed_out = loop {
        let listed = flexauth(&env, &["webhooks", "deliveries", &stuck]).1;
        let errors: Vec<String> = listed
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|attempt| attempt["error"].as_str().map(str::to_owned))
            .collect();
        if errors.len() >= 4 {
            break errors;
        }
        assert!(std::time::Instant::now() < deadline, "the hanging attempts never ended: {listed:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(timed_out.iter().all(|error| error.contains("timed out")), "{timed_out:?}");
    app.stop().await;
}

#[actix_web::test]
async fn during_a_rotation_both_secrets_sign_and_after_the_overlap_only_the_new_one() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start(&[]).await;
    let (endpoint, old) = add_endpoint(&env, &receiver.url(), "session.created");
    let (ok, rotated, stderr) = flexauth(&env, &["webhooks", "rotate-secret", &endpoint, "--overlap", "3s"]);
    assert!(ok, "{stderr}");
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert!(new.starts_with("whsec_") && new != old);
    *receiver.state.secrets.lock().unwrap() = vec![old.clone(), new.clone()];
    let app = env.spawn_with(ALLOW_PRIVATE).await;
    let email = unique_email("rotated");
    app.verified_login(&env, &email).await;
    let during = receiver.wait_for(1, || Value::Null).await;
    assert_eq!(during[0].verified_by, vec![0, 1], "a receiver with either secret verifies it");

    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(app.login(&email).await.status, StatusCode::OK);
    let after = receiver.wait_for(2, || Value::Null).await;
    assert_eq!(after[1].verified_by, vec![1], "only the new secret signs after the overlap");
    let (ok, _, stderr) = flexauth(&env, &["webhooks", "rotate-secret", "7b4f9c3e-0000-4000-8000-000000000000"]);
    assert!(!ok);
    assert_eq!(stderr.trim(), "flexauth: no such webhook endpoint");
    app.stop().await;
}

#[actix_web::test]
async fn internal_addresses_are_refused_when_added_and_again_at_delivery_and_redirects_are_not_followed() {
    let env = TestEnv::new().await;
    for url in ["http://169.254.169.254/latest/meta-data", "https://127.0.0.1/hooks", "https://localhost:8443/x"] {
        let (ok, _, stderr) = flexauth(&env, &["webhooks", "add", url]);
        assert!(!ok, "{url} was accepted");
        assert!(stderr.contains("is not a public address") || stderr.contains("use https"), "{url}: {stderr}");
    }
    let (ok, _, stderr) =
        flexauth(&env, &["webhooks", "add", "https://hooks.example.com/x", "--events", "account.hacked"]);
    assert!(!ok);
    assert!(stderr.contains("`account.hacked` is not an event type"), "{stderr}");

    // Added while private receivers were allowed, by name; the instances no longer allow
    // them: the name resolves to loopback at delivery, and nothing is sent.
    let receiver = Receiver::start(&[]).await;
    let by_name = receiver.url().replace("http://127.0.0.1", "https://localhost");
    let (endpoint, secret) = add_endpoint(&env, &by_name, "account.created");
    *receiver.state.secrets.lock().unwrap() = vec![secret];
    let app = env.spawn().await;
    assert_eq!(app.signup(&unique_email("rebound")).await.status, StatusCode::ACCEPTED);
    let refused = eventually("a refused attempt", || {
        let listed = flexauth(&env, &["webhooks", "deliveries", &endpoint]).1;
        listed.as_array()?.first().cloned()
    })
    .await;
    assert!(refused["error"].as_str().unwrap().contains("is not a public address"), "{refused:#}");
    assert!(receiver.deliveries().is_empty() && receiver.refused().is_empty(), "nothing reached the receiver");
    app.stop().await;

    // A receiver that redirects elsewhere gets a failed attempt; the redirect is not followed.
    let target = Receiver::start(&[]).await;
    let redirecting = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirect_url = format!("http://127.0.0.1:{}/hooks", redirecting.local_addr().unwrap().port());
    let location = target.url();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = redirecting.accept().await {
            let mut buffer = [0u8; 8192];
            let _ = stream.read(&mut buffer).await;
            let answer =
                format!("HTTP/1.1 307 Temporary Redirect\r\nlocation: {location}\r\ncontent-length: 0\r\n\r\n");
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    let (redirected, _) = add_endpoint(&env, &redirect_url, "account.created");
    let app = env.spawn_with(ALLOW_PRIVATE).await;
    assert_eq!(app.signup(&unique_email("redirected")).await.status, StatusCode::ACCEPTED);
    let attempt = eventually("a redirected attempt", || {
        flexauth(&env, &["webhooks", "deliveries", &redirected]).1.as_array()?.first().cloned()
    })
    .await;
    assert_eq!((attempt["status"].as_u64(), attempt["outcome"].as_str()), (Some(307), Some("retrying")), "{attempt:#}");
    assert!(target.deliveries().is_empty() && target.refused().is_empty(), "the redirect was not followed");
    app.stop().await;
}

#[actix_web::test]
async fn the_python_receiver_of_the_docs_verifies_and_handles_each_event_once() {
    let Some(python) = crate::introspection::authlib_python() else { return };
    let env = TestEnv::new().await;
    // A free port for the receiver: bound, then let go.
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/");
    let (endpoint, secret) = add_endpoint(&env, &url, "account.created,account.verified,session.created");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/examples/webhook-receiver.py");
    let mut receiver = tokio::process::Command::new(&python)
        .arg(script)
        .arg(port.to_string())
        .env("FLEXAUTH_WEBHOOK_SECRET", &secret)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the Python receiver starts");
    let mut lines = tokio::io::BufReader::new(receiver.stdout.take().unwrap());
    let mut line = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut lines, &mut line).await.unwrap();
    assert_eq!(serde_json::from_str::<Value>(&line).unwrap(), json!({ "listening": port }));

    let app = env.spawn_with(ALLOW_PRIVATE).await;
    let email = unique_email("python");
    app.verified_login(&env, &email).await;
    let mut events = Vec::new();
    while events.len() < 3 {
        line.clear();
        let read =
            tokio::time::timeout(Duration::from_secs(20), tokio::io::AsyncBufReadExt::read_line(&mut lines, &mut line))
                .await;
        assert!(
            matches!(read, Ok(Ok(count)) if count > 0),
            "the receiver printed {events:#?} and then nothing; attempts: {:#}",
            flexauth(&env, &["webhooks", "deliveries", &endpoint]).1
        );
        events.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    let mut types: Vec<&str> = events.iter().map(|event| event["type"].as_str().unwrap()).collect();
    types.sort_unstable();
    assert_eq!(types, ["account.created", "account.verified", "session.created"]);
    assert!(events.iter().all(|event| event["data"]["account_id"] == events[0]["data"]["account_id"]));
    let attempts = flexauth(&env, &["webhooks", "deliveries", &endpoint]).1;
    assert!(
        attempts.as_array().unwrap().iter().all(|attempt| attempt["status"] == 204),
        "every message verified at the first attempt: {attempts:#}"
    );
    app.stop().await;
}
