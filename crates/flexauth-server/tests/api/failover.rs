//! A database failover under load, as an operator would run it: a primary and a synchronous
//! streaming standby (scripts/pg-replica-up), two flexauth instances on a libpq multi-host URL
//! with `target_session_attrs=read-write`, the primary stopped (`immediate`) during a stream of
//! sign-ups, refreshes and key revocations, and the standby promoted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flexauth_store::DatabaseConfig;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{unique_email, TestApp, TestClock, TestEnv};

/// The pair scripts/pg-replica-up made: the admin URLs of the primary and the standby, and
/// their Debian clusters (`version/name`).
struct Rig {
    primary: String,
    standby: String,
    primary_cluster: (String, String),
    standby_cluster: (String, String),
}

impl Rig {
    fn from_env() -> Option<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let (Some(primary), Some(standby), Some(clusters)) = (
            var("FLEXAUTH_TEST_FAILOVER_PRIMARY"),
            var("FLEXAUTH_TEST_FAILOVER_STANDBY"),
            var("FLEXAUTH_TEST_FAILOVER_CLUSTERS"),
        ) else {
            flexauth_store::test_db::skip(
                "the failover test",
                "FLEXAUTH_TEST_FAILOVER_* are not set (eval \"$(scripts/pg-replica-up)\")",
                Some("FLEXAUTH_TEST_REQUIRE_FAILOVER"),
            );
            return None;
        };
        let cluster = |text: &str| {
            let (version, name) = text.split_once('/').unwrap();
            (version.to_owned(), name.to_owned())
        };
        let (primary_cluster, standby_cluster) = clusters.split_once(',').unwrap();
        Some(Self {
            primary,
            standby,
            primary_cluster: cluster(primary_cluster),
            standby_cluster: cluster(standby_cluster),
        })
    }
}

fn psql(url: &str, sql: &str) -> String {
    let output = std::process::Command::new("psql").args([url, "-Atqc", sql]).output().expect("psql runs");
    assert!(output.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn pg_ctlcluster(cluster: &(String, String), action: &[&str]) {
    let output = std::process::Command::new("pg_ctlcluster")
        .arg("--skip-systemctl-redirect")
        .arg(&cluster.0)
        .arg(&cluster.1)
        .args(action)
        .output()
        .expect("pg_ctlcluster runs");
    assert!(output.status.success(), "pg_ctlcluster {action:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// Every answer of the stream, by what it was.
#[derive(Default)]
struct Tally {
    statuses: HashMap<(&'static str, u16), usize>,
    /// Sign-ups answered 202: their addresses.
    signed_up: Vec<String>,
    /// Per refresh chain, the last refresh token an answer 200 handed out.
    chains: Vec<String>,
    /// Keys whose revocation was answered 204.
    revoked: Vec<String>,
    /// When each instance first wrote after the promotion.
    wrote_again: [Option<Instant>; 2],
}

impl Tally {
    fn count(&mut self, what: &'static str, status: StatusCode) {
        *self.statuses.entry((what, status.as_u16())).or_default() += 1;
    }
}

#[actix_web::test]
async fn a_failover_loses_no_acknowledged_write_and_both_instances_write_again_without_a_restart() {
    let Some(rig) = Rig::from_env() else { return };
    let env = TestEnv::new().await;
    if !env.is_postgres() {
        flexauth_store::test_db::skip("the failover test", "the API suite runs on SQLite", None);
        return;
    }
    let name = format!("flexauth_failover_{}", uuid::Uuid::new_v4().simple());
    psql(&rig.primary, &format!("CREATE DATABASE {name}"));
    let host = |url: &str| url.trim_start_matches("postgres://postgres@").split('/').next().unwrap().to_owned();
    let url = format!(
        "postgres://postgres@{},{}/{name}?target_session_attrs=read-write",
        host(&rig.primary),
        host(&rig.standby)
    );
    // No rate limit: the stream comes from one address, far faster than a person.
    let on_rig = |settings: &mut flexauth_server::config::Settings| {
        settings.database = DatabaseConfig::Postgres(url.clone());
        settings.rate_limits = false;
    };
    let apps = [
        env.spawn_configured(&[], on_rig, Arc::new(TestClock::default())).await,
        env.spawn_configured(&[], on_rig, Arc::new(TestClock::default())).await,
    ];

    // Before: an account with sessions to refresh and keys to revoke.
    let email = unique_email("failover");
    let owner = apps[0].verified_login(&env, &email).await;
    let access = owner["access_token"].as_str().unwrap().to_owned();
    let tally = Arc::new(Mutex::new(Tally::default()));
    for _ in 0..4 {
        let login = apps[1].login(&email).await;
        assert_eq!(login.status, StatusCode::OK, "{}", login.text);
        tally.lock().unwrap().chains.push(login.body["data"]["refresh_token"].as_str().unwrap().to_owned());
    }
    let mut keys = Vec::new();
    for index in 0..12 {
        let made = apps[index % 2]
            .post_json_with_bearer("/v1/api-keys", &access, json!({ "name": format!("k{index}") }))
            .await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
        keys.push((
            made.body["data"]["id"].as_str().unwrap().to_owned(),
            made.body["data"]["key"].as_str().unwrap().to_owned(),
        ));
    }

    // The stream: sign-ups and refreshes on both instances, and a key revoked now and then.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let promoted_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let apps = Arc::new(apps);
    let mut workers = Vec::new();
    for worker in 0..2usize {
        let (apps, tally, stop, promoted_at, access, keys) =
            (apps.clone(), tally.clone(), stop.clone(), promoted_at.clone(), access.clone(), keys.clone());
        workers.push(tokio::spawn(async move {
            let mut round = 0usize;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let app: &TestApp = &apps[(round + worker) % 2];
                let instance = (round + worker) % 2;
                let address = unique_email(&format!("stream-{worker}-{round}"));
                let signup = app.signup(&address).await;
                {
                    let mut tally = tally.lock().unwrap();
                    tally.count("signup", signup.status);
                    if signup.status == StatusCode::ACCEPTED {
                        tally.signed_up.push(address);
                        if promoted_at.lock().unwrap().is_some() && tally.wrote_again[instance].is_none() {
                            tally.wrote_again[instance] = Some(Instant::now());
                        }
                    }
                }
                let chain = (round * 2 + worker) % 4;
                let current = tally.lock().unwrap().chains[chain].clone();
                let refreshed = app.refresh(&current).await;
                {
                    let mut tally = tally.lock().unwrap();
                    tally.count("refresh", refreshed.status);
                    if refreshed.status == StatusCode::OK {
                        tally.chains[chain] = refreshed.body["data"]["refresh_token"].as_str().unwrap().to_owned();
                    }
                }
                if round % 6 == 0 && worker == 0 && round / 6 < keys.len() {
                    let index = round / 6;
                    let revoked = app.delete_with_bearer(&format!("/v1/api-keys/{}", keys[index].0), &access).await;
                    let mut tally = tally.lock().unwrap();
                    tally.count("revoke", revoked.status);
                    if revoked.status == StatusCode::NO_CONTENT {
                        tally.revoked.push(keys[index].1.clone());
                    }
                }
                round += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg_ctlcluster(&rig.primary_cluster, &["stop", "-m", "immediate"]);
    let stopped_at = Instant::now();
    // Longer than the pool waits for a connection (1.5 s): some requests meet no writable host.
    tokio::time::sleep(Duration::from_secs(3)).await;
    pg_ctlcluster(&rig.standby_cluster, &["promote"]);
    *promoted_at.lock().unwrap() = Some(Instant::now());
    // The stream goes on until both instances have written again, for at most 60 seconds.
    let deadline = Instant::now() + Duration::from_secs(60);
    while tally.lock().unwrap().wrote_again.iter().any(Option::is_none) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }

    let tally = Arc::try_unwrap(tally).ok().unwrap().into_inner().unwrap();
    let promoted = promoted_at.lock().unwrap().unwrap();
    let again: Vec<String> = tally
        .wrote_again
        .iter()
        .map(|at| at.map_or("never".to_owned(), |at| format!("{:.1} s", (at - promoted).as_secs_f64())))
        .collect();
    eprintln!(
        "failover: answers {:?}; primary stopped {:.1} s before the promotion; instances wrote again {again:?} after it",
        tally.statuses,
        (promoted - stopped_at).as_secs_f64()
    );
    let failures: Vec<_> = tally.statuses.iter().filter(|((_, status), _)| *status >= 500 && *status != 503).collect();
    assert!(failures.is_empty(), "answers other than 503 while the database switched: {failures:?}");
    let unavailable: usize =
        tally.statuses.iter().filter(|((_, status), _)| *status == 503).map(|(_, count)| count).sum();
    assert!(unavailable > 0, "no request met the switch, so the test proved nothing: {:?}", tally.statuses);
    assert!(tally.wrote_again.iter().all(Option::is_some), "an instance never wrote again: {again:?}");

    // Every acknowledged sign-up is there (its request, or the account it made).
    let addresses = tally.signed_up.iter().map(|address| format!("'{address}'")).collect::<Vec<_>>().join(",");
    let database = format!("{}/{name}", rig.standby.rsplit_once('/').unwrap().0);
    let found: usize = psql(
        &database,
        &format!(
            "SELECT count(DISTINCT email) FROM (SELECT email FROM accounts WHERE email IN ({addresses}) UNION \
                SELECT email FROM account_requests WHERE email IN ({addresses})) AS acknowledged"
        ),
    )
    .parse()
    .unwrap();
    assert_eq!(found, tally.signed_up.len(), "acknowledged sign-ups lost");
    // Every chain goes on from the last token it was handed, on either instance.
    for (index, token) in tally.chains.iter().enumerate() {
        let refreshed = apps[index % 2].refresh(token).await;
        assert_eq!(refreshed.status, StatusCode::OK, "chain {index} lost a rotation: {}", refreshed.text);
    }
    // Every acknowledged revocation holds on both instances.
    assert!(!tally.revoked.is_empty());
    for key in &tally.revoked {
        for app in apps.iter() {
            assert_eq!(app.get_with_bearer("/v1/usage", key).await.status, StatusCode::UNAUTHORIZED);
        }
    }
    let signups = tally.statuses.get(&("signup", 202)).copied().unwrap_or(0);
    assert!(signups > 10, "the stream hardly ran: {:?}", tally.statuses);
    for app in apps.iter() {
        app.stop().await;
    }
    psql(&rig.standby, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}
