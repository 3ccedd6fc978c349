use futures_util::future::join_all;
use reqwest::StatusCode;

use crate::helpers::{unique_email, TestEnv};

/// Three instances over one database: the same refresh token sent to all of them at once
/// yields one lineage, and any instance continues it.
#[actix_web::test]
async fn concurrent_refreshes_across_three_instances_yield_one_lineage() {
    let env = TestEnv::new().await;
    if !env.is_postgres() {
        flexauth_store::test_db::skip("the three-instance test", "the API suite runs on SQLite", None);
        return;
    }
    let instances = [env.spawn().await, env.spawn().await, env.spawn().await];
    let data = instances[0].verified_login(&env, &unique_email("scale")).await;
    let token = data["refresh_token"].as_str().unwrap().to_owned();
    let replies = join_all((0..21).map(|i| instances[i % 3].refresh(&token))).await;
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert_eq!(reply.body, replies[0].body);
    }
    let child = replies[0].body["data"]["refresh_token"].as_str().unwrap().to_owned();
    let access = replies[0].body["data"]["access_token"].as_str().unwrap().to_owned();
    for instance in &instances {
        assert_eq!(instance.get_with_bearer("/v1/usage", &access).await.status, StatusCode::OK);
    }
    assert_eq!(instances[2].refresh(&child).await.status, StatusCode::OK);
    for instance in &instances {
        instance.stop().await;
    }
}

/// A restart loses nothing: accounts, sessions and the generated signing key live in the
/// database, so tokens issued before keep working.
#[actix_web::test]
async fn a_restart_logs_nobody_out() {
    let env = TestEnv::new().await;
    let before = env.spawn().await;
    let email = unique_email("restart");
    let data = before.verified_login(&env, &email).await;
    before.stop().await;

    let after = env.spawn().await;
    let access = data["access_token"].as_str().unwrap();
    assert_eq!(after.get_with_bearer("/v1/usage", access).await.status, StatusCode::OK);
    assert_eq!(after.refresh(data["refresh_token"].as_str().unwrap()).await.status, StatusCode::OK);
    assert_eq!(after.login(&email).await.status, StatusCode::OK);
    after.stop().await;
}

/// The PgBouncer of `scripts/pgbouncer-up` (FLEXAUTH_TEST_PGBOUNCER_URL); `None`, said on
/// stderr, when it is not given, which fails the test when FLEXAUTH_TEST_REQUIRE_PGBOUNCER is
/// set (as CI sets it).
pub(crate) fn pgbouncer_url(test: &str) -> Option<String> {
    let url = std::env::var("FLEXAUTH_TEST_PGBOUNCER_URL").ok().filter(|url| !url.is_empty());
    if url.is_none() {
        flexauth_store::test_db::skip(
            test,
            "FLEXAUTH_TEST_PGBOUNCER_URL is not set (scripts/pgbouncer-up prints it)",
            Some("FLEXAUTH_TEST_REQUIRE_PGBOUNCER"),
        );
    }
    url
}

/// The database URL of `env` with its host and port replaced by those of `pooler`, a
/// `postgres://…` URL of a pooler in front of the same server.
pub(crate) fn through(env: &TestEnv, pooler: &str) -> String {
    let flexauth_store::DatabaseConfig::Postgres(direct) = env.db.config() else {
        unreachable!("checked by the caller")
    };
    let mut url = url::Url::parse(direct).unwrap();
    let pooler = url::Url::parse(pooler).unwrap();
    url.set_host(pooler.host_str()).unwrap();
    url.set_port(pooler.port()).unwrap();
    url.to_string()
}

/// Two instances behind PgBouncer in transaction mode (`scripts/pgbouncer-up`; CI sets
/// FLEXAUTH_TEST_PGBOUNCER_URL and requires it): the seed flow, concurrent refreshes on both,
/// API keys revoked at once. Consecutive statements reach different server sessions there, so
/// any named prepared statement or session state would fail. One instance is told of the pooler
/// (FLEXAUTH_DATABASE_POOLER=transaction), the other is not and sees it.
#[actix_web::test]
async fn two_instances_behind_pgbouncer_in_transaction_mode_run_the_seed_flow_and_agree_on_concurrent_refreshes() {
    let Some(pooler) = pgbouncer_url("the PgBouncer test") else { return };
    let env = TestEnv::new().await;
    if !env.is_postgres() {
        flexauth_store::test_db::skip("the PgBouncer test", "the API suite runs on SQLite", None);
        return;
    }
    let url = through(&env, &pooler);
    // The second instance is told of the pooler; the first is not, and must see it on its own.
    let unnamed = |settings: &mut flexauth_server::config::Settings| {
        settings.database = flexauth_store::DatabaseConfig::Postgres(url.clone());
        settings.database_pooler = flexauth_store::Pooler::None;
    };
    let named = |settings: &mut flexauth_server::config::Settings| {
        settings.database = flexauth_store::DatabaseConfig::Postgres(url.clone());
        settings.database_pooler = flexauth_store::Pooler::Transaction;
    };
    let clock = std::sync::Arc::new(crate::helpers::TestClock::default());
    let instances = [
        env.spawn_configured(&[], unnamed, clock.clone()).await,
        env.spawn_configured(&[], named, clock.clone()).await,
    ];

    // Sign up on one, verify and log in on the other.
    let email = unique_email("bounced");
    let data = instances[1].verified_login(&env, &email).await;
    let access = data["access_token"].as_str().unwrap().to_owned();
    let me = instances[0].get_with_bearer("/v1/auth/me", &access).await;
    assert_eq!((me.status, me.body["data"]["email"].as_str()), (StatusCode::OK, Some(email.as_str())));

    // The same refresh token sent to both at once: one lineage.
    let token = data["refresh_token"].as_str().unwrap().to_owned();
    let replies = join_all((0..20).map(|i| instances[i % 2].refresh(&token))).await;
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert_eq!(reply.body, replies[0].body);
    }
    let child = replies[0].body["data"]["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(instances[1].refresh(&child).await.status, StatusCode::OK);
    assert_eq!(
        instances[0].refresh(&token).await.code(),
        "refresh_token_reused",
        "a spent grandparent is reuse, on either instance"
    );

    // An API key made on one works on the other until it is revoked, then at once nowhere.
    let fresh = instances[0].login(&email).await.body["data"]["access_token"].as_str().unwrap().to_owned();
    let created =
        instances[0].post_json_with_bearer("/v1/api-keys", &fresh, serde_json::json!({ "name": "bounced" })).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let key = created.body["data"]["key"].as_str().unwrap().to_owned();
    assert_eq!(instances[1].get_with_bearer("/v1/usage", &key).await.status, StatusCode::OK);
    // Used on the first too, where a key cache fed through the pooler would keep it.
    assert_eq!(instances[0].get_with_bearer("/v1/usage", &key).await.status, StatusCode::OK);
    let id = created.body["data"]["id"].as_str().unwrap();
    assert_eq!(
        instances[1].delete_with_bearer(&format!("/v1/api-keys/{id}"), &fresh).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(instances[0].get_with_bearer("/v1/usage", &key).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(instances[0].get("/readyz").await.status, StatusCode::OK);
    for instance in &instances {
        instance.stop().await;
    }
}
