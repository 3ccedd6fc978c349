//! Abuse resistance: guessing, spraying and flooding, tried as an attacker would, against the
//! limits that must stop them without ever locking the owner out.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{confirm_in_browser, mails_to, unique_email, wait_for_mail_to, Reply, TestApp, TestEnv, PASSWORD};

const PROXY: &[&str] = &["--trusted-proxies", "127.0.0.1/32"];

/// An instance on a clock that does not move, for the tests that count up to a limit: limits
/// count in fixed windows (a minute, a quarter of an hour), and a test that crossed a window's
/// end would see its count start over.
async fn spawn_frozen(env: &TestEnv, extra: &[&str]) -> TestApp {
    env.spawn_with_clock(extra, std::sync::Arc::new(crate::helpers::TestClock::frozen())).await
}

fn assert_limited(reply: &Reply, what: &str) {
    assert_eq!((reply.status, reply.code()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"), "{what}: {}", reply.text);
    let header = |name: &str| {
        reply.headers.get(name).unwrap_or_else(|| panic!("{what}: no {name} header")).to_str().unwrap().to_owned()
    };
    let retry_after: i64 = header("retry-after").parse().unwrap();
    // Up to a day: the per-account limit has a daily tier.
    assert!((1..=86_400).contains(&retry_after), "{what}: Retry-After {retry_after}");
    assert!(header("ratelimit-policy").contains(";q="), "{what}");
    assert!(header("ratelimit").contains(";r=0;t="), "{what}");
}

async fn wrong_login(app: &TestApp, client: Option<&str>, email: &str) -> Reply {
    let body = json!({ "email": email, "password": "not the password" });
    match client {
        Some(client) => app.post_from(client, "/v1/auth/login", body).await,
        None => app.post("/v1/auth/login", body).await,
    }
}

/// Signs up and confirms `email` through the proxy as client `client`.
async fn verified_from(env: &TestEnv, app: &TestApp, client: &str, email: &str) {
    let reply = app.post_from(client, "/v1/auth/signup", json!({ "email": email, "password": PASSWORD })).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    confirm_in_browser(app, &wait_for_mail_to(env.smtp(), email).await, PASSWORD).await;
}

#[actix_web::test]
async fn guessing_one_account_and_spraying_unknown_emails_are_limited_at_the_same_count() {
    let env = TestEnv::new().await;
    let app = spawn_frozen(&env, &[]).await;
    let victim = unique_email("guessed");
    app.verified_login(&env, &victim).await;
    for attempt in 1..=10 {
        assert_eq!(wrong_login(&app, None, &victim).await.code(), "invalid_credentials", "guess {attempt}");
    }
    assert_limited(&wrong_login(&app, None, &victim).await, "the 11th guess");
    // The right password does not get through either, and a forged header changes nothing.
    assert_limited(&app.login(&victim).await, "the right password from the limited address");
    let spoofed =
        app.post_from("198.51.100.77", "/v1/auth/login", json!({ "email": victim, "password": PASSWORD })).await;
    assert_limited(&spoofed, "an untrusted X-Forwarded-For");
    app.stop().await;

    let env = TestEnv::new().await;
    let app = spawn_frozen(&env, &[]).await;
    for attempt in 1..=10 {
        assert_eq!(
            wrong_login(&app, None, &unique_email("sprayed")).await.code(),
            "invalid_credentials",
            "spray {attempt}"
        );
    }
    assert_limited(&wrong_login(&app, None, &unique_email("sprayed")).await, "the 11th sprayed email");
    app.stop().await;
}

#[actix_web::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_count() {
    let env = TestEnv::new().await;
    let app = spawn_frozen(&env, PROXY).await;
    // Distinct emails, so that only the per-address count is at work.
    for _ in 0..10 {
        wrong_login(&app, Some("198.51.100.1"), &unique_email("proxied")).await;
    }
    assert_limited(
        &wrong_login(&app, Some("198.51.100.1"), &unique_email("proxied")).await,
        "the 11th failure of 198.51.100.1",
    );
    assert_eq!(
        wrong_login(&app, Some("198.51.100.2"), &unique_email("proxied")).await.code(),
        "invalid_credentials",
        "another client behind the proxy"
    );
    // A client cannot pick its address by prepending one: the proxy's view is the rightmost.
    let prepended = app
        .post_from(
            "198.51.100.2, 198.51.100.1",
            "/v1/auth/login",
            json!({ "email": unique_email("proxied"), "password": "x" }),
        )
        .await;
    assert_limited(&prepended, "the limited client behind a forged first hop");
    app.stop().await;
}

#[actix_web::test]
async fn fifty_accounts_logging_in_from_one_address_within_a_minute_are_not_throttled() {
    let env = TestEnv::new().await;
    let app = env.spawn_with(PROXY).await;
    let emails: Vec<String> = (0..50).map(|i| unique_email(&format!("office{i}"))).collect();
    for (i, email) in emails.iter().enumerate() {
        verified_from(&env, &app, &format!("10.20.{}.{}", i / 200, i % 200 + 1), email).await;
    }
    for email in &emails {
        let login =
            app.post_from("203.0.113.50", "/v1/auth/login", json!({ "email": email, "password": PASSWORD })).await;
        assert_eq!(login.status, StatusCode::OK, "{email}: {}", login.text);
    }
    app.stop().await;
}

#[actix_web::test]
async fn two_hundred_guesses_from_forty_addresses_get_nowhere_while_the_owner_logs_in() {
    let env = TestEnv::new().await;
    let app = spawn_frozen(&env, PROXY).await;
    let owner = unique_email("besieged");
    verified_from(&env, &app, "192.0.2.100", &owner).await;
    let first = app.post_from("192.0.2.100", "/v1/auth/login", json!({ "email": owner, "password": PASSWORD })).await;
    assert_eq!(first.status, StatusCode::OK);
    let mut limited = 0;
    for round in 0..5 {
        for attacker in 0..40 {
            let client = format!("203.0.113.{}", attacker + 1);
            let reply = wrong_login(&app, Some(&client), &owner).await;
            assert_ne!(reply.status, StatusCode::OK);
            limited += usize::from(reply.status == StatusCode::TOO_MANY_REQUESTS);
            if attacker == 20 {
                let owner_login = app
                    .post_from("192.0.2.100", "/v1/auth/login", json!({ "email": owner, "password": PASSWORD }))
                    .await;
                assert_eq!(owner_login.status, StatusCode::OK, "the owner during round {round}: {}", owner_login.text);
            }
        }
    }
    // Five guesses before the account's limit; the owner's logins do not reopen it.
    assert_eq!(limited, 195, "guesses limited of 200");
    // Even the right password, from an address the account does not know, waits.
    let lucky = app.post_from("203.0.113.99", "/v1/auth/login", json!({ "email": owner, "password": PASSWORD })).await;
    assert_limited(&lucky, "the right password from a stranger during the attack");
    let after = app.post_from("192.0.2.100", "/v1/auth/login", json!({ "email": owner, "password": PASSWORD })).await;
    assert_eq!(after.status, StatusCode::OK);
    app.stop().await;
}

#[actix_web::test]
async fn twenty_resets_and_ten_signups_for_one_address_deliver_at_most_six_emails() {
    let env = TestEnv::new().await;
    let app = env.spawn_with(PROXY).await;
    let target = unique_email("flooded");
    for i in 0..10 {
        let reply = app
            .post_from(
                &format!("10.30.0.{}", i + 1),
                "/v1/auth/signup",
                json!({ "email": target, "password": PASSWORD }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED);
    }
    for i in 0..20 {
        let reply =
            app.post_from(&format!("10.31.0.{}", i + 1), "/v1/auth/password/forgot", json!({ "email": target })).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "capped requests answer as usual");
    }
    // The worker handles requests in order: once this one's email is there, all were handled.
    let sentinel = unique_email("sentinel");
    app.post_from("10.32.0.1", "/v1/auth/password/forgot", json!({ "email": target })).await;
    app.post_from("10.32.0.2", "/v1/auth/signup", json!({ "email": sentinel, "password": PASSWORD })).await;
    wait_for_mail_to(env.smtp(), &sentinel).await;
    let delivered = mails_to(env.smtp(), &target);
    assert!(delivered.len() <= 6, "{} emails reached the flooded address", delivered.len());
    assert_eq!(
        delivered.iter().filter(|mail| mail.subject().as_deref() == Some("Verify your email address")).count(),
        3
    );
    assert_eq!(delivered.iter().filter(|mail| mail.subject().as_deref() == Some("Reset your password")).count(), 3);
    app.stop().await;
}

#[actix_web::test]
async fn alternating_between_two_instances_does_not_raise_the_allowance() {
    let env = TestEnv::new().await;
    let clock = std::sync::Arc::new(crate::helpers::TestClock::frozen());
    let instances = [env.spawn_with_clock(PROXY, clock.clone()).await, env.spawn_with_clock(PROXY, clock).await];
    for attempt in 0..10 {
        let reply = wrong_login(&instances[attempt % 2], Some("198.51.100.40"), &unique_email("alternated")).await;
        assert_eq!(reply.code(), "invalid_credentials", "failure {}", attempt + 1);
    }
    assert_limited(
        &wrong_login(&instances[0], Some("198.51.100.40"), &unique_email("alternated")).await,
        "the 11th failure, on instance 0",
    );
    assert_limited(
        &wrong_login(&instances[1], Some("198.51.100.40"), &unique_email("alternated")).await,
        "the 12th failure, on instance 1",
    );
    for instance in &instances {
        instance.stop().await;
    }
}

#[actix_web::test]
async fn with_limits_off_nothing_is_limited() {
    let env = TestEnv::new().await;
    let app = env.spawn_with(&["--rate-limits", "off"]).await;
    let email = unique_email("unlimited");
    for _ in 0..12 {
        assert_eq!(wrong_login(&app, None, &email).await.code(), "invalid_credentials");
    }
    app.stop().await;
}

#[actix_web::test]
async fn a_login_flood_beyond_the_hash_pool_gets_503_at_once_and_every_accepted_login_succeeds() {
    let env = TestEnv::new().await;
    // One worker with sixteen places in its queue, at a cost that keeps it busy for the flood.
    // Rate limits off: from one address, more than ten logins in flight at once would be
    // limited before they reach the pool (in-flight attempts count until they succeed).
    let app = env.spawn_with(&["--argon2-workers", "1", "--argon2-iterations", "8", "--rate-limits", "off"]).await;
    let email = unique_email("flood");
    app.verified_login(&env, &email).await;
    let logins = (0..64).map(|_| app.login(&email));
    let replies = futures_util::future::join_all(logins).await;
    let mut overloaded = 0;
    for reply in &replies {
        match reply.status {
            StatusCode::OK => assert!(reply.body["data"]["access_token"].is_string()),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(reply.code(), "overloaded", "{}", reply.text);
                assert_eq!(reply.headers.get("retry-after").unwrap(), "1");
                overloaded += 1;
            }
            other => panic!("a flooded login answered {other}: {}", reply.text),
        }
    }
    assert!(overloaded > 0, "64 logins for 17 places: some must be shed");
    assert!(overloaded < 64, "the queue's logins were served");
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    app.stop().await;
}

#[actix_web::test]
async fn the_security_log_shows_the_owner_logins_changes_keys_and_reuse() {
    let env = TestEnv::new().await;
    let app = env.spawn_with(PROXY).await;
    let owner = unique_email("logged");
    verified_from(&env, &app, "192.0.2.10", &owner).await;
    assert_eq!(wrong_login(&app, Some("203.0.113.66"), &owner).await.code(), "invalid_credentials");
    let session =
        app.post_from("192.0.2.10", "/v1/auth/login", json!({ "email": owner, "password": PASSWORD })).await.body
            ["data"]
            .clone();
    let access = session["access_token"].as_str().unwrap().to_owned();
    let change = json!({ "current_password": PASSWORD, "new_password": "changed for the log" });
    assert_eq!(
        app.post_json_with_bearer("/v1/auth/password/change", &access, change).await.status,
        StatusCode::NO_CONTENT
    );
    // The key is made from another address and program, which the log names.
    let created = app
        .client
        .post(app.url("/v1/api-keys"))
        .bearer_auth(&access)
        .header("x-forwarded-for", "192.0.2.44")
        .header("user-agent", "billing-setup/1.0")
        .json(&json!({ "name": "logged key" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let first = session["refresh_token"].as_str().unwrap();
    let rotated = app.refresh(first).await.body["data"]["refresh_token"].as_str().unwrap().to_owned();
    app.refresh(&rotated).await;
    assert_eq!(app.refresh(first).await.code(), "refresh_token_reused");

    // The reuse ended the session, so the owner logs in again to read the log.
    let reader = app
        .post_from("192.0.2.10", "/v1/auth/login", json!({ "email": owner, "password": "changed for the log" }))
        .await
        .body["data"]
        .clone();
    let reader = reader["access_token"].as_str().unwrap().to_owned();
    let page = app.get_with_bearer("/v1/auth/events?limit=3", &reader).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let mut events: Vec<serde_json::Value> = page.body["data"]["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 3);
    let next = page.body["data"]["next"].as_str().expect("a next page").to_owned();
    let rest = app.get_with_bearer(&format!("/v1/auth/events?after={next}"), &reader).await;
    events.extend(rest.body["data"]["events"].as_array().unwrap().iter().cloned());
    let kinds: Vec<&str> = events.iter().map(|event| event["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "login_succeeded",
            "refresh_token_reuse",
            "api_key_created",
            "password_changed",
            "login_succeeded",
            "login_failed"
        ],
        "newest first"
    );
    assert_eq!(events[5]["ip"], "203.0.113.66", "the failed login names its address");
    assert_eq!(events[4]["ip"], "192.0.2.10");
    assert!(events[2]["key_id"].is_string());
    assert_eq!(
        (events[2]["ip"].as_str(), events[2]["user_agent"].as_str()),
        (Some("192.0.2.44"), Some("billing-setup/1.0"))
    );
    assert_eq!(app.get_with_bearer("/v1/auth/events?after=garbage", &reader).await.code(), "invalid_cursor");
    // Another account sees none of it.
    let stranger = app.verified_login(&env, &unique_email("stranger")).await;
    let theirs = app.get_with_bearer("/v1/auth/events", stranger["access_token"].as_str().unwrap()).await;
    assert_eq!(theirs.body["data"]["events"].as_array().unwrap().len(), 1, "only the stranger's own login");
    app.stop().await;
}

#[actix_web::test]
async fn forty_concurrent_guesses_from_one_address_get_no_more_than_the_limit_through() {
    let env = TestEnv::new().await;
    let app = spawn_frozen(&env, &[]).await;
    let guesses = (0..40).map(|i| {
        let email = unique_email(&format!("racing{i}"));
        let app = &app;
        async move { wrong_login(app, None, &email).await }
    });
    let replies = futures_util::future::join_all(guesses).await;
    let checked = replies.iter().filter(|reply| reply.code() == "invalid_credentials").count();
    let limited = replies.iter().filter(|reply| reply.status == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!(checked + limited, 40);
    assert!(checked <= 10, "{checked} concurrent guesses were checked past a limit of 10");
    app.stop().await;
}

#[actix_web::test]
async fn a_device_that_logged_in_before_gets_through_an_attack_from_any_address() {
    let env = TestEnv::new().await;
    let app = spawn_frozen(&env, PROXY).await;
    let owner = unique_email("device");
    verified_from(&env, &app, "192.0.2.20", &owner).await;
    let first = app
        .client
        .post(app.url("/v1/auth/login"))
        .header("x-forwarded-for", "192.0.2.20")
        .json(&json!({ "email": owner, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let cookie = first.headers().get("set-cookie").expect("a device cookie").to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/v1/auth/login", "Max-Age=2592000"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let device = cookie.split(';').next().unwrap().to_owned();
    for attacker in 0..10 {
        wrong_login(&app, Some(&format!("203.0.113.{}", attacker + 1)), &owner).await;
    }
    let login_from = |address: &'static str, cookie: Option<String>| {
        let mut request = app.client.post(app.url("/v1/auth/login")).header("x-forwarded-for", address);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.json(&json!({ "email": owner, "password": PASSWORD })).send()
    };
    // From an address the account never saw: refused without the cookie, let in with it.
    assert_eq!(login_from("198.51.100.250", None).await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    let with_device = login_from("198.51.100.250", Some(device.clone())).await.unwrap();
    assert_eq!(with_device.status(), StatusCode::OK);
    assert!(with_device.headers().get("set-cookie").is_none(), "a known device keeps its token");
    // A forged or foreign cookie is no key.
    let forged = format!("flexauth_device={}", "A".repeat(43));
    assert_eq!(login_from("198.51.100.251", Some(forged)).await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    app.stop().await;
}

fn password_change(current: &str) -> serde_json::Value {
    json!({ "current_password": current, "new_password": "a brand new passphrase" })
}

/// The newest hundred entries of the account's security log, read with `access`.
async fn security_log(app: &TestApp, access: &str) -> Vec<serde_json::Value> {
    let page = app.get_with_bearer("/v1/auth/events?limit=100", access).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    page.body["data"]["events"].as_array().unwrap().clone()
}

#[actix_web::test]
async fn guessing_the_current_password_of_a_change_ends_the_session_at_the_fifth_failure() {
    let env = TestEnv::new().await;
    let app = spawn_frozen(&env, PROXY).await;
    let owner = unique_email("change-guessed");
    verified_from(&env, &app, "192.0.2.30", &owner).await;
    let login = |address: &'static str| {
        let app = &app;
        let owner = owner.clone();
        async move {
            let reply = app.post_from(address, "/v1/auth/login", json!({ "email": owner, "password": PASSWORD })).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
            reply.body["data"].clone()
        }
    };
    let owners = login("192.0.2.30").await;
    let stolen = login("192.0.2.30").await;
    let (thief, refresh) = (stolen["access_token"].as_str().unwrap(), stolen["refresh_token"].as_str().unwrap());
    for guess in 1..=5 {
        let reply = app
            .client
            .post(app.url("/v1/auth/password/change"))
            .header("x-forwarded-for", "203.0.113.40")
            .bearer_auth(thief)
            .json(&password_change(&format!("guess number {guess}")))
            .send()
            .await
            .unwrap();
        let reply = crate::helpers::read(reply).await;
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::BAD_REQUEST, "invalid_current_password"),
            "guess {guess}"
        );
    }
    // The fifth failure ended the session: the right password changes nothing through it now.
    let right = app.post_json_with_bearer("/v1/auth/password/change", thief, password_change(PASSWORD)).await;
    assert_eq!((right.status, right.code()), (StatusCode::UNAUTHORIZED, "invalid_token"), "{}", right.text);
    assert_eq!(app.refresh(refresh).await.code(), "session_revoked");
    // The owner's own session and password are untouched, and the log says what happened.
    let reader = owners["access_token"].as_str().unwrap();
    // The clock is frozen, so every entry has the same time: counted, not ordered.
    let events = security_log(&app, reader).await;
    let of_type = |kind: &str| events.iter().filter(|event| event["type"] == kind).collect::<Vec<_>>();
    assert_eq!(of_type("password_check_failed").len(), 5, "{events:?}");
    let ended = of_type("session_ended_for_password_failures");
    assert_eq!(ended.len(), 1, "{events:?}");
    assert_eq!(
        (&ended[0]["ip"], &ended[0]["session_id"]),
        (&json!("203.0.113.40"), &of_type("password_check_failed")[0]["session_id"])
    );
    let notice =
        crate::helpers::wait_for_subject(env.smtp(), &owner, "A session was ended after wrong passwords").await;
    assert!(notice.text().contains("203.0.113.40"), "{}", notice.text());
    assert_eq!(login("192.0.2.30").await["token_type"], "bearer", "the password did not change");
    app.stop().await;
}

#[actix_web::test]
async fn re_authentication_and_password_change_share_one_count_per_session_and_one_per_account() {
    let env = TestEnv::new().await;
    let app = spawn_frozen(&env, &[]).await;
    let owner = unique_email("shared-count");
    let first = app.verified_login(&env, &owner).await;
    let first = first["access_token"].as_str().unwrap().to_owned();
    for guess in 1..=3 {
        let reply = app
            .post_json_with_bearer("/v1/auth/reauthenticate", &first, json!({ "password": format!("guess {guess}") }))
            .await;
        assert_eq!(reply.code(), "invalid_current_password", "re-authentication {guess}");
    }
    assert_eq!(
        app.post_json_with_bearer("/v1/auth/password/change", &first, password_change("guess 4")).await.code(),
        "invalid_current_password"
    );
    assert_eq!(
        app.post_json_with_bearer("/v1/auth/reauthenticate", &first, json!({ "password": "guess 5" })).await.code(),
        "invalid_current_password"
    );
    assert_eq!(
        app.post_json_with_bearer("/v1/auth/reauthenticate", &first, json!({ "password": PASSWORD })).await.code(),
        "invalid_token",
        "the fifth failure of the session ended it"
    );
    // Another session of the account gets the rest of the account's allowance (ten per quarter
    // of an hour), then is refused before any hashing; its right password is refused too.
    let second = app.login(&owner).await.body["data"]["access_token"].as_str().unwrap().to_owned();
    for guess in 1..=4 {
        let reply = app.post_json_with_bearer("/v1/auth/password/change", &second, password_change("nope nope")).await;
        assert_eq!(reply.code(), "invalid_current_password", "guess {guess} of the second session");
    }
    let third = app.login(&owner).await.body["data"]["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        app.post_json_with_bearer("/v1/auth/password/change", &third, password_change("nope nope")).await.code(),
        "invalid_current_password",
        "the tenth failure of the account"
    );
    assert_limited(
        &app.post_json_with_bearer("/v1/auth/password/change", &third, password_change(PASSWORD)).await,
        "the eleventh check of the account",
    );
    assert_limited(
        &app.post_json_with_bearer("/v1/auth/reauthenticate", &second, json!({ "password": PASSWORD })).await,
        "a re-authentication past the account's count",
    );
    app.stop().await;
}

#[actix_web::test]
async fn a_flood_of_wrong_password_changes_is_refused_before_hashing_and_leaves_logins_alone() {
    let env = TestEnv::new().await;
    let app = spawn_frozen(&env, &[]).await;
    let flooder = app.verified_login(&env, &unique_email("flooder")).await;
    let bystander = unique_email("bystander");
    app.verified_login(&env, &bystander).await;
    let access = flooder["access_token"].as_str().unwrap();
    let flood = (0..120).map(|i| {
        let app = &app;
        async move {
            app.post_json_with_bearer("/v1/auth/password/change", access, password_change(&format!("flood {i}"))).await
        }
    });
    let replies = futures_util::future::join_all(flood).await;
    let checked = replies.iter().filter(|reply| reply.code() == "invalid_current_password").count();
    let refused = replies
        .iter()
        .filter(|reply| reply.status == StatusCode::TOO_MANY_REQUESTS || reply.code() == "invalid_token")
        .count();
    assert!(
        replies.iter().all(|reply| reply.status != StatusCode::SERVICE_UNAVAILABLE),
        "no change was shed as overload"
    );
    assert!(checked <= 5, "{checked} wrong passwords were hashed past a limit of 5");
    assert_eq!(checked + refused, 120);
    assert_eq!(app.login(&bystander).await.status, StatusCode::OK);
    app.stop().await;
}

/// A login of `email` as the client at `address` (through the trusted proxy), presenting
/// `device` as its cookie; returns the status and the device cookie it was handed, if any.
async fn login_from(
    app: &TestApp,
    address: &str,
    device: Option<&str>,
    email: &str,
    password: &str,
) -> (StatusCode, Option<String>) {
    let mut request = app.client.post(app.url("/v1/auth/login")).header("x-forwarded-for", address);
    if let Some(device) = device {
        request = request.header("cookie", device);
    }
    let reply = request.json(&json!({ "email": email, "password": password })).send().await.unwrap();
    let cookie = reply
        .headers()
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .map(|cookie| cookie.split(';').next().unwrap_or_default().to_owned());
    (reply.status(), cookie)
}

#[actix_web::test]
async fn taking_the_account_back_forgets_the_attackers_known_address_and_device() {
    for way in ["reset", "global logout", "disable", "undo"] {
        let env = TestEnv::new().await;
        let app = spawn_frozen(&env, PROXY).await;
        let owner = unique_email("taken-back");
        verified_from(&env, &app, "192.0.2.60", &owner).await;
        // Someone with the password logs in once, from their address with their browser.
        let (status, device) = login_from(&app, "203.0.113.77", None, &owner, PASSWORD).await;
        assert_eq!(status, StatusCode::OK, "{way}");
        let device = device.expect("a device cookie");
        let (_, owners_session) =
            (0, app.post_from("192.0.2.60", "/v1/auth/login", json!({ "email": owner, "password": PASSWORD })).await);
        let owners_access = owners_session.body["data"]["access_token"].as_str().unwrap().to_owned();
        match way {
            "reset" => {
                app.post_from("192.0.2.60", "/v1/auth/password/forgot", json!({ "email": owner })).await;
                let mail = crate::helpers::wait_for_subject(env.smtp(), &owner, "Reset your password").await;
                let token = crate::helpers::token_of(&mail);
                let reset =
                    app.post("/v1/auth/password/reset", json!({ "token": token, "password": "after the reset" })).await;
                assert!(reset.status.is_success(), "{}", reset.text);
            }
            "global logout" => {
                let out =
                    app.post_json_with_bearer("/v1/auth/logout", &owners_access, json!({ "scope": "global" })).await;
                assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.text);
            }
            "disable" => {
                let id = app.get_with_bearer("/v1/auth/me", &owners_access).await.body["data"]["id"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                assert!(crate::lifecycle::flexauth(&env, &["accounts", "disable", &id]).0);
                assert!(crate::lifecycle::flexauth(&env, &["accounts", "enable", &id]).0);
            }
            "undo" => {
                // The intruder moves the account away; the owner undoes it from the old address.
                let intruder = app
                    .post_from("203.0.113.77", "/v1/auth/login", json!({ "email": owner, "password": PASSWORD }))
                    .await;
                let moved = app
                    .post_json_with_bearer(
                        "/v1/auth/email/change",
                        intruder.body["data"]["access_token"].as_str().unwrap(),
                        json!({ "new_email": unique_email("intruder") }),
                    )
                    .await;
                assert_eq!(moved.status, StatusCode::ACCEPTED, "{}", moved.text);
                let undo =
                    crate::helpers::wait_for_subject(env.smtp(), &owner, "Your account's email address is changing")
                        .await;
                assert!(confirm_in_browser(&app, &undo, "").await.text.contains("Change undone"));
            }
            _ => unreachable!(),
        }
        // The intruder's address and device are strangers now: the per-account limit holds them.
        for guess in 1..=5 {
            let (status, _) = login_from(&app, "203.0.113.77", Some(&device), &owner, "a guess").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{way}: guess {guess}");
        }
        let (status, _) = login_from(&app, "203.0.113.77", Some(&device), &owner, "a guess").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{way}: the sixth guess");
        app.stop().await;
    }
}
