use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::{eventually, mails_to, unique_email, wait_for_mail_to, TestApp, TestClock, TestEnv};

/// Moves `clock` past every outbox lease and retry delay, sends one more signup through `app`
/// and waits for its email: the worker has then run a full pass after the move, and any email
/// it had sent without recording it would have been sent again by then.
async fn outlast_every_lease(env: &TestEnv, app: &TestApp, clock: &TestClock) {
    clock.advance(time::Duration::hours(1));
    let sentinel = unique_email("sentinel");
    assert_eq!(app.signup(&sentinel).await.status, StatusCode::ACCEPTED);
    wait_for_mail_to(env.smtp(), &sentinel).await;
}

#[actix_web::test]
async fn signups_succeed_while_smtp_is_down_and_every_email_arrives_once_it_returns() {
    let env = TestEnv::new().await;
    env.smtp().pause();
    let clock = Arc::new(TestClock::default());
    let app = env.spawn_with_clock(&[], clock.clone()).await;
    let addresses: Vec<String> = (0..5).map(|i| unique_email(&format!("outage{i}"))).collect();
    for address in &addresses {
        assert_eq!(app.signup(address).await.status, StatusCode::ACCEPTED);
    }
    // The worker tried the dead server at least once before it comes back.
    assert!(env.smtp().wait_for_refusals(1, Duration::from_secs(20)).await >= 1, "the worker never tried to deliver");
    assert!(env.smtp().messages().is_empty());
    env.smtp().resume();
    eventually("5 emails", || (env.smtp().messages().len() >= 5).then_some(())).await;
    outlast_every_lease(&env, &app, &clock).await;
    for address in &addresses {
        assert_eq!(mails_to(env.smtp(), address).len(), 1, "exactly one email to {address}");
    }
    assert_eq!(env.smtp().messages().len(), 6);
    app.stop().await;
}

#[actix_web::test]
async fn queued_emails_survive_a_restart_and_are_sent_exactly_once() {
    let env = TestEnv::new().await;
    env.smtp().pause();
    let first = env.spawn().await;
    let addresses: Vec<String> = (0..3).map(|i| unique_email(&format!("restart{i}"))).collect();
    for address in &addresses {
        assert_eq!(first.signup(address).await.status, StatusCode::ACCEPTED);
    }
    assert!(env.smtp().wait_for_refusals(1, Duration::from_secs(20)).await >= 1, "the worker never tried to deliver");
    first.stop().await;

    env.smtp().resume();
    let clock = Arc::new(TestClock::default());
    let second = env.spawn_with_clock(&[], clock.clone()).await;
    eventually("3 emails", || (env.smtp().messages().len() >= 3).then_some(())).await;
    outlast_every_lease(&env, &second, &clock).await;
    for address in &addresses {
        assert_eq!(mails_to(env.smtp(), address).len(), 1, "exactly one email to {address}");
    }
    second.stop().await;
}
