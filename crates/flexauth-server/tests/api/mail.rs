use std::time::{Duration, Instant};

use actix_web::http::StatusCode;

use crate::helpers::{eventually, mails_to, unique_email, TestEnv};

#[actix_web::test]
async fn signups_succeed_while_smtp_is_down_and_every_email_arrives_once_it_returns() {
    let mut env = TestEnv::new().await;
    env.stop_smtp();
    let app = env.spawn().await;
    let addresses: Vec<String> = (0..5).map(|i| unique_email(&format!("outage{i}"))).collect();
    for address in &addresses {
        let started = Instant::now();
        assert_eq!(app.signup(address).await.status, StatusCode::ACCEPTED);
        assert!(started.elapsed() < Duration::from_secs(5), "signup waited on SMTP");
    }
    // Let the worker fail at least once against the dead server.
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.restart_smtp().await;
    eventually("5 emails", || (env.smtp().messages().len() >= 5).then_some(())).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for address in &addresses {
        assert_eq!(mails_to(env.smtp(), address).len(), 1, "exactly one email to {address}");
    }
    assert_eq!(env.smtp().messages().len(), 5);
    app.stop().await;
}

#[actix_web::test]
async fn queued_emails_survive_a_restart_and_are_sent_exactly_once() {
    let mut env = TestEnv::new().await;
    env.stop_smtp();
    let first = env.spawn().await;
    let addresses: Vec<String> = (0..3).map(|i| unique_email(&format!("restart{i}"))).collect();
    for address in &addresses {
        assert_eq!(first.signup(address).await.status, StatusCode::ACCEPTED);
    }
    first.stop().await;

    env.restart_smtp().await;
    let second = env.spawn().await;
    eventually("3 emails", || (env.smtp().messages().len() >= 3).then_some(())).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for address in &addresses {
        assert_eq!(mails_to(env.smtp(), address).len(), 1, "exactly one email to {address}");
    }
    second.stop().await;
}
