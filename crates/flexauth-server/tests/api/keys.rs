//! Signing keys stored in the database: sealed at rest, rotated on a running pair of
//! instances without a restart and without logging anyone out.

use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{unique_email, TestApp, TestClock, TestEnv};
use crate::lifecycle::{database_holds, flexauth_with};

fn kid_of(token: &str) -> String {
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

async fn published(app: &TestApp) -> Vec<String> {
    let jwks = app.get("/.well-known/jwks.json").await;
    assert_eq!(jwks.status, StatusCode::OK);
    jwks.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key.get("kid").and_then(Value::as_str).unwrap().to_owned())
        .collect()
}

async fn access_kid(app: &TestApp, email: &str) -> String {
    let login = app.login(email).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    kid_of(login.body["data"]["access_token"].as_str().unwrap())
}

async fn until(what: &str, seconds: u64, mut done: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while !done().await {
        assert!(std::time::Instant::now() < deadline, "{what} did not happen within {seconds} s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
async fn a_rotation_on_a_running_pair_publishes_at_once_signs_after_the_delay_and_logs_nobody_out() {
    let env = TestEnv::new().await;
    let kek = STANDARD.encode([42u8; 32]);
    let clock = Arc::new(TestClock::default());
    let extra = ["--jwks-max-age", "1s", "--key-encryption-key", kek.as_str()];
    let tune = |settings: &mut flexauth_server::config::Settings| {
        settings.key_ring_refresh = std::time::Duration::from_millis(200)
    };
    let first = env.spawn_configured(&extra, tune, clock.clone()).await;
    let second = env.spawn_configured(&extra, tune, clock.clone()).await;
    let vars = [("FLEXAUTH_KEY_ENCRYPTION_KEY", kek.as_str()), ("FLEXAUTH_JWKS_MAX_AGE", "1s")];
    assert!(!database_holds(&env, "PRIVATE KEY").await, "the stored key is sealed");

    let email = unique_email("rotated");
    let login = first.verified_login(&env, &email).await;
    let (old_access, old_refresh) =
        (login["access_token"].as_str().unwrap().to_owned(), login["refresh_token"].as_str().unwrap().to_owned());
    let unused_refresh = second.login(&email).await.body["data"]["refresh_token"].as_str().unwrap().to_owned();
    let old_kid = kid_of(&old_access);
    let jwks = first.get("/.well-known/jwks.json").await;
    assert_eq!(jwks.headers.get("cache-control").unwrap(), "public, max-age=1");
    let etag = jwks.headers.get("etag").unwrap().to_str().unwrap().to_owned();
    let revalidated = first
        .client
        .get(first.url("/.well-known/jwks.json"))
        .header("if-none-match", etag.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);

    let (ok, _, stderr) = flexauth_with(&env, &["keys", "rotate", "--delay", "1s"], &vars);
    assert!(!ok && stderr.contains("longer than the JWKS cache lifetime"), "{stderr}");
    // The command judges when the new key takes over by production's lead: the JWKS lifetime
    // and the ten seconds within which every instance has read a stored key (these instances
    // read them faster); a delay longer than both makes the command and the instances agree.
    let (ok, rotated, stderr) = flexauth_with(&env, &["keys", "rotate", "--delay", "12s"], &vars);
    assert!(ok, "{stderr}");
    let new_kid = rotated["kid"].as_str().unwrap().to_owned();
    assert!(!database_holds(&env, "PRIVATE KEY").await, "the rotated key is sealed too");

    // Published on both instances within the refresh interval, not signing yet.
    until("the new key's publication", 2, async || {
        published(&first).await.contains(&new_kid) && published(&second).await.contains(&new_kid)
    })
    .await;
    assert_eq!(access_kid(&first, &email).await, old_kid, "the standby key does not sign before its delay");
    assert_ne!(
        first.get("/.well-known/jwks.json").await.headers.get("etag").unwrap().to_str().unwrap(),
        etag,
        "a new ETag"
    );
    // After the delay both instances sign with it, with no restart.
    until("the new key's activation", 16, async || {
        access_kid(&first, &email).await == new_kid && access_kid(&second, &email).await == new_kid
    })
    .await;
    for app in [&first, &second] {
        assert_eq!(
            app.get_with_bearer("/v1/usage", &old_access).await.status,
            StatusCode::OK,
            "a token signed before still works"
        );
    }
    let refreshed = second.refresh(&old_refresh).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text);
    assert_eq!(kid_of(refreshed.body["data"]["access_token"].as_str().unwrap()), new_kid);

    // The old key is retired; the last key that can sign cannot be.
    let (ok, retired, stderr) = flexauth_with(&env, &["keys", "retire", &old_kid], &vars);
    assert!(ok, "{stderr}");
    assert!(retired["published_until"].is_string());
    let (ok, _, stderr) = flexauth_with(&env, &["keys", "retire", &new_kid], &vars);
    assert!(!ok && stderr.contains("signs now"), "{stderr}");
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(published(&first).await.contains(&old_kid), "kept while its access tokens may be live");
    assert_eq!(first.get_with_bearer("/v1/usage", &old_access).await.status, StatusCode::OK);
    let (_, listed, _) = flexauth_with(&env, &["keys", "list"], &vars);
    let states: Vec<(String, String)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|key| (key["kid"].as_str().unwrap().to_owned(), key["state"].as_str().unwrap().to_owned()))
        .collect();
    assert!(
        states.contains(&(old_kid.clone(), "verifying".to_owned()))
            && states.contains(&(new_kid.clone(), "signing".to_owned())),
        "{states:?}"
    );

    // Once the last access token it signed has expired, it leaves the JWKS; its refresh
    // tokens still refresh.
    clock.advance(time::Duration::hours(1) + time::Duration::seconds(1));
    until("the retired key's removal", 3, async || {
        !published(&first).await.contains(&old_kid) && !published(&second).await.contains(&old_kid)
    })
    .await;
    let late = first.refresh(&unused_refresh).await;
    assert_eq!(late.status, StatusCode::OK, "a refresh token signed by the retired key: {}", late.text);

    // With the old row gone, a new instance generates no key of its own (one would sign at
    // once, unknown to every cached JWKS): it signs with the rotated key.
    flexauth_store::test_db::execute(env.store(), "DELETE FROM signing_keys WHERE slot = 'generated'").await;
    let third = env.spawn_configured(&extra, tune, clock.clone()).await;
    assert_eq!(access_kid(&third, &email).await, new_kid);
    let (_, listed, _) = flexauth_with(&env, &["keys", "list"], &vars);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    third.stop().await;
    first.stop().await;
    second.stop().await;
}

#[actix_web::test]
async fn a_wrong_or_missing_key_encryption_key_stops_the_start_with_one_line() {
    let env = TestEnv::new().await;
    let kek = STANDARD.encode([7u8; 32]);
    let app = env.spawn_with(&["--key-encryption-key", &kek]).await;
    app.stop().await;
    let wrong = STANDARD.encode([8u8; 32]);
    for (vars, expected) in [
        (vec![("FLEXAUTH_KEY_ENCRYPTION_KEY", wrong.as_str())], "encrypted with another key-encryption key"),
        (vec![], "no key-encryption key is set"),
        (vec![("FLEXAUTH_KEY_ENCRYPTION_KEY", "too short")], "32 random bytes"),
    ] {
        let mut vars = vars;
        vars.push(("FLEXAUTH_BIND", "127.0.0.1:0"));
        vars.push(("RUST_LOG", "off"));
        let (ok, _, stderr) = flexauth_with(&env, &["serve"], &vars);
        assert!(!ok, "started with {vars:?}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("flexauth: ") && stderr.contains(expected), "{stderr}");
    }
}

fn kek_vars(kek: &str) -> [(&'static str, &str); 2] {
    [("FLEXAUTH_KEY_ENCRYPTION_KEY", kek), ("FLEXAUTH_JWKS_MAX_AGE", "1s")]
}

#[actix_web::test]
async fn a_key_planted_in_the_clear_is_never_used_until_the_operator_seals_it() {
    let env = TestEnv::new().await;
    let kek = STANDARD.encode([51u8; 32]);
    let extra = ["--jwks-max-age", "1s", "--key-encryption-key", kek.as_str()];
    let tune = |settings: &mut flexauth_server::config::Settings| {
        settings.key_ring_refresh = std::time::Duration::from_millis(200)
    };
    let running = env.spawn_configured(&extra, tune, Arc::new(TestClock::default())).await;
    let email = unique_email("planted");
    running.verified_login(&env, &email).await;
    let genuine = access_kid(&running, &email).await;

    // Someone who can write to the database stores a key of theirs, in the clear, as the newest.
    let pem = flexauth_jwt::SigningKeyPair::generate_pem().unwrap();
    let planted = flexauth_jwt::SigningKeyPair::from_pem(&pem).unwrap().kid().to_owned();
    let now = time::OffsetDateTime::now_utc();
    env.store().add_signing_key(&planted, pem, now, now).await.unwrap();
    // Neither the running instance nor one started afterwards publishes it or signs with it.
    let started = env.spawn_configured(&extra, tune, Arc::new(TestClock::default())).await;
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    for app in [&running, &started] {
        assert_eq!(access_kid(app, &email).await, genuine);
        assert!(!published(app).await.contains(&planted));
    }
    assert!(database_holds(&env, "PRIVATE KEY").await, "nothing sealed it on its own");

    // The operator, whose key it is in this play, seals it: from then on it is a key like another.
    let (ok, sealed, stderr) = flexauth_with(&env, &["keys", "seal"], &kek_vars(&kek));
    assert!(ok, "{stderr}");
    assert_eq!(sealed["sealed"], serde_json::json!([planted]));
    assert!(!database_holds(&env, "PRIVATE KEY").await);
    until("the sealed key's use", 3, async || {
        access_kid(&running, &email).await == planted && access_kid(&started, &email).await == planted
    })
    .await;
    started.stop().await;
    running.stop().await;
}

#[actix_web::test]
async fn a_start_with_only_keys_in_the_clear_and_a_key_encryption_key_says_to_seal_them() {
    let env = TestEnv::new().await;
    // Keys stored before the operator set a key-encryption key.
    env.spawn().await.stop().await;
    let kek = STANDARD.encode([52u8; 32]);
    let serve = |kek: &str| {
        let vars = [("FLEXAUTH_KEY_ENCRYPTION_KEY", kek), ("FLEXAUTH_BIND", "127.0.0.1:0"), ("RUST_LOG", "off")];
        flexauth_with(&env, &["serve"], &vars)
    };
    let (ok, _, stderr) = serve(&kek);
    assert!(!ok);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("in the clear") && stderr.contains("flexauth keys seal"), "{stderr}");
    let (ok, sealed, stderr) = flexauth_with(&env, &["keys", "seal"], &kek_vars(&kek));
    assert!(ok, "{stderr}");
    assert_eq!(sealed["sealed"].as_array().unwrap().len(), 1);
    let app = env.spawn_with(&["--key-encryption-key", &kek]).await;
    let email = unique_email("sealed");
    app.verified_login(&env, &email).await;
    app.stop().await;
}

#[actix_web::test]
async fn a_leaked_key_is_revoked_on_every_instance_within_a_second_and_a_replacement_signs_at_once() {
    let env = TestEnv::new().await;
    let tune = |settings: &mut flexauth_server::config::Settings| {
        settings.key_ring_refresh = std::time::Duration::from_millis(200)
    };
    let first = env.spawn_configured(&[], tune, Arc::new(TestClock::default())).await;
    let second = env.spawn_configured(&[], tune, Arc::new(TestClock::default())).await;
    let email = unique_email("leaked");
    let session = first.verified_login(&env, &email).await;
    let (access, refresh) =
        (session["access_token"].as_str().unwrap().to_owned(), session["refresh_token"].as_str().unwrap().to_owned());
    let leaked = kid_of(&access);
    assert_eq!(second.get_with_bearer("/v1/usage", &access).await.status, StatusCode::OK);

    let (ok, revoked, stderr) = flexauth_with(&env, &["keys", "revoke", &leaked], &[]);
    assert!(ok, "{stderr}");
    let replacement = revoked["replaced_by"].as_str().expect("a replacement, since no other key signs").to_owned();
    until("the revocation on both instances", 2, async || {
        let (a, b) = (published(&first).await, published(&second).await);
        !a.contains(&leaked) && !b.contains(&leaked) && a.contains(&replacement) && b.contains(&replacement)
    })
    .await;
    for app in [&first, &second] {
        let refused = app.get_with_bearer("/v1/usage", &access).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.text);
        assert_eq!(access_kid(app, &email).await, replacement, "the replacement signs at once");
    }
    assert_eq!(first.refresh(&refresh).await.code(), "invalid_refresh_token", "its refresh tokens too");
    let (_, listed, _) = flexauth_with(&env, &["keys", "list"], &[]);
    let state = |kid: &str| {
        listed.as_array().unwrap().iter().find(|key| key["kid"] == kid).map(|key| key["state"].clone()).unwrap()
    };
    assert_eq!((state(&leaked), state(&replacement)), (serde_json::json!("revoked"), serde_json::json!("signing")));
    let (ok, _, stderr) = flexauth_with(&env, &["keys", "revoke", &leaked], &[]);
    assert!(!ok && stderr.contains("revoked already"), "{stderr}");
    first.stop().await;
    second.stop().await;
}

#[actix_web::test]
async fn a_rotated_key_signs_only_after_the_servers_own_cache_lifetime_whatever_the_command_was_told() {
    let env = TestEnv::new().await;
    let tune = |settings: &mut flexauth_server::config::Settings| {
        settings.key_ring_refresh = std::time::Duration::from_millis(200)
    };
    // The servers tell resource servers to cache their JWKS for 3 s; the command thinks 1 s.
    let app = env.spawn_configured(&["--jwks-max-age", "3s"], tune, Arc::new(TestClock::default())).await;
    let email = unique_email("rotated-late");
    app.verified_login(&env, &email).await;
    let old = access_kid(&app, &email).await;
    let (ok, rotated, stderr) =
        flexauth_with(&env, &["keys", "rotate", "--delay", "2s"], &[("FLEXAUTH_JWKS_MAX_AGE", "1s")]);
    assert!(ok, "{stderr}");
    let new = rotated["kid"].as_str().unwrap().to_owned();
    let asked = std::time::Instant::now();
    until("the new key's publication", 2, async || published(&app).await.contains(&new)).await;
    // Past the 2 s the command stored, the server still waits out its own 3 s (and a refresh).
    tokio::time::sleep(std::time::Duration::from_millis(2_400).saturating_sub(asked.elapsed())).await;
    assert_eq!(access_kid(&app, &email).await, old, "signing before every cached JWKS has the key");
    until("the new key's activation", 6, async || access_kid(&app, &email).await == new).await;
    app.stop().await;
}
