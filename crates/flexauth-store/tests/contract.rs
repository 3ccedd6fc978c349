//! The port contract (`flexauth-contract`) on both backends of this store, SQLite and
//! PostgreSQL (a fresh database per scenario), and the scenarios only this store has: signing
//! keys, the API key cache and the memory of ended sessions.

// Test support code outside #[test] functions may unwrap: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use flexauth_contract::{api_key, attempt_for, creator, login_event, mail_to, new_account, stored_account, NOW};
use flexauth_domain::account::{Account, AccountRepository};
use flexauth_domain::api_key::ApiKeyRepository;
use flexauth_domain::secret::TokenHash;
use flexauth_domain::session::{EndedSessions as _, RevocationReason, SessionId, SessionRepository};
use flexauth_store::test_db::TestDatabase;
use flexauth_store::Store;
use uuid::Uuid;

/// The stored bodies of an outbox entry, read with SQL.
struct Rows(Store);

#[async_trait::async_trait]
impl flexauth_contract::Inspect for Rows {
    async fn outbox_bodies(&self, id: Uuid) -> Option<(Option<String>, Option<String>)> {
        flexauth_store::test_db::outbox_bodies(&self.0, id).await
    }
}

/// A fresh database of each backend, its store, and the SQL reader of its rows.
async fn on(db: Option<TestDatabase>) -> Option<(TestDatabase, Store, Rows)> {
    let db = db?;
    let store = db.store().clone();
    Some((db, store.clone(), Rows(store)))
}

mod sqlite {
    use super::*;
    flexauth_contract::contract_suite!(on(Some(TestDatabase::sqlite().await)).await);
}

#[path = "contract/plans.rs"]
mod plans;

mod postgres {
    use super::*;
    flexauth_contract::contract_suite!(on(TestDatabase::postgres().await).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_the_first_stored_signing_key_wins() {
    let db = TestDatabase::sqlite().await;
    the_first_stored_signing_key_wins(db.store()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_the_first_stored_signing_key_wins() {
    if let Some(db) = TestDatabase::postgres().await {
        the_first_stored_signing_key_wins(db.store()).await;
    }
}

async fn the_first_stored_signing_key_wins(store: &Store) {
    assert!(store.store_first_signing_key("first pem".into(), NOW).await.unwrap());
    assert!(!store.store_first_signing_key("second pem".into(), NOW).await.unwrap());
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(
        keys.iter().map(|key| (key.slot.as_str(), key.private_key.as_str())).collect::<Vec<_>>(),
        [("generated", "first pem")]
    );
    assert_eq!(keys[0].activates_at, keys[0].created_at, "the first key signs from its creation");
    // Keys are added by rotation; once the generated one is gone, none is generated again.
    store.add_signing_key("rotated", "rotated pem".into(), NOW, NOW + time::Duration::minutes(10)).await.unwrap();
    assert!(store.retire_signing_key("generated", NOW).await.unwrap());
    assert!(!store.retire_signing_key("generated", NOW).await.unwrap(), "retired once");
    flexauth_store::test_db::execute(store, "DELETE FROM signing_keys WHERE slot = 'generated'").await;
    assert!(!store.store_first_signing_key("third pem".into(), NOW).await.unwrap());
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(
        keys.iter().map(|key| (key.slot.as_str(), key.activates_at)).collect::<Vec<_>>(),
        [("rotated", NOW + time::Duration::minutes(10))]
    );
    assert!(store.reseal_signing_key("rotated", "rotated pem".into(), "sealed".into()).await.unwrap());
    assert!(
        !store.reseal_signing_key("rotated", "rotated pem".into(), "sealed again".into()).await.unwrap(),
        "only over the value read"
    );
}

/// Another instance's store on the same database caches a key; a revocation made through the
/// first reaches it at once, and so does an account deleted by hand with its keys.
async fn a_cached_api_key_ends_at_once_on_every_instance(
    db: &flexauth_store::test_db::TestDatabase,
) -> (Store, Account, SessionId) {
    let here = db.store();
    let there = Store::connect(db.config().clone()).unwrap();
    let account = stored_account(here).await;
    let session = creator(here, &account).await;
    let key = api_key(&account, "cached");
    let hash = TokenHash::of(b"fo_live_cached");
    assert!(ApiKeyRepository::create(
        here,
        &key,
        &hash,
        &mail_to("owner@example.com"),
        session,
        &login_event(&account)
    )
    .await
    .unwrap());
    for _ in 0..3 {
        assert_eq!(there.find_active_by_hash(&hash).await.unwrap(), Some(key.clone()));
    }
    assert!(ApiKeyRepository::revoke(here, account.id(), key.id(), NOW, &login_event(&account)).await.unwrap());
    assert_eq!(there.find_active_by_hash(&hash).await.unwrap(), None, "the other instance's cache dropped it at once");

    // An account deleted with SQL takes its keys along, and the caches hear of it.
    let doomed = new_account("doomed@example.com");
    here.create_unverified(&doomed, &attempt_for(&doomed, 3), &mail_to("doomed@example.com")).await.unwrap();
    let doomed_session = creator(here, &doomed).await;
    let doomed_key = api_key(&doomed, "doomed");
    let doomed_hash = TokenHash::of(b"fo_live_doomed");
    assert!(ApiKeyRepository::create(
        here,
        &doomed_key,
        &doomed_hash,
        &mail_to("doomed@example.com"),
        doomed_session,
        &login_event(&doomed)
    )
    .await
    .unwrap());
    assert_eq!(there.find_active_by_hash(&doomed_hash).await.unwrap(), Some(doomed_key.clone()));
    assert_eq!(there.find_active_by_hash(&doomed_hash).await.unwrap(), Some(doomed_key.clone()));
    flexauth_store::test_db::delete_account(here, doomed.id().as_uuid()).await;
    // Changes made outside flexauth's revocation reach every cache within the announcement
    // delay (150 ms) that a revocation waits for itself.
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    assert_eq!(there.find_active_by_hash(&doomed_hash).await.unwrap(), None, "deleted with its account");
    (there, account, session)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_cached_api_key_ends_at_once_on_every_instance() {
    let db = flexauth_store::test_db::TestDatabase::sqlite().await;
    a_cached_api_key_ends_at_once_on_every_instance(&db).await;
}

/// On PostgreSQL also a change the cache was never told of, once its listening connection is
/// lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_cached_api_key_ends_at_once_on_every_instance() {
    use diesel::connection::SimpleConnection as _;
    use diesel::Connection as _;

    let Some(db) = flexauth_store::test_db::TestDatabase::postgres().await else { return };
    let (there, account, session) = a_cached_api_key_ends_at_once_on_every_instance(&db).await;
    let here = db.store();

    // A key ended behind flexauth's back (no notification), after the listener was lost.
    let second = api_key(&account, "second");
    let second_hash = TokenHash::of(b"fo_live_second");
    assert!(ApiKeyRepository::create(
        here,
        &second,
        &second_hash,
        &mail_to("owner@example.com"),
        session,
        &login_event(&account)
    )
    .await
    .unwrap());
    assert_eq!(there.find_active_by_hash(&second_hash).await.unwrap(), Some(second.clone()));
    let flexauth_store::DatabaseConfig::Postgres(url) = db.config().clone() else { unreachable!() };
    let mut admin = diesel::PgConnection::establish(&url).unwrap();
    admin
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'flexauth-key-cache'",
        )
        .unwrap();
    admin.batch_execute(&format!("UPDATE api_keys SET revoked_at = 0 WHERE id = '{}'", second.id())).unwrap();
    // The loss is seen at the next read of the socket (the terminated backend closes it) or,
    // at the latest, when the heartbeat is a second old.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while there.find_active_by_hash(&second_hash).await.unwrap().is_some() {
        assert!(std::time::Instant::now() < deadline, "a key revoked while the listener was lost stayed cached");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The two migration trees differ in their SQL (BYTEA and BLOB; a trigger only PostgreSQL has;
/// a table rebuilt where SQLite cannot drop a constraint) but must build the same tables,
/// columns, types, keys, defaults and indexes.
#[tokio::test]
async fn both_migration_trees_build_the_same_schema() {
    let Some(postgres) = TestDatabase::postgres().await else { return };
    let sqlite = TestDatabase::sqlite().await;
    let (postgres, sqlite) = (postgres.schema(), sqlite.schema());
    assert!(postgres.len() > 60, "{postgres:#?}");
    let only_postgres: Vec<&String> = postgres.iter().filter(|line| !sqlite.contains(line)).collect();
    let only_sqlite: Vec<&String> = sqlite.iter().filter(|line| !postgres.contains(line)).collect();
    assert!(
        only_postgres.is_empty() && only_sqlite.is_empty(),
        "the migration trees drifted apart:\nonly on PostgreSQL: {only_postgres:#?}\nonly on SQLite: {only_sqlite:#?}"
    );
}

/// Asks `store` whether `session` has ended until it vouches for an answer, for at most
/// `within`; `None` if it never did.
async fn vouched(store: &Store, session: SessionId, within: std::time::Duration) -> Option<bool> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(answer) = store.has_ended(session) {
            return Some(answer);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Two instances' stores on one database: a session ended through one is known to have ended
/// by the other from memory, whether it was revoked or deleted with its account, and on
/// PostgreSQL also one ended while the other's listening connection was lost.
async fn an_ended_session_is_known_from_memory_to_every_instance(db: &TestDatabase, within: std::time::Duration) {
    let here = db.store();
    let there = Store::connect(db.config().clone()).unwrap();
    let keep_for = std::time::Duration::from_secs(3600);
    here.watch_ended_sessions(keep_for);
    there.watch_ended_sessions(keep_for);
    let account = stored_account(here).await;
    let (live, ended) = (creator(here, &account).await, creator(here, &account).await);
    assert_eq!(vouched(&there, live, std::time::Duration::from_secs(3)).await, Some(false), "loaded");
    SessionRepository::revoke(here, ended, NOW, RevocationReason::Logout).await.unwrap();
    assert_eq!(here.has_ended(ended), Some(true), "at once where it ended");
    let deadline = std::time::Instant::now() + within;
    while there.has_ended(ended) != Some(true) {
        assert!(std::time::Instant::now() < deadline, "the other instance never heard of it");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(there.has_ended(live), Some(false));

    // Deleted with its account, by SQL: no revocation, and still an ending.
    let doomed = new_account("doomed@example.com");
    here.create_unverified(&doomed, &attempt_for(&doomed, 3), &mail_to("doomed@example.com")).await.unwrap();
    let doomed_session = creator(here, &doomed).await;
    assert_eq!(vouched(&there, doomed_session, within).await, Some(false));
    flexauth_store::test_db::delete_account(here, doomed.id().as_uuid()).await;
    let deadline = std::time::Instant::now() + within;
    while there.has_ended(doomed_session) != Some(true) {
        assert!(std::time::Instant::now() < deadline, "a session deleted with its account was never heard of");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_an_ended_session_is_known_from_memory_to_every_instance_within_a_second() {
    let db = TestDatabase::sqlite().await;
    an_ended_session_is_known_from_memory_to_every_instance(&db, std::time::Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_an_ended_session_is_known_from_memory_to_every_instance_even_across_a_lost_listener() {
    use diesel::connection::SimpleConnection as _;
    use diesel::Connection as _;

    let Some(db) = TestDatabase::postgres().await else { return };
    // Announced: heard within the delay a revocation waits for (150 ms).
    an_ended_session_is_known_from_memory_to_every_instance(&db, std::time::Duration::from_millis(150)).await;

    // One ended while the other instance's listening connection is lost is not missed: the
    // store cannot vouch meanwhile, and reads the endings again when it is back.
    let there = Store::connect(db.config().clone()).unwrap();
    there.watch_ended_sessions(std::time::Duration::from_secs(3600));
    let account = new_account("listener-lost@example.com");
    let store = db.store();
    store.create_unverified(&account, &attempt_for(&account, 4), &mail_to("listener-lost@example.com")).await.unwrap();
    let session = creator(store, &account).await;
    assert_eq!(vouched(&there, session, std::time::Duration::from_secs(3)).await, Some(false));
    let flexauth_store::DatabaseConfig::Postgres(url) = db.config().clone() else { unreachable!() };
    let mut admin = diesel::PgConnection::establish(&url).unwrap();
    admin
        .batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND \
                application_name = 'flexauth-key-cache'; UPDATE sessions SET revoked_at = 0 WHERE id = '{session}'"
        ))
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        match there.has_ended(session) {
            Some(true) => break,
            answer => assert!(std::time::Instant::now() < deadline, "still answered {answer:?}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Work committed through another connection (another instance, an operator's command) wakes
/// the workers of an idle instance through its listening connection (migration 20): new mail,
/// new webhook messages and a changed signing key, and nothing wakes the webhook worker when an
/// event found no endpoint to queue for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_announced_work_wakes_the_workers_of_an_idle_instance() {
    use flexauth_domain::webhook::{EventFilter, WebhookEndpoints as _};
    use std::time::Duration;
    use tokio::time::timeout;

    let Some(db) = TestDatabase::postgres().await else { return };
    let listening = Store::connect(db.config().clone()).unwrap();
    let signals = listening.work_signals().expect("PostgreSQL without a pooler announces work");
    // Each worker looks once when the connection starts listening.
    for signal in [&signals.jobs, &signals.webhooks, &signals.keys] {
        timeout(Duration::from_secs(5), signal.notified()).await.expect("a first look when listening starts");
    }
    let command = Store::connect_for_command(db.config().clone(), flexauth_store::Pooler::None).unwrap();
    assert!(command.work_signals().is_none(), "an operator's command listens to nothing");
    // Idle for longer than the demand window: the listening thread rests.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A sign-up queues its mail: the idle instance hears of it within its idle heartbeat (5 s).
    let account = stored_account(&command).await;
    timeout(Duration::from_secs(7), signals.jobs.notified()).await.expect("new mail wakes an idle instance");

    // While requests arrive the heartbeat is fast: an event nobody subscribes to queues no
    // message and wakes nobody; once an endpoint subscribes, the same event wakes the webhook
    // worker.
    listening.note_request();
    let login = || async {
        let session = flexauth_contract::new_session(
            &account,
            &flexauth_domain::session::RefreshSecret::from_bytes(rand_bytes()),
        );
        let device = flexauth_contract::device_of(&session);
        assert!(SessionRepository::create(&command, &session, 0, &login_event(&account), &device).await.unwrap());
    };
    login().await;
    assert!(
        timeout(Duration::from_millis(800), signals.webhooks.notified()).await.is_err(),
        "an event queued for no endpoint woke the webhook worker"
    );
    command.add(&flexauth_contract::endpoint(EventFilter::All, "whsec_announced")).await.unwrap();
    listening.note_request();
    login().await;
    timeout(Duration::from_secs(2), signals.webhooks.notified()).await.expect("a queued message wakes the worker");

    // A key stored by `flexauth keys rotate` reaches the ring at once.
    listening.note_request();
    command.add_signing_key("announced", "not a key".into(), NOW, NOW).await.unwrap();
    timeout(Duration::from_secs(2), signals.keys.notified()).await.expect("a stored key wakes the key ring");
}

/// Fresh bytes for a refresh secret, so that each session of a test is distinct.
fn rand_bytes() -> [u8; 32] {
    let mut bytes = [0; 32];
    bytes[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    bytes
}

/// A login's one-statement write on PostgreSQL locks the account row as a write would: while
/// a password change is under way (it wrote the row and has not committed), the login waits,
/// and once the change commits the login finds the version moved and opens nothing; a change
/// that keeps the version (another column) lets it through once committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_login_waits_for_a_password_change_under_way_and_then_opens_nothing() {
    use diesel::connection::SimpleConnection as _;
    use diesel::Connection as _;
    use flexauth_domain::session::RefreshSecret;

    let Some(db) = TestDatabase::postgres().await else { return };
    let store = db.store().clone();
    let account = stored_account(&store).await;
    let flexauth_store::DatabaseConfig::Postgres(url) = db.config().clone() else { unreachable!() };
    for (change, opens) in
        [("credential_version = credential_version + 1", false), ("clients_forgotten_at = clients_forgotten_at", true)]
    {
        let mut other = diesel::PgConnection::establish(&url).unwrap();
        other.batch_execute(&format!("BEGIN; UPDATE accounts SET {change} WHERE id = '{}'", account.id())).unwrap();
        let version: i64 = if opens { 1 } else { 0 };
        let session = flexauth_contract::new_session(&account, &RefreshSecret::from_bytes(rand_bytes()));
        let login = tokio::spawn({
            let (store, session, event) = (store.clone(), session.clone(), login_event(&account));
            async move {
                let device = flexauth_contract::device_of(&session);
                SessionRepository::create(&store, &session, version, &event, &device).await.unwrap()
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        assert!(!login.is_finished(), "the login waits for the change under way ({change})");
        other.batch_execute("COMMIT").unwrap();
        assert_eq!(login.await.unwrap(), opens, "after {change}");
        assert_eq!(store.find(session.id()).await.unwrap().is_some(), opens);
    }
}
