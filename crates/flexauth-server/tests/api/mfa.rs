//! Second factors through the API: TOTP enrolment, the two-step login, replay, races,
//! recovery codes, challenge expiry, step-up, and no bypass through a password reset. The
//! codes come from `totp-lite`, an RFC 6238 implementation other than flexauth's, as an
//! authenticator app's would.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use flexauth_domain::system::Clock as _;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{token_of, unique_email, wait_for_subject, TestApp, TestClock, TestEnv, PASSWORD};

/// RFC 4648 base32, as an authenticator app reads the secret of an `otpauth://` URI.
fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits = 0u64;
    let mut count = 0;
    let mut bytes = Vec::new();
    for character in text.trim_end_matches('=').bytes() {
        let value = ALPHABET.iter().position(|&letter| letter == character).expect("a base32 letter") as u64;
        bits = (bits << 5) | value;
        count += 5;
        if count >= 8 {
            count -= 8;
            bytes.push((bits >> count) as u8);
        }
    }
    bytes
}

/// The authenticator app of the test: the code of `secret` at `at`.
pub(crate) fn code_at(secret: &str, at: time::OffsetDateTime) -> String {
    let seconds = u64::try_from(at.unix_timestamp()).unwrap();
    totp_lite::totp_custom::<totp_lite::Sha1>(30, 6, &base32_decode(secret), seconds)
}

/// The claims of a JWT, read without checking it (the other tests check signatures).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// An account with a confirmed authenticator; returns its secret, its recovery codes and the
/// tokens of the session that enrolled it.
async fn enrolled(app: &TestApp, env: &TestEnv, email: &str, clock: &TestClock) -> (String, Vec<String>, Value) {
    let session = app.verified_login(env, email).await;
    let access = session["access_token"].as_str().unwrap();
    let enrolment = app.post_json_with_bearer("/v1/auth/mfa/totp", access, json!({ "name": "phone" })).await;
    assert_eq!(enrolment.status, StatusCode::CREATED, "{}", enrolment.text);
    let data = &enrolment.body["data"];
    let secret = data["secret"].as_str().unwrap().to_owned();
    let factor = data["factor_id"].as_str().unwrap().to_owned();
    let confirm = format!("/v1/auth/mfa/totp/{factor}/confirm");
    let confirmed = app.post_json_with_bearer(&confirm, access, json!({ "code": code_at(&secret, clock.now()) })).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.text);
    let codes = confirmed.body["data"]["recovery_codes"].as_array().unwrap();
    let codes = codes.iter().map(|code| code.as_str().unwrap().to_owned()).collect();
    (secret, codes, session)
}

async fn mfa_token(app: &TestApp, email: &str) -> String {
    let login = app.login(email).await;
    assert_eq!((login.status, login.code()), (StatusCode::FORBIDDEN, "mfa_required"), "{}", login.text);
    login.body["error"]["mfa_token"].as_str().unwrap().to_owned()
}

#[actix_web::test]
async fn an_authenticator_is_enrolled_and_then_a_login_needs_its_code_once() {
    let env = TestEnv::new().await;
    let clock = Arc::new(TestClock::frozen());
    let app = env.spawn_with_clock(&[], clock.clone()).await;
    let email = unique_email("totp");
    let session = app.verified_login(&env, &email).await;
    let access = session["access_token"].as_str().unwrap();

    let enrolment = app.post_with_bearer("/v1/auth/mfa/totp", access).await;
    assert_eq!(enrolment.status, StatusCode::CREATED, "{}", enrolment.text);
    assert_eq!(enrolment.headers.get("cache-control").unwrap(), "no-store");
    let data = &enrolment.body["data"];
    let secret = data["secret"].as_str().unwrap().to_owned();
    let uri = data["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/auth.flexauth.test:"), "{uri}");
    assert!(uri.contains(&format!("secret={secret}")) && uri.contains("issuer=auth.flexauth.test"), "{uri}");
    assert!(data["qr_svg"].as_str().unwrap().starts_with("<svg"));
    // Not confirmed yet: the factor does not count.
    assert_eq!(app.login(&email).await.status, StatusCode::OK);

    let factor = data["factor_id"].as_str().unwrap();
    let confirm = format!("/v1/auth/mfa/totp/{factor}/confirm");
    let wrong = app.post_json_with_bearer(&confirm, access, json!({ "code": "000000" })).await;
    assert_eq!((wrong.status, wrong.code()), (StatusCode::BAD_REQUEST, "invalid_code"));
    let confirmed = app.post_json_with_bearer(&confirm, access, json!({ "code": code_at(&secret, clock.now()) })).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.text);
    assert_eq!(confirmed.body["data"]["recovery_codes"].as_array().unwrap().len(), 10);
    wait_for_subject(env.smtp(), &email, "A second factor was added to your account").await;
    let listed = app.get_with_bearer("/v1/auth/mfa", access).await;
    assert_eq!(listed.body["data"]["recovery_codes_left"], 10);
    assert_eq!(listed.body["data"]["factors"][0]["kind"], "totp");
    assert_eq!(listed.body["data"]["factors"][0]["name"], "authenticator app");

    // A wrong password answers as it does for an account without a factor.
    let other = unique_email("plain");
    app.verified_login(&env, &other).await;
    let wrong_with_factor = app.post("/v1/auth/login", json!({ "email": email, "password": "not the password" })).await;
    let wrong_without = app.post("/v1/auth/login", json!({ "email": other, "password": "not the password" })).await;
    assert_eq!((wrong_with_factor.status, &wrong_with_factor.body), (wrong_without.status, &wrong_without.body));

    let login = app.login(&email).await;
    assert_eq!((login.status, login.code()), (StatusCode::FORBIDDEN, "mfa_required"));
    assert_eq!(login.body["error"]["methods"], json!(["totp", "recovery_code"]));
    assert!(login.body.get("data").is_none() && !login.text.contains("access_token"));
    let token = login.body["error"]["mfa_token"].as_str().unwrap();
    // The code of the confirmation's step was spent by it: the same code is a replay.
    let replay =
        app.post("/v1/auth/login/mfa", json!({ "mfa_token": token, "code": code_at(&secret, clock.now()) })).await;
    assert_eq!((replay.status, replay.code()), (StatusCode::BAD_REQUEST, "invalid_code"));
    clock.advance(time::Duration::seconds(30));
    let code = code_at(&secret, clock.now());
    let second = app.post("/v1/auth/login/mfa", json!({ "mfa_token": token, "code": code })).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text);
    let tokens = &second.body["data"];
    assert_eq!(tokens["token_type"], "bearer");
    assert_eq!(tokens["expires_in"], 3600);
    let access_claims = claims(tokens["access_token"].as_str().unwrap());
    assert_eq!(access_claims["amr"], json!(["pwd", "otp", "mfa"]));
    assert_eq!(access_claims["acr"], "aal2");
    // A resource server reads them with the recipe of docs/resource-servers.md.
    flexauth_jwt::install_crypto_provider();
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&app.get("/.well-known/jwks.json").await.text).unwrap();
    let verified = crate::resource_server::verify_access_token(
        tokens["access_token"].as_str().unwrap(),
        &jwks,
        crate::helpers::PUBLIC_URL,
        "flexauth",
    )
    .unwrap();
    assert_eq!((verified.amr, verified.acr.as_str()), (vec!["pwd".to_owned(), "otp".into(), "mfa".into()], "aal2"));
    // A refresh keeps how the login was made.
    let refreshed = app.refresh(tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(claims(refreshed.body["data"]["access_token"].as_str().unwrap())["amr"], json!(["pwd", "otp", "mfa"]));
    // A password-only login says so too.
    let plain = app.login(&other).await;
    assert_eq!(claims(plain.body["data"]["access_token"].as_str().unwrap())["amr"], json!(["pwd"]));

    // The same code again, on a fresh challenge: refused, whatever the instance.
    let replayed =
        app.post("/v1/auth/login/mfa", json!({ "mfa_token": mfa_token(&app, &email).await, "code": code })).await;
    assert_eq!(replayed.code(), "invalid_code");
    app.stop().await;
}

#[actix_web::test]
async fn of_two_logins_racing_with_one_code_exactly_one_gets_tokens() {
    let env = TestEnv::new().await;
    let clock = Arc::new(TestClock::frozen());
    let app = env.spawn_with_clock(&[], clock.clone()).await;
    let email = unique_email("race");
    let (secret, _, _) = enrolled(&app, &env, &email, &clock).await;
    clock.advance(time::Duration::seconds(30));
    let code = code_at(&secret, clock.now());
    let (first, second) = (mfa_token(&app, &email).await, mfa_token(&app, &email).await);
    let (a, b) = tokio::join!(
        app.post("/v1/auth/login/mfa", json!({ "mfa_token": first, "code": code })),
        app.post("/v1/auth/login/mfa", json!({ "mfa_token": second, "code": code })),
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::BAD_REQUEST], "{} / {}", a.text, b.text);
    app.stop().await;
}

#[actix_web::test]
async fn recovery_codes_log_in_once_each_and_a_new_set_kills_the_old() {
    let env = TestEnv::new().await;
    let clock = Arc::new(TestClock::frozen());
    let app = env.spawn_with_clock(&[], clock.clone()).await;
    let email = unique_email("recovery");
    let (_, codes, _) = enrolled(&app, &env, &email, &clock).await;

    let login = app
        .post(
            "/v1/auth/login/mfa",
            json!({ "mfa_token": mfa_token(&app, &email).await, "recovery_code": codes[0].to_uppercase() }),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    let mail = wait_for_subject(env.smtp(), &email, "A recovery code was used").await;
    assert!(mail.text().contains("9 unused codes are left"), "{}", mail.text());
    let again = app
        .post("/v1/auth/login/mfa", json!({ "mfa_token": mfa_token(&app, &email).await, "recovery_code": codes[0] }))
        .await;
    assert_eq!(again.code(), "invalid_code");

    // The recovery code proved a second factor: the session may make a new set at once.
    let access = login.body["data"]["access_token"].as_str().unwrap();
    let regenerated = app.post_with_bearer("/v1/auth/mfa/recovery-codes", access).await;
    assert_eq!(regenerated.status, StatusCode::OK, "{}", regenerated.text);
    let new_codes = regenerated.body["data"]["recovery_codes"].as_array().unwrap().clone();
    assert_eq!(new_codes.len(), 10);
    let old = app
        .post("/v1/auth/login/mfa", json!({ "mfa_token": mfa_token(&app, &email).await, "recovery_code": codes[1] }))
        .await;
    assert_eq!(old.code(), "invalid_code", "the old set died");
    let new = app
        .post(
            "/v1/auth/login/mfa",
            json!({ "mfa_token": mfa_token(&app, &email).await, "recovery_code": new_codes[0] }),
        )
        .await;
    assert_eq!(new.status, StatusCode::OK, "{}", new.text);
    app.stop().await;
}

#[actix_web::test]
async fn a_challenge_works_once_within_five_minutes_and_five_wrong_codes_end_it() {
    let env = TestEnv::new().await;
    let clock = Arc::new(TestClock::frozen());
    let app = env.spawn_with_clock(&[], clock.clone()).await;
    let email = unique_email("challenge");
    let (secret, _, _) = enrolled(&app, &env, &email, &clock).await;

    let spent = mfa_token(&app, &email).await;
    clock.advance(time::Duration::seconds(30));
    let ok = app.post("/v1/auth/login/mfa", json!({ "mfa_token": spent, "code": code_at(&secret, clock.now()) })).await;
    assert_eq!(ok.status, StatusCode::OK);
    clock.advance(time::Duration::seconds(30));
    let reused =
        app.post("/v1/auth/login/mfa", json!({ "mfa_token": spent, "code": code_at(&secret, clock.now()) })).await;
    assert_eq!((reused.status, reused.code()), (StatusCode::UNAUTHORIZED, "invalid_mfa_token"));

    let expired = mfa_token(&app, &email).await;
    clock.advance(time::Duration::minutes(5));
    let late =
        app.post("/v1/auth/login/mfa", json!({ "mfa_token": expired, "code": code_at(&secret, clock.now()) })).await;
    assert_eq!(late.code(), "invalid_mfa_token");

    let guessed = mfa_token(&app, &email).await;
    for _ in 0..5 {
        let wrong = app.post("/v1/auth/login/mfa", json!({ "mfa_token": guessed, "code": "123456" })).await;
        assert_eq!(wrong.code(), "invalid_code");
    }
    clock.advance(time::Duration::seconds(30));
    let after =
        app.post("/v1/auth/login/mfa", json!({ "mfa_token": guessed, "code": code_at(&secret, clock.now()) })).await;
    assert_eq!(after.code(), "invalid_mfa_token", "the fifth wrong code ended the challenge");
    let neither = app.post("/v1/auth/login/mfa", json!({ "mfa_token": guessed })).await;
    assert_eq!((neither.status, neither.code()), (StatusCode::BAD_REQUEST, "invalid_json"));
    let both = app
        .post("/v1/auth/login/mfa", json!({ "mfa_token": guessed, "code": "123456", "recovery_code": "abcde-fghjk" }))
        .await;
    assert_eq!((both.status, both.code()), (StatusCode::BAD_REQUEST, "invalid_json"));
    app.stop().await;
}

#[actix_web::test]
async fn a_password_reset_by_email_does_not_skip_the_second_factor() {
    let env = TestEnv::new().await;
    let clock = Arc::new(TestClock::frozen());
    let app = env.spawn_with_clock(&[], clock.clone()).await;
    let email = unique_email("reset");
    enrolled(&app, &env, &email, &clock).await;
    app.post("/v1/auth/password/forgot", json!({ "email": email })).await;
    let mail = wait_for_subject(env.smtp(), &email, "Reset your password").await;
    let new_password = "a brand new passphrase";
    let reset =
        app.post("/v1/auth/password/reset", json!({ "token": token_of(&mail), "password": new_password })).await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.text);
    let login = app.post("/v1/auth/login", json!({ "email": email, "password": new_password })).await;
    assert_eq!((login.status, login.code()), (StatusCode::FORBIDDEN, "mfa_required"));
    app.stop().await;
}

#[actix_web::test]
async fn a_password_reset_ends_the_login_challenges_opened_with_the_old_password() {
    let env = TestEnv::new().await;
    let clock = Arc::new(TestClock::frozen());
    let app = env.spawn_with_clock(&[], clock.clone()).await;
    let email = unique_email("pending");
    let (secret, codes, _) = enrolled(&app, &env, &email, &clock).await;
    // Someone with the old password holds a challenge and waits for a code (a real-time
    // phishing relay, or a second factor to come); the owner resets the password meanwhile.
    let pending = mfa_token(&app, &email).await;
    app.post("/v1/auth/password/forgot", json!({ "email": email })).await;
    let mail = wait_for_subject(env.smtp(), &email, "Reset your password").await;
    let reset = app
        .post("/v1/auth/password/reset", json!({ "token": token_of(&mail), "password": "a brand new passphrase" }))
        .await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.text);
    clock.advance(time::Duration::seconds(30));
    let code =
        app.post("/v1/auth/login/mfa", json!({ "mfa_token": pending, "code": code_at(&secret, clock.now()) })).await;
    assert_eq!((code.status, code.code()), (StatusCode::UNAUTHORIZED, "invalid_mfa_token"), "{}", code.text);
    let recovery = app.post("/v1/auth/login/mfa", json!({ "mfa_token": pending, "recovery_code": codes[0] })).await;
    assert_eq!(recovery.code(), "invalid_mfa_token", "{}", recovery.text);
    app.stop().await;
}

#[actix_web::test]
async fn guarded_operations_need_a_recent_second_factor_and_accept_one_proved_by_reauthenticate() {
    let env = TestEnv::new().await;
    let clock = Arc::new(TestClock::frozen());
    let app = env.spawn_with_clock(&[], clock.clone()).await;
    let email = unique_email("stepup");
    let (secret, _, session) = enrolled(&app, &env, &email, &clock).await;
    let access = session["access_token"].as_str().unwrap();
    // The enrolling session proved the factor: it may create a key now.
    let key = app.post_json_with_bearer("/v1/api-keys", access, json!({ "name": "ci" })).await;
    assert_eq!(key.status, StatusCode::CREATED, "{}", key.text);

    clock.advance(time::Duration::minutes(11));
    let password = app.post_json_with_bearer("/v1/auth/reauthenticate", access, json!({ "password": PASSWORD })).await;
    assert_eq!(password.status, StatusCode::OK, "{}", password.text);
    for (path, body) in [
        ("/v1/api-keys", json!({ "name": "deploy" })),
        (
            "/v1/auth/password/change",
            json!({ "current_password": PASSWORD, "new_password": "another long passphrase" }),
        ),
        ("/v1/auth/email/change", json!({ "new_email": unique_email("moved") })),
        ("/v1/auth/mfa/recovery-codes", json!({})),
    ] {
        let refused = app.post_json_with_bearer(path, access, body).await;
        assert_eq!((refused.status, refused.code()), (StatusCode::FORBIDDEN, "mfa_step_up_required"), "{path}");
    }
    let export = app.get_with_bearer("/v1/auth/account/export", access).await;
    assert_eq!(export.code(), "mfa_step_up_required");
    let removal = app.delete_with_bearer("/v1/auth/account", access).await;
    assert_eq!(removal.code(), "mfa_step_up_required");

    let wrong = app.post_json_with_bearer("/v1/auth/reauthenticate", access, json!({ "code": "000000" })).await;
    assert_eq!(wrong.code(), "invalid_code");
    let step_up = app
        .post_json_with_bearer("/v1/auth/reauthenticate", access, json!({ "code": code_at(&secret, clock.now()) }))
        .await;
    assert_eq!(step_up.status, StatusCode::OK, "{}", step_up.text);
    assert!(step_up.body["data"]["second_factor_at"].is_string());
    let key = app.post_json_with_bearer("/v1/api-keys", access, json!({ "name": "deploy" })).await;
    assert_eq!(key.status, StatusCode::CREATED, "{}", key.text);

    // Removing the factor (with the step-up just made) gives the account back its
    // single-step login, and tells the owner.
    let factors = app.get_with_bearer("/v1/auth/mfa", access).await;
    let factor = factors.body["data"]["factors"][0]["id"].as_str().unwrap().to_owned();
    let removed = app.delete_with_bearer(&format!("/v1/auth/mfa/{factor}"), access).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
    wait_for_subject(env.smtp(), &email, "A second factor was removed from your account").await;
    assert_eq!(app.login(&email).await.status, StatusCode::OK);
    let listed = app.get_with_bearer("/v1/auth/mfa", access).await;
    assert_eq!(listed.body["data"], json!({ "factors": [], "recovery_codes_left": 0 }));
    app.stop().await;
}

#[actix_web::test]
async fn a_stolen_access_token_gets_five_guesses_at_a_step_up_then_none() {
    let env = TestEnv::new().await;
    let clock = Arc::new(TestClock::frozen());
    let app = env.spawn_with_clock(&[], clock.clone()).await;
    let email = unique_email("guesser");
    let (secret, _, session) = enrolled(&app, &env, &email, &clock).await;
    let stolen = session["access_token"].as_str().unwrap();
    for guess in 0..5 {
        let wrong = app
            .post_json_with_bearer("/v1/auth/reauthenticate", stolen, json!({ "code": format!("{guess:06}") }))
            .await;
        assert_eq!(wrong.code(), "invalid_code");
    }
    // The next step's code, which one step of skew accepts: the clock stays where it is, so
    // no window of the counters ends between the guesses and this try.
    let next_step = code_at(&secret, clock.now() + time::Duration::seconds(30));
    let right = app.post_json_with_bearer("/v1/auth/reauthenticate", stolen, json!({ "code": next_step })).await;
    assert_eq!((right.status, right.code()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"), "{}", right.text);
    let log = app.get_with_bearer("/v1/auth/events", stolen).await;
    let failures =
        log.body["data"]["events"].as_array().unwrap().iter().filter(|event| event["type"] == "second_factor_failed");
    assert_eq!(failures.count(), 5, "every wrong code is in the owner's security log");
    // The owner's own login is not locked out by it.
    let token = mfa_token(&app, &email).await;
    clock.advance(time::Duration::seconds(30));
    let owner =
        app.post("/v1/auth/login/mfa", json!({ "mfa_token": token, "code": code_at(&secret, clock.now()) })).await;
    assert_eq!(owner.status, StatusCode::OK, "{}", owner.text);
    app.stop().await;
}

#[actix_web::test]
async fn an_operator_resets_the_factors_of_an_owner_who_lost_them_and_the_owner_is_told() {
    let env = TestEnv::new().await;
    let clock = Arc::new(TestClock::frozen());
    let app = env.spawn_with_clock(&[], clock.clone()).await;
    let email = unique_email("lost");
    let (_, _, session) = enrolled(&app, &env, &email, &clock).await;
    let access = session["access_token"].as_str().unwrap();
    let id = app.get_with_bearer("/v1/auth/me", access).await.body["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(app.login(&email).await.code(), "mfa_required");

    let (ok, printed, stderr) = crate::lifecycle::flexauth(&env, &["accounts", "mfa-reset", &id]);
    assert!(ok, "{stderr}");
    assert_eq!(printed, json!({ "account_id": id, "done": "mfa_reset" }));
    // The command queued the email at the real time; the frozen clock of the instance that
    // delivers it moves past that.
    clock.advance(time::Duration::minutes(1));
    wait_for_subject(env.smtp(), &email, "Your second factors were removed by an administrator").await;
    assert_eq!(app.login(&email).await.status, StatusCode::OK, "the password alone logs in again");
    let listed = app.get_with_bearer("/v1/auth/mfa", access).await;
    assert_eq!(listed.body["data"], json!({ "factors": [], "recovery_codes_left": 0 }));
    let log = app.get_with_bearer("/v1/auth/events", access).await;
    let kinds: Vec<&str> =
        log.body["data"]["events"].as_array().unwrap().iter().map(|event| event["type"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"second_factors_reset"), "{kinds:?}");

    let (ok, _, stderr) =
        crate::lifecycle::flexauth(&env, &["accounts", "mfa-reset", "7b4f9c3e-0000-4000-8000-000000000000"]);
    assert!(!ok);
    assert_eq!(stderr.trim(), "flexauth: no such account");
    app.stop().await;
}
