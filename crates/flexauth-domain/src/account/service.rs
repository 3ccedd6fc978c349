use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use super::model::LinkTokenState;
use super::{Account, AccountId, AccountRepository, CreateAccountError, EmailAddress, LinkTokenRecord, NewPassword, Password, PasswordHasher};
use crate::mail::{account_exists_email, password_changed_email, password_reset_email, verification_email, Outbox};
use crate::principal::{Principal, SessionRequired};
use crate::runtime::{random_uuid, Clock, SecureRandom};
use crate::secret::LinkToken;
use crate::InfraError;

/// Settings of the account use cases.
#[derive(Debug, Clone)]
pub struct AccountSettings {
    /// Base URL of the links in emails, e.g. `https://auth.example.com`.
    pub public_url: String,
    /// How long a verification link works.
    pub verification_ttl: Duration,
    /// How long a password reset link works.
    pub password_reset_ttl: Duration,
}

/// Why a sign-up failed. Only infrastructure can make it fail: a taken address looks like a
/// success to the caller.
#[derive(Debug, thiserror::Error)]
pub enum SignupError {
    /// Storage or hashing failed; nothing was written.
    #[error("sign-up failed")]
    Unexpected(#[from] InfraError),
}

/// What a verification link did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// The address is now verified.
    Verified,
    /// The link had been used before; the address stays verified.
    AlreadyVerified,
}

/// Why a verification link was refused.
#[derive(Debug, thiserror::Error)]
pub enum VerifyEmailError {
    /// No such token was ever issued, or a newer link replaced it.
    #[error("the verification token is not valid")]
    InvalidToken,
    /// The token expired before it was used.
    #[error("the verification token has expired")]
    Expired,
    /// Storage failed.
    #[error("verification failed")]
    Unexpected(#[from] InfraError),
}

/// Why a password reset link was refused.
#[derive(Debug, thiserror::Error)]
pub enum ResetPasswordError {
    /// Never issued, or used already.
    #[error("the reset token is not valid")]
    InvalidToken,
    /// The link expired before it was used.
    #[error("the reset token has expired")]
    Expired,
    #[error("resetting the password failed")]
    Unexpected(#[from] InfraError),
}

/// Why a password change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChangePasswordError {
    /// Changing the password needs a JWT, not an API key.
    #[error(transparent)]
    SessionRequired(#[from] SessionRequired),
    /// The current password given is wrong.
    #[error("the current password is wrong")]
    WrongPassword,
    #[error("changing the password failed")]
    Unexpected(#[from] InfraError),
}

/// Why the caller's account could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum AccountLookupError {
    #[error(transparent)]
    SessionRequired(#[from] SessionRequired),
    /// The account was deleted after the token was issued.
    #[error("the account no longer exists")]
    Gone,
    #[error("looking up the account failed")]
    Unexpected(#[from] InfraError),
}

/// Sign-up, email verification, password reset and change, account lookup.
#[derive(Clone)]
pub struct AccountService {
    accounts: Arc<dyn AccountRepository>,
    outbox: Arc<dyn Outbox>,
    hasher: Arc<dyn PasswordHasher>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn SecureRandom>,
    settings: AccountSettings,
}

impl std::fmt::Debug for AccountService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountService").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl AccountService {
    /// Wires the service to its ports.
    pub fn new(
        accounts: Arc<dyn AccountRepository>,
        outbox: Arc<dyn Outbox>,
        hasher: Arc<dyn PasswordHasher>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn SecureRandom>,
        settings: AccountSettings,
    ) -> Self {
        Self { accounts, outbox, hasher, clock, random, settings }
    }

    /// Creates an unverified account and queues its verification email. When the address is
    /// registered already, the caller sees the same success, so sign-up cannot be used to find
    /// out who has an account: the owner of a verified account is sent a notice, the owner of
    /// an unverified one a fresh verification link (the new password is ignored either way).
    /// The password is hashed in every case, so all take the same time.
    ///
    /// # Errors
    /// [`SignupError::Unexpected`] when hashing or storage fails.
    pub async fn signup(&self, email: EmailAddress, password: &NewPassword) -> Result<(), SignupError> {
        let password_hash = self.hasher.hash(password.as_password()).await?;
        let now = self.clock.now();
        let account = Account::new_unverified(AccountId::from_uuid(random_uuid(self.random.as_ref())), email, password_hash, now);
        let token = LinkToken::generate(self.random.as_ref());
        let record = LinkTokenRecord::issue(token.hash(), account.id(), now + self.settings.verification_ttl);
        let mail = self.verification_mail(account.email().clone(), &token);
        match self.accounts.create_unverified(&account, &record, &mail).await {
            Ok(()) => Ok(()),
            Err(CreateAccountError::EmailTaken) => match self.accounts.find_by_email(account.email()).await? {
                Some(existing) if !existing.is_email_verified() => Ok(self.send_new_verification(&existing).await?),
                _ => {
                    let notice = account_exists_email(random_uuid(self.random.as_ref()), account.email().clone(), &self.settings.public_url);
                    self.outbox.enqueue(&notice, now).await?;
                    Ok(())
                }
            },
            Err(CreateAccountError::Unexpected(cause)) => Err(cause.into()),
        }
    }

    /// Spends a verification token. A token that was used already answers
    /// [`VerifyOutcome::AlreadyVerified`], so opening the link twice is harmless.
    ///
    /// # Errors
    /// [`VerifyEmailError::InvalidToken`], [`VerifyEmailError::Expired`] or
    /// [`VerifyEmailError::Unexpected`].
    pub async fn verify_email(&self, token: &LinkToken) -> Result<VerifyOutcome, VerifyEmailError> {
        let hash = token.hash();
        let record = self.accounts.find_verification_token(&hash).await?.ok_or(VerifyEmailError::InvalidToken)?;
        let now = self.clock.now();
        match record.state_at(now) {
            LinkTokenState::AlreadyUsed => Ok(VerifyOutcome::AlreadyVerified),
            LinkTokenState::Expired => Err(VerifyEmailError::Expired),
            LinkTokenState::Usable => {
                self.accounts.mark_email_verified(&hash, now).await?;
                Ok(VerifyOutcome::Verified)
            }
        }
    }

    /// Queues a new verification email when `email` belongs to an unverified account, and does
    /// nothing otherwise; the caller cannot tell which happened.
    ///
    /// # Errors
    /// [`InfraError`] when storage fails.
    pub async fn resend_verification(&self, email: &EmailAddress) -> Result<(), InfraError> {
        let Some(account) = self.accounts.find_by_email(email).await? else {
            return Ok(());
        };
        if account.is_email_verified() {
            return Ok(());
        }
        self.send_new_verification(&account).await
    }

    /// Replaces the account's verification link with a new one and queues it.
    async fn send_new_verification(&self, account: &Account) -> Result<(), InfraError> {
        let now = self.clock.now();
        let token = LinkToken::generate(self.random.as_ref());
        let record = LinkTokenRecord::issue(token.hash(), account.id(), now + self.settings.verification_ttl);
        let mail = self.verification_mail(account.email().clone(), &token);
        self.accounts.replace_verification_token(&record, &mail, now).await
    }

    /// The caller's own account (JWT callers only, like every account operation).
    ///
    /// # Errors
    /// [`AccountLookupError`].
    pub async fn me(&self, caller: &Principal) -> Result<Account, AccountLookupError> {
        caller.require_session()?;
        self.accounts.find_by_id(caller.account_id).await?.ok_or(AccountLookupError::Gone)
    }

    /// Queues a password reset email when `email` has an account, and does nothing otherwise;
    /// the caller cannot tell which happened.
    ///
    /// # Errors
    /// [`InfraError`] when storage fails.
    pub async fn forgot_password(&self, email: &EmailAddress) -> Result<(), InfraError> {
        let Some(account) = self.accounts.find_by_email(email).await? else {
            return Ok(());
        };
        let now = self.clock.now();
        let token = LinkToken::generate(self.random.as_ref());
        let record = LinkTokenRecord::issue(token.hash(), account.id(), now + self.settings.password_reset_ttl);
        let mail = password_reset_email(
            random_uuid(self.random.as_ref()),
            account.email().clone(),
            &self.settings.public_url,
            &token,
            self.settings.password_reset_ttl,
        );
        self.accounts.create_password_reset(&record, &mail, now).await
    }

    /// Checks a reset link without spending it, so the page behind it can show the form or
    /// say why not. Opening the link (or a mail scanner prefetching it) changes nothing.
    ///
    /// # Errors
    /// [`ResetPasswordError`].
    pub async fn check_password_reset(&self, token: &LinkToken) -> Result<(), ResetPasswordError> {
        self.usable_reset(token, self.clock.now()).await.map(|_| ())
    }

    async fn usable_reset(&self, token: &LinkToken, now: OffsetDateTime) -> Result<LinkTokenRecord, ResetPasswordError> {
        let record = self.accounts.find_password_reset(&token.hash()).await?.ok_or(ResetPasswordError::InvalidToken)?;
        match record.state_at(now) {
            LinkTokenState::Usable => Ok(record),
            LinkTokenState::AlreadyUsed => Err(ResetPasswordError::InvalidToken),
            LinkTokenState::Expired => Err(ResetPasswordError::Expired),
        }
    }

    /// Sets a new password with a reset link: the link is spent, every session ends, and the
    /// owner gets a confirmation email.
    ///
    /// # Errors
    /// [`ResetPasswordError`].
    pub async fn reset_password(&self, token: &LinkToken, password: &NewPassword) -> Result<(), ResetPasswordError> {
        let now = self.clock.now();
        let record = self.usable_reset(token, now).await?;
        let Some(account) = self.accounts.find_by_id(record.account_id()).await? else {
            return Err(ResetPasswordError::InvalidToken);
        };
        let password_hash = self.hasher.hash(password.as_password()).await?;
        let confirmation = password_changed_email(random_uuid(self.random.as_ref()), account.email().clone(), &self.settings.public_url);
        if self.accounts.reset_password(record.hash(), &password_hash, now, &confirmation).await? {
            Ok(())
        } else {
            Err(ResetPasswordError::InvalidToken)
        }
    }

    /// Changes the caller's password after checking the current one; the caller's session
    /// stays, every other session ends, and the owner gets a confirmation email.
    ///
    /// # Errors
    /// [`ChangePasswordError`].
    pub async fn change_password(&self, caller: &Principal, current: &Password, new: &NewPassword) -> Result<(), ChangePasswordError> {
        let keep = caller.require_session()?;
        let account = self.accounts.find_by_id(caller.account_id).await?.ok_or(ChangePasswordError::WrongPassword)?;
        if !self.hasher.verify(current, account.password_hash()).await? {
            return Err(ChangePasswordError::WrongPassword);
        }
        let password_hash = self.hasher.hash(new.as_password()).await?;
        let confirmation = password_changed_email(random_uuid(self.random.as_ref()), account.email().clone(), &self.settings.public_url);
        self.accounts.change_password(account.id(), &password_hash, keep, self.clock.now(), &confirmation).await?;
        Ok(())
    }

    fn verification_mail(&self, to: EmailAddress, token: &LinkToken) -> crate::mail::OutgoingEmail {
        verification_email(random_uuid(self.random.as_ref()), to, &self.settings.public_url, token, self.settings.verification_ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::{MockAccountRepository, MockPasswordHasher, PasswordHash};
    use crate::mail::{EmailKind, MockOutbox};
    use crate::runtime::{MockClock, MockSecureRandom};
    use crate::secret::TokenHash;
    use std::sync::atomic::{AtomicU8, Ordering};
    use time::macros::datetime;
    use time::OffsetDateTime;

    const NOW: OffsetDateTime = datetime!(2026-03-01 09:00 UTC);

    struct Ports {
        accounts: MockAccountRepository,
        outbox: MockOutbox,
        hasher: MockPasswordHasher,
    }

    impl Ports {
        fn new() -> Self {
            let mut hasher = MockPasswordHasher::new();
            hasher.expect_hash().returning(|_| Ok(PasswordHash::from_phc("$argon2id$fake".into())));
            Self { accounts: MockAccountRepository::new(), outbox: MockOutbox::new(), hasher }
        }

        fn service(self) -> AccountService {
            let mut clock = MockClock::new();
            clock.expect_now().return_const(NOW);
            // Each draw differs, so ids and tokens are distinct, yet the sequence is fixed.
            let counter = AtomicU8::new(0);
            let mut random = MockSecureRandom::new();
            random.expect_fill().returning(move |buffer| buffer.fill(counter.fetch_add(1, Ordering::Relaxed)));
            let settings = AccountSettings {
                public_url: "https://auth.example.com".into(),
                verification_ttl: Duration::hours(24),
                password_reset_ttl: Duration::hours(1),
            };
            AccountService::new(Arc::new(self.accounts), Arc::new(self.outbox), Arc::new(self.hasher), Arc::new(clock), Arc::new(random), settings)
        }
    }

    fn email() -> EmailAddress {
        EmailAddress::parse("ann@example.com").unwrap()
    }

    fn password() -> NewPassword {
        NewPassword::parse("a long enough passphrase".into()).unwrap()
    }

    #[tokio::test]
    async fn signup_stores_the_account_with_a_24_hour_token_and_the_verification_email() {
        let mut ports = Ports::new();
        ports
            .accounts
            .expect_create_unverified()
            .withf(|account, token, mail| {
                !account.is_email_verified()
                    && token.account_id() == account.id()
                    && token.expires_at() == NOW + Duration::hours(24)
                    && mail.kind() == EmailKind::Verification
                    && mail.to() == account.email()
            })
            .times(1)
            .returning(|_, _, _| Ok(()));
        ports.outbox.expect_enqueue().never();
        ports.service().signup(email(), &password()).await.unwrap();
    }

    #[tokio::test]
    async fn signup_with_the_email_of_an_unverified_account_sends_a_fresh_link_instead() {
        let mut ports = Ports::new();
        ports.accounts.expect_create_unverified().returning(|_, _, _| Err(CreateAccountError::EmailTaken));
        ports.accounts.expect_find_by_email().returning(|email| {
            Ok(Some(Account::from_storage(AccountId::from_uuid(uuid::Uuid::nil()), email.clone(), PasswordHash::from_phc("x".into()), None, NOW)))
        });
        ports.accounts.expect_replace_verification_token().withf(|_, mail, _| mail.kind() == EmailKind::Verification).times(1).returning(|_, _, _| Ok(()));
        ports.outbox.expect_enqueue().never();
        ports.service().signup(email(), &password()).await.unwrap();
    }

    #[tokio::test]
    async fn signup_with_a_taken_email_succeeds_and_notifies_the_owner() {
        let mut ports = Ports::new();
        ports.accounts.expect_create_unverified().returning(|_, _, _| Err(CreateAccountError::EmailTaken));
        ports.accounts.expect_find_by_email().returning(|email| {
            Ok(Some(Account::from_storage(AccountId::from_uuid(uuid::Uuid::nil()), email.clone(), PasswordHash::from_phc("x".into()), Some(NOW), NOW)))
        });
        ports
            .outbox
            .expect_enqueue()
            .withf(|mail, now| *now == NOW && mail.kind() == EmailKind::AccountExists && mail.to().as_str() == "ann@example.com")
            .times(1)
            .returning(|_, _| Ok(()));
        ports.service().signup(email(), &password()).await.unwrap();
    }

    #[tokio::test]
    async fn signup_hashes_the_password_even_when_the_email_is_taken() {
        let mut ports = Ports::new();
        ports.hasher = MockPasswordHasher::new();
        ports.hasher.expect_hash().times(1).returning(|_| Ok(PasswordHash::from_phc("x".into())));
        ports.accounts.expect_create_unverified().returning(|_, _, _| Err(CreateAccountError::EmailTaken));
        ports.accounts.expect_find_by_email().returning(|_| Ok(None));
        ports.outbox.expect_enqueue().returning(|_, _| Ok(()));
        ports.service().signup(email(), &password()).await.unwrap();
    }

    fn token_record(expires_at: OffsetDateTime, used_at: Option<OffsetDateTime>) -> LinkTokenRecord {
        LinkTokenRecord::from_storage(TokenHash::of(b"t"), AccountId::from_uuid(uuid::Uuid::nil()), expires_at, used_at)
    }

    fn some_token() -> LinkToken {
        LinkToken::parse(&"A".repeat(43)).unwrap()
    }

    #[tokio::test]
    async fn verify_marks_the_account_verified_with_a_fresh_token() {
        let mut ports = Ports::new();
        ports.accounts.expect_find_verification_token().returning(|_| Ok(Some(token_record(NOW + Duration::hours(1), None))));
        ports.accounts.expect_mark_email_verified().with(mockall::predicate::always(), mockall::predicate::eq(NOW)).times(1).returning(|_, _| Ok(()));
        assert_eq!(ports.service().verify_email(&some_token()).await.unwrap(), VerifyOutcome::Verified);
    }

    #[tokio::test]
    async fn verify_fails_when_the_token_expired() {
        let mut ports = Ports::new();
        ports.accounts.expect_find_verification_token().returning(|_| Ok(Some(token_record(NOW, None))));
        ports.accounts.expect_mark_email_verified().never();
        assert!(matches!(ports.service().verify_email(&some_token()).await, Err(VerifyEmailError::Expired)));
    }

    #[tokio::test]
    async fn verify_is_idempotent_for_a_used_token() {
        let mut ports = Ports::new();
        ports.accounts.expect_find_verification_token().returning(|_| Ok(Some(token_record(NOW - Duration::hours(1), Some(NOW - Duration::hours(2))))));
        ports.accounts.expect_mark_email_verified().never();
        assert_eq!(ports.service().verify_email(&some_token()).await.unwrap(), VerifyOutcome::AlreadyVerified);
    }

    #[tokio::test]
    async fn verify_fails_for_an_unknown_token() {
        let mut ports = Ports::new();
        ports.accounts.expect_find_verification_token().returning(|_| Ok(None));
        assert!(matches!(ports.service().verify_email(&some_token()).await, Err(VerifyEmailError::InvalidToken)));
    }

    #[tokio::test]
    async fn resend_does_nothing_for_an_unknown_or_verified_address() {
        let mut ports = Ports::new();
        ports.accounts.expect_find_by_email().times(1).returning(|_| Ok(None));
        ports.accounts.expect_replace_verification_token().never();
        ports.service().resend_verification(&email()).await.unwrap();

        let mut ports = Ports::new();
        ports.accounts.expect_find_by_email().returning(|email| {
            Ok(Some(Account::from_storage(AccountId::from_uuid(uuid::Uuid::nil()), email.clone(), PasswordHash::from_phc("x".into()), Some(NOW), NOW)))
        });
        ports.accounts.expect_replace_verification_token().never();
        ports.service().resend_verification(&email()).await.unwrap();
    }

    #[tokio::test]
    async fn resend_replaces_the_token_of_an_unverified_account() {
        let mut ports = Ports::new();
        ports.accounts.expect_find_by_email().returning(|email| {
            Ok(Some(Account::from_storage(AccountId::from_uuid(uuid::Uuid::nil()), email.clone(), PasswordHash::from_phc("x".into()), None, NOW)))
        });
        ports
            .accounts
            .expect_replace_verification_token()
            .withf(|token, mail, now| *now == NOW && token.expires_at() == NOW + Duration::hours(24) && mail.kind() == EmailKind::Verification)
            .times(1)
            .returning(|_, _, _| Ok(()));
        ports.service().resend_verification(&email()).await.unwrap();
    }

    fn stored_account() -> Account {
        Account::from_storage(AccountId::from_uuid(uuid::Uuid::nil()), email(), PasswordHash::from_phc("stored".into()), Some(NOW), NOW)
    }

    fn session_caller() -> Principal {
        Principal {
            account_id: AccountId::from_uuid(uuid::Uuid::nil()),
            method: crate::principal::AuthMethod::Session(crate::session::SessionId::from_uuid(uuid::Uuid::from_u128(5))),
        }
    }

    #[tokio::test]
    async fn forgot_password_queues_a_one_hour_link_only_for_a_known_address() {
        let mut ports = Ports::new();
        ports.accounts.expect_find_by_email().times(1).returning(|_| Ok(Some(stored_account())));
        ports
            .accounts
            .expect_create_password_reset()
            .withf(|token, mail, now| {
                *now == NOW
                    && token.expires_at() == NOW + Duration::hours(1)
                    && mail.kind() == EmailKind::PasswordReset
                    && mail.text_body().contains("/v1/auth/password/reset?token=")
            })
            .times(1)
            .returning(|_, _, _| Ok(()));
        ports.service().forgot_password(&email()).await.unwrap();

        let mut ports = Ports::new();
        ports.accounts.expect_find_by_email().returning(|_| Ok(None));
        ports.accounts.expect_create_password_reset().never();
        ports.service().forgot_password(&email()).await.unwrap();
    }

    #[tokio::test]
    async fn checking_a_reset_link_spends_nothing() {
        let mut ports = Ports::new();
        ports.accounts.expect_find_password_reset().returning(|_| Ok(Some(token_record(NOW + Duration::minutes(30), None))));
        ports.accounts.expect_reset_password().never();
        ports.service().check_password_reset(&some_token()).await.unwrap();
    }

    #[tokio::test]
    async fn a_used_or_expired_reset_link_is_refused() {
        let mut ports = Ports::new();
        ports.accounts.expect_find_password_reset().returning(|_| Ok(Some(token_record(NOW + Duration::minutes(30), Some(NOW)))));
        assert!(matches!(ports.service().reset_password(&some_token(), &password()).await, Err(ResetPasswordError::InvalidToken)));
        let mut ports = Ports::new();
        ports.accounts.expect_find_password_reset().returning(|_| Ok(Some(token_record(NOW, None))));
        assert!(matches!(ports.service().reset_password(&some_token(), &password()).await, Err(ResetPasswordError::Expired)));
    }

    #[tokio::test]
    async fn a_reset_sets_the_new_hash_and_confirms_by_email() {
        let mut ports = Ports::new();
        ports.accounts.expect_find_password_reset().returning(|_| Ok(Some(token_record(NOW + Duration::minutes(30), None))));
        ports.accounts.expect_find_by_id().returning(|_| Ok(Some(stored_account())));
        ports
            .accounts
            .expect_reset_password()
            .withf(|_, hash, now, mail| hash.as_phc() == "$argon2id$fake" && *now == NOW && mail.kind() == EmailKind::PasswordChanged)
            .times(1)
            .returning(|_, _, _, _| Ok(true));
        ports.service().reset_password(&some_token(), &password()).await.unwrap();
    }

    #[tokio::test]
    async fn a_reset_that_loses_a_race_is_refused() {
        let mut ports = Ports::new();
        ports.accounts.expect_find_password_reset().returning(|_| Ok(Some(token_record(NOW + Duration::minutes(30), None))));
        ports.accounts.expect_find_by_id().returning(|_| Ok(Some(stored_account())));
        ports.accounts.expect_reset_password().returning(|_, _, _, _| Ok(false));
        assert!(matches!(ports.service().reset_password(&some_token(), &password()).await, Err(ResetPasswordError::InvalidToken)));
    }

    #[tokio::test]
    async fn changing_the_password_needs_the_current_one_and_keeps_the_callers_session() {
        let mut ports = Ports::new();
        ports.accounts.expect_find_by_id().returning(|_| Ok(Some(stored_account())));
        ports.hasher.expect_verify().returning(|password, _| Ok(password.expose() == "the current one"));
        ports
            .accounts
            .expect_change_password()
            .withf(|_, _, keep, _, mail| *keep == crate::session::SessionId::from_uuid(uuid::Uuid::from_u128(5)) && mail.kind() == EmailKind::PasswordChanged)
            .times(1)
            .returning(|_, _, _, _, _| Ok(()));
        let service = ports.service();
        let wrong = service.change_password(&session_caller(), &Password::parse("not it".into()).unwrap(), &password()).await;
        assert!(matches!(wrong, Err(ChangePasswordError::WrongPassword)));
        service.change_password(&session_caller(), &Password::parse("the current one".into()).unwrap(), &password()).await.unwrap();
    }

    #[tokio::test]
    async fn an_api_key_cannot_change_the_password() {
        let caller = Principal {
            account_id: AccountId::from_uuid(uuid::Uuid::nil()),
            method: crate::principal::AuthMethod::ApiKey(crate::api_key::ApiKeyId::from_uuid(uuid::Uuid::nil())),
        };
        let outcome = Ports::new().service().change_password(&caller, &Password::parse("x".into()).unwrap(), &password()).await;
        assert!(matches!(outcome, Err(ChangePasswordError::SessionRequired(_))));
    }
}
