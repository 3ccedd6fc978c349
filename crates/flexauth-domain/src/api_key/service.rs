use std::collections::BTreeSet;
use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use super::{ApiKey, ApiKeyId, ApiKeyName, ApiKeyRepository, ApiKeySecret};
use crate::account::AccountRepository;
use crate::audit::{AuditEvent, AuditKind};
use crate::mail::{Letter, Letters};
use crate::newtypes::{ClientInfo, Scope};
use crate::principal::{AccountGone, LiveSession, Principal, ReauthenticationRequired, SessionEnded, StepUpRequired};
use crate::session::AuthenticateError;
use crate::system::{random_uuid, Clock, SecureRandom};
use crate::InfraError;

/// Settings of the API key rules.
#[derive(Debug, Clone)]
pub struct ApiKeySettings {
    /// How recently the session must have proved its password to create a key (10 minutes by
    /// default): a key never expires, so a stolen access token must not be able to mint one.
    pub reauthentication_window: Duration,
    /// The scopes keys may carry (`FLEXAUTH_API_KEY_SCOPES`): none by default, so keys carry
    /// none.
    pub scopes: BTreeSet<Scope>,
}

impl Default for ApiKeySettings {
    fn default() -> Self {
        Self { reauthentication_window: Duration::minutes(10), scopes: BTreeSet::new() }
    }
}

/// Why a key could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateApiKeyError {
    /// The session has not proved its password recently enough.
    #[error(transparent)]
    ReauthenticationRequired(#[from] ReauthenticationRequired),
    /// The account has a second factor and the session has not proved it recently enough.
    #[error(transparent)]
    StepUpRequired(#[from] StepUpRequired),
    /// The account was deleted meanwhile.
    #[error(transparent)]
    AccountGone(#[from] AccountGone),
    /// The caller's session ended (a reset, a logout) before the key was stored.
    #[error(transparent)]
    SessionEnded(#[from] SessionEnded),
    /// The requested expiry is not in the future.
    #[error("the expiry must be in the future")]
    ExpiryInPast,
    /// A requested scope is not one the operator declared.
    #[error("`{0}` is not a declared scope")]
    UnknownScope(String),
    #[error("creating the key failed")]
    Unexpected(#[from] InfraError),
}

/// Why a key could not be revoked.
#[derive(Debug, thiserror::Error)]
pub enum RevokeApiKeyError {
    /// No live key with this id belongs to the caller.
    #[error("no such API key")]
    NotFound,
    #[error("revoking the key failed")]
    Unexpected(#[from] InfraError),
}

/// Why the caller's keys could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum ListApiKeysError {
    #[error("listing the keys failed")]
    Unexpected(#[from] InfraError),
}

/// Creating, listing, revoking and authenticating API keys.
#[derive(Clone)]
pub struct ApiKeyService {
    keys: Arc<dyn ApiKeyRepository>,
    accounts: Arc<dyn AccountRepository>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn SecureRandom>,
    letters: Letters,
    settings: ApiKeySettings,
}

impl std::fmt::Debug for ApiKeyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyService").finish_non_exhaustive()
    }
}

impl ApiKeyService {
    /// Wires the service to its ports.
    pub fn new(
        keys: Arc<dyn ApiKeyRepository>,
        accounts: Arc<dyn AccountRepository>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn SecureRandom>,
        letters: Letters,
        settings: ApiKeySettings,
    ) -> Self {
        Self { keys, accounts, clock, random, letters, settings }
    }

    /// Creates a key for the caller's account and tells the owner by email, in the same
    /// transaction; the security log records it with the `client` that asked. The session must
    /// have proved its password within the re-authentication window. The secret is returned
    /// here and never again.
    ///
    /// # Errors
    /// [`CreateApiKeyError`].
    pub async fn create(
        &self,
        caller: &LiveSession,
        name: ApiKeyName,
        expires_at: Option<OffsetDateTime>,
        scopes: BTreeSet<Scope>,
        client: ClientInfo,
    ) -> Result<(ApiKey, ApiKeySecret), CreateApiKeyError> {
        let now = self.clock.now();
        caller.require_recent_authentication(now, self.settings.reauthentication_window)?;
        caller.require_recent_second_factor(now, self.settings.reauthentication_window)?;
        if let Some(unknown) = scopes.iter().find(|scope| !self.settings.scopes.contains(scope)) {
            return Err(CreateApiKeyError::UnknownScope(unknown.as_str().to_owned()));
        }
        let secret = ApiKeySecret::generate(self.random.as_ref());
        let id = ApiKeyId::from_uuid(random_uuid(self.random.as_ref()));
        let prefix = secret.display_prefix().to_owned();
        let key = ApiKey::issue(id, caller.account_id(), name, prefix, now, expires_at, scopes);
        // A key that would be born expired is refused rather than stored dead.
        if key.is_expired(now) {
            return Err(CreateApiKeyError::ExpiryInPast);
        }
        let account = self.accounts.find_by_id(caller.account_id()).await?.ok_or(AccountGone)?;
        let letter =
            Letter::ApiKeyCreated { key_name: key.name().as_str().to_owned(), key_prefix: key.prefix().to_owned() };
        let notice = self.letters.email(random_uuid(self.random.as_ref()), account.email().clone(), &letter);
        let event = AuditEvent::new(self.random.as_ref(), key.account_id(), AuditKind::ApiKeyCreated, now)
            .of_session(caller.session_id())
            .of_key(key.id())
            .from_client(client);
        if !self.keys.create(&key, &secret.hash(), &notice, caller.session_id(), &event).await? {
            return Err(SessionEnded.into());
        }
        Ok((key, secret))
    }

    /// The caller's live keys.
    ///
    /// # Errors
    /// [`ListApiKeysError`].
    pub async fn list(&self, caller: &LiveSession) -> Result<Vec<ApiKey>, ListApiKeysError> {
        Ok(self.keys.list(caller.account_id()).await?)
    }

    /// Revokes one of the caller's keys, effective on the next request on every instance.
    ///
    /// # Errors
    /// [`RevokeApiKeyError`].
    pub async fn revoke(&self, caller: &LiveSession, id: ApiKeyId) -> Result<(), RevokeApiKeyError> {
        let now = self.clock.now();
        let event = AuditEvent::new(self.random.as_ref(), caller.account_id(), AuditKind::ApiKeyRevoked, now)
            .of_session(caller.session_id())
            .of_key(id);
        if self.keys.revoke(caller.account_id(), id, now, &event).await? {
            Ok(())
        } else {
            Err(RevokeApiKeyError::NotFound)
        }
    }

    /// Authenticates a request by API key. A key with a wrong checksum is refused before any
    /// lookup.
    ///
    /// # Errors
    /// [`AuthenticateError::MalformedApiKey`], [`AuthenticateError::UnknownApiKey`],
    /// [`AuthenticateError::Expired`], or [`AuthenticateError::Unexpected`].
    pub async fn authenticate(&self, presented: &str) -> Result<Principal, AuthenticateError> {
        Ok(self.verify(presented).await?.principal())
    }

    /// The key `presented` is, if it authenticates: what [`authenticate`](Self::authenticate)
    /// checks, returning the whole key (its scopes, creation and expiry) for a resource
    /// server's check.
    ///
    /// # Errors
    /// As [`authenticate`](Self::authenticate).
    pub async fn verify(&self, presented: &str) -> Result<ApiKey, AuthenticateError> {
        let secret = ApiKeySecret::parse(presented).map_err(|_| AuthenticateError::MalformedApiKey)?;
        let key = self.keys.find_active_by_hash(&secret.hash()).await?.ok_or(AuthenticateError::UnknownApiKey)?;
        let now = self.clock.now();
        if key.is_expired(now) {
            return Err(AuthenticateError::Expired);
        }
        if key.needs_touch(now) {
            self.keys.touch(key.id(), now).await?;
        }
        Ok(key)
    }

    /// The scopes the operator declared, which keys may carry and access tokens carry all of.
    pub fn vocabulary(&self) -> &BTreeSet<Scope> {
        &self.settings.scopes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::{Account, MockAccountRepository, PasswordHash};
    use crate::api_key::{ApiKeyNameError, MockApiKeyRepository, StoredApiKey};
    use crate::mail::EmailKind;
    use crate::newtypes::SessionId;
    use crate::newtypes::{AccountId, EmailAddress};
    use crate::principal::AuthMethod;
    use crate::system::{MockClock, MockSecureRandom};
    use std::sync::atomic::{AtomicU8, Ordering};
    use time::macros::datetime;
    use uuid::Uuid;

    const NOW: OffsetDateTime = datetime!(2026-07-01 12:00 UTC);
    const ACCOUNT: AccountId = AccountId::from_uuid(Uuid::from_u128(1));

    fn service(keys: MockApiKeyRepository) -> ApiKeyService {
        let mut clock = MockClock::new();
        clock.expect_now().return_const(NOW);
        let counter = AtomicU8::new(0);
        let mut random = MockSecureRandom::new();
        random
            .expect_fill()
            .returning(move |buffer| buffer.iter_mut().for_each(|b| *b = counter.fetch_add(13, Ordering::Relaxed)));
        let mut accounts = MockAccountRepository::new();
        accounts.expect_find_by_id().returning(|id| {
            Ok(Some(Account::from_storage(crate::account::StoredAccount {
                id,
                email: EmailAddress::parse("ann@example.com").unwrap(),
                password_hash: PasswordHash::from_phc("x".into()),
                email_verified_at: Some(NOW),
                created_at: NOW,
                credential_version: 0,
                disabled_at: None,
                clients_forgotten_at: None,
            })))
        });
        ApiKeyService::new(
            Arc::new(keys),
            Arc::new(accounts),
            Arc::new(clock),
            Arc::new(random),
            crate::mail::Letters::new("https://auth.example.com", Arc::new(crate::mail::FactSheetWriter)),
            ApiKeySettings::default(),
        )
    }

    /// A live session that logged in `ago` before now.
    fn jwt_caller_authenticated(ago: Duration) -> LiveSession {
        LiveSession::new(ACCOUNT, SessionId::from_uuid(Uuid::from_u128(2)), NOW - ago)
    }

    fn jwt_caller() -> LiveSession {
        jwt_caller_authenticated(Duration::minutes(1))
    }

    fn stored(last_used_at: Option<OffsetDateTime>, expires_at: Option<OffsetDateTime>) -> ApiKey {
        ApiKey::from_storage(StoredApiKey {
            id: ApiKeyId::from_uuid(Uuid::from_u128(9)),
            account_id: ACCOUNT,
            name: ApiKeyName::parse("ci").unwrap(),
            prefix: "fo_live_abcd".into(),
            created_at: NOW - Duration::days(1),
            last_used_at,
            expires_at,
            scopes: BTreeSet::new(),
        })
    }

    #[tokio::test]
    async fn creating_a_key_stores_only_its_digest_and_returns_the_secret_once() {
        let mut keys = MockApiKeyRepository::new();
        keys.expect_create()
            .withf(|key, hash, notice, _, event| {
                event.kind == AuditKind::ApiKeyCreated
                    && event.key_id == Some(key.id())
                    && key.account_id() == ACCOUNT
                    && key.prefix().starts_with("fo_live_")
                    && key.expires_at().is_none()
                    && hash.as_bytes().len() == 32
                    && notice.kind() == EmailKind::ApiKeyCreated
                    && notice.to().as_str() == "ann@example.com"
                    && notice.text_body().contains(key.prefix())
            })
            .times(1)
            .returning(|_, _, _, _, _| Ok(true));
        let (key, secret) = service(keys)
            .create(&jwt_caller(), ApiKeyName::parse("ci").unwrap(), None, BTreeSet::new(), ClientInfo::default())
            .await
            .unwrap();
        assert!(secret.expose().starts_with(key.prefix()));
    }

    #[tokio::test]
    async fn an_account_with_a_second_factor_creates_keys_only_from_a_session_that_proved_it_recently() {
        let mut keys = MockApiKeyRepository::new();
        keys.expect_create().times(1).returning(|_, _, _, _, _| Ok(true));
        let service = service(keys);
        let create = |caller: LiveSession| {
            let service = service.clone();
            async move {
                service
                    .create(&caller, ApiKeyName::parse("ci").unwrap(), None, BTreeSet::new(), ClientInfo::default())
                    .await
            }
        };
        let recent = jwt_caller_authenticated(Duration::minutes(1));
        let never = recent.with_second_factor(true, None);
        assert!(matches!(create(never).await, Err(CreateApiKeyError::StepUpRequired(_))));
        let long_ago = recent.with_second_factor(true, Some(NOW - Duration::minutes(11)));
        assert!(matches!(create(long_ago).await, Err(CreateApiKeyError::StepUpRequired(_))));
        let proved = recent.with_second_factor(true, Some(NOW - Duration::minutes(2)));
        assert!(create(proved).await.is_ok());
    }

    #[tokio::test]
    async fn creating_a_key_needs_an_authentication_within_ten_minutes() {
        let mut keys = MockApiKeyRepository::new();
        keys.expect_create().times(1).returning(|_, _, _, _, _| Ok(true));
        let service = service(keys);
        let stale = service
            .create(
                &jwt_caller_authenticated(Duration::minutes(11)),
                ApiKeyName::parse("ci").unwrap(),
                None,
                BTreeSet::new(),
                ClientInfo::default(),
            )
            .await;
        assert!(matches!(stale, Err(CreateApiKeyError::ReauthenticationRequired(_))));
        service
            .create(
                &jwt_caller_authenticated(Duration::minutes(10)),
                ApiKeyName::parse("ci").unwrap(),
                None,
                BTreeSet::new(),
                ClientInfo::default(),
            )
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_key_whose_session_ended_before_the_write_is_not_created() {
        let mut keys = MockApiKeyRepository::new();
        keys.expect_create()
            .withf(|_, _, _, session, _| *session == SessionId::from_uuid(Uuid::from_u128(2)))
            .times(1)
            .returning(|_, _, _, _, _| Ok(false));
        let outcome = service(keys)
            .create(&jwt_caller(), ApiKeyName::parse("ci").unwrap(), None, BTreeSet::new(), ClientInfo::default())
            .await;
        assert!(matches!(outcome, Err(CreateApiKeyError::SessionEnded(_))));
    }

    #[tokio::test]
    async fn a_key_carries_only_declared_scopes_and_grants_nothing_else() {
        let scope = |text: &str| Scope::parse(text).unwrap();
        let mut keys = MockApiKeyRepository::new();
        keys.expect_create()
            .withf(|key, _, _, _, _| key.scopes().iter().map(Scope::as_str).collect::<Vec<_>>() == ["invoices:read"])
            .times(1)
            .returning(|_, _, _, _, _| Ok(true));
        let mut service = service(keys);
        service.settings.scopes = [scope("invoices:read"), scope("invoices:write")].into();
        let unknown = service
            .create(
                &jwt_caller(),
                ApiKeyName::parse("ci").unwrap(),
                None,
                [scope("admin")].into(),
                ClientInfo::default(),
            )
            .await;
        assert!(matches!(unknown, Err(CreateApiKeyError::UnknownScope(name)) if name == "admin"));
        let (key, _) = service
            .create(
                &jwt_caller(),
                ApiKeyName::parse("ci").unwrap(),
                None,
                [scope("invoices:read")].into(),
                ClientInfo::default(),
            )
            .await
            .unwrap();
        assert!(key.grants().allows(&scope("invoices:read"), service.vocabulary()));
        assert!(!key.grants().allows(&scope("invoices:write"), service.vocabulary()));
    }

    #[tokio::test]
    async fn an_expiry_in_the_past_is_refused() {
        let outcome = service(MockApiKeyRepository::new())
            .create(&jwt_caller(), ApiKeyName::parse("ci").unwrap(), Some(NOW), BTreeSet::new(), ClientInfo::default())
            .await;
        assert!(matches!(outcome, Err(CreateApiKeyError::ExpiryInPast)));
    }

    #[tokio::test]
    async fn a_malformed_key_is_refused_without_a_lookup() {
        let mut keys = MockApiKeyRepository::new();
        keys.expect_find_active_by_hash().never();
        let outcome = service(keys).authenticate("fo_live_0000000000000000000000000000000000000a").await;
        assert!(matches!(outcome, Err(AuthenticateError::MalformedApiKey)));
    }

    fn valid_key_text() -> String {
        let mut random = MockSecureRandom::new();
        random.expect_fill().returning(|buffer| buffer.fill(5));
        ApiKeySecret::generate(&random).expose().to_owned()
    }

    #[tokio::test]
    async fn a_known_key_authenticates_and_records_its_use_at_most_once_a_minute() {
        let mut keys = MockApiKeyRepository::new();
        keys.expect_find_active_by_hash().returning(|_| Ok(Some(stored(Some(NOW - Duration::seconds(59)), None))));
        keys.expect_touch().never();
        let principal = service(keys).authenticate(&valid_key_text()).await.unwrap();
        assert_eq!(principal.method, AuthMethod::ApiKey(ApiKeyId::from_uuid(Uuid::from_u128(9))));

        let mut keys = MockApiKeyRepository::new();
        keys.expect_find_active_by_hash().returning(|_| Ok(Some(stored(Some(NOW - Duration::minutes(1)), None))));
        keys.expect_touch()
            .with(mockall::predicate::always(), mockall::predicate::eq(NOW))
            .times(1)
            .returning(|_, _| Ok(()));
        service(keys).authenticate(&valid_key_text()).await.unwrap();
    }

    #[tokio::test]
    async fn an_unknown_or_expired_key_is_refused() {
        let mut keys = MockApiKeyRepository::new();
        keys.expect_find_active_by_hash().returning(|_| Ok(None));
        assert!(matches!(service(keys).authenticate(&valid_key_text()).await, Err(AuthenticateError::UnknownApiKey)));

        let mut keys = MockApiKeyRepository::new();
        keys.expect_find_active_by_hash().returning(|_| Ok(Some(stored(None, Some(NOW)))));
        keys.expect_touch().never();
        assert!(matches!(service(keys).authenticate(&valid_key_text()).await, Err(AuthenticateError::Expired)));
    }

    #[tokio::test]
    async fn revoking_an_unknown_key_is_not_found() {
        let mut keys = MockApiKeyRepository::new();
        keys.expect_revoke().returning(|_, _, _, _| Ok(false));
        assert!(matches!(
            service(keys).revoke(&jwt_caller(), ApiKeyId::from_uuid(Uuid::nil())).await,
            Err(RevokeApiKeyError::NotFound)
        ));
    }

    #[test]
    fn key_names_are_trimmed_and_bounded() {
        assert_eq!(ApiKeyName::parse("  CI  ").unwrap().as_str(), "CI");
        assert_eq!(ApiKeyName::parse(" "), Err(ApiKeyNameError::Empty));
        assert_eq!(ApiKeyName::parse(&"x".repeat(101)), Err(ApiKeyNameError::TooLong));
        assert_eq!(ApiKeyName::parse("a\u{0}b"), Err(ApiKeyNameError::ControlCharacters));
    }
}
