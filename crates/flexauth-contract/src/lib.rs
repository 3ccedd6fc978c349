//! The port contract: every scenario that a storage adapter of flexauth must pass, written
//! against the domain's port traits only, so that each adapter runs the same suite.
//! `flexauth-store` runs it on SQLite and PostgreSQL, `flexauth-memory` in memory; an adapter
//! of your own runs it with [`contract_suite!`].

// Test support: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use flexauth_domain::account::{
    Account, AccountId, AccountRepository, AccountRequest, AccountRequestKind, AccountRequestQueue, CreateAccountError,
    CredentialChange, EmailAddress, EmailConfirmation, LinkTokenRecord, PasswordHash, SessionsToEnd, SignupAttempt,
};
use flexauth_domain::api_key::{ApiKey, ApiKeyId, ApiKeyName, ApiKeyRepository, StoredApiKey};
use flexauth_domain::audit::{AuditCursor, AuditEvent, AuditKind, AuditLog};
use flexauth_domain::housekeeping::{Housekeeping, RetentionSettings};
use flexauth_domain::introspection::{
    ClientName, IntrospectionClient, IntrospectionClientId, IntrospectionClientRepository,
};
use flexauth_domain::limits::{LimitPolicy, RateLimiter};
use flexauth_domain::mail::{EmailKind, LeaseId, Outbox, OutgoingEmail};
use flexauth_domain::newtypes::Scope;
use flexauth_domain::secret::TokenHash;
use flexauth_domain::session::{
    ClientInfo, RefreshSecret, RevocationReason, RotationNonce, Session, SessionId, SessionRepository,
};
use flexauth_domain::usage::{UsageCount, UsageRepository};
use time::macros::{date, datetime};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// The instant every scenario runs at.
pub const NOW: OffsetDateTime = datetime!(2026-11-27 12:00 UTC);

/// Every port a storage adapter implements, cloneable into concurrent tasks.
pub trait Backend:
    AccountRepository
    + AccountRequestQueue
    + SessionRepository
    + Outbox
    + UsageRepository
    + ApiKeyRepository
    + IntrospectionClientRepository
    + AuditLog
    + RateLimiter
    + Housekeeping
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> Backend for T where
    T: AccountRepository
        + AccountRequestQueue
        + SessionRepository
        + Outbox
        + UsageRepository
        + ApiKeyRepository
        + IntrospectionClientRepository
        + AuditLog
        + RateLimiter
        + Housekeeping
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// What the suite reads beside the ports: the stored bodies of an outbox entry (which must be
/// gone once it is sent or given up on, since they hold links).
#[async_trait::async_trait]
pub trait Inspect: Send + Sync {
    /// The text and HTML bodies stored for outbox entry `id`; `None` when there is no entry.
    async fn outbox_bodies(&self, id: Uuid) -> Option<(Option<String>, Option<String>)>;
}

/// Runs every scenario as a test: `setup` is an `async` expression giving
/// `Option<(guard, backend, inspector)>` (`None` skips, for a backend that is not configured);
/// the guard lives until the scenario ends.
#[macro_export]
macro_rules! contract_suite {
    ($setup:expr) => {
        $crate::contract_tests!($setup; an_account_is_found_by_email_and_id, a_taken_email_is_refused_and_nothing_is_written, confirming_activates_the_attempts_password_and_discards_the_others, only_the_newest_pending_attempts_are_kept, a_session_is_refused_once_the_credential_version_moved, account_requests_are_leased_to_one_worker_and_deleted_once_handled, a_session_round_trips, rotation_is_a_compare_and_swap, concurrent_rotations_have_exactly_one_winner, a_revoked_session_cannot_rotate, an_outbox_entry_is_leased_to_one_worker_at_a_time, concurrent_workers_never_claim_the_same_entry, a_sent_email_loses_its_bodies_and_is_never_claimed_again, a_retry_waits_for_its_time_and_counts_the_attempt, usage_counts_per_account_and_day, an_api_key_is_found_by_its_digest_until_revoked, api_keys_are_listed_per_account_and_touched, a_password_reset_spends_its_token_once_and_ends_every_session, a_password_change_keeps_only_the_callers_session, live_sessions_are_listed_and_revoked_in_bulk, rate_limit_counters_count_per_window_and_start_over, concurrent_hits_are_all_counted, the_security_log_pages_newest_first, the_purge_deletes_what_retention_says_and_nothing_else, a_device_is_known_only_to_its_account_and_only_while_recent, introspection_clients_are_listed_oldest_first_and_deleted_once);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! contract_tests {
    ($setup:expr; $($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() {
                if let Some((guard, backend, inspector)) = $setup {
                    $crate::$scenario(&backend, &inspector).await;
                    drop(guard);
                }
            }
        )*
    };
}

/// A security log entry for `account` (the kind does not matter to the store).
pub fn login_event(account: &Account) -> AuditEvent {
    AuditEvent {
        id: Uuid::new_v4(),
        account_id: account.id(),
        kind: AuditKind::LoginSucceeded,
        at: NOW,
        client: ClientInfo::new(Some("curl/8.0"), Some("192.0.2.7".into())),
        session_id: None,
        key_id: None,
    }
}

pub fn email(text: &str) -> EmailAddress {
    EmailAddress::parse(text).unwrap()
}

pub fn new_account(address: &str) -> Account {
    Account::new_unverified(
        AccountId::from_uuid(Uuid::new_v4()),
        email(address),
        PasswordHash::from_phc("$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA".into()),
        NOW,
    )
}

pub fn mail_to(address: &str) -> OutgoingEmail {
    OutgoingEmail::new(
        Uuid::new_v4(),
        EmailKind::Verification,
        email(address),
        "Verify".into(),
        "text https://x/verify?token=t".into(),
        "<p>html</p>".into(),
    )
}

/// A sign-up attempt whose link digest and password are derived from `seed`, made `seed`
/// seconds after NOW so attempts have an order.
pub fn attempt_for(account: &Account, seed: u8) -> SignupAttempt {
    let link = LinkTokenRecord::issue(TokenHash::of(&[seed; 32]), account.id(), NOW + Duration::hours(24));
    SignupAttempt::issue(
        link,
        Some(PasswordHash::from_phc(format!("attempt {seed}"))),
        NOW + Duration::seconds(i64::from(seed)),
    )
}

pub async fn claim_all<P: Backend>(store: &P, at: OffsetDateTime) -> Vec<OutgoingEmail> {
    let lease = LeaseId::from_uuid(Uuid::new_v4());
    store
        .claim_due(at, lease, at + Duration::minutes(5), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.email)
        .collect()
}

pub async fn stored_account<P: Backend>(store: &P) -> Account {
    let account = new_account("owner@example.com");
    store.create_unverified(&account, &attempt_for(&account, 1), &mail_to("owner@example.com")).await.unwrap();
    account
}

pub async fn an_account_is_found_by_email_and_id<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
    let account = stored_account(store).await;
    let by_email = store.find_by_email(&email("OWNER@example.com")).await.unwrap().unwrap();
    assert_eq!(by_email.id(), account.id());
    assert_eq!(by_email.email().as_str(), "owner@example.com");
    assert_eq!(by_email.password_hash(), account.password_hash());
    assert_eq!(by_email.created_at(), NOW);
    assert!(!by_email.is_email_verified());
    assert_eq!(store.find_by_id(account.id()).await.unwrap().unwrap().email().as_str(), "owner@example.com");
    assert!(store.find_by_email(&email("nobody@example.com")).await.unwrap().is_none());
}

pub async fn a_taken_email_is_refused_and_nothing_is_written<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
    stored_account(store).await;
    let twin = new_account("owner@example.com");
    let outcome = store.create_unverified(&twin, &attempt_for(&twin, 2), &mail_to("owner@example.com")).await;
    assert!(matches!(outcome, Err(CreateAccountError::EmailTaken)));
    assert!(store.find_by_id(twin.id()).await.unwrap().is_none());
    assert!(store.find_signup_attempt(&TokenHash::of(&[2; 32])).await.unwrap().is_none());
    assert_eq!(claim_all(store, NOW).await.len(), 1, "only the first account's email is queued");
}

pub async fn confirming_activates_the_attempts_password_and_discards_the_others<P: Backend, I: Inspect>(
    store: &P,
    _inspect: &I,
) {
    let account = stored_account(store).await;
    for seed in [2, 3] {
        store.add_signup_attempt(&attempt_for(&account, seed), &mail_to("owner@example.com"), NOW, 3).await.unwrap();
    }
    let attempt = store.find_signup_attempt(&TokenHash::of(&[2; 32])).await.unwrap().unwrap();
    assert_eq!(attempt, attempt_for(&account, 2));
    let pending = store.pending_signup_attempts(account.id(), NOW).await.unwrap();
    assert_eq!(
        pending.iter().map(|attempt| attempt.created_at()).collect::<Vec<_>>(),
        [3, 2, 1].map(|s| NOW + Duration::seconds(s))
    );

    let confirmation = EmailConfirmation {
        account_id: account.id(),
        attempt: TokenHash::of(&[2; 32]),
        password_hash: PasswordHash::from_phc("attempt 2".into()),
        confirmed_at: NOW,
    };
    assert!(store.confirm_email(&confirmation).await.unwrap());
    assert!(!store.confirm_email(&confirmation).await.unwrap(), "a spent link confirms nothing");
    let stored = store.find_by_id(account.id()).await.unwrap().unwrap();
    assert_eq!(
        (stored.password_hash().as_phc(), stored.email_verified_at(), stored.credential_version()),
        ("attempt 2", Some(NOW), 1)
    );
    assert_eq!(store.find_signup_attempt(&TokenHash::of(&[2; 32])).await.unwrap().unwrap().link().used_at(), Some(NOW));
    for other in [1, 3] {
        assert!(
            store.find_signup_attempt(&TokenHash::of(&[other; 32])).await.unwrap().is_none(),
            "attempt {other} was discarded"
        );
    }
    // A link of a verified account cannot set its password, even if one were left.
    store.add_signup_attempt(&attempt_for(&account, 4), &mail_to("owner@example.com"), NOW, 3).await.unwrap();
    let late = EmailConfirmation {
        attempt: TokenHash::of(&[4; 32]),
        password_hash: PasswordHash::from_phc("attempt 4".into()),
        ..confirmation
    };
    assert!(!store.confirm_email(&late).await.unwrap());
    assert_eq!(store.find_by_id(account.id()).await.unwrap().unwrap().password_hash().as_phc(), "attempt 2");
}

pub async fn only_the_newest_pending_attempts_are_kept<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
    let account = stored_account(store).await;
    for seed in 2..=5 {
        store.add_signup_attempt(&attempt_for(&account, seed), &mail_to("owner@example.com"), NOW, 3).await.unwrap();
    }
    let pending = store.pending_signup_attempts(account.id(), NOW).await.unwrap();
    assert_eq!(
        pending.iter().map(|attempt| attempt.password_hash().unwrap().as_phc().to_owned()).collect::<Vec<_>>(),
        ["attempt 5", "attempt 4", "attempt 3"]
    );
    assert!(
        store.pending_signup_attempts(account.id(), NOW + Duration::hours(24)).await.unwrap().is_empty(),
        "expired attempts are not pending"
    );
    // The first account's email and four more.
    assert_eq!(claim_all(store, NOW).await.len(), 5);
}

pub async fn a_session_is_refused_once_the_credential_version_moved<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
    let account = stored_account(store).await;
    let first = new_session(&account, &RefreshSecret::from_bytes([1; 32]));
    assert!(SessionRepository::create(store, &first, 0, &login_event(&account)).await.unwrap());
    let change = CredentialChange {
        account_id: account.id(),
        password_hash: PasswordHash::from_phc("changed".into()),
        expected_version: Some(0),
        reset_link: None,
        end_sessions: SessionsToEnd::All,
        reason: RevocationReason::PasswordChange,
        verify_email: false,
        revoke_keys_made_before: None,
        notice: mail_to("owner@example.com"),
        at: NOW,
        event: login_event(&account),
    };
    assert!(store.apply_credential_change(&change).await.unwrap());
    let late = new_session(&account, &RefreshSecret::from_bytes([2; 32]));
    assert!(
        !SessionRepository::create(store, &late, 0, &login_event(&account)).await.unwrap(),
        "the password checked is no longer the account's"
    );
    assert_eq!(store.find(late.id()).await.unwrap(), None);
    assert!(SessionRepository::create(store, &late, 1, &login_event(&account)).await.unwrap());
    assert!(!store.apply_credential_change(&change).await.unwrap(), "a change against a stale version writes nothing");
    assert_eq!(store.find(late.id()).await.unwrap().unwrap().revoked_at(), None);
}

pub async fn account_requests_are_leased_to_one_worker_and_deleted_once_handled<P: Backend, I: Inspect>(
    store: &P,
    _inspect: &I,
) {
    let requests: Vec<AccountRequest> = [
        AccountRequestKind::Signup { password_hash: PasswordHash::from_phc("chosen".into()) },
        AccountRequestKind::ResendVerification,
        AccountRequestKind::ForgotPassword,
    ]
    .into_iter()
    .enumerate()
    .map(|(i, kind)| AccountRequest {
        id: Uuid::new_v4(),
        email: email("owner@example.com"),
        kind,
        requested_at: NOW + Duration::seconds(i as i64),
    })
    .collect();
    for request in &requests {
        store.submit(request).await.unwrap();
    }
    let lease = LeaseId::from_uuid(Uuid::new_v4());
    let claimed = store.claim(NOW, lease, NOW + Duration::minutes(2), 2).await.unwrap();
    assert_eq!(claimed, requests[..2]);
    let other = LeaseId::from_uuid(Uuid::new_v4());
    assert_eq!(
        store.claim(NOW, other, NOW + Duration::minutes(2), 10).await.unwrap(),
        requests[2..],
        "leased requests are not claimed again"
    );
    store.complete(requests[0].id, other).await.unwrap();
    store.complete(requests[1].id, lease).await.unwrap();
    let later = LeaseId::from_uuid(Uuid::new_v4());
    let reclaimed = store.claim(NOW + Duration::minutes(2), later, NOW + Duration::minutes(4), 10).await.unwrap();
    assert_eq!(
        reclaimed,
        [requests[0].clone(), requests[2].clone()],
        "a request completed under another lease stays; a handled one is gone"
    );
}

pub fn new_session(account: &Account, secret: &RefreshSecret) -> Session {
    Session::start(
        SessionId::from_uuid(Uuid::new_v4()),
        account.id(),
        secret,
        NOW,
        Duration::days(30),
        Duration::days(90),
        ClientInfo::new(Some("curl/8.0"), Some("192.0.2.7".into())),
    )
}

pub async fn a_session_round_trips<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
    let account = stored_account(store).await;
    let session = new_session(&account, &RefreshSecret::from_bytes([3; 32]));
    assert!(SessionRepository::create(store, &session, 0, &login_event(&account)).await.unwrap());
    assert_eq!(store.find(session.id()).await.unwrap(), Some(session));
    assert_eq!(store.find(SessionId::from_uuid(Uuid::new_v4())).await.unwrap(), None);
}

pub async fn rotation_is_a_compare_and_swap<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
    let account = stored_account(store).await;
    let parent = RefreshSecret::from_bytes([3; 32]);
    let session = new_session(&account, &parent);
    assert!(SessionRepository::create(store, &session, 0, &login_event(&account)).await.unwrap());
    let nonce = RotationNonce::from_bytes([4; 16]);
    let child = parent.child(&nonce);
    let rotation = session.rotation(&child, nonce, NOW + Duration::minutes(1), Duration::days(30));
    assert!(store.rotate(&rotation).await.unwrap());
    assert!(!store.rotate(&rotation).await.unwrap(), "the same expected digest cannot win twice");
    let stored = store.find(session.id()).await.unwrap().unwrap();
    let s = stored.stored();
    assert_eq!(s.current_hash, child.hash());
    assert_eq!(s.previous_hash, Some(parent.hash()));
    assert_eq!(s.rotation_nonce, Some(nonce));
    assert_eq!(s.current_issued_at, NOW + Duration::minutes(1));
    assert_eq!(s.generation, 1);
}

pub async fn concurrent_rotations_have_exactly_one_winner<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
    let account = stored_account(store).await;
    let parent = RefreshSecret::from_bytes([3; 32]);
    let session = new_session(&account, &parent);
    assert!(SessionRepository::create(store, &session, 0, &login_event(&account)).await.unwrap());
    let mut tasks = Vec::new();
    for i in 0..20u8 {
        let store = store.clone();
        let nonce = RotationNonce::from_bytes([i; 16]);
        let rotation = session.rotation(&parent.child(&nonce), nonce, NOW, Duration::days(30));
        tasks.push(tokio::spawn(async move { store.rotate(&rotation).await.unwrap() }));
    }
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap());
    }
    assert_eq!(winners, 1);
    assert_eq!(store.find(session.id()).await.unwrap().unwrap().generation(), 1);
}

pub async fn a_revoked_session_cannot_rotate<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
    let account = stored_account(store).await;
    let parent = RefreshSecret::from_bytes([3; 32]);
    let session = new_session(&account, &parent);
    assert!(SessionRepository::create(store, &session, 0, &login_event(&account)).await.unwrap());
    assert!(SessionRepository::revoke(store, session.id(), NOW, RevocationReason::RefreshTokenReuse).await.unwrap());
    assert!(!SessionRepository::revoke(store, session.id(), NOW + Duration::hours(1), RevocationReason::Logout)
        .await
        .unwrap());
    let nonce = RotationNonce::from_bytes([4; 16]);
    assert!(!store.rotate(&session.rotation(&parent.child(&nonce), nonce, NOW, Duration::days(30))).await.unwrap());
    assert_eq!(store.find(session.id()).await.unwrap().unwrap().revoked_at(), Some(NOW));
}

pub async fn an_outbox_entry_is_leased_to_one_worker_at_a_time<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
    store.enqueue(&mail_to("a@example.com"), NOW).await.unwrap();
    let first = claim_all(store, NOW).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].to().as_str(), "a@example.com");
    assert!(claim_all(store, NOW + Duration::minutes(4)).await.is_empty(), "leased to the first worker");
    assert_eq!(claim_all(store, NOW + Duration::minutes(5)).await.len(), 1, "claimable again once the lease ran out");
}

pub async fn concurrent_workers_never_claim_the_same_entry<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
    for i in 0..30 {
        store.enqueue(&mail_to(&format!("user{i}@example.com")), NOW).await.unwrap();
    }
    let mut workers = Vec::new();
    for _ in 0..5 {
        let store = store.clone();
        workers.push(tokio::spawn(async move {
            // Workers racing for the same candidates win fewer than they asked for, so each
            // keeps claiming until nothing is left.
            let mut mine = Vec::new();
            loop {
                let lease = LeaseId::from_uuid(Uuid::new_v4());
                let batch = store.claim_due(NOW, lease, NOW + Duration::minutes(5), 10).await.unwrap();
                if batch.is_empty() {
                    break mine;
                }
                mine.extend(batch);
            }
        }));
    }
    let mut claimed: Vec<Uuid> = Vec::new();
    for worker in workers {
        claimed.extend(worker.await.unwrap().into_iter().map(|entry| entry.email.id()));
    }
    let total = claimed.len();
    claimed.sort();
    claimed.dedup();
    assert_eq!(claimed.len(), total, "an entry was claimed twice");
    assert_eq!(total, 30);
}

pub async fn a_sent_email_loses_its_bodies_and_is_never_claimed_again<P: Backend, I: Inspect>(store: &P, inspect: &I) {
    let mail = mail_to("a@example.com");
    store.enqueue(&mail, NOW).await.unwrap();
    let lease = LeaseId::from_uuid(Uuid::new_v4());
    let entries = store.claim_due(NOW, lease, NOW + Duration::minutes(5), 10).await.unwrap();
    assert_eq!(entries[0].email, mail);
    // A worker whose lease was taken over cannot mark the entry.
    store.mark_sent(mail.id(), LeaseId::from_uuid(Uuid::new_v4()), NOW).await.unwrap();
    assert_eq!(claim_all(store, NOW + Duration::minutes(6)).await.len(), 1);

    let stored = inspect.outbox_bodies(mail.id()).await;
    assert_eq!(
        stored,
        Some((Some(mail.text_body().to_owned()), Some(mail.html_body().to_owned()))),
        "unsent, the bodies stay"
    );
    let lease = LeaseId::from_uuid(Uuid::new_v4());
    store.claim_due(NOW + Duration::minutes(12), lease, NOW + Duration::minutes(17), 10).await.unwrap();
    store.mark_sent(mail.id(), lease, NOW + Duration::minutes(12)).await.unwrap();
    assert_eq!(inspect.outbox_bodies(mail.id()).await, Some((None, None)), "the link-bearing bodies are gone");
    assert!(claim_all(store, NOW + Duration::days(1)).await.is_empty());
}

pub async fn a_retry_waits_for_its_time_and_counts_the_attempt<P: Backend, I: Inspect>(store: &P, inspect: &I) {
    let mail = mail_to("a@example.com");
    store.enqueue(&mail, NOW).await.unwrap();
    let lease = LeaseId::from_uuid(Uuid::new_v4());
    store.claim_due(NOW, lease, NOW + Duration::minutes(5), 10).await.unwrap();
    store.schedule_retry(mail.id(), lease, NOW + Duration::seconds(2), "connection refused").await.unwrap();
    assert!(claim_all(store, NOW + Duration::seconds(1)).await.is_empty());
    let lease = LeaseId::from_uuid(Uuid::new_v4());
    let entries = store.claim_due(NOW + Duration::seconds(2), lease, NOW + Duration::minutes(5), 10).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].attempts, 1);
    store.mark_failed(mail.id(), lease, NOW, "550 no such user").await.unwrap();
    assert!(claim_all(store, NOW + Duration::days(1)).await.is_empty());
    assert_eq!(inspect.outbox_bodies(mail.id()).await, Some((None, None)), "a given-up email keeps no link either");
}

pub async fn usage_counts_per_account_and_day<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
    let account = stored_account(store).await;
    let other = new_account("other@example.com");
    store.create_unverified(&other, &attempt_for(&other, 2), &mail_to("other@example.com")).await.unwrap();
    let (day, next_day) = (date!(2026 - 11 - 27), date!(2026 - 11 - 28));
    let count = |account: &Account, day, requests| UsageCount { account_id: account.id(), day, requests };
    assert_eq!(store.requests_on(account.id(), day).await.unwrap(), Some(0));
    let mut totals = store.add_requests(&[count(&account, day, 3), count(&other, day, 1)]).await.unwrap();
    totals.sort_by_key(|total| total.requests);
    assert_eq!(totals, [count(&other, day, 1), count(&account, day, 3)]);
    assert_eq!(store.add_requests(&[count(&account, day, 2), count(&account, next_day, 5)]).await.unwrap().len(), 2);
    assert_eq!(store.requests_on(account.id(), day).await.unwrap(), Some(5), "increments add up");
    assert_eq!(store.requests_on(account.id(), next_day).await.unwrap(), Some(5), "each day counts apart");
    // An account that no longer exists does not fail the batch: its count is dropped.
    let gone = new_account("gone@example.com");
    let totals = store.add_requests(&[count(&gone, day, 4), count(&other, day, 1)]).await.unwrap();
    assert_eq!(totals, [count(&other, day, 2)]);
    assert_eq!(store.requests_on(gone.id(), day).await.unwrap(), None, "no such account");
}

pub fn api_key(account: &Account, name: &str) -> ApiKey {
    ApiKey::from_storage(StoredApiKey {
        id: ApiKeyId::from_uuid(Uuid::new_v4()),
        account_id: account.id(),
        name: ApiKeyName::parse(name).unwrap(),
        prefix: "fo_live_abcd".into(),
        created_at: NOW,
        last_used_at: None,
        expires_at: Some(NOW + Duration::days(365)),
        scopes: ["invoices:read", "invoices:write"].iter().map(|scope| Scope::parse(scope).unwrap()).collect(),
    })
}

/// A live session of `account` to create keys with.
pub async fn creator<P: Backend>(store: &P, account: &Account) -> SessionId {
    let session = new_session(account, &RefreshSecret::from_bytes([9; 32]));
    assert!(SessionRepository::create(store, &session, 0, &login_event(account)).await.unwrap());
    session.id()
}

pub async fn an_api_key_is_found_by_its_digest_until_revoked<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
    let account = stored_account(store).await;
    let key = api_key(&account, "ci");
    let hash = TokenHash::of(b"fo_live_secret");
    let session = creator(store, &account).await;
    assert!(ApiKeyRepository::create(
        store,
        &key,
        &hash,
        &mail_to("owner@example.com"),
        session,
        &login_event(&account)
    )
    .await
    .unwrap());
    assert_eq!(store.find_active_by_hash(&hash).await.unwrap(), Some(key.clone()));
    assert_eq!(store.find_active_by_hash(&TokenHash::of(b"other")).await.unwrap(), None);
    let stranger = AccountId::from_uuid(Uuid::new_v4());
    assert!(
        !ApiKeyRepository::revoke(store, stranger, key.id(), NOW, &login_event(&account)).await.unwrap(),
        "only the owner revokes"
    );
    assert!(ApiKeyRepository::revoke(store, account.id(), key.id(), NOW, &login_event(&account)).await.unwrap());
    assert_eq!(store.find_active_by_hash(&hash).await.unwrap(), None);
    assert!(!ApiKeyRepository::revoke(store, account.id(), key.id(), NOW, &login_event(&account)).await.unwrap());
}

pub async fn api_keys_are_listed_per_account_and_touched<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
    let account = stored_account(store).await;
    let first = api_key(&account, "first");
    let second = ApiKey::from_storage(StoredApiKey {
        created_at: NOW + Duration::seconds(1),
        ..api_key(&account, "second").stored().clone()
    });
    let session = creator(store, &account).await;
    ApiKeyRepository::create(
        store,
        &second,
        &TokenHash::of(b"2"),
        &mail_to("owner@example.com"),
        session,
        &login_event(&account),
    )
    .await
    .unwrap();
    ApiKeyRepository::create(
        store,
        &first,
        &TokenHash::of(b"1"),
        &mail_to("owner@example.com"),
        session,
        &login_event(&account),
    )
    .await
    .unwrap();
    SessionRepository::revoke(store, session, NOW, RevocationReason::PasswordReset).await.unwrap();
    let late = api_key(&account, "late");
    assert!(
        !ApiKeyRepository::create(
            store,
            &late,
            &TokenHash::of(b"3"),
            &mail_to("owner@example.com"),
            session,
            &login_event(&account)
        )
        .await
        .unwrap(),
        "a revoked session creates no key"
    );
    store.touch(first.id(), NOW + Duration::minutes(3)).await.unwrap();
    let listed = ApiKeyRepository::list(store, account.id()).await.unwrap();
    assert_eq!(listed.iter().map(|key| key.name().as_str()).collect::<Vec<_>>(), ["first", "second"]);
    assert_eq!(listed[0].last_used_at(), Some(NOW + Duration::minutes(3)));
    assert!(ApiKeyRepository::list(store, AccountId::from_uuid(Uuid::new_v4())).await.unwrap().is_empty());
}

pub async fn a_password_reset_spends_its_token_once_and_ends_every_session<P: Backend, I: Inspect>(
    store: &P,
    _inspect: &I,
) {
    let account = stored_account(store).await;
    let sessions = [
        new_session(&account, &RefreshSecret::from_bytes([1; 32])),
        new_session(&account, &RefreshSecret::from_bytes([2; 32])),
    ];
    for session in &sessions {
        assert!(SessionRepository::create(store, session, 0, &login_event(&account)).await.unwrap());
    }
    let token = LinkTokenRecord::issue(TokenHash::of(b"reset"), account.id(), NOW + Duration::hours(1));
    store.create_password_reset(&token, &mail_to("owner@example.com"), NOW).await.unwrap();
    assert_eq!(store.find_password_reset(&TokenHash::of(b"reset")).await.unwrap(), Some(token));

    let other_link = LinkTokenRecord::issue(TokenHash::of(b"older reset"), account.id(), NOW + Duration::hours(1));
    store.create_password_reset(&other_link, &mail_to("owner@example.com"), NOW).await.unwrap();

    // A key made before the cut the reset is given (the instant the address was proven), one
    // made after it, and a device that logged in.
    let creator = creator(store, &account).await;
    let keys = [(NOW - Duration::hours(1), b"old key"), (NOW, b"new key")];
    for (created_at, secret) in keys {
        let key = ApiKey::from_storage(StoredApiKey { created_at, ..api_key(&account, "made").stored().clone() });
        let (hash, notice, event) = (TokenHash::of(secret), mail_to("owner@example.com"), login_event(&account));
        assert!(ApiKeyRepository::create(store, &key, &hash, &notice, creator, &event).await.unwrap());
    }
    store.remember_device(account.id(), &TokenHash::of(b"device"), NOW).await.unwrap();

    let new_hash = PasswordHash::from_phc("$argon2id$new".into());
    let reset = CredentialChange {
        account_id: account.id(),
        password_hash: new_hash.clone(),
        expected_version: None,
        reset_link: Some(TokenHash::of(b"reset")),
        end_sessions: SessionsToEnd::All,
        reason: RevocationReason::PasswordReset,
        verify_email: true,
        revoke_keys_made_before: Some(NOW - Duration::minutes(30)),
        notice: mail_to("owner@example.com"),
        at: NOW,
        event: login_event(&account),
    };
    assert!(store.apply_credential_change(&reset).await.unwrap());
    let again = CredentialChange {
        password_hash: PasswordHash::from_phc("$argon2id$other".into()),
        notice: mail_to("owner@example.com"),
        ..reset
    };
    assert!(!store.apply_credential_change(&again).await.unwrap());
    assert_eq!(
        store.find_password_reset(&TokenHash::of(b"older reset")).await.unwrap().unwrap().used_at(),
        Some(NOW),
        "every reset link is spent"
    );
    assert!(
        store.pending_signup_attempts(account.id(), NOW).await.unwrap().is_empty(),
        "no sign-up link outlives the reset"
    );

    let account = store.find_by_id(account.id()).await.unwrap().unwrap();
    assert_eq!(account.password_hash(), &new_hash);
    assert!(account.is_email_verified(), "the reset link proved control of the address");
    assert_eq!(store.find_password_reset(&TokenHash::of(b"reset")).await.unwrap().unwrap().used_at(), Some(NOW));
    for session in &sessions {
        assert_eq!(store.find(session.id()).await.unwrap().unwrap().revoked_at(), Some(NOW));
    }
    assert_eq!(store.find_active_by_hash(&TokenHash::of(b"old key")).await.unwrap(), None, "made before the cut");
    assert!(store.find_active_by_hash(&TokenHash::of(b"new key")).await.unwrap().is_some(), "made after the cut");
    assert_eq!(account.clients_forgotten_at(), Some(NOW), "the clients it knew are forgotten");
    assert!(!store.device_known(account.id(), &TokenHash::of(b"device"), NOW - Duration::days(30)).await.unwrap());
    // The verification email, the two reset emails, two key notices and one reset notice.
    assert_eq!(claim_all(store, NOW).await.len(), 6);
}

pub async fn a_password_change_keeps_only_the_callers_session<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
    let account = stored_account(store).await;
    let mine = new_session(&account, &RefreshSecret::from_bytes([1; 32]));
    let other = new_session(&account, &RefreshSecret::from_bytes([2; 32]));
    assert!(SessionRepository::create(store, &mine, 0, &login_event(&account)).await.unwrap());
    assert!(SessionRepository::create(store, &other, 0, &login_event(&account)).await.unwrap());
    let new_hash = PasswordHash::from_phc("$argon2id$changed".into());
    let change = CredentialChange {
        account_id: account.id(),
        password_hash: new_hash.clone(),
        expected_version: Some(0),
        reset_link: None,
        end_sessions: SessionsToEnd::AllExcept(mine.id()),
        reason: RevocationReason::PasswordChange,
        verify_email: false,
        revoke_keys_made_before: None,
        notice: mail_to("owner@example.com"),
        at: NOW,
        event: login_event(&account),
    };
    assert!(store.apply_credential_change(&change).await.unwrap());
    assert_eq!(store.find_by_id(account.id()).await.unwrap().unwrap().password_hash(), &new_hash);
    assert_eq!(store.find(mine.id()).await.unwrap().unwrap().revoked_at(), None);
    assert_eq!(store.find(other.id()).await.unwrap().unwrap().revoked_at(), Some(NOW));
}

pub async fn live_sessions_are_listed_and_revoked_in_bulk<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
    let account = stored_account(store).await;
    let older = new_session(&account, &RefreshSecret::from_bytes([1; 32]));
    let newer = Session::start(
        SessionId::from_uuid(Uuid::new_v4()),
        account.id(),
        &RefreshSecret::from_bytes([2; 32]),
        NOW + Duration::minutes(1),
        Duration::days(30),
        Duration::days(90),
        ClientInfo::default(),
    );
    let revoked = new_session(&account, &RefreshSecret::from_bytes([3; 32]));
    for session in [&older, &newer, &revoked] {
        assert!(SessionRepository::create(store, session, 0, &login_event(&account)).await.unwrap());
    }
    SessionRepository::revoke(store, revoked.id(), NOW, RevocationReason::Logout).await.unwrap();
    let live = store.list_live(account.id(), NOW + Duration::minutes(2)).await.unwrap();
    assert_eq!(live.iter().map(Session::id).collect::<Vec<_>>(), [newer.id(), older.id()]);
    assert_eq!(
        *live[1].client(),
        ClientInfo { user_agent: Some("curl/8.0".into()), ip: Some("192.0.2.7".into()), device: None }
    );
    assert!(
        store.list_live(account.id(), NOW + Duration::days(31)).await.unwrap().is_empty(),
        "expired sessions are not live"
    );

    assert_eq!(store.revoke_all(account.id(), Some(newer.id()), NOW, RevocationReason::Logout).await.unwrap(), 1);
    assert_eq!(store.revoke_all(account.id(), None, NOW, RevocationReason::Logout).await.unwrap(), 1);
    assert!(store.list_live(account.id(), NOW).await.unwrap().is_empty());
}

const THREE_A_MINUTE: LimitPolicy = LimitPolicy { name: "contract", limit: 3, window: Duration::minutes(1) };

pub async fn rate_limit_counters_count_per_window_and_start_over<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
    let at = NOW + Duration::seconds(10);
    assert!(store.peek("a", &THREE_A_MINUTE, at).await.unwrap().allowed);
    for expected_remaining in [2, 1, 0] {
        let decision = store.hit("a", &THREE_A_MINUTE, at).await.unwrap();
        assert!(decision.allowed);
        assert_eq!(decision.remaining, expected_remaining);
    }
    let fourth = store.hit("a", &THREE_A_MINUTE, at).await.unwrap();
    assert!(!fourth.allowed);
    assert_eq!(fourth.reset_after, Duration::seconds(50));
    assert!(!store.peek("a", &THREE_A_MINUTE, at).await.unwrap().allowed, "peeking counts nothing but sees the count");
    assert!(store.hit("b", &THREE_A_MINUTE, at).await.unwrap().allowed, "keys count apart");
    assert!(
        store.hit("a", &THREE_A_MINUTE, NOW + Duration::minutes(1)).await.unwrap().allowed,
        "the next window starts over"
    );
    store.reset("a", &THREE_A_MINUTE).await.unwrap();
    assert_eq!(store.peek("a", &THREE_A_MINUTE, NOW + Duration::minutes(1)).await.unwrap().remaining, 2);
}

pub async fn concurrent_hits_are_all_counted<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
    let policy = LimitPolicy { name: "contract", limit: 1000, window: Duration::hours(1) };
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { store.hit("shared", &policy, NOW).await.unwrap() }));
    }
    let mut remaining: Vec<u32> = Vec::new();
    for task in tasks {
        remaining.push(task.await.unwrap().remaining);
    }
    remaining.sort_unstable();
    // Each of the 40 hits saw a different count: none was lost or doubled.
    assert_eq!(remaining, (960..1000).collect::<Vec<u32>>());
}

pub async fn the_security_log_pages_newest_first<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
    let account = stored_account(store).await;
    let mut written = Vec::new();
    for i in 0..5 {
        // Two entries share each millisecond, so the order needs the id too.
        let event = AuditEvent {
            at: NOW + Duration::milliseconds(i / 2),
            kind: AuditKind::LoginFailed,
            ..login_event(&account)
        };
        store.record(&event).await.unwrap();
        written.push(event);
    }
    written.sort_by_key(|event| std::cmp::Reverse((event.at, event.id)));
    let first = AuditLog::list(store, account.id(), None, 2).await.unwrap();
    assert_eq!(first, written[..2]);
    let cursor = AuditCursor { at: first[1].at, id: first[1].id };
    let second = AuditLog::list(store, account.id(), Some(cursor), 10).await.unwrap();
    assert_eq!(second, written[2..], "the next page continues exactly after the cursor");
    assert!(AuditLog::list(store, AccountId::from_uuid(Uuid::new_v4()), None, 10).await.unwrap().is_empty());
}

pub async fn the_purge_deletes_what_retention_says_and_nothing_else<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
    let account = stored_account(store).await;
    let old_event = AuditEvent { at: NOW - Duration::days(91), ..login_event(&account) };
    let recent_event = AuditEvent { at: NOW - Duration::days(89), ..login_event(&account) };
    for event in [&old_event, &recent_event] {
        store.record(event).await.unwrap();
    }
    let ended = Session::start(
        SessionId::from_uuid(Uuid::new_v4()),
        account.id(),
        &RefreshSecret::from_bytes([1; 32]),
        NOW - Duration::days(70),
        Duration::days(30),
        Duration::days(90),
        ClientInfo::default(),
    );
    let live = new_session(&account, &RefreshSecret::from_bytes([2; 32]));
    for session in [&ended, &live] {
        assert!(SessionRepository::create(store, session, 0, &login_event(&account)).await.unwrap());
    }
    // Two accounts never verified, created eight days ago: one with only an expired link, one
    // with a link resent yesterday that still works.
    let mut abandoned = Vec::new();
    for (address, link_expires) in
        [("gone@example.com", NOW - Duration::days(7)), ("kept@example.com", NOW + Duration::hours(1))]
    {
        let old = Account::new_unverified(
            AccountId::from_uuid(Uuid::new_v4()),
            email(address),
            PasswordHash::from_phc("x".into()),
            NOW - Duration::days(8),
        );
        let link = LinkTokenRecord::issue(TokenHash::of(address.as_bytes()), old.id(), link_expires);
        store
            .create_unverified(&old, &SignupAttempt::issue(link, None, NOW - Duration::days(8)), &mail_to(address))
            .await
            .unwrap();
        abandoned.push(old);
    }
    let spent = LinkTokenRecord::issue(TokenHash::of(b"spent reset"), account.id(), NOW - Duration::days(2));
    store.create_password_reset(&spent, &mail_to("owner@example.com"), NOW - Duration::days(3)).await.unwrap();
    store.hit("stale", &THREE_A_MINUTE, NOW - Duration::days(2)).await.unwrap();
    store.hit("fresh", &THREE_A_MINUTE, NOW).await.unwrap();

    let cutoffs = RetentionSettings::default().cutoffs(NOW);
    let report = store.purge(&cutoffs).await.unwrap();
    assert_eq!(
        (report.audit_events, report.sessions, report.unverified_accounts, report.counters),
        (1, 1, 1, 1),
        "{report:?}"
    );
    // The spent reset link and the expired link of the abandoned account (which went with it).
    assert!(report.links >= 1, "{report:?}");
    let events = AuditLog::list(store, account.id(), None, 100).await.unwrap();
    assert!(events.iter().any(|event| event.id == recent_event.id));
    assert!(!events.iter().any(|event| event.id == old_event.id));
    assert!(store.find(ended.id()).await.unwrap().is_none());
    assert!(store.find(live.id()).await.unwrap().is_some());
    assert!(store.find_by_id(abandoned[0].id()).await.unwrap().is_none(), "an abandoned sign-up goes");
    assert!(store.find_by_id(abandoned[1].id()).await.unwrap().is_some(), "a sign-up with a working link stays");
    assert!(store.find_by_id(account.id()).await.unwrap().is_some());
    assert!(store.find_password_reset(&TokenHash::of(b"spent reset")).await.unwrap().is_none());
    assert_eq!(store.peek("fresh", &THREE_A_MINUTE, NOW).await.unwrap().remaining, 1, "a current counter stays");
    assert_eq!(store.purge(&cutoffs).await.unwrap().total(), 0, "a second pass finds nothing");
}

pub async fn a_device_is_known_only_to_its_account_and_only_while_recent<P: Backend, I: Inspect>(
    store: &P,
    _inspect: &I,
) {
    let account = stored_account(store).await;
    let other = new_account("other@example.com");
    store.create_unverified(&other, &attempt_for(&other, 7), &mail_to("other@example.com")).await.unwrap();
    let device = TokenHash::of(b"device token");
    assert!(!store.device_known(account.id(), &device, NOW - Duration::days(30)).await.unwrap());
    store.remember_device(account.id(), &device, NOW).await.unwrap();
    assert!(store.device_known(account.id(), &device, NOW - Duration::days(30)).await.unwrap());
    assert!(!store.device_known(account.id(), &device, NOW + Duration::seconds(1)).await.unwrap(), "not seen since");
    // Another account presenting the same token neither knows it nor takes it over.
    store.remember_device(other.id(), &device, NOW + Duration::days(1)).await.unwrap();
    assert!(!store.device_known(other.id(), &device, NOW - Duration::days(30)).await.unwrap());
    store.remember_device(account.id(), &device, NOW + Duration::days(2)).await.unwrap();
    assert!(
        store.device_known(account.id(), &device, NOW + Duration::days(1)).await.unwrap(),
        "a new login refreshes it"
    );
    // Forgetting the account's clients deletes its devices and dates the forgetting; another
    // account's devices stay.
    let others = TokenHash::of(b"the other account's device");
    store.remember_device(other.id(), &others, NOW).await.unwrap();
    store.forget_known_clients(account.id(), NOW + Duration::days(3)).await.unwrap();
    assert!(!store.device_known(account.id(), &device, NOW - Duration::days(30)).await.unwrap());
    assert!(store.device_known(other.id(), &others, NOW - Duration::days(30)).await.unwrap());
    let forgotten = store.find_by_id(account.id()).await.unwrap().unwrap().clients_forgotten_at();
    assert_eq!(forgotten, Some(NOW + Duration::days(3)));
    assert_eq!(store.find_by_id(other.id()).await.unwrap().unwrap().clients_forgotten_at(), None);
}

pub async fn introspection_clients_are_listed_oldest_first_and_deleted_once<P: Backend, I: Inspect>(
    store: &P,
    _inspect: &I,
) {
    let client = |id: u128, name: &str, at: OffsetDateTime| IntrospectionClient {
        id: IntrospectionClientId::from_uuid(Uuid::from_u128(id)),
        name: ClientName::parse(name).unwrap(),
        secret_hash: TokenHash::of(name.as_bytes()),
        created_at: at,
    };
    let (older, newer) = (client(2, "billing API", NOW - Duration::days(1)), client(1, "reports API", NOW));
    IntrospectionClientRepository::create(store, &newer).await.unwrap();
    IntrospectionClientRepository::create(store, &older).await.unwrap();
    assert_eq!(IntrospectionClientRepository::list(store).await.unwrap(), vec![older.clone(), newer.clone()]);
    // The id and the digest are unique.
    assert!(IntrospectionClientRepository::create(store, &client(1, "another", NOW)).await.is_err());
    assert!(IntrospectionClientRepository::create(
        store,
        &IntrospectionClient { id: IntrospectionClientId::from_uuid(Uuid::from_u128(3)), ..older.clone() }
    )
    .await
    .is_err());

    assert!(IntrospectionClientRepository::delete(store, older.id).await.unwrap());
    assert!(!IntrospectionClientRepository::delete(store, older.id).await.unwrap());
    assert_eq!(IntrospectionClientRepository::list(store).await.unwrap(), vec![newer]);
}
