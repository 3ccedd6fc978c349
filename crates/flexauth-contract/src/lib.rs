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
use flexauth_domain::lifecycle::LifecycleRepository;
use flexauth_domain::limits::{LimitCounter, LimitPolicy, LimitSettlement, RateLimiter};
use flexauth_domain::mail::{EmailKind, LeaseId, Outbox, OutgoingEmail};
use flexauth_domain::mfa::{
    CeremonyId, CeremonyPurpose, FactorConfirmation, FactorId, FactorKind, FactorName, FactorRepository, MfaChallenge,
    PasskeyAddition, PasskeyCeremony, SealedSecret, StoredFactor,
};
use flexauth_domain::newtypes::{AuthenticationMethod, AuthenticationMethods, Scope};
use flexauth_domain::secret::TokenHash;
use flexauth_domain::session::{
    ClientInfo, RefreshSecret, RevocationReason, RotationNonce, Session, SessionId, SessionRepository,
};
use flexauth_domain::usage::{UsageCount, UsageRepository};
use flexauth_domain::webhook::{WebhookEndpoints, WebhookQueue};
use time::macros::{date, datetime};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// The limit the rate-limit scenarios count against.
pub const THREE_A_MINUTE: LimitPolicy = LimitPolicy { name: "contract", limit: 3, window: Duration::minutes(1) };

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
    + LifecycleRepository
    + FactorRepository
    + WebhookEndpoints
    + WebhookQueue
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
        + LifecycleRepository
        + FactorRepository
        + WebhookEndpoints
        + WebhookQueue
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
/// the guard lives until the scenario ends. Each file of this crate registers the scenarios it
/// defines (with the crate's `scenarios!` macro); this runs every file's.
#[macro_export]
macro_rules! contract_suite {
    ($setup:expr) => {
        $crate::accounts_scenarios!($setup);
        $crate::sessions_scenarios!($setup);
        $crate::outbox_scenarios!($setup);
        $crate::usage_scenarios!($setup);
        $crate::api_keys_scenarios!($setup);
        $crate::limits_scenarios!($setup);
        $crate::audit_scenarios!($setup);
        $crate::housekeeping_scenarios!($setup);
        $crate::introspection_scenarios!($setup);
        $crate::lifecycle_scenarios!($setup);
        $crate::mfa_scenarios!($setup);
        $crate::webhooks_scenarios!($setup);
    };
}

/// Defines the scenarios of one port and registers them under `$list`, so that a scenario
/// written is a scenario run: `scenarios! { $ accounts_scenarios; pub async fn …(store: &P,
/// _inspect: &I) { … } … }` defines each function and the exported macro `accounts_scenarios!`
/// that makes a test of each. (The leading `$` lets the generated macro have variables of its
/// own.) Every scenario takes the backend and the inspector, and nothing else.
macro_rules! scenarios {
    ($d:tt $list:ident;
        $(
            $(#[$meta:meta])*
            pub async fn $name:ident<P: Backend, I: Inspect>($store:ident: &P, $inspect:ident: &I $(,)?) $body:block
        )*
    ) => {
        $(
            $(#[$meta])*
            pub async fn $name<P: Backend, I: Inspect>($store: &P, $inspect: &I) $body
        )*

        #[doc(hidden)]
        #[macro_export]
        macro_rules! $list {
            ($d setup:expr) => {
                $d crate::contract_tests!($d setup; $($name),*);
            };
        }
    };
}

mod accounts;
mod api_keys;
mod audit;
mod housekeeping;
mod introspection;
mod lifecycle;
mod limits;
mod mfa;
mod outbox;
mod sessions;
mod usage;
mod webhooks;

pub use accounts::*;
pub use api_keys::*;
pub use audit::*;
pub use housekeeping::*;
pub use introspection::*;
pub use lifecycle::*;
pub use limits::*;
pub use mfa::*;
pub use outbox::*;
pub use sessions::*;
pub use usage::*;
pub use webhooks::*;

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
/// The digest of a device token of its own for each session, remembered by the login.
pub fn device_of(session: &Session) -> TokenHash {
    TokenHash::of(session.id().to_string().as_bytes())
}

pub fn login_event(account: &Account) -> AuditEvent {
    AuditEvent {
        id: Uuid::new_v4(),
        account_id: account.id(),
        kind: AuditKind::LoginSucceeded,
        at: NOW,
        client: ClientInfo::new(Some("curl/8.0"), Some("192.0.2.7".into())),
        session_id: None,
        key_id: None,
        email: None,
        factor_id: None,
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
    Outbox::claim_due(store, at, lease, at + Duration::minutes(5), 100)
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

pub fn new_session(account: &Account, secret: &RefreshSecret) -> Session {
    Session::start(
        SessionId::from_uuid(Uuid::new_v4()),
        account.id(),
        secret,
        NOW,
        Duration::days(30),
        Duration::days(90),
        ClientInfo::new(Some("curl/8.0"), Some("192.0.2.7".into())),
        AuthenticationMethods::password(),
    )
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
    assert!(SessionRepository::create(store, &session, 0, &login_event(account), &device_of(&session)).await.unwrap());
    session.id()
}
