//! A load generator over loopback: real flexauth instances (PostgreSQL when
//! FLEXAUTH_TEST_POSTGRES_URL is set, else SQLite), a fixed number of concurrent keep-alive
//! clients, interleaved rounds per scenario. It reports throughput and latency, and each
//! scenario as a ratio against the stateless access-token baseline measured in the same run,
//! so the figures compare across noisy machines. Run it with `just bench`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_debug_implementations)]

// The API tests' helpers start instances the same way; the benchmark uses a part of them.
#[allow(dead_code)]
#[path = "../tests/api/helpers.rs"]
mod helpers;

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use futures_util::future::join_all;
use helpers::{TestApp, TestEnv};
use serde_json::json;

const CONCURRENCY: usize = 16;
const ROUND: Duration = Duration::from_secs(3);
const ROUNDS: usize = 3;

struct Scenario<'a> {
    name: &'static str,
    app: &'a TestApp,
    path: &'static str,
    credential: Option<String>,
}

struct RoundResult {
    requests_per_second: f64,
    latencies: Vec<Duration>,
}

async fn round(scenario: &Scenario<'_>) -> RoundResult {
    let deadline = Instant::now() + ROUND;
    let clients = (0..CONCURRENCY).map(|_| async {
        let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
        let mut latencies = Vec::new();
        while Instant::now() < deadline {
            let started = Instant::now();
            let mut request = client.get(scenario.app.url(scenario.path));
            if let Some(credential) = &scenario.credential {
                request = request.bearer_auth(credential);
            }
            let mut response = request.send().await.expect("request");
            assert_eq!(response.status(), StatusCode::OK, "{}", scenario.name);
            response.body().await.expect("body");
            latencies.push(started.elapsed());
        }
        latencies
    });
    let started = Instant::now();
    let latencies: Vec<Duration> = join_all(clients).await.into_iter().flatten().collect();
    RoundResult { requests_per_second: latencies.len() as f64 / started.elapsed().as_secs_f64(), latencies }
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * fraction).round() as usize]
}

fn main() {
    actix_web::rt::System::new().block_on(run());
}

async fn run() {
    let env = TestEnv::new().await;
    // Rate limits off: the login timing and the login burst below send, from one address, far
    // more attempts than the per-address limits allow; this measures the server, not the limits.
    let stateless = env.spawn_with(&["--rate-limits", "off"]).await;
    let checking = env.spawn_with(&["--verify-session-on-request", "true", "--rate-limits", "off"]).await;
    let login = stateless.verified_login(&env, "bench@example.com").await;
    let jwt = login["access_token"].as_str().unwrap().to_owned();
    let key = stateless.post_json_with_bearer("/v1/api-keys", &jwt, json!({ "name": "bench" })).await.body["data"]["key"].as_str().unwrap().to_owned();

    let backend = if env.is_postgres() { "PostgreSQL" } else { "SQLite" };
    println!("flexauth load benchmark: {backend}, {CONCURRENCY} concurrent clients, {ROUNDS} interleaved rounds of {} s each", ROUND.as_secs());
    let scenarios = [
        Scenario { name: "GET /healthz (no auth, no database)", app: &stateless, path: "/healthz", credential: None },
        Scenario { name: "GET /v1/auth/me, JWT (baseline)", app: &stateless, path: "/v1/auth/me", credential: Some(jwt.clone()) },
        Scenario { name: "GET /v1/auth/me, JWT + session check", app: &checking, path: "/v1/auth/me", credential: Some(jwt.clone()) },
        Scenario { name: "GET /v1/usage, JWT", app: &stateless, path: "/v1/usage", credential: Some(jwt.clone()) },
        Scenario { name: "GET /v1/usage, JWT + session check", app: &checking, path: "/v1/usage", credential: Some(jwt.clone()) },
        Scenario { name: "GET /v1/usage, API key", app: &stateless, path: "/v1/usage", credential: Some(key) },
    ];
    // Warm up connections, pools and caches once.
    for scenario in &scenarios {
        let _ = round(&Scenario { name: scenario.name, app: scenario.app, path: scenario.path, credential: scenario.credential.clone() }).await;
    }
    let mut results: Vec<Vec<RoundResult>> = scenarios.iter().map(|_| Vec::new()).collect();
    for _ in 0..ROUNDS {
        for (scenario, collected) in scenarios.iter().zip(results.iter_mut()) {
            collected.push(round(scenario).await);
        }
    }
    let medians: Vec<f64> = results
        .iter()
        .map(|rounds| {
            let mut rates: Vec<f64> = rounds.iter().map(|round| round.requests_per_second).collect();
            rates.sort_by(f64::total_cmp);
            rates[rates.len() / 2]
        })
        .collect();
    let baseline = medians[1];
    println!("{:<42} {:>10} {:>9} {:>9} {:>16}", "scenario", "req/s", "p50 ms", "p99 ms", "vs baseline");
    for ((scenario, rounds), median) in scenarios.iter().zip(&results).zip(&medians) {
        let mut latencies: Vec<Duration> = rounds.iter().flat_map(|round| round.latencies.iter().copied()).collect();
        latencies.sort();
        println!(
            "{:<42} {:>10.0} {:>9.2} {:>9.2} {:>15.2}x",
            scenario.name,
            median,
            percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
            percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
            median / baseline
        );
    }

    login_timing(&stateless).await;
    health_during_login_burst(&stateless).await;
    stateless.stop().await;
    checking.stop().await;
}

/// Sequential logins, so each one's time is the password check alone: an unknown email must
/// take as long as a wrong password (the dummy hash), or timing would reveal accounts.
async fn login_timing(app: &TestApp) {
    const ATTEMPTS: usize = 60;
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    for _ in 0..ATTEMPTS {
        for (email, into) in [("bench@example.com", &mut wrong), ("nobody@example.com", &mut unknown)] {
            let started = Instant::now();
            let reply = app.post("/v1/auth/login", json!({ "email": email, "password": "not the password" })).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
            into.push(started.elapsed());
        }
    }
    wrong.sort();
    unknown.sort();
    let (wrong_median, unknown_median) = (percentile(&wrong, 0.5), percentile(&unknown, 0.5));
    println!(
        "\nlogin, {ATTEMPTS} each, alternating: wrong password p50 {:.2} ms, unknown email p50 {:.2} ms, ratio unknown/wrong {:.2}x",
        wrong_median.as_secs_f64() * 1000.0,
        unknown_median.as_secs_f64() * 1000.0,
        unknown_median.as_secs_f64() / wrong_median.as_secs_f64()
    );
}

/// Password hashing runs on a bounded blocking pool, off the executor: requests that need no
/// hash keep being served while logins saturate the pool.
async fn health_during_login_burst(app: &TestApp) {
    let health = Scenario { name: "GET /healthz", app, path: "/healthz", credential: None };
    let idle = round(&health).await;
    let deadline = Instant::now() + ROUND;
    let burst = join_all((0..32).map(|_| async move {
        let mut logins = 0usize;
        while Instant::now() < deadline {
            let reply = app.post("/v1/auth/login", json!({ "email": "bench@example.com", "password": "not the password" })).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
            logins += 1;
        }
        logins
    }));
    let (under_burst, logins) = futures_util::future::join(round(&health), burst).await;
    let logins: usize = logins.into_iter().sum();
    let p99 = |result: &RoundResult| {
        let mut latencies = result.latencies.clone();
        latencies.sort();
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0
    };
    println!(
        "healthz during a burst of 32 concurrent logins ({:.0} logins/s): {:.0} req/s vs {:.0} idle ({:.2}x), p99 {:.2} ms vs {:.2} ms idle",
        logins as f64 / ROUND.as_secs_f64(),
        under_burst.requests_per_second,
        idle.requests_per_second,
        under_burst.requests_per_second / idle.requests_per_second,
        p99(&under_burst),
        p99(&idle)
    );
}
