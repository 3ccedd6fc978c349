//! How many database statements each call costs, counted on PostgreSQL by diesel's
//! instrumentation (every statement a connection of the test's database sends, `BEGIN`,
//! `COMMIT` and the workers' polls included), printed, and held to what they are today so that
//! none grows unnoticed.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use diesel::connection::{Instrumentation, InstrumentationEvent};
use flexauth_store::DatabaseConfig;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{unique_email, TestEnv};

/// The database whose statements are counted, and the statements.
static WATCHED: Mutex<Option<String>> = Mutex::new(None);
static RECORDED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Statements of the connection that listens for notifications (its heartbeat), counted apart:
/// they are no call's.
static LISTENER: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Recorder {
    watched: bool,
    listener: bool,
}

impl Instrumentation for Recorder {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartEstablishConnection { url, .. } => {
                let watched = WATCHED.lock().unwrap();
                self.watched = watched.as_deref().is_some_and(|name| url.contains(name));
            }
            InstrumentationEvent::StartQuery { query, .. } if self.watched => {
                let text = query.to_string();
                self.listener |= text.starts_with("LISTEN ");
                let bucket = if self.listener { &LISTENER } else { &RECORDED };
                bucket.lock().unwrap().push(text);
            }
            _ => {}
        }
    }
}

fn recorder() -> Option<Box<dyn Instrumentation>> {
    Some(Box::new(Recorder { watched: false, listener: false }))
}

/// The fewest statements `call` took over five runs: the workers' polls land in some of them.
/// Statements that take or hold a lease are the workers' (no request path takes one) and are
/// not counted: a sign-up wakes the request worker before it answers.
async fn fewest<F, Fut>(mut call: F) -> usize
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut fewest = usize::MAX;
    for _ in 0..5 {
        // The work an earlier run woke has settled.
        tokio::time::sleep(Duration::from_millis(300)).await;
        RECORDED.lock().unwrap().clear();
        call().await;
        let counted = RECORDED.lock().unwrap().iter().filter(|statement| !statement.contains("lease_")).count();
        fewest = fewest.min(counted);
    }
    fewest
}

#[actix_web::test]
async fn statements_per_call_are_counted_and_none_grows_unnoticed() {
    let env = TestEnv::new().await;
    let DatabaseConfig::Postgres(url) = env.db.config().clone() else {
        flexauth_store::test_db::skip("the statement count", "the API suite runs on SQLite", None);
        return;
    };
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| diesel::connection::set_default_instrumentation(recorder).unwrap());
    *WATCHED.lock().unwrap() = Some(url.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned());
    // Every connection of this instance is made after the recorder is in place; the workers
    // poll as in production (the other tests make them poll ten times as often).
    let app = env.spawn_tuned(production_intervals).await;
    let email = unique_email("counted");
    let session = app.verified_login(&env, &email).await;
    let access = session["access_token"].as_str().unwrap().to_owned();
    let key = app.post_json_with_bearer("/v1/api-keys", &access, json!({ "name": "counted" })).await;
    let key = key.body["data"]["key"].as_str().unwrap().to_owned();
    // Warm: the key and the token are in the caches.
    assert_eq!(app.get_with_bearer("/v1/auth/check", &key).await.status, StatusCode::OK);
    assert_eq!(app.get_with_bearer("/v1/auth/check", &access).await.status, StatusCode::OK);

    let login = fewest(|| async { assert_eq!(app.login(&email).await.status, StatusCode::OK) }).await;
    let refresh_token = std::cell::RefCell::new(session["refresh_token"].as_str().unwrap().to_owned());
    let refresh = fewest(|| async {
        let current = refresh_token.borrow().clone();
        let refreshed = app.refresh(&current).await;
        assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text);
        *refresh_token.borrow_mut() = refreshed.body["data"]["refresh_token"].as_str().unwrap().to_owned();
    })
    .await;
    let check_key =
        fewest(|| async { assert_eq!(app.get_with_bearer("/v1/auth/check", &key).await.status, StatusCode::OK) }).await;
    let check_jwt =
        fewest(|| async { assert_eq!(app.get_with_bearer("/v1/auth/check", &access).await.status, StatusCode::OK) })
            .await;
    // Last: the work a sign-up wakes (its request, then its mail) would land in the counts
    // of the calls after it.
    let signup =
        fewest(|| async { assert_eq!(app.signup(&unique_email("counted-signup")).await.status, StatusCode::ACCEPTED) })
            .await;
    app.stop().await;
    // Idle: another instance, with production's intervals, with no request for three seconds
    // (longer than the listening connection's demand window), then counted for twenty.
    let idle_app = env.spawn_tuned(production_intervals).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    RECORDED.lock().unwrap().clear();
    LISTENER.lock().unwrap().clear();
    tokio::time::sleep(Duration::from_secs(IDLE_SECONDS)).await;
    let mut idle_statements = RECORDED.lock().unwrap().clone();
    idle_statements.extend(LISTENER.lock().unwrap().iter().cloned());
    let idle = idle_statements.len() as f64 / IDLE_SECONDS as f64;
    let mut kinds: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for statement in &idle_statements {
        *kinds.entry(statement.chars().take(60).collect()).or_default() += 1;
    }
    eprintln!("idle for {IDLE_SECONDS} s: {kinds:#?}");
    idle_app.stop().await;
    *WATCHED.lock().unwrap() = None;

    eprintln!(
        "statements per call on PostgreSQL: login {login}, refresh {refresh}, sign-up (its request) {signup}, \
            /v1/auth/check with a cached key {check_key}, with a cached access token {check_jwt}; idle {idle:.1} a \
            second"
    );
    // The targets, `BEGIN` and `COMMIT` included: a login is its limits counted in one
    // statement, its account read with its factors and device in one, its limits settled in
    // one and its session written in one (4); a refresh is its limits, its session read and
    // the rotation (3); a sign-up's request path is its limit and its stored request (2).
    for (call, counted, target) in [
        ("login", login, 6),
        ("refresh", refresh, 3),
        ("sign-up (its request)", signup, 2),
        ("check with a cached key", check_key, 0),
        ("check with a cached access token", check_jwt, 0),
    ] {
        assert!(counted <= target, "{call} sends {counted} statements, more than its target of {target}");
    }
    // Idle: the listening connection's heartbeat every five seconds, and each worker's look
    // (account requests and mail, webhooks, the key ring) every ten; new work wakes them
    // through the announcements instead.
    assert!(idle <= 1.0, "an idle instance sends {idle:.1} statements a second, more than its target of 1");
}

/// How long the idle instance is counted: long enough for every worker's look to land once.
const IDLE_SECONDS: u64 = 20;

/// The workers' intervals of production: where the database announces work (PostgreSQL
/// without a pooler, as here) they look every ten seconds and wait for announcements between.
fn production_intervals(settings: &mut flexauth_server::config::Settings) {
    use flexauth_server::config::{ANNOUNCED_WORK_POLL_INTERVAL, WORK_POLL_INTERVAL};
    settings.outbox_poll_interval = WORK_POLL_INTERVAL;
    settings.webhook_poll_interval = WORK_POLL_INTERVAL;
    settings.key_ring_refresh = WORK_POLL_INTERVAL;
    settings.announced_work_poll_interval = ANNOUNCED_WORK_POLL_INTERVAL;
}
