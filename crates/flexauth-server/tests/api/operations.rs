//! What an operator runs flexauth with: metrics on a listener of their own.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{unique_email, wait_for_mail_to, TestApp, TestEnv, PASSWORD};

/// One scrape of the metrics listener, parsed by a Prometheus text-format parser.
struct Scrape(prometheus_parse::Scrape);

impl Scrape {
    async fn of(app: &TestApp) -> Self {
        let address = app.metrics_address.as_ref().expect("the instance has a metrics listener");
        let response = app.client.get(format!("{address}/metrics")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers().get("content-type").unwrap().to_str().unwrap().to_owned();
        assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
        let text = String::from_utf8(response.bytes().await.unwrap().to_vec()).unwrap();
        let lines = text.lines().map(|line| Ok(line.to_owned()));
        Self(
            prometheus_parse::Scrape::parse(lines)
                .unwrap_or_else(|error| panic!("not the Prometheus text format: {error}\n{text}")),
        )
    }

    /// The value of the sample `name` whose labels include `labels`; 0 when there is none
    /// (a labelled counter appears once it first moves).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .samples
            .iter()
            .filter(|sample| {
                sample.metric == name && labels.iter().all(|(key, value)| sample.labels.get(key) == Some(*value))
            })
            .map(|sample| match &sample.value {
                prometheus_parse::Value::Counter(value)
                | prometheus_parse::Value::Gauge(value)
                | prometheus_parse::Value::Untyped(value) => *value,
                prometheus_parse::Value::Histogram(buckets) => {
                    buckets.iter().map(|bucket| bucket.count).fold(0.0, f64::max)
                }
                prometheus_parse::Value::Summary(_) => panic!("{name} is a summary"),
            })
            .sum()
    }

    fn moved(&self, before: &Self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels) - before.value(name, labels)
    }

    fn every_label_value(&self) -> Vec<String> {
        self.0.samples.iter().flat_map(|sample| sample.labels.values().cloned().collect::<Vec<_>>()).collect()
    }
}

/// The outcomes docs/operations.md lists for `metric`, in its metrics table.
fn documented_outcomes(metric: &str) -> Vec<String> {
    let operations = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/operations.md")).unwrap();
    let row = operations
        .lines()
        .find(|line| line.starts_with(&format!("| `{metric}` |")))
        .unwrap_or_else(|| panic!("docs/operations.md lists {metric}"));
    let labels = row.split('|').nth(3).unwrap();
    let values = labels.split_once("`outcome`:").map_or("", |(_, values)| values);
    values.split(',').map(|value| value.trim().trim_matches('`').to_owned()).filter(|value| !value.is_empty()).collect()
}

#[actix_web::test]
async fn every_documented_outcome_is_a_series_at_zero_before_anything_happened() {
    let env = TestEnv::new().await;
    let app = env.spawn_with(&["--metrics-bind", "127.0.0.1:0"]).await;
    let fresh = Scrape::of(&app).await;
    for metric in [
        "flexauth_logins_total",
        "flexauth_refreshes_total",
        "flexauth_api_key_authentications_total",
        "flexauth_mail_sends_total",
    ] {
        let documented = documented_outcomes(metric);
        let mut served: Vec<String> = fresh
            .0
            .samples
            .iter()
            .filter(|sample| sample.metric == metric)
            .map(|sample| {
                assert_eq!(sample.value, prometheus_parse::Value::Counter(0.0), "{metric}");
                sample.labels.get("outcome").unwrap().to_owned()
            })
            .collect();
        served.sort();
        let mut expected = documented.clone();
        expected.sort();
        assert_eq!(served, expected, "{metric}: the series at start are the outcomes docs/operations.md lists");
    }
    app.stop().await;
}

#[actix_web::test]
async fn metrics_are_served_on_their_own_listener_and_count_what_happened() {
    let env = TestEnv::new().await;
    // A clock that does not move: the guesses below count in fixed windows.
    let app = env
        .spawn_with_clock(&["--metrics-bind", "127.0.0.1:0"], std::sync::Arc::new(crate::helpers::TestClock::frozen()))
        .await;
    let before = Scrape::of(&app).await;
    // Never on the API's listener.
    assert_eq!(app.get("/metrics").await.status, StatusCode::NOT_FOUND);
    assert_eq!(before.value("flexauth_signing_key_info", &[]), 1.0, "one signing key is named");
    assert!(before.value("flexauth_password_hash_workers", &[]) >= 1.0);
    assert!(before.value("flexauth_db_connections_max", &[]) >= 1.0);

    let email = unique_email("metered");
    let login = app.verified_login(&env, &email).await;
    let first_refresh = login["refresh_token"].as_str().unwrap().to_owned();
    // A wrong password, and a login before verification.
    let wrong = app.post("/v1/auth/login", json!({ "email": email, "password": "not the password at all" })).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let unverified = unique_email("unverified");
    assert_eq!(app.signup(&unverified).await.status, StatusCode::ACCEPTED);
    wait_for_mail_to(env.smtp(), &unverified).await;
    assert_eq!(app.login(&unverified).await.code(), "email_not_verified");
    // Wrong passwords on one account from an unknown client until it is throttled.
    let target = unique_email("throttled");
    let mut throttled = false;
    for _ in 0..8 {
        let reply = app.post("/v1/auth/login", json!({ "email": target, "password": "guessing the password" })).await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            throttled = true;
            break;
        }
    }
    assert!(throttled, "the guesses were throttled");

    // A rotation, the same parent again within the grace window, then a spent grandparent.
    let rotated = app.refresh(&first_refresh).await;
    assert_eq!(rotated.status, StatusCode::OK);
    let second_refresh = rotated.body["data"]["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(app.refresh(&first_refresh).await.status, StatusCode::OK, "the grace replay");
    let third = app.refresh(&second_refresh).await;
    assert_eq!(third.status, StatusCode::OK);
    assert_eq!(app.refresh(&first_refresh).await.code(), "refresh_token_reused");

    // An API key that works, and one that was never issued.
    let login = app.login(&email).await;
    let jwt = login.body["data"]["access_token"].as_str().unwrap().to_owned();
    let created = app.post_json_with_bearer("/v1/api-keys", &jwt, json!({ "name": "metered backend" })).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let key = created.body["data"]["key"].as_str().unwrap().to_owned();
    assert_eq!(app.get_with_bearer("/v1/usage", &key).await.status, StatusCode::OK);
    let forged = format!("{}{}", &key[..key.len() - 8], "AAAAAAAA");
    assert_eq!(app.get_with_bearer("/v1/usage", &forged).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get_with_bearer("/v1/usage", &jwt).await.status,
        StatusCode::OK,
        "an access token is not an API key"
    );

    let after = Scrape::of(&app).await;
    let logins = "flexauth_logins_total";
    assert_eq!(after.moved(&before, logins, &[("outcome", "success")]), 2.0);
    assert_eq!(
        after.moved(&before, logins, &[("outcome", "invalid_credentials")]),
        1.0 + 5.0,
        "one wrong password, five guesses before the limit"
    );
    assert_eq!(after.moved(&before, logins, &[("outcome", "unverified")]), 1.0);
    assert_eq!(after.moved(&before, logins, &[("outcome", "throttled")]), 1.0);
    let refreshes = "flexauth_refreshes_total";
    assert_eq!(after.moved(&before, refreshes, &[("outcome", "rotated")]), 2.0);
    assert_eq!(after.moved(&before, refreshes, &[("outcome", "grace_replay")]), 1.0);
    assert_eq!(after.moved(&before, refreshes, &[("outcome", "reuse_detected")]), 1.0);
    let keys = "flexauth_api_key_authentications_total";
    assert_eq!(after.moved(&before, keys, &[("outcome", "success")]), 1.0);
    assert!(
        after.moved(&before, keys, &[("outcome", "malformed")]) + after.moved(&before, keys, &[("outcome", "unknown")])
            == 1.0
    );

    // Requests by route template (never the path with its id) and status class, timed.
    let requests = "flexauth_http_requests_total";
    assert_eq!(
        after.moved(&before, requests, &[("route", "/v1/auth/login"), ("method", "POST"), ("status", "2xx")]),
        2.0
    );
    assert_eq!(after.moved(&before, requests, &[("route", "/v1/auth/login"), ("status", "4xx")]), 1.0 + 1.0 + 6.0);
    assert_eq!(
        after.moved(&before, requests, &[("route", "/metrics"), ("status", "4xx")]),
        0.0,
        "the API listener's 404 is not a route"
    );
    assert!(after.moved(&before, requests, &[("route", "unmatched"), ("status", "4xx")]) >= 1.0);
    assert_eq!(
        after.moved(&before, "flexauth_http_request_duration_seconds_count", &[("route", "/v1/auth/refresh")]),
        4.0
    );
    // Every argon2 job waited in the queue first, and was timed.
    assert!(after.moved(&before, "flexauth_password_hash_wait_seconds_count", &[]) >= 10.0);
    assert!(after.moved(&before, "flexauth_db_connection_wait_seconds_count", &[]) >= 10.0);
    // The verification email and the new-device notices were sent, none is left.
    assert!(after.moved(&before, "flexauth_mail_sends_total", &[("outcome", "sent")]) >= 2.0);
    assert_eq!(after.value("flexauth_password_hash_queue_depth", &[]), 0.0);

    // No label carries an address, a token or a key.
    for value in after.every_label_value() {
        assert!(
            !value.contains('@')
                && !value.contains(PASSWORD)
                && !value.contains("fo_live_")
                && !value.contains("127.0.0."),
            "label value {value}"
        );
    }
    app.stop().await;
}

#[actix_web::test]
async fn the_outbox_backlog_and_the_age_of_its_oldest_mail_show_while_mail_cannot_leave() {
    let env = TestEnv::new().await;
    // The SMTP server refuses every recipient for now: mail stays queued for a retry.
    env.smtp().reject_recipients(Some(450));
    let app = env.spawn_with(&["--metrics-bind", "127.0.0.1:0"]).await;
    let email = unique_email("stuck");
    assert_eq!(app.signup(&email).await.status, StatusCode::ACCEPTED);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        // Once the worker has tried and been refused, the mail is counted as waiting, with an age.
        let scrape = Scrape::of(&app).await;
        if scrape.value("flexauth_mail_sends_total", &[("outcome", "retry_scheduled")]) >= 1.0 {
            assert!(scrape.value("flexauth_outbox_unsent", &[]) >= 1.0, "the refused mail waits");
            assert!(scrape.value("flexauth_outbox_oldest_unsent_age_seconds", &[]) > 0.0, "and has an age");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the refused attempt was never counted");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    app.stop().await;
}

#[actix_web::test]
async fn an_instance_is_not_ready_on_a_database_that_lacks_one_of_its_migrations() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
    // As if the database had been restored from a backup older than this version.
    flexauth_store::test_db::execute(
        env.store(),
        "DELETE FROM __diesel_schema_migrations WHERE version = (SELECT MAX(version) FROM __diesel_schema_migrations)",
    )
    .await;
    let readiness = app.get("/readyz").await;
    assert_eq!(readiness.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(readiness.code(), "not_ready");
    app.stop().await;
}

#[test]
fn the_email_kinds_of_docs_operations_md_are_every_kind_flexauth_sends() {
    let operations = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/operations.md")).unwrap();
    let table = operations
        .split("| Kind | Subject | What it is for, and when it is sent |")
        .nth(1)
        .expect("docs/operations.md has the table of email kinds");
    // The rows up to the first line that is not one.
    let documented: Vec<&str> = table
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with("| `"))
        .filter_map(|line| line.strip_prefix("| `")?.split('`').next())
        .collect();
    let kinds: Vec<&str> = flexauth_domain::mail::EmailKind::ALL.iter().map(|kind| kind.as_str()).collect();
    assert_eq!(documented, kinds, "docs/operations.md lists every kind, in the enum's order");
}
