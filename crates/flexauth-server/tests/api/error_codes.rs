//! Every error code of docs/api.md, answered over HTTP with its documented status.

use std::collections::BTreeMap;
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{
    token_of, unique_email, wait_for_mail_to, wait_for_mails, wait_for_subject, Reply, TestClock, TestEnv, PASSWORD,
};
use flexauth_domain::system::Clock as _;

/// The error codes of the table in docs/api.md, with their statuses.
fn documented_codes() -> BTreeMap<String, u16> {
    let api = include_str!("../../../../docs/api.md");
    let table = api.split("## Error codes").nth(1).expect("docs/api.md has an error code table");
    table
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let code = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let status = cells.get(2)?.parse().ok()?;
            Some((code.to_owned(), status))
        })
        .collect()
}

/// The codes seen so far, with the status each came with.
#[derive(Default)]
struct Seen(BTreeMap<String, u16>);

impl Seen {
    fn record(&mut self, what: &str, reply: &Reply, expected: &str) {
        assert_eq!(reply.code(), expected, "{what}: {}", reply.text);
        assert!(reply.headers.contains_key("x-request-id"), "{what}: no x-request-id");
        if reply.status == StatusCode::UNAUTHORIZED {
            let challenge = reply
                .headers
                .get("www-authenticate")
                .map(|value| value.to_str().unwrap().to_owned())
                .unwrap_or_default();
            assert!(challenge.starts_with("Bearer"), "{what}: 401 without a Bearer challenge");
            if expected == "invalid_token" {
                assert!(challenge.contains("error=\"invalid_token\""), "{what}: {challenge}");
            }
        }
        self.0.insert(expected.to_owned(), reply.status.as_u16());
    }
}

#[actix_web::test]
async fn every_documented_error_code_is_answered_over_http_with_its_status() {
    let env = TestEnv::new().await;
    // Frozen, and moved only by the test: the login limit counts in fixed one-minute windows,
    // and real time crossing a window's end would start its count over.
    let clock = Arc::new(TestClock::frozen());
    let app = env.spawn_with_clock(&[], clock.clone()).await;
    let mut seen = Seen::default();
    let json_type = Some("application/json");

    seen.record("broken JSON", &app.post_raw("/v1/auth/login", json_type, b"{".to_vec()).await, "invalid_json");
    seen.record(
        "text body",
        &app.post_raw("/v1/auth/login", Some("text/plain"), b"hi".to_vec()).await,
        "unsupported_media_type",
    );
    seen.record("20 KiB", &app.post_raw("/v1/auth/login", json_type, vec![b' '; 20 * 1024]).await, "payload_too_large");
    seen.record(
        "bad email",
        &app.post("/v1/auth/signup", json!({ "email": "nope", "password": PASSWORD })).await,
        "invalid_email",
    );
    let fresh = unique_email("codes");
    seen.record(
        "short",
        &app.post("/v1/auth/signup", json!({ "email": fresh, "password": "short" })).await,
        "password_too_short",
    );
    seen.record(
        "long",
        &app.post("/v1/auth/signup", json!({ "email": fresh, "password": "p".repeat(300) })).await,
        "password_too_long",
    );
    seen.record(
        "common",
        &app.post("/v1/auth/signup", json!({ "email": fresh, "password": "password1" })).await,
        "password_too_common",
    );
    seen.record(
        "unknown link",
        &app.post("/v1/auth/verify", json!({ "token": "A".repeat(43) })).await,
        "invalid_verification_token",
    );
    seen.record(
        "unknown reset",
        &app.post("/v1/auth/password/reset", json!({ "token": "A".repeat(43), "password": "a new passphrase" })).await,
        "invalid_reset_token",
    );
    seen.record("no credentials", &app.get("/v1/auth/me").await, "missing_token");
    seen.record("garbage token", &app.get_with_bearer("/v1/usage", "garbage").await, "invalid_token");
    seen.record("garbage refresh", &app.refresh("garbage").await, "invalid_refresh_token");
    let foreign_page = app
        .client
        .post(app.url("/v1/auth/refresh"))
        .header("refresh-token-transport", "cookie")
        .header("origin", "https://evil.example")
        .header("cookie", "__Host-flexauth_refresh=eyJ")
        .send()
        .await
        .unwrap();
    seen.record("refresh cookie from a foreign page", &crate::helpers::read(foreign_page).await, "origin_not_allowed");
    seen.record("no such path", &app.get("/v1/nowhere").await, "not_found");
    seen.record("wrong method", &app.get("/v1/auth/login").await, "method_not_allowed");

    let owner = unique_email("owner");
    let session = app.verified_login(&env, &owner).await;
    let access = session["access_token"].as_str().unwrap().to_owned();
    let refresh = session["refresh_token"].as_str().unwrap().to_owned();
    seen.record(
        "wrong password",
        &app.post("/v1/auth/login", json!({ "email": owner, "password": "not the password" })).await,
        "invalid_credentials",
    );
    let wrong_current = app
        .post_json_with_bearer(
            "/v1/auth/password/change",
            &access,
            json!({ "current_password": "not it", "new_password": "a new passphrase" }),
        )
        .await;
    seen.record("wrong current password", &wrong_current, "invalid_current_password");
    seen.record(
        "empty key name",
        &app.post_json_with_bearer("/v1/api-keys", &access, json!({ "name": "" })).await,
        "invalid_api_key_name",
    );
    let past = app
        .post_json_with_bearer("/v1/api-keys", &access, json!({ "name": "old", "expires_at": "2001-01-01T00:00:00Z" }))
        .await;
    seen.record("expiry in the past", &past, "invalid_expiry");

    // Second factors, on an account of their own. Its second session logged in with the
    // password alone before the factor counted.
    let holder = unique_email("factors");
    let enrolling = app.verified_login(&env, &holder).await["access_token"].as_str().unwrap().to_owned();
    let password_only = app.login(&holder).await.body["data"]["access_token"].as_str().unwrap().to_owned();
    seen.record(
        "a blank factor name",
        &app.post_json_with_bearer("/v1/auth/mfa/totp", &enrolling, json!({ "name": " " })).await,
        "invalid_factor_name",
    );
    seen.record(
        "recovery codes without a factor",
        &app.post_with_bearer("/v1/auth/mfa/recovery-codes", &enrolling).await,
        "no_second_factor",
    );
    seen.record(
        "an unknown factor",
        &app.delete_with_bearer("/v1/auth/mfa/nothing", &enrolling).await,
        "factor_not_found",
    );
    let confirm = |enrolment: &crate::helpers::Reply| {
        format!("/v1/auth/mfa/totp/{}/confirm", enrolment.body["data"]["factor_id"].as_str().unwrap())
    };
    let first = app.post_with_bearer("/v1/auth/mfa/totp", &enrolling).await;
    seen.record(
        "a wrong code",
        &app.post_json_with_bearer(&confirm(&first), &enrolling, json!({ "code": "000000" })).await,
        "invalid_code",
    );
    // Ten factors are the most an account may have.
    let first_confirm = confirm(&first);
    let mut enrolment = first;
    for _ in 0..10 {
        let code = crate::mfa::code_at(enrolment.body["data"]["secret"].as_str().unwrap(), clock.now());
        let confirmed = app.post_json_with_bearer(&confirm(&enrolment), &enrolling, json!({ "code": code })).await;
        assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.text);
        enrolment = app.post_with_bearer("/v1/auth/mfa/totp", &enrolling).await;
    }
    seen.record("an eleventh factor", &enrolment, "too_many_factors");
    seen.record(
        "a factor confirmed twice",
        &app.post_json_with_bearer(&first_confirm, &enrolling, json!({ "code": "000000" })).await,
        "factor_already_confirmed",
    );
    seen.record("the password of an account with a factor", &app.login(&holder).await, "mfa_required");
    seen.record(
        "an unknown login challenge",
        &app.post("/v1/auth/login/mfa", json!({ "mfa_token": "A".repeat(43), "code": "123456" })).await,
        "invalid_mfa_token",
    );
    seen.record(
        "a passkey ceremony that never was",
        &app.post("/v1/auth/passkeys/authentication/nothing", json!({ "credential": {} })).await,
        "invalid_ceremony",
    );
    let ceremony = app.post("/v1/auth/passkeys/authentication", json!({})).await;
    let ceremony = ceremony.body["data"]["ceremony_id"].as_str().unwrap().to_owned();
    seen.record(
        "an answer that is no passkey credential",
        &app.post(&format!("/v1/auth/passkeys/authentication/{ceremony}"), json!({ "credential": {} })).await,
        "passkey_refused",
    );
    // A server whose public URL is on an IP address has no WebAuthn relying party.
    let on_an_address = env.spawn_tuned(|settings| settings.webauthn_rp_id = None).await;
    seen.record(
        "passkeys on a server without a domain",
        &on_an_address.post("/v1/auth/passkeys/authentication", json!({})).await,
        "passkeys_unavailable",
    );
    on_an_address.stop().await;
    seen.record(
        "a session that never proved the factor",
        &app.post_json_with_bearer("/v1/api-keys", &password_only, json!({ "name": "ci" })).await,
        "mfa_step_up_required",
    );
    seen.record("bad cursor", &app.get_with_bearer("/v1/auth/events?after=nope", &access).await, "invalid_cursor");
    seen.record(
        "bad scope",
        &app.post_json_with_bearer("/v1/auth/logout", &access, json!({ "scope": "everyone" })).await,
        "invalid_scope",
    );
    seen.record(
        "no such key",
        &app.delete_with_bearer(&format!("/v1/api-keys/{}", uuid::Uuid::new_v4()), &access).await,
        "api_key_not_found",
    );
    let no_session = app.delete_with_bearer(&format!("/v1/auth/sessions/{}", uuid::Uuid::new_v4()), &access).await;
    seen.record("no such session", &no_session, "session_not_found");
    let key = app.post_json_with_bearer("/v1/api-keys", &access, json!({ "name": "codes" })).await.body["data"]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    seen.record("API key on /me", &app.get_with_bearer("/v1/auth/me", &key).await, "jwt_required");
    let lacking = app.get_with_bearer("/v1/auth/check?scope=invoices:read", &key).await;
    assert!(
        lacking.headers.get("www-authenticate").unwrap().to_str().unwrap().contains(r#"scope="invoices:read""#),
        "{:?}",
        lacking.headers
    );
    seen.record("a key without the scope asked for", &lacking, "insufficient_scope");
    let stranger = crate::introspection::introspect_form(&app, None, &[("token", &key)]).await;
    assert!(stranger.headers.get("www-authenticate").unwrap().to_str().unwrap().starts_with("Basic"));
    seen.0.insert(stranger.code().to_owned(), stranger.status.as_u16());
    assert_eq!(stranger.code(), "invalid_client", "{}", stranger.text);
    let (client_id, client_secret) = crate::introspection::register_client(&env, "codes");
    let formless =
        crate::introspection::introspect_form(&app, Some((&client_id, &client_secret)), &[("hint", "none")]).await;
    seen.record("an introspection without a token", &formless, "invalid_request");

    seen.record(
        "move to the same address",
        &app.post_json_with_bearer("/v1/auth/email/change", &access, json!({ "new_email": owner })).await,
        "email_unchanged",
    );
    seen.record(
        "unknown change link",
        &app.post("/v1/auth/email/confirm", json!({ "token": "A".repeat(43), "password": "any password" })).await,
        "invalid_link",
    );
    let taken_meanwhile = unique_email("meanwhile");
    app.post_json_with_bearer("/v1/auth/email/change", &access, json!({ "new_email": taken_meanwhile })).await;
    let change_link = wait_for_subject(env.smtp(), &taken_meanwhile, "Confirm your new email address").await;
    // Someone else signs up with that address and verifies it before the link is used.
    app.signup(&taken_meanwhile).await;
    let verification = wait_for_subject(env.smtp(), &taken_meanwhile, "Verify your email address").await;
    crate::helpers::confirm_in_browser(&app, &verification, PASSWORD).await;
    seen.record(
        "address taken before the confirmation",
        &app.post("/v1/auth/email/confirm", json!({ "token": token_of(&change_link), "password": PASSWORD })).await,
        "email_change_conflict",
    );
    let disabled = unique_email("disabled");
    let disabled_id = app
        .get_with_bearer("/v1/auth/me", app.verified_login(&env, &disabled).await["access_token"].as_str().unwrap())
        .await
        .body["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (ok, _, stderr) = crate::lifecycle::flexauth(&env, &["accounts", "disable", &disabled_id]);
    assert!(ok, "{stderr}");
    seen.record("disabled account", &app.login(&disabled).await, "account_disabled");

    let rotated = app.refresh(&refresh).await.body["data"]["refresh_token"].as_str().unwrap().to_owned();
    let newest = app.refresh(&rotated).await.body["data"]["refresh_token"].as_str().unwrap().to_owned();
    seen.record("grandparent refresh token", &app.refresh(&refresh).await, "refresh_token_reused");
    seen.record("refresh after reuse", &app.refresh(&newest).await, "session_revoked");

    let pending = unique_email("pending");
    app.post("/v1/auth/signup", json!({ "email": pending, "password": PASSWORD })).await;
    let first_link = wait_for_mail_to(env.smtp(), &pending).await;
    seen.record(
        "unverified login",
        &app.post("/v1/auth/login", json!({ "email": pending, "password": PASSWORD })).await,
        "email_not_verified",
    );
    app.post("/v1/auth/signup", json!({ "email": pending, "password": "another passphrase" })).await;
    wait_for_mails(env.smtp(), &pending, 2).await;
    seen.record(
        "two pending sign-ups",
        &app.post("/v1/auth/verify", json!({ "token": token_of(&first_link) })).await,
        "password_required",
    );

    // Time-dependent codes, in the order their windows close.
    let later = app.post("/v1/auth/login", json!({ "email": owner, "password": PASSWORD })).await.body["data"].clone();
    let later_access = later["access_token"].as_str().unwrap().to_owned();
    app.post("/v1/auth/password/forgot", json!({ "email": owner })).await;
    let reset_link = wait_for_subject(env.smtp(), &owner, "Reset your password").await;
    let late_move = unique_email("late-move");
    app.post_json_with_bearer("/v1/auth/email/change", &later_access, json!({ "new_email": late_move })).await;
    let late_link = wait_for_subject(env.smtp(), &late_move, "Confirm your new email address").await;
    clock.advance(time::Duration::minutes(11));
    seen.record(
        "stale authentication",
        &app.post_json_with_bearer("/v1/api-keys", &later_access, json!({ "name": "late" })).await,
        "reauthentication_required",
    );
    clock.advance(time::Duration::hours(1));
    let expired_reset = app
        .post("/v1/auth/password/reset", json!({ "token": token_of(&reset_link), "password": "a new passphrase" }))
        .await;
    seen.record("expired reset link", &expired_reset, "reset_token_expired");
    clock.advance(time::Duration::hours(24));
    seen.record(
        "expired change link",
        &app.post("/v1/auth/email/confirm", json!({ "token": token_of(&late_link), "password": PASSWORD })).await,
        "link_expired",
    );
    let expired_link =
        app.post("/v1/auth/verify", json!({ "token": token_of(&first_link), "password": "chosen late" })).await;
    seen.record("expired verification link", &expired_link, "verification_token_expired");
    clock.advance(time::Duration::days(30));
    seen.record(
        "expired refresh token",
        &app.refresh(later["refresh_token"].as_str().unwrap()).await,
        "refresh_token_expired",
    );

    // Ten failed logins from this address use up its allowance; the eleventh is limited.
    for _ in 0..10 {
        app.post("/v1/auth/login", json!({ "email": unique_email("spray"), "password": "not it" })).await;
    }
    let limited = app.post("/v1/auth/login", json!({ "email": unique_email("spray"), "password": "not it" })).await;
    assert!(limited.headers.contains_key("retry-after"));
    seen.record("the eleventh failed login", &limited, "rate_limited");

    if env.db.set_reachable(false) {
        seen.record("database unreachable", &app.get("/readyz").await, "not_ready");
        let refused = app.post("/v1/auth/login", json!({ "email": owner, "password": PASSWORD })).await;
        assert_eq!(refused.headers.get("retry-after").and_then(|value| value.to_str().ok()), Some("2"));
        seen.record("database unreachable", &refused, "unavailable");
        assert!(env.db.set_reachable(true));
    } else {
        eprintln!(
            "not_ready and unavailable are asserted on PostgreSQL only: an SQLite file cannot become \
            unreachable under its connection"
        );
    }
    // A database that answers but lost a table: a failure nobody planned for. The login's
    // first step, counting the attempt, needs it.
    flexauth_store::test_db::execute(env.store(), "ALTER TABLE rate_limits RENAME TO rate_limits_elsewhere").await;
    let failed = app.post("/v1/auth/login", json!({ "email": owner, "password": PASSWORD })).await;
    seen.record("a table gone", &failed, "internal_error");
    let message = failed.body["error"]["message"].as_str().unwrap();
    let request_id = failed.headers.get("x-request-id").unwrap().to_str().unwrap();
    assert!(message.contains(request_id), "the message quotes the request id: {message}");
    assert!(!message.to_lowercase().contains("rate_limits"), "no cause reaches the client: {message}");

    let documented = documented_codes();
    let mut expected = documented.clone();
    // Asserted by abuse::a_login_flood_beyond_the_hash_pool_gets_503_at_once_and_every_accepted_login_succeeds,
    // which needs a flood of its own.
    assert_eq!(expected.remove("overloaded"), Some(503));
    // Asserted by connections::five_hundred_slow_bodies_are_cut_off_at_their_deadline_and_health_checks_answer_meanwhile,
    // which waits out a body deadline.
    assert_eq!(expected.remove("request_timeout"), Some(408));
    if !env.is_postgres() {
        expected.remove("not_ready");
        expected.remove("unavailable");
    }
    assert_eq!(seen.0, expected, "codes answered (with statuses) differ from docs/api.md");
    assert!(documented.len() >= 32, "the table was read: {documented:?}");
    app.stop().await;
}

#[test]
fn the_table_of_docs_api_md_is_every_code_the_server_has() {
    let declared: BTreeMap<String, u16> = flexauth_server::error::ErrorCode::ALL
        .iter()
        .map(|code| (code.as_str().to_owned(), code.status().as_u16()))
        .collect();
    assert_eq!(documented_codes(), declared, "docs/api.md's error codes and statuses are ErrorCode's");
}
