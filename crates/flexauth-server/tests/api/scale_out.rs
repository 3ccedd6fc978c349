use actix_web::http::StatusCode;
use futures_util::future::join_all;

use crate::helpers::{unique_email, TestEnv};

/// Three instances over one database: the same refresh token sent to all of them at once
/// yields one lineage, and any instance continues it.
#[actix_web::test]
async fn concurrent_refreshes_across_three_instances_yield_one_lineage() {
    let env = TestEnv::new().await;
    if !env.is_postgres() {
        eprintln!("skipping the three-instance test: it needs PostgreSQL (FLEXAUTH_TEST_POSTGRES_URL)");
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
