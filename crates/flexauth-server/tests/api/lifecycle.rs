//! An account's life after sign-up: the operator's commands (the real `flexauth` binary on the
//! shared database) and the owner's address change, deletion and export, over real SMTP.

use flexauth_store::DatabaseConfig;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{confirm_in_browser, mails_to, unique_email, wait_for_subject, TestApp, TestEnv, PASSWORD};

/// Runs `flexauth ARGS…` on the environment's database; returns the exit status's success, the
/// JSON printed on stdout (or null) and stderr.
pub(crate) fn flexauth(env: &TestEnv, args: &[&str]) -> (bool, Value, String) {
    flexauth_with(env, args, &[])
}

/// [`flexauth`] with more environment variables.
pub(crate) fn flexauth_with(env: &TestEnv, args: &[&str], vars: &[(&str, &str)]) -> (bool, Value, String) {
    let database_url = match env.db.config() {
        DatabaseConfig::Postgres(url) => url.clone(),
        DatabaseConfig::Sqlite(path) => format!("sqlite://{}", path.display()),
    };
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_flexauth"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("FLEXAUTH_DATABASE_URL", database_url)
        .env("FLEXAUTH_DATA_DIR", env.data_dir.path())
        .env("RUST_LOG", "warn")
        .envs(vars.iter().copied())
        .output()
        .expect("the flexauth binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() && stderr.is_empty() {
        // A failure that said nothing (a signal): say at least how it ended.
        stderr = format!("flexauth {args:?} ended with {} and printed nothing; stdout: {stdout}", output.status);
    }
    (output.status.success(), serde_json::from_str(&stdout).unwrap_or(Value::Null), stderr)
}

/// Whether anything the database holds contains `needle`: `pg_dump` of the whole database on
/// PostgreSQL; on SQLite the raw bytes of the database file after a checkpoint (deleted rows
/// are overwritten: `secure_delete` is on).
pub(crate) async fn database_holds(env: &TestEnv, needle: &str) -> bool {
    match env.db.config() {
        DatabaseConfig::Postgres(url) => {
            let dump = std::process::Command::new("pg_dump").arg("--no-owner").arg(url).output().expect("pg_dump runs");
            assert!(dump.status.success(), "pg_dump: {}", String::from_utf8_lossy(&dump.stderr));
            let text = String::from_utf8_lossy(&dump.stdout);
            assert!(text.contains("COPY public.accounts"), "the dump holds the tables");
            text.contains(needle)
        }
        DatabaseConfig::Sqlite(path) => {
            flexauth_store::test_db::execute(env.store(), "PRAGMA wal_checkpoint(TRUNCATE)").await;
            let mut bytes = std::fs::read(path).unwrap();
            bytes.extend(std::fs::read(path.with_extension("sqlite3-wal")).unwrap_or_default());
            bytes.windows(needle.len()).any(|window| window == needle.as_bytes())
        }
    }
}

async fn account_id(app: &TestApp, access: &str) -> String {
    let me = app.get_with_bearer("/v1/auth/me", access).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    me.body["data"]["id"].as_str().unwrap().to_owned()
}

#[actix_web::test]
async fn a_disabled_account_loses_every_session_and_key_on_every_instance_at_once_and_cannot_log_in() {
    let env = TestEnv::new().await;
    let first = env.spawn().await;
    let second = env.spawn_with(&["--verify-session-on-request", "true"]).await;
    let email = unique_email("disabled");
    let login = first.verified_login(&env, &email).await;
    let access = login["access_token"].as_str().unwrap();
    let id = account_id(&first, access).await;
    let created = first.post_json_with_bearer("/v1/api-keys", access, json!({ "name": "nightly job" })).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let key = created.body["data"]["key"].as_str().unwrap().to_owned();
    let other = second.login(&email).await.body["data"].clone();
    for app in [&first, &second] {
        assert_eq!(
            app.get_with_bearer("/v1/usage", &key).await.status,
            StatusCode::OK,
            "the key works (and is cached) before"
        );
    }

    let (ok, found, stderr) = flexauth(&env, &["accounts", "find", &email]);
    assert!(ok, "{stderr}");
    assert_eq!(found["account"]["id"], id.as_str());
    assert_eq!(found["sessions"].as_array().unwrap().len(), 2);
    assert_eq!(found["api_keys"].as_array().unwrap().len(), 1);
    let (ok, done, stderr) = flexauth(&env, &["accounts", "disable", &id]);
    assert!(ok, "{stderr}");
    assert_eq!(done, json!({ "account_id": id, "done": "disabled" }));

    // The moment the command returns, on both instances.
    for app in [&first, &second] {
        assert_eq!(app.get_with_bearer("/v1/usage", &key).await.status, StatusCode::UNAUTHORIZED, "the key is refused");
    }
    assert_eq!(first.refresh(login["refresh_token"].as_str().unwrap()).await.code(), "session_revoked");
    assert_eq!(second.refresh(other["refresh_token"].as_str().unwrap()).await.code(), "session_revoked");
    assert_eq!(
        second.get_with_bearer("/v1/auth/me", other["access_token"].as_str().unwrap()).await.status,
        StatusCode::UNAUTHORIZED
    );
    // The right password is told the account is disabled; a wrong one learns nothing more.
    assert_eq!(first.login(&email).await.code(), "account_disabled");
    assert_eq!(
        first.post("/v1/auth/login", json!({ "email": email, "password": "wrong password here" })).await.code(),
        "invalid_credentials"
    );
    let (_, shown, _) = flexauth(&env, &["accounts", "show", &id]);
    assert!(shown["account"]["disabled_at"].is_string());
    assert_eq!(shown["sessions"], json!([]));
    assert_eq!(shown["api_keys"], json!([]));
    let kinds: Vec<&str> =
        shown["security_events"].as_array().unwrap().iter().map(|event| event["type"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"account_disabled"), "recorded in the owner's log: {kinds:?}");

    let (ok, done, _) = flexauth(&env, &["accounts", "enable", &id]);
    assert!(ok);
    assert_eq!(done["done"], "enabled");
    assert_eq!(first.login(&email).await.status, StatusCode::OK);
    assert_eq!(
        first.get_with_bearer("/v1/usage", &key).await.status,
        StatusCode::UNAUTHORIZED,
        "ended keys stay ended"
    );

    let (ok, _, stderr) = flexauth(&env, &["accounts", "disable", "7b4f9c3e-0000-4000-8000-000000000000"]);
    assert!(!ok);
    assert_eq!(stderr.trim(), "flexauth: no such account");
    first.stop().await;
    second.stop().await;
}

#[actix_web::test]
async fn an_operator_deletion_leaves_no_row_that_holds_the_address_and_keeps_the_log_under_another_id() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let email = unique_email("erased");
    let login = app.verified_login(&env, &email).await;
    let access = login["access_token"].as_str().unwrap();
    let id = account_id(&app, access).await;
    assert_eq!(
        app.post_json_with_bearer("/v1/api-keys", access, json!({ "name": "to go" })).await.status,
        StatusCode::CREATED
    );
    // Mail that cannot leave yet: queued to the address when the account goes.
    env.smtp().reject_recipients(Some(450));
    assert_eq!(app.post("/v1/auth/password/forgot", json!({ "email": email })).await.status, StatusCode::ACCEPTED);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(database_holds(&env, &email).await);

    let (ok, done, stderr) = flexauth(&env, &["accounts", "delete", &id]);
    assert!(ok, "{stderr}");
    assert_eq!(done["done"], "deleted");
    env.smtp().reject_recipients(None);
    assert!(!database_holds(&env, &email).await, "a row still holds the address");
    assert!(!database_holds(&env, &id).await, "a row still names the account");
    let (ok, _, _) = flexauth(&env, &["accounts", "show", &id]);
    assert!(!ok);
    assert_eq!(app.refresh(login["refresh_token"].as_str().unwrap()).await.status, StatusCode::UNAUTHORIZED);
    // The address is free again.
    assert_eq!(app.signup(&email).await.status, StatusCode::ACCEPTED);
    app.stop().await;
}

/// A fresh session of `email` that has just proved its password.
async fn fresh_session(app: &TestApp, email: &str) -> Value {
    let login = app.login(email).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    login.body["data"].clone()
}

#[actix_web::test]
async fn an_address_change_happens_only_when_the_new_address_confirms_and_the_old_address_can_undo_it() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let (old, new) = (unique_email("mover"), unique_email("moved"));
    let login = app.verified_login(&env, &old).await;
    let access = login["access_token"].as_str().unwrap().to_owned();

    let asked = app.post_json_with_bearer("/v1/auth/email/change", &access, json!({ "new_email": new })).await;
    assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.text);
    let confirmation = wait_for_subject(env.smtp(), &new, "Confirm your new email address").await;
    let notice = wait_for_subject(env.smtp(), &old, "Your account's email address is changing").await;
    // Nothing moved yet; opening the link (a scanner) moves nothing either.
    assert_eq!(app.get(&crate::helpers::verify_path(&confirmation)).await.status, StatusCode::OK);
    assert_eq!(app.login(&old).await.status, StatusCode::OK);
    assert_eq!(app.login(&new).await.code(), "invalid_credentials");

    let page = confirm_in_browser(&app, &confirmation, PASSWORD).await;
    assert!(page.text.contains("Email address changed"), "{}", page.text);
    assert_eq!(app.login(&old).await.code(), "invalid_credentials");
    let moved = fresh_session(&app, &new).await;
    let me = app.get_with_bearer("/v1/auth/me", moved["access_token"].as_str().unwrap()).await;
    assert_eq!(me.body["data"]["email"], new.as_str());
    assert_eq!(me.body["data"]["email_verified"], true);
    // The link works once.
    let again = app.get(&crate::helpers::verify_path(&confirmation)).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);

    // The old address says it was not them: back to the old address, every session ended.
    let undone = confirm_in_browser(&app, &notice, PASSWORD).await;
    assert!(undone.text.contains("Change undone"), "{}", undone.text);
    assert_eq!(app.refresh(moved["refresh_token"].as_str().unwrap()).await.code(), "session_revoked");
    assert_eq!(app.login(&new).await.code(), "invalid_credentials");
    assert_eq!(app.login(&old).await.code(), "invalid_credentials", "the password whoever asked knew is cleared");
    // The owner chooses a new one through the old address.
    assert_eq!(app.post("/v1/auth/password/forgot", json!({ "email": old })).await.status, StatusCode::ACCEPTED);
    let reset = wait_for_subject(env.smtp(), &old, "Reset your password").await;
    let chosen = app
        .post(
            "/v1/auth/password/reset",
            json!({ "token": crate::helpers::token_of(&reset), "password": "a fresh passphrase" }),
        )
        .await;
    assert!(chosen.status.is_success(), "{}", chosen.text);
    assert_eq!(
        app.post("/v1/auth/login", json!({ "email": old, "password": "a fresh passphrase" })).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get(&crate::helpers::verify_path(&notice)).await.status,
        StatusCode::BAD_REQUEST,
        "the undo link works once"
    );
    app.stop().await;
}

#[actix_web::test]
async fn asking_to_move_to_a_taken_address_answers_alike_and_moves_nothing() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let (mine, theirs, free) = (unique_email("asker"), unique_email("holder"), unique_email("free"));
    let login = app.verified_login(&env, &mine).await;
    app.verified_login(&env, &theirs).await;
    let access = login["access_token"].as_str().unwrap();

    let to_taken = app.post_json_with_bearer("/v1/auth/email/change", access, json!({ "new_email": theirs })).await;
    let to_free = app.post_json_with_bearer("/v1/auth/email/change", access, json!({ "new_email": free })).await;
    assert_eq!((to_taken.status, to_free.status), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(to_taken.body, to_free.body, "the answer does not tell which address is taken");
    let warned = wait_for_subject(env.smtp(), &theirs, "Someone tried to use your email address").await;
    assert!(!warned.data.contains("token"), "the holder of the taken address gets no link");
    assert_eq!(
        wait_for_subject(env.smtp(), &mine, "Your account's email address is changing").await.subject().as_deref(),
        Some("Your account's email address is changing")
    );
    assert_eq!(app.login(&theirs).await.status, StatusCode::OK, "the other account is untouched");
    // The same address and a stale session are refused plainly.
    assert_eq!(
        app.post_json_with_bearer("/v1/auth/email/change", access, json!({ "new_email": mine })).await.code(),
        "email_unchanged"
    );
    app.stop().await;
}

#[actix_web::test]
async fn an_owner_takes_a_copy_of_their_data_and_deletes_the_account_with_a_goodbye() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let email = unique_email("leaver");
    let login = app.verified_login(&env, &email).await;
    let access = login["access_token"].as_str().unwrap();
    let created = app.post_json_with_bearer("/v1/api-keys", access, json!({ "name": "exported key" })).await;
    let key = created.body["data"]["key"].as_str().unwrap().to_owned();

    let export = app.get_with_bearer("/v1/auth/account/export", access).await;
    assert_eq!(export.status, StatusCode::OK, "{}", export.text);
    assert_eq!(export.headers.get("cache-control").unwrap(), "no-store");
    let data = &export.body["data"];
    assert_eq!(data["account"]["email"], email.as_str());
    assert_eq!(data["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(data["api_keys"][0]["name"], "exported key");
    assert!(!export.text.contains(&key[8..]), "no secret in the copy");
    let kinds: Vec<&str> =
        data["security_events"].as_array().unwrap().iter().map(|event| event["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"account_exported"));
    assert!(kinds.contains(&"login_succeeded") && kinds.contains(&"api_key_created"), "{kinds:?}");
    // An API key cannot take the copy nor delete the account.
    assert_eq!(app.get_with_bearer("/v1/auth/account/export", &key).await.code(), "jwt_required");
    assert_eq!(app.delete_with_bearer("/v1/auth/account", &key).await.code(), "jwt_required");

    let deleted = app.delete_with_bearer("/v1/auth/account", access).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    let goodbye = wait_for_subject(env.smtp(), &email, "Your account was deleted").await;
    assert!(goodbye.data.contains("Your account at"), "{}", goodbye.data);
    assert_eq!(app.get_with_bearer("/v1/usage", &key).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.refresh(login["refresh_token"].as_str().unwrap()).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.login(&email).await.code(), "invalid_credentials");
    // Once the goodbye is sent, not even it holds the address.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while database_holds(&env, &email).await {
        assert!(std::time::Instant::now() < deadline, "the sent goodbye still holds the address");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        mails_to(env.smtp(), &email)
            .iter()
            .filter(|mail| mail.subject().as_deref() == Some("Your account was deleted"))
            .count(),
        1
    );
    app.stop().await;
}

#[actix_web::test]
async fn deleting_or_moving_the_account_needs_a_recent_password() {
    let env = TestEnv::new().await;
    let clock = std::sync::Arc::new(crate::helpers::TestClock::default());
    let app = env.spawn_with_clock(&[], clock.clone()).await;
    let email = unique_email("stolen");
    let login = app.verified_login(&env, &email).await;
    // A stolen access token, eleven minutes after its login.
    clock.advance(time::Duration::minutes(11));
    let access = login["access_token"].as_str().unwrap();
    assert_eq!(app.delete_with_bearer("/v1/auth/account", access).await.code(), "reauthentication_required");
    assert_eq!(
        app.post_json_with_bearer("/v1/auth/email/change", access, json!({ "new_email": unique_email("attacker") }))
            .await
            .code(),
        "reauthentication_required"
    );
    assert_eq!(app.get_with_bearer("/v1/auth/account/export", access).await.code(), "reauthentication_required");
    assert_eq!(app.login(&email).await.status, StatusCode::OK, "the account is still there");
    // The OpenAPI document says so of each of them.
    let document = app.get("/openapi.json").await.body;
    for (path, method) in
        [("/v1/auth/account", "delete"), ("/v1/auth/email/change", "post"), ("/v1/auth/account/export", "get")]
    {
        let operation = &document["paths"][path][method];
        let codes = operation["responses"]["403"]["content"]["application/json"]["schema"]["properties"]["error"]
            ["properties"]["code"]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{method} {path}: no 403"));
        assert!(codes.iter().any(|code| code == "reauthentication_required"), "{method} {path}: {codes:?}");
        let description = operation["description"].as_str().unwrap().split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(description.contains("needs a recent authentication"), "{method} {path}: {description}");
    }
    app.stop().await;
}

/// The account of `email` moved to `to` by a session that just logged in with the password,
/// confirmed from `to`'s inbox; returns the undo notice sent to `email`.
async fn move_account(env: &TestEnv, app: &TestApp, email: &str, to: &str) -> crate::helpers::ReceivedMessage {
    let session = fresh_session(app, email).await;
    let asked = app
        .post_json_with_bearer(
            "/v1/auth/email/change",
            session["access_token"].as_str().unwrap(),
            json!({ "new_email": to }),
        )
        .await;
    assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.text);
    let confirmation = wait_for_subject(env.smtp(), to, "Confirm your new email address").await;
    let notice = wait_for_subject(env.smtp(), email, "Your account's email address is changing").await;
    assert!(confirm_in_browser(app, &confirmation, PASSWORD).await.text.contains("Email address changed"));
    notice
}

#[actix_web::test]
async fn an_attacker_who_moved_the_account_twice_cannot_take_it_back_once_the_owner_undoes() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let (owner, first_hop, second_hop) = (unique_email("owner"), unique_email("hop-one"), unique_email("hop-two"));
    app.verified_login(&env, &owner).await;
    let id = account_id(&app, fresh_session(&app, &owner).await["access_token"].as_str().unwrap()).await;
    // Someone with the password moves the account to an address of theirs, then on again, so
    // that the undo link of the second move goes to them.
    let owners_undo = move_account(&env, &app, &owner, &first_hop).await;
    let attackers_undo = move_account(&env, &app, &first_hop, &second_hop).await;

    assert!(confirm_in_browser(&app, &owners_undo, PASSWORD).await.text.contains("Change undone"));
    let (_, found, _) = flexauth(&env, &["accounts", "find", &owner]);
    assert_eq!(found["account"]["id"], id.as_str(), "the account is back at the owner's address");
    // The later undo link no longer works, and the password they knew is gone.
    assert_eq!(app.get(&crate::helpers::verify_path(&attackers_undo)).await.status, StatusCode::BAD_REQUEST);
    let replayed = app.post("/v1/auth/email/undo", json!({ "token": crate::helpers::token_of(&attackers_undo) })).await;
    assert_eq!(replayed.status, StatusCode::BAD_REQUEST, "{}", replayed.text);
    for address in [&owner, &first_hop, &second_hop] {
        assert_eq!(app.login(address).await.code(), "invalid_credentials", "{address}");
    }
    let (_, found, _) = flexauth(&env, &["accounts", "find", &owner]);
    assert_eq!(found["account"]["id"], id.as_str(), "still the owner's");
    app.stop().await;
}

#[actix_web::test]
async fn an_unverified_sign_up_squatting_the_old_address_cannot_block_the_undo() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let (owner, taken_over) = (unique_email("squatted"), unique_email("squatter"));
    app.verified_login(&env, &owner).await;
    let id = account_id(&app, fresh_session(&app, &owner).await["access_token"].as_str().unwrap()).await;
    let owners_undo = move_account(&env, &app, &owner, &taken_over).await;
    // The old address is free now: a sign-up takes it (unverified).
    assert_eq!(app.signup(&owner).await.status, StatusCode::ACCEPTED);
    // The owner's own first link was one; the squatter's sign-up, once handled, sends another.
    crate::helpers::eventually("the squatter's sign-up", || {
        let links = mails_to(env.smtp(), &owner)
            .iter()
            .filter(|mail| mail.subject().as_deref() == Some("Verify your email address"))
            .count();
        (links >= 2).then_some(())
    })
    .await;

    assert!(confirm_in_browser(&app, &owners_undo, PASSWORD).await.text.contains("Change undone"));
    let (_, found, _) = flexauth(&env, &["accounts", "find", &owner]);
    assert_eq!(found["account"]["id"], id.as_str());
    app.stop().await;
}

#[actix_web::test]
async fn address_changes_are_limited_per_account_so_nobody_is_mail_bombed_through_them() {
    let env = TestEnv::new().await;
    // Frozen: the limit counts in a fixed one-hour window.
    let app = env.spawn_with_clock(&[], std::sync::Arc::new(crate::helpers::TestClock::frozen())).await;
    let login = app.verified_login(&env, &unique_email("bomber")).await;
    let access = login["access_token"].as_str().unwrap();
    for attempt in 1..=5 {
        let asked = app
            .post_json_with_bearer("/v1/auth/email/change", access, json!({ "new_email": unique_email("target") }))
            .await;
        assert_eq!(asked.status, StatusCode::ACCEPTED, "request {attempt}: {}", asked.text);
    }
    let victim = unique_email("victim");
    let sixth = app.post_json_with_bearer("/v1/auth/email/change", access, json!({ "new_email": victim })).await;
    assert_eq!((sixth.status, sixth.code()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"), "{}", sixth.text);
    assert!(sixth.headers.get("retry-after").is_some());
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(mails_to(env.smtp(), &victim).is_empty(), "the refused request sent nothing");
    app.stop().await;
}

#[actix_web::test]
async fn a_confirmation_racing_the_undo_never_leaves_the_account_at_the_new_address() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    for round in 0..3 {
        let (old, new) = (unique_email("raced-old"), unique_email("raced-new"));
        let login = app.verified_login(&env, &old).await;
        let asked = app
            .post_json_with_bearer(
                "/v1/auth/email/change",
                login["access_token"].as_str().unwrap(),
                json!({ "new_email": new }),
            )
            .await;
        assert_eq!(asked.status, StatusCode::ACCEPTED);
        let confirmation = wait_for_subject(env.smtp(), &new, "Confirm your new email address").await;
        let undo = wait_for_subject(env.smtp(), &old, "Your account's email address is changing").await;
        let (confirmed, undone) = futures_util::future::join(
            app.post(
                "/v1/auth/email/confirm",
                json!({ "token": crate::helpers::token_of(&confirmation), "password": PASSWORD }),
            ),
            app.post("/v1/auth/email/undo", json!({ "token": crate::helpers::token_of(&undo) })),
        )
        .await;
        // Whichever commits first, the undo wins: it works before and after the confirmation.
        assert_eq!(undone.status, StatusCode::OK, "round {round}: {}", undone.text);
        assert!(
            confirmed.status == StatusCode::OK || confirmed.code() == "invalid_link",
            "round {round}: {}",
            confirmed.text
        );
        let (found, _, _) = flexauth(&env, &["accounts", "find", &old]);
        assert!(found, "round {round}: the account is at the old address");
        let (moved, _, _) = flexauth(&env, &["accounts", "find", &new]);
        assert!(!moved, "round {round}: no account at the new address");
    }
    app.stop().await;
}

#[actix_web::test]
async fn an_unverified_sign_up_of_the_new_address_does_not_block_the_owners_move() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let (owner, wanted) = (unique_email("moving-owner"), unique_email("squatted-new"));
    let login = app.verified_login(&env, &owner).await;
    let id = account_id(&app, login["access_token"].as_str().unwrap()).await;
    // A stranger signs the wanted address up first and never confirms.
    let squatted = app.post("/v1/auth/signup", json!({ "email": wanted, "password": "the squatter's choice" })).await;
    assert_eq!(squatted.status, StatusCode::ACCEPTED);
    let squatters_link = wait_for_subject(env.smtp(), &wanted, "Verify your email address").await;

    let asked = app
        .post_json_with_bearer(
            "/v1/auth/email/change",
            login["access_token"].as_str().unwrap(),
            json!({ "new_email": wanted }),
        )
        .await;
    assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.text);
    let confirmation = wait_for_subject(env.smtp(), &wanted, "Confirm your new email address").await;
    assert!(mails_to(env.smtp(), &wanted)
        .iter()
        .all(|mail| mail.subject().as_deref() != Some("Someone tried to use your email address")));
    assert!(confirm_in_browser(&app, &confirmation, PASSWORD).await.text.contains("Email address changed"));
    let (_, found, _) = flexauth(&env, &["accounts", "find", &wanted]);
    assert_eq!(found["account"]["id"], id.as_str(), "the owner's account has the address");
    // The squatter's sign-up went with the squatting account.
    assert_eq!(
        app.post("/v1/auth/login", json!({ "email": wanted, "password": "the squatter's choice" })).await.code(),
        "invalid_credentials"
    );
    let page = app.get(&crate::helpers::verify_path(&squatters_link)).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.text);
    assert_eq!(app.login(&wanted).await.status, StatusCode::OK);
    app.stop().await;
}
