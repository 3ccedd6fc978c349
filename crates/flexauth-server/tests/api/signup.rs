use flexauth_domain::account::{AccountRepository, EmailAddress};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{
    confirm_in_browser, mails_to, token_of, unique_email, verify_path, wait_for_mail_to, wait_for_mails, TestEnv,
    PASSWORD,
};

#[actix_web::test]
async fn signup_stores_an_unverified_account_and_sends_a_verification_email() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let email = unique_email("new");
    let reply = app.signup(&email).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert!(reply.headers.contains_key("x-request-id"));

    // The worker creates the account from the stored request; the email follows it.
    let mail = wait_for_mail_to(env.smtp(), &email).await;
    let account = env
        .store()
        .find_by_email(&EmailAddress::parse(&email).unwrap())
        .await
        .unwrap()
        .expect("the account row exists");
    assert!(!account.is_email_verified());
    let attempts = env.store().pending_signup_attempts(account.id(), time::OffsetDateTime::now_utc()).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert!(attempts[0].password_hash().unwrap().as_phc().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    assert_eq!(mail.subject().as_deref(), Some("Verify your email address"));
    assert!(mail.data.contains("text/html") && mail.data.contains("text/plain"));
    assert!(mail.first_link().unwrap().starts_with("http://auth.flexauth.test/v1/auth/verify?token="));
    app.stop().await;
}

async fn subjects(env: &TestEnv, email: &str, count: usize) -> Vec<String> {
    let mut subjects: Vec<String> =
        wait_for_mails(env.smtp(), email, count).await.iter().filter_map(|mail| mail.subject()).collect();
    subjects.sort();
    subjects
}

#[actix_web::test]
async fn signup_answers_the_same_for_a_taken_email_and_tells_the_owner() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let email = unique_email("taken");
    app.verified_login(&env, &email).await;
    let fresh = app.signup(&unique_email("fresh")).await;
    let taken = app
        .post("/v1/auth/signup", json!({ "email": email.to_uppercase(), "password": "another long password" }))
        .await;
    assert_eq!((fresh.status, &fresh.body), (taken.status, &taken.body));
    assert_eq!(subjects(&env, &email, 2).await, ["Verify your email address", "You already have an account"]);
    // The second password did not replace the first.
    assert_eq!(
        app.post("/v1/auth/login", json!({ "email": email, "password": "another long password" })).await.code(),
        "invalid_credentials"
    );
    assert_eq!(app.login(&email).await.status, StatusCode::OK);
    app.stop().await;
}

#[actix_web::test]
async fn signing_up_again_before_verifying_sends_a_second_link_and_either_confirms_with_a_chosen_password() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let email = unique_email("again");
    app.signup(&email).await;
    let first = wait_for_mail_to(env.smtp(), &email).await;
    assert_eq!(app.signup(&email).await.status, StatusCode::ACCEPTED);
    assert_eq!(subjects(&env, &email, 2).await, ["Verify your email address", "Verify your email address"]);
    let second = mails_to(env.smtp(), &email)
        .into_iter()
        .find(|mail| token_of(mail) != token_of(&first))
        .expect("a second link");
    // With two attempts pending, a link alone does not say whose password to activate.
    let bare = app.post("/v1/auth/verify", json!({ "token": token_of(&second) })).await;
    assert_eq!((bare.status, bare.code()), (StatusCode::BAD_REQUEST, "password_required"));
    let chosen =
        app.post("/v1/auth/verify", json!({ "token": token_of(&first), "password": "chosen while confirming" })).await;
    assert_eq!(chosen.status, StatusCode::OK, "{}", chosen.text);
    // Confirming discarded the other attempt's link.
    assert_eq!(
        app.post("/v1/auth/verify", json!({ "token": token_of(&second) })).await.code(),
        "invalid_verification_token"
    );
    assert_eq!(app.login(&email).await.code(), "invalid_credentials");
    assert_eq!(
        app.post("/v1/auth/login", json!({ "email": email, "password": "chosen while confirming" })).await.status,
        StatusCode::OK
    );
    app.stop().await;
}

#[actix_web::test]
async fn the_link_verifies_once_and_stays_harmless_afterwards() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let email = unique_email("link");
    app.signup(&email).await;
    let mail = wait_for_mail_to(env.smtp(), &email).await;

    assert_eq!(app.login(&email).await.code(), "email_not_verified");
    let page = app.get(&verify_path(&mail)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.headers.get("content-type").unwrap().to_str().unwrap().starts_with("text/html"));
    assert!(!page.text.contains("name=\"password\""), "the only sign-up confirms with one button");
    let confirmed = confirm_in_browser(&app, &mail, "unused: the page asks for no password").await;
    assert!(confirmed.text.contains("Your email address is verified"), "{}", confirmed.text);
    let again = app.post("/v1/auth/verify", json!({ "token": token_of(&mail) })).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, json!({ "data": { "email_verified": true } }));

    let account = env.store().find_by_email(&EmailAddress::parse(&email).unwrap()).await.unwrap().unwrap();
    assert!(account.is_email_verified());
    assert_eq!(app.login(&email).await.status, StatusCode::OK);
    app.stop().await;
}

#[actix_web::test]
async fn a_bad_or_replaced_link_is_refused() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let garbage = app.get("/v1/auth/verify?token=not-a-token").await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
    assert!(garbage.text.contains("not valid"));
    assert_eq!(
        app.post("/v1/auth/verify", json!({ "token": "A".repeat(43) })).await.code(),
        "invalid_verification_token"
    );
    assert_eq!(app.get("/v1/auth/verify").await.status, StatusCode::BAD_REQUEST);

    let email = unique_email("resend");
    app.signup(&email).await;
    let first = wait_for_mail_to(env.smtp(), &email).await;
    let resent = app.post("/v1/auth/verify/resend", json!({ "email": email })).await;
    assert_eq!(resent.status, StatusCode::ACCEPTED);
    wait_for_mails(env.smtp(), &email, 2).await;
    let second = mails_to(env.smtp(), &email)
        .into_iter()
        .find(|mail| token_of(mail) != token_of(&first))
        .expect("a second link");
    // Nobody chose a password for the resent link: it confirms only with one.
    assert_eq!(app.post("/v1/auth/verify", json!({ "token": token_of(&second) })).await.code(), "password_required");
    let weak = app.post("/v1/auth/verify", json!({ "token": token_of(&second), "password": "short" })).await;
    assert_eq!(weak.code(), "password_too_short");
    assert_eq!(
        app.post("/v1/auth/verify", json!({ "token": token_of(&second), "password": "picked on the page" }))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.post("/v1/auth/verify", json!({ "token": token_of(&first) })).await.code(),
        "invalid_verification_token"
    );
    app.stop().await;
}

#[actix_web::test]
async fn resend_answers_the_same_for_unknown_unverified_and_verified_addresses() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let verified = unique_email("verified");
    app.verified_login(&env, &verified).await;
    let unverified = unique_email("unverified");
    app.signup(&unverified).await;
    let replies = [
        app.post("/v1/auth/verify/resend", json!({ "email": unique_email("nobody") })).await,
        app.post("/v1/auth/verify/resend", json!({ "email": unverified })).await,
        app.post("/v1/auth/verify/resend", json!({ "email": verified })).await,
    ];
    for reply in &replies {
        assert_eq!((reply.status, &reply.body), (replies[0].status, &replies[0].body));
    }
    assert_eq!(replies[0].status, StatusCode::ACCEPTED);
    // Only the unverified address got a new link: a signup after the resends, handled after
    // them, marks the point by which every resend was handled.
    let marker = unique_email("marker");
    app.signup(&marker).await;
    wait_for_mail_to(env.smtp(), &marker).await;
    let subjects_of =
        |address: &str| mails_to(env.smtp(), address).iter().filter_map(|mail| mail.subject()).collect::<Vec<_>>();
    assert_eq!(subjects_of(&unverified), ["Verify your email address", "Verify your email address"]);
    assert_eq!(subjects_of(&verified), ["Verify your email address"], "a verified address gets no new link");
    assert_eq!(env.smtp().messages().len(), 4, "nothing went to the unknown address");
    app.stop().await;
}

#[actix_web::test]
async fn wrong_password_and_unknown_email_get_the_same_401() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let email = unique_email("login");
    app.verified_login(&env, &email).await;
    let wrong = app.post("/v1/auth/login", json!({ "email": email, "password": "not the password" })).await;
    let unknown = app.post("/v1/auth/login", json!({ "email": unique_email("ghost"), "password": PASSWORD })).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!((wrong.status, &wrong.body), (unknown.status, &unknown.body));
    assert_eq!(wrong.code(), "invalid_credentials");
    app.stop().await;
}

#[actix_web::test]
async fn an_operators_email_template_writes_the_verification_email_and_the_rest_stay_built_in() {
    let env = TestEnv::new().await;
    let templates = tempfile::tempdir().unwrap();
    std::fs::write(
        templates.path().join("verification.txt"),
        "Subject: Bestätigen Sie Ihre Adresse\n\nBitte öffnen Sie {{ link }} innerhalb von {{ valid_for_minutes }} \
         Minuten.\n",
    )
    .unwrap();
    let app = env.spawn_with(&["--email-templates", templates.path().to_str().unwrap()]).await;
    let email = unique_email("template");
    app.signup(&email).await;
    let mail = wait_for_mail_to(env.smtp(), &email).await;
    assert_eq!(mail.subject().as_deref(), Some("Bestätigen Sie Ihre Adresse"));
    let link = mail.first_link().unwrap();
    assert!(link.starts_with("http://auth.flexauth.test/v1/auth/verify?token="), "{link}");
    assert!(mail.text().contains("innerhalb von 1440 Minuten"), "{}", mail.text());
    // The link of the operator's email confirms the address like the built-in one.
    let page = confirm_in_browser(&app, &mail, PASSWORD).await;
    assert!(page.text.contains("verified"), "{}", page.text);
    let password_reset = app.post("/v1/auth/password/forgot", json!({ "email": email })).await;
    assert_eq!(password_reset.status, StatusCode::ACCEPTED);
    let mails = wait_for_mails(env.smtp(), &email, 2).await;
    assert!(mails.iter().any(|mail| mail.subject().as_deref() == Some("Reset your password")));
    app.stop().await;
}
