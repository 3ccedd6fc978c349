//! The account-takeover paths, tried as an attacker would: signing up first, mail scanners,
//! stolen access tokens after a recovery, stale reset links, readable files, silent changes.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    confirm_in_browser, mails_to, token_of, unique_email, verify_path, wait_for_mails, wait_for_subject, TestApp,
    TestEnv,
};

const ATTACKER_PASSWORD: &str = "the attacker chose this";
const OWNER_PASSWORD: &str = "the owner chose this one";

async fn signup(app: &TestApp, email: &str, password: &str) {
    let reply = app.post("/v1/auth/signup", json!({ "email": email, "password": password })).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
}

async fn login_status(app: &TestApp, email: &str, password: &str) -> StatusCode {
    app.post("/v1/auth/login", json!({ "email": email, "password": password })).await.status
}

/// Waits for the `count`-th verification email to `email` and returns the newest.
async fn newest_verification(env: &TestEnv, email: &str, count: usize) -> crate::helpers::ReceivedMessage {
    let mails = wait_for_mails(env.smtp(), email, count).await;
    let verifications: Vec<_> =
        mails.into_iter().filter(|mail| mail.subject().as_deref() == Some("Verify your email address")).collect();
    assert!(verifications.len() >= count, "expected {count} verification emails, got {}", verifications.len());
    verifications.last().cloned().unwrap()
}

#[actix_web::test]
async fn an_attacker_who_signs_up_first_cannot_log_in_once_the_owner_confirms() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let email = unique_email("victim");
    signup(&app, &email, ATTACKER_PASSWORD).await;
    newest_verification(&env, &email, 1).await;
    signup(&app, &email, OWNER_PASSWORD).await;
    let newest = newest_verification(&env, &email, 2).await;
    confirm_in_browser(&app, &newest, OWNER_PASSWORD).await;
    assert_eq!(login_status(&app, &email, ATTACKER_PASSWORD).await, StatusCode::UNAUTHORIZED);
    assert_eq!(login_status(&app, &email, OWNER_PASSWORD).await, StatusCode::OK);
    app.stop().await;
}

#[actix_web::test]
async fn an_attacker_who_signs_up_after_the_owner_cannot_log_in_once_the_owner_confirms() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let email = unique_email("victim");
    signup(&app, &email, OWNER_PASSWORD).await;
    newest_verification(&env, &email, 1).await;
    signup(&app, &email, ATTACKER_PASSWORD).await;
    // The owner opens the newest link in the inbox, which is the one the attacker caused.
    let newest = newest_verification(&env, &email, 2).await;
    confirm_in_browser(&app, &newest, OWNER_PASSWORD).await;
    assert_eq!(login_status(&app, &email, ATTACKER_PASSWORD).await, StatusCode::UNAUTHORIZED);
    assert_eq!(login_status(&app, &email, OWNER_PASSWORD).await, StatusCode::OK);
    app.stop().await;
}

#[actix_web::test]
async fn a_resend_between_the_signups_does_not_help_the_attacker_in_either_order() {
    for attacker_first in [true, false] {
        let env = TestEnv::new().await;
        let app = env.spawn().await;
        let email = unique_email("victim");
        let (first, second) =
            if attacker_first { (ATTACKER_PASSWORD, OWNER_PASSWORD) } else { (OWNER_PASSWORD, ATTACKER_PASSWORD) };
        signup(&app, &email, first).await;
        newest_verification(&env, &email, 1).await;
        assert_eq!(app.post("/v1/auth/verify/resend", json!({ "email": email })).await.status, StatusCode::ACCEPTED);
        newest_verification(&env, &email, 2).await;
        signup(&app, &email, second).await;
        let newest = newest_verification(&env, &email, 3).await;
        // Whichever link the owner opens, the password that ends up active is the owner's.
        for mail in [newest, newest_verification(&env, &email, 2).await] {
            confirm_in_browser(&app, &mail, OWNER_PASSWORD).await;
        }
        assert_eq!(
            login_status(&app, &email, ATTACKER_PASSWORD).await,
            StatusCode::UNAUTHORIZED,
            "attacker first: {attacker_first}"
        );
        assert_eq!(
            login_status(&app, &email, OWNER_PASSWORD).await,
            StatusCode::OK,
            "attacker first: {attacker_first}"
        );
        app.stop().await;
    }
}

#[actix_web::test]
async fn a_mail_scanner_opening_the_links_verifies_nothing_and_spends_nothing() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let email = unique_email("scanned");
    signup(&app, &email, OWNER_PASSWORD).await;
    let mail = newest_verification(&env, &email, 1).await;
    let link = app.url(&verify_path(&mail));
    for _ in 0..2 {
        let page = app.get(&verify_path(&mail)).await;
        assert_eq!(page.status, StatusCode::OK);
        let head = app.client.head(&link).send().await.unwrap();
        assert!(
            head.status().is_success() || head.status() == StatusCode::METHOD_NOT_ALLOWED,
            "HEAD answered {}",
            head.status()
        );
    }
    assert_eq!(
        app.post("/v1/auth/login", json!({ "email": email, "password": OWNER_PASSWORD })).await.code(),
        "email_not_verified"
    );
    // The page offers the one button that confirms.
    let page = app.get(&verify_path(&mail)).await;
    assert!(page.text.contains("<form method=\"post\""), "{}", page.text);
    assert!(page.text.contains("Confirm my email address"));
    confirm_in_browser(&app, &mail, OWNER_PASSWORD).await;
    assert_eq!(login_status(&app, &email, OWNER_PASSWORD).await, StatusCode::OK);
    app.stop().await;
}

fn access(session: &Value) -> String {
    session["access_token"].as_str().unwrap().to_owned()
}

/// Every account-management endpoint, called with `token`; returns each answer's status.
async fn management_statuses(app: &TestApp, token: &str) -> Vec<(&'static str, StatusCode)> {
    vec![
        ("create key", app.post_json_with_bearer("/v1/api-keys", token, json!({ "name": "persistence" })).await.status),
        ("list keys", app.get_with_bearer("/v1/api-keys", token).await.status),
        ("delete key", app.delete_with_bearer(&format!("/v1/api-keys/{}", uuid::Uuid::new_v4()), token).await.status),
        ("list sessions", app.get_with_bearer("/v1/auth/sessions", token).await.status),
        (
            "delete session",
            app.delete_with_bearer(&format!("/v1/auth/sessions/{}", uuid::Uuid::new_v4()), token).await.status,
        ),
        (
            "change password",
            app.post_json_with_bearer(
                "/v1/auth/password/change",
                token,
                json!({ "current_password": "whatever it was", "new_password": "taken over for good" }),
            )
            .await
            .status,
        ),
        (
            "logout others",
            app.post_json_with_bearer("/v1/auth/logout", token, json!({ "scope": "others" })).await.status,
        ),
        (
            "logout global",
            app.post_json_with_bearer("/v1/auth/logout", token, json!({ "scope": "global" })).await.status,
        ),
    ]
}

fn assert_all_unauthorized(statuses: &[(&str, StatusCode)], after: &str) {
    let allowed: Vec<_> = statuses.iter().filter(|(_, status)| *status != StatusCode::UNAUTHORIZED).collect();
    assert!(allowed.is_empty(), "after {after}, a stolen access token still got: {allowed:?}");
}

#[actix_web::test]
async fn a_stolen_access_token_manages_nothing_after_a_reset_a_logout_or_reuse_detection() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let email = unique_email("stolen");
    let stolen = app.verified_login(&env, &email).await;

    app.post("/v1/auth/password/forgot", json!({ "email": email })).await;
    let reset_mail = wait_for_subject(env.smtp(), &email, "Reset your password").await;
    let reset = app
        .post(
            "/v1/auth/password/reset",
            json!({ "token": token_of(&reset_mail), "password": "the owner took it back" }),
        )
        .await;
    assert_eq!(reset.status, StatusCode::OK);
    assert_all_unauthorized(&management_statuses(&app, &access(&stolen)).await, "a password reset");

    let session =
        app.post("/v1/auth/login", json!({ "email": email, "password": "the owner took it back" })).await.body["data"]
            .clone();
    assert_eq!(app.post_with_bearer("/v1/auth/logout", &access(&session)).await.status, StatusCode::NO_CONTENT);
    assert_all_unauthorized(&management_statuses(&app, &access(&session)).await, "a logout");

    let session =
        app.post("/v1/auth/login", json!({ "email": email, "password": "the owner took it back" })).await.body["data"]
            .clone();
    let first_refresh = session["refresh_token"].as_str().unwrap();
    let rotated = app.refresh(first_refresh).await;
    assert_eq!(rotated.status, StatusCode::OK);
    // Outside the grace window the parent counts as reused; a grandparent does at once.
    let rotated_again = app.refresh(rotated.body["data"]["refresh_token"].as_str().unwrap()).await;
    assert_eq!(rotated_again.status, StatusCode::OK);
    assert_eq!(app.refresh(first_refresh).await.code(), "refresh_token_reused");
    assert_all_unauthorized(&management_statuses(&app, &access(&rotated_again.body["data"])).await, "reuse detection");
    app.stop().await;
}

#[actix_web::test]
async fn a_reset_link_from_before_a_password_change_no_longer_works() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let email = unique_email("stale");
    let session = app.verified_login(&env, &email).await;
    app.post("/v1/auth/password/forgot", json!({ "email": email })).await;
    let stale = wait_for_subject(env.smtp(), &email, "Reset your password").await;
    let change = app
        .post_json_with_bearer(
            "/v1/auth/password/change",
            &access(&session),
            json!({ "current_password": crate::helpers::PASSWORD, "new_password": "changed since the link" }),
        )
        .await;
    assert_eq!(change.status, StatusCode::NO_CONTENT, "{}", change.text);
    let reply = app
        .post("/v1/auth/password/reset", json!({ "token": token_of(&stale), "password": "an old link's choice" }))
        .await;
    assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "invalid_reset_token"));
    assert_eq!(login_status(&app, &email, "changed since the link").await, StatusCode::OK);
    app.stop().await;
}

#[actix_web::test]
async fn the_owner_is_told_of_a_new_api_key_a_reset_and_reuse_detection() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let email = unique_email("told");
    let session = app.verified_login(&env, &email).await;
    let created = app.post_json_with_bearer("/v1/api-keys", &access(&session), json!({ "name": "ci" })).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let key_mail = wait_for_subject(env.smtp(), &email, "A new API key was created").await;
    assert!(key_mail.data.contains("ci"));

    let rotated = app.refresh(session["refresh_token"].as_str().unwrap()).await;
    app.refresh(rotated.body["data"]["refresh_token"].as_str().unwrap()).await;
    assert_eq!(app.refresh(session["refresh_token"].as_str().unwrap()).await.code(), "refresh_token_reused");
    wait_for_subject(env.smtp(), &email, "Someone may have a copy of your session").await;

    app.post("/v1/auth/password/forgot", json!({ "email": email })).await;
    let reset_mail = wait_for_subject(env.smtp(), &email, "Reset your password").await;
    app.post(
        "/v1/auth/password/reset",
        json!({ "token": token_of(&reset_mail), "password": "the owner took it back" }),
    )
    .await;
    wait_for_subject(env.smtp(), &email, "Your password was reset").await;
    assert!(mails_to(env.smtp(), &email).len() >= 5);
    app.stop().await;
}

#[cfg(unix)]
#[actix_web::test]
async fn on_sqlite_nothing_in_the_data_directory_is_readable_by_other_users() {
    use std::os::unix::fs::PermissionsExt as _;
    let data_dir = tempfile::tempdir().unwrap();
    let dir = data_dir.path().join("flexauth-data");
    let app = crate::helpers::spawn_embedded(&dir).await;
    let email = unique_email("files");
    signup(&app, &email, OWNER_PASSWORD).await;
    let mail_dir = dir.join("mail");
    // A written mail, not one still being written (`….eml.partial`, renamed once complete).
    crate::helpers::eventually("a mail file", || {
        std::fs::read_dir(&mail_dir)
            .ok()?
            .filter_map(Result::ok)
            .find(|entry| entry.file_name().to_string_lossy().ends_with(".eml"))
    })
    .await;
    let mut checked = Vec::new();
    let mut pending = vec![dir.clone()];
    while let Some(path) = pending.pop() {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} has mode {:o}", path.display(), mode & 0o777);
        checked.push(path.clone());
        if path.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|entry| entry.unwrap().path()));
        }
    }
    let names: Vec<String> =
        checked.iter().filter_map(|path| path.file_name()).map(|name| name.to_string_lossy().into_owned()).collect();
    assert!(names.iter().any(|name| name.ends_with(".sqlite3")), "{names:?}");
    assert!(names.iter().any(|name| name.ends_with("-wal")), "{names:?}");
    assert!(names.iter().any(|name| name.ends_with(".eml")), "{names:?}");
    app.stop().await;
}

#[actix_web::test]
async fn a_password_typed_in_another_unicode_form_and_an_idn_domain_in_either_form_are_the_same() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let local = format!("idn-{}", uuid::Uuid::new_v4().simple());
    // "Å" as one code point, and as "A" followed by a combining ring.
    let composed = "\u{00C5}ngstr\u{00F6}m passphrase";
    let decomposed = "A\u{030A}ngstro\u{0308}m passphrase";
    signup(&app, &format!("{local}@b\u{00FC}cher.example"), composed).await;
    let mail = wait_for_mails(env.smtp(), &format!("{local}@xn--bcher-kva.example"), 1).await.remove(0);
    confirm_in_browser(&app, &mail, composed).await;
    assert_eq!(login_status(&app, &format!("{local}@xn--bcher-kva.example"), decomposed).await, StatusCode::OK);
    assert_eq!(login_status(&app, &format!("{local}@B\u{00DC}CHER.example"), composed).await, StatusCode::OK);
    app.stop().await;
}

#[actix_web::test]
async fn creating_an_api_key_needs_a_login_or_a_password_entered_within_ten_minutes() {
    let env = TestEnv::new().await;
    let clock = std::sync::Arc::new(crate::helpers::TestClock::default());
    let app = env.spawn_with_clock(&[], clock.clone()).await;
    let email = unique_email("recent");
    let session = app.verified_login(&env, &email).await;
    let token = access(&session);
    clock.advance(time::Duration::minutes(11));
    let stale = app.post_json_with_bearer("/v1/api-keys", &token, json!({ "name": "late" })).await;
    assert_eq!((stale.status, stale.code()), (StatusCode::FORBIDDEN, "reauthentication_required"));
    // Listing needs a live session only.
    assert_eq!(app.get_with_bearer("/v1/api-keys", &token).await.status, StatusCode::OK);
    let wrong =
        app.post_json_with_bearer("/v1/auth/reauthenticate", &token, json!({ "password": "not the password" })).await;
    assert_eq!((wrong.status, wrong.code()), (StatusCode::BAD_REQUEST, "invalid_current_password"));
    let renewed = app
        .post_json_with_bearer("/v1/auth/reauthenticate", &token, json!({ "password": crate::helpers::PASSWORD }))
        .await;
    assert_eq!(renewed.status, StatusCode::OK, "{}", renewed.text);
    assert!(renewed.body["data"]["authenticated_at"].is_string());
    assert_eq!(
        app.post_json_with_bearer("/v1/api-keys", &token, json!({ "name": "now" })).await.status,
        StatusCode::CREATED
    );
    app.stop().await;
}

#[actix_web::test]
async fn an_expired_verification_link_shows_why_and_confirms_nothing() {
    let env = TestEnv::new().await;
    let clock = std::sync::Arc::new(crate::helpers::TestClock::default());
    let app = env.spawn_with_clock(&[], clock.clone()).await;
    let email = unique_email("expired");
    signup(&app, &email, OWNER_PASSWORD).await;
    let mail = newest_verification(&env, &email, 1).await;
    clock.advance(time::Duration::hours(24));
    let page = app.get(&verify_path(&mail)).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.text.contains("Link expired"), "{}", page.text);
    let reply = app.post("/v1/auth/verify", json!({ "token": token_of(&mail) })).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "verification_token_expired"));
    app.stop().await;
}

/// A key made by `session` (a fresh login, so a recent authentication); returns its secret.
async fn new_key(app: &TestApp, session: &Value, name: &str) -> String {
    let created = app.post_json_with_bearer("/v1/api-keys", &access(session), json!({ "name": name })).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    created.body["data"]["key"].as_str().unwrap().to_owned()
}

#[actix_web::test]
async fn a_victim_who_presses_the_confirmation_of_an_attackers_move_adopts_nothing() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let (attacker, victim) = (unique_email("adoptee"), unique_email("adopter"));
    let session = app.verified_login(&env, &attacker).await;
    let key = new_key(&app, &session, "kept by the attacker").await;
    let asked =
        app.post_json_with_bearer("/v1/auth/email/change", &access(&session), json!({ "new_email": victim })).await;
    assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.text);
    let confirmation = wait_for_subject(env.smtp(), &victim, "Confirm your new email address").await;

    // The page asks for the password of the account that would move, which the victim does not
    // have; pressing the button with anything else moves nothing.
    let page = app.get(&verify_path(&confirmation)).await;
    assert!(page.text.contains("name=\"password\""), "{}", page.text);
    let token = token_of(&confirmation);
    let pressed = app
        .post_form("/v1/auth/email/confirm", &[("token", token.as_str()), ("password", "the victim's own password")])
        .await;
    assert_eq!(pressed.status, StatusCode::BAD_REQUEST, "{}", pressed.text);
    assert!(pressed.text.contains("Wrong password"), "{}", pressed.text);
    let bare = app.post("/v1/auth/email/confirm", json!({ "token": token })).await;
    assert_eq!((bare.status, bare.code()), (StatusCode::BAD_REQUEST, "invalid_json"), "{}", bare.text);
    let wrong = app.post("/v1/auth/email/confirm", json!({ "token": token, "password": "a guess at it" })).await;
    assert_eq!((wrong.status, wrong.code()), (StatusCode::BAD_REQUEST, "invalid_current_password"));
    assert_eq!(app.login(&attacker).await.status, StatusCode::OK, "the account stayed where it was");
    assert_eq!(app.login(&victim).await.code(), "invalid_credentials");
    assert_eq!(app.get_with_bearer("/v1/usage", &key).await.status, StatusCode::OK);
    // The requester, who knows the password, does move it: the link still works.
    let moved = confirm_in_browser(&app, &confirmation, crate::helpers::PASSWORD).await;
    assert!(moved.text.contains("Email address changed"), "{}", moved.text);
    app.stop().await;
}

#[actix_web::test]
async fn a_reset_revokes_the_keys_made_before_the_address_was_proven_and_leaves_the_undo_link_alone() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let (first, second) = (unique_email("proven-first"), unique_email("proven-second"));
    let before = new_key(&app, &app.verified_login(&env, &first).await, "before the move").await;
    let asked = app
        .post_json_with_bearer(
            "/v1/auth/email/change",
            &access(&app.login(&first).await.body["data"]),
            json!({ "new_email": second }),
        )
        .await;
    assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.text);
    let confirmation = wait_for_subject(env.smtp(), &second, "Confirm your new email address").await;
    let undo = wait_for_subject(env.smtp(), &first, "Your account's email address is changing").await;
    confirm_in_browser(&app, &confirmation, crate::helpers::PASSWORD).await;
    let after = new_key(&app, &app.login(&second).await.body["data"], "after the move").await;

    // Whoever holds the new address resets the password: that proves the new mailbox only, so the
    // key made while the account had another address stops working; the later one stays.
    assert_eq!(app.post("/v1/auth/password/forgot", json!({ "email": second })).await.status, StatusCode::ACCEPTED);
    let reset = wait_for_subject(env.smtp(), &second, "Reset your password").await;
    let done = app
        .post("/v1/auth/password/reset", json!({ "token": token_of(&reset), "password": "chosen at the reset" }))
        .await;
    assert!(done.status.is_success(), "{}", done.text);
    assert_eq!(app.get_with_bearer("/v1/usage", &before).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get_with_bearer("/v1/usage", &after).await.status, StatusCode::OK);
    // The old address keeps its undo: had the mover been a thief, the reset would otherwise be
    // their way to cut the owner off.
    assert!(confirm_in_browser(&app, &undo, "").await.text.contains("Change undone"));
    assert_eq!(app.get_with_bearer("/v1/usage", &after).await.status, StatusCode::UNAUTHORIZED);
    app.stop().await;
}
