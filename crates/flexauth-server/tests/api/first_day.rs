//! An operator's first day, with the real `flexauth` binary: commands that never create or
//! migrate a database, a start that says when it can sign, the public URL of a server given
//! only its listen address, the README's recipe for the newest link in either log format, a
//! pipe closed early, and a pooler in transaction mode that nobody named.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{unique_email, TestEnv, PASSWORD};
use crate::lifecycle::{flexauth, flexauth_with};

/// Runs the binary with only `vars` (and PATH) set, in `dir`; returns success, stdout, stderr.
fn bare_flexauth(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_flexauth"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(vars.iter().copied())
        .output()
        .expect("the flexauth binary runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[actix_web::test]
async fn an_operators_command_in_a_folder_without_a_database_refuses_and_creates_nothing() {
    let folder = tempfile::tempdir().unwrap();
    for args in [&["accounts", "find", "ann@example.com"][..], &["keys", "rotate"], &["clients", "list"]] {
        let (code, stdout, stderr) = bare_flexauth(folder.path(), args, &[("RUST_LOG", "info")]);
        assert_eq!(code, Some(1), "{args:?}: {stdout} {stderr}");
        assert!(
            stderr.contains("no database at ./data/flexauth.sqlite3") && stderr.contains("flexauth migrate"),
            "{args:?} names the database it was pointed at and the remedy: {stderr}"
        );
        assert!(!stderr.contains("database migrated"), "{stderr}");
    }
    let left: Vec<_> = walk(folder.path());
    assert!(left.iter().all(|path| !path.ends_with("flexauth.sqlite3")), "no database was created: {left:?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(&path));
        }
        found.push(path);
    }
    found
}

/// Runs `sql` on the environment's database.
async fn execute(env: &TestEnv, sql: &'static str) {
    flexauth_store::test_db::execute(env.store(), sql).await;
}

#[actix_web::test]
async fn an_operators_command_refuses_a_database_behind_or_ahead_of_it_and_migrates_nothing() {
    let env = TestEnv::new().await;
    // Current: the command runs, and says nothing of migrating.
    let (ok, keys, stderr) = flexauth_with(&env, &["keys", "list"], &[("RUST_LOG", "info")]);
    assert!(ok, "{stderr}");
    assert_eq!(keys, json!([]));
    assert!(!stderr.contains("migrated"), "{stderr}");

    // Behind: the newest migration is missing (its row is kept aside, to be put back).
    execute(
        &env,
        "CREATE TABLE newest_migration AS SELECT * FROM __diesel_schema_migrations WHERE version = \
            (SELECT max(version) FROM __diesel_schema_migrations)",
    )
    .await;
    execute(&env, "DELETE FROM __diesel_schema_migrations WHERE version IN (SELECT version FROM newest_migration)")
        .await;
    let (ok, _, stderr) = flexauth(&env, &["accounts", "find", "ann@example.com"]);
    assert!(!ok);
    assert!(stderr.contains("lacks 1 migration(s) of this version"), "{stderr}");
    assert!(stderr.contains(if env.is_postgres() {
        "the PostgreSQL database postgres://"
    } else {
        "the SQLite file "
    }));
    let (ok, _, stderr) = flexauth(&env, &["keys", "list"]);
    assert!(!ok && stderr.contains("lacks 1 migration(s)"), "still behind: nothing migrated it: {stderr}");

    // Ahead: a migration of a newer version.
    execute(&env, "INSERT INTO __diesel_schema_migrations SELECT * FROM newest_migration").await;
    let (ok, _, stderr) = flexauth(&env, &["keys", "list"]);
    assert!(ok, "current again: {stderr}");
    execute(&env, "INSERT INTO __diesel_schema_migrations (version) VALUES ('99991231000000')").await;
    let (ok, _, stderr) = flexauth(&env, &["clients", "list"]);
    assert!(!ok);
    assert!(
        stderr.contains("was migrated by a newer version of flexauth") && stderr.contains("99991231000000"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[actix_web::test]
async fn a_key_rotated_on_a_new_database_signs_at_once_and_a_start_with_only_a_scheduled_key_says_until_when() {
    // A database no server ran on: its first key signs at once, and the server signs with it.
    let env = TestEnv::new().await;
    let (ok, rotated, stderr) = flexauth(&env, &["keys", "rotate"]);
    assert!(ok, "{stderr}");
    assert_eq!(rotated["state"], "signing");
    let app = env.spawn().await;
    let email = unique_email("first-key");
    let data = app.verified_login(&env, &email).await;
    let header = jsonwebtoken::decode_header(data["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(header.kid.as_deref(), rotated["kid"].as_str());
    app.stop().await;

    // A database whose only key is scheduled: the start says when it signs and what to do.
    let env = TestEnv::new().await;
    let pem = flexauth_jwt::SigningKeyPair::generate_pem().unwrap();
    let kid = flexauth_jwt::SigningKeyPair::from_pem(&pem).unwrap().kid().to_owned();
    let now = time::OffsetDateTime::now_utc();
    env.store().add_signing_key(&kid, pem, now, now + time::Duration::minutes(10)).await.unwrap();
    let (ok, _, stderr) = flexauth_with(&env, &["serve"], &[("FLEXAUTH_BIND", "127.0.0.1:0"), ("RUST_LOG", "off")]);
    assert!(!ok);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("no stored key signs yet: key {kid} signs from "))
            && stderr.contains("start the server then"),
        "{stderr}"
    );
    let seconds: i64 = stderr.split("(in ").nth(1).and_then(|rest| rest.split(' ').next()).unwrap().parse().unwrap();
    assert!((590..=600).contains(&seconds), "{stderr}");
}

#[actix_web::test]
async fn retiring_the_signing_key_during_a_rotation_says_when_the_new_key_takes_over() {
    let env = TestEnv::new().await;
    env.spawn().await.stop().await;
    let (ok, keys, stderr) = flexauth(&env, &["keys", "list"]);
    assert!(ok, "{stderr}");
    let signing = keys[0]["kid"].as_str().unwrap().to_owned();
    let (ok, rotated, stderr) = flexauth(&env, &["keys", "rotate", "--delay", "1h"]);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = flexauth(&env, &["keys", "retire", &signing]);
    assert!(!ok);
    let takes_over = format!("{signing} signs now; key {} takes over at ", rotated["kid"].as_str().unwrap());
    assert!(stderr.contains(&takes_over) && stderr.contains(&format!(": retire {signing} after then")), "{stderr}");
    // The instant is the rotation's, to the second.
    let at = rotated["activates_at"].as_str().unwrap();
    assert!(stderr.contains(&at[..19]), "{at} in {stderr}");
}

/// The real binary serving on a port of its own, its log lines in a file.
struct Served {
    child: tokio::process::Child,
    base: String,
}

impl Served {
    async fn start(data_dir: &Path, log: &Path, vars: &[(&str, &str)]) -> Self {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let base = format!("http://127.0.0.1:{port}");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_flexauth"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("FLEXAUTH_BIND", format!("127.0.0.1:{port}"))
            .env("FLEXAUTH_DATA_DIR", data_dir)
            .env("FLEXAUTH_ARGON2_MEMORY_KIB", "1024")
            .envs(vars.iter().copied())
            .stdout(std::fs::File::create(log).unwrap())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let client = reqwest::Client::new();
        let started = Instant::now();
        while client.get(format!("{base}/healthz")).send().await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(60), "the server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { child, base }
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let reply = reqwest::Client::new().post(format!("{}{path}", self.base)).json(&body).send().await.unwrap();
        let status = reply.status();
        (status, reply.json().await.unwrap_or(Value::Null))
    }

    async fn stop(mut self) {
        self.child.kill().await.unwrap();
    }
}

/// The README's command that prints the newest link of the log, run as a reader would, in the
/// folder that holds `flexauth.log`.
fn readme_newest_link(folder: &Path) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let block = readme
        .split("```sh\n")
        .filter_map(|rest| rest.split("\n```").next())
        .find(|block| block.contains("flexauth.log") && block.contains("link"))
        .expect("the README shows the recipe");
    let output = std::process::Command::new("bash").arg("-c").arg(block).current_dir(folder).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn token_in(link: &str) -> String {
    link.split("token=").nth(1).unwrap().to_owned()
}

#[actix_web::test]
async fn given_only_its_listen_address_a_server_links_and_issues_on_it_and_the_readmes_recipe_finds_every_link() {
    for format in ["text", "json"] {
        let data_dir = tempfile::tempdir().unwrap();
        let log = data_dir.path().join("flexauth.log");
        let served = Served::start(data_dir.path(), &log, &[("FLEXAUTH_LOG_FORMAT", format)]).await;
        let email = unique_email("first-day");
        let credentials = json!({ "email": email, "password": PASSWORD });
        assert_eq!(served.post("/v1/auth/signup", credentials.clone()).await.0, StatusCode::ACCEPTED);
        let started = Instant::now();
        let link = loop {
            let link = readme_newest_link(data_dir.path());
            if !link.is_empty() {
                break link;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "{format}: no link in the log");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(link.starts_with(&format!("{}/v1/auth/verify?token=", served.base)), "{format}: {link}");
        let (status, _) = served.post("/v1/auth/verify", json!({ "token": token_in(&link) })).await;
        assert_eq!(status, StatusCode::OK, "{format}");
        let (status, login) = served.post("/v1/auth/login", credentials).await;
        assert_eq!(status, StatusCode::OK, "{format}");
        let access = login["data"]["access_token"].as_str().unwrap();
        let claims = access.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims).unwrap(),
        )
        .unwrap();
        assert_eq!(claims["iss"], served.base.as_str(), "{format}");

        // The reset link is logged as the verification link is, and the recipe finds it.
        assert_eq!(served.post("/v1/auth/password/forgot", json!({ "email": email })).await.0, StatusCode::ACCEPTED);
        let started = Instant::now();
        let reset = loop {
            let newest = readme_newest_link(data_dir.path());
            if newest != link {
                break newest;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "{format}: no reset link in the log");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(reset.starts_with(&format!("{}/v1/auth/password/reset?token=", served.base)), "{format}: {reset}");
        let (status, _) = served
            .post("/v1/auth/password/reset", json!({ "token": token_in(&reset), "password": "a new passphrase 42" }))
            .await;
        assert_eq!(status, StatusCode::OK, "{format}: the logged reset link works");
        served.stop().await;
    }
}

#[test]
fn a_reader_that_stops_early_is_no_failure() {
    let output = std::process::Command::new("bash")
        .arg("-c")
        .arg("set -o pipefail; \"$0\" openapi | head -c 20 >/dev/null")
        .arg(env!("CARGO_BIN_EXE_flexauth"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "flexauth openapi | head: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_bad_setting_exits_2_and_one_found_only_by_using_it_exits_1() {
    let folder = tempfile::tempdir().unwrap();
    let (code, _, stderr) = bare_flexauth(folder.path(), &["serve"], &[("FLEXAUTH_ACCESS_TOKEN_TTL", "forever")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.starts_with("flexauth: invalid FLEXAUTH_ACCESS_TOKEN_TTL (--access-token-ttl): "), "{stderr}");
    let (code, _, stderr) = bare_flexauth(
        folder.path(),
        &["serve"],
        &[("FLEXAUTH_SMTP_URL", "mail.example.com:587"), ("FLEXAUTH_BIND", "127.0.0.1:0"), ("RUST_LOG", "off")],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("must begin with smtp:// or smtps://"), "{stderr}");
    let (code, _, stderr) = bare_flexauth(
        folder.path(),
        &["serve"],
        &[("FLEXAUTH_MAIL_FROM", "no-reply"), ("FLEXAUTH_BIND", "127.0.0.1:0"), ("RUST_LOG", "off")],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("is not a mailbox such as `flexauth <no-reply@example.com>`"), "{stderr}");
    // libpq's message spans lines; an operator's command says it in one, as the server does.
    for command in [&["clients", "list"][..], &["keys", "list"], &["accounts", "find", "ann@example.com"]] {
        let (code, _, stderr) = bare_flexauth(
            folder.path(),
            command,
            &[("FLEXAUTH_DATABASE_URL", "postgres://postgres@127.0.0.1:1/nowhere"), ("RUST_LOG", "off")],
        );
        assert_eq!(code, Some(1), "{command:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{command:?}: {stderr:?}");
        assert!(stderr.starts_with("flexauth: database (FLEXAUTH_DATABASE_URL): "), "{command:?}: {stderr}");
    }
}

/// A pooler in transaction mode that `FLEXAUTH_DATABASE_POOLER` does not name: flexauth sees
/// it and runs as if it were named, says so in one line, and a store opened without knowing
/// makes readiness name the setting instead of calling the database unreachable.
#[actix_web::test]
async fn a_transaction_pooler_nobody_named_is_seen_and_named() {
    let Some(pooler) = crate::scale_out::pgbouncer_url("the unnamed-pooler test") else { return };
    let env = TestEnv::new().await;
    if !env.is_postgres() {
        flexauth_store::test_db::skip("the unnamed-pooler test", "the API suite runs on SQLite", None);
        return;
    }
    let url = crate::scale_out::through(&env, &pooler);
    let direct = env.db.config().clone();
    let bounced = flexauth_store::DatabaseConfig::Postgres(url.clone());
    let detect = |config: flexauth_store::DatabaseConfig| {
        tokio::task::spawn_blocking(move || flexauth_store::Pooler::detect(&config).unwrap())
    };
    assert_eq!(detect(direct).await.unwrap(), flexauth_store::Pooler::None);
    assert_eq!(detect(bounced.clone()).await.unwrap(), flexauth_store::Pooler::Transaction);

    let (ok, _, stderr) =
        flexauth_with(&env, &["keys", "list"], &[("FLEXAUTH_DATABASE_URL", url.as_str()), ("RUST_LOG", "warn")]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("through a pooler in transaction mode")
            && stderr.contains("FLEXAUTH_DATABASE_POOLER=transaction"),
        "{stderr}"
    );

    // A store told nothing: its second use of a statement meets another server process.
    let store = flexauth_store::Store::connect_for_command(bounced, flexauth_store::Pooler::None).unwrap();
    store.check_ready().await.unwrap();
    // psql holds the server process the store just gave back (PgBouncer hands out the most
    // recently used first) while the store asks again.
    let mut holder = tokio::process::Command::new("psql")
        .args([url.as_str(), "-qAtc", "SELECT pg_sleep(3)"])
        .kill_on_drop(true)
        .spawn()
        .expect("psql runs (scripts/db-up installs it)");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let _ = store.check_ready().await;
    let refused = store.check_ready().await.unwrap_err().to_string();
    assert!(refused.contains("set FLEXAUTH_DATABASE_POOLER=transaction"), "{refused}");
    holder.wait().await.unwrap();

    // A serving store told nothing: its listening connection is answered by another server
    // process once psql holds the one that ran LISTEN, and from then on memory never vouches
    // for a session (nor the key cache for a key): the database answers.
    use flexauth_domain::session::EndedSessions as _;
    let serving = flexauth_store::Store::connect_through(
        flexauth_store::DatabaseConfig::Postgres(url.clone()),
        flexauth_store::Pooler::None,
    )
    .unwrap();
    serving.watch_ended_sessions(Duration::from_secs(3600));
    let session = flexauth_domain::newtypes::SessionId::from_uuid(uuid::Uuid::new_v4());
    let started = Instant::now();
    while serving.has_ended(session).is_none() {
        assert!(started.elapsed() < Duration::from_secs(10), "the listening connection never vouched");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut holder = tokio::process::Command::new("psql")
        .args([url.as_str(), "-qAtc", "SELECT pg_sleep(1)"])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    holder.wait().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(serving.has_ended(session), None, "memory no longer vouches");
}
