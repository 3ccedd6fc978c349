use std::sync::Arc;

use time::Duration;

use super::model::VerificationTokenState;
use super::{Account, AccountId, AccountRepository, CreateAccountError, EmailAddress, NewPassword, PasswordHasher, VerificationTokenRecord};
use crate::mail::{account_exists_email, verification_email, Outbox};
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

/// Sign-up, email verification and account lookup.
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
    /// registered already, the owner is sent a notice instead and the caller sees the same
    /// success, so sign-up cannot be used to find out who has an account. The password is
    /// hashed in both cases, so the two take the same time.
    ///
    /// # Errors
    /// [`SignupError::Unexpected`] when hashing or storage fails.
    pub async fn signup(&self, email: EmailAddress, password: &NewPassword) -> Result<(), SignupError> {
        let password_hash = self.hasher.hash(password.as_password()).await?;
        let now = self.clock.now();
        let account = Account::new_unverified(AccountId::from_uuid(random_uuid(self.random.as_ref())), email, password_hash, now);
        let token = LinkToken::generate(self.random.as_ref());
        let record = VerificationTokenRecord::issue(token.hash(), account.id(), now + self.settings.verification_ttl);
        let mail = self.verification_mail(account.email().clone(), &token);
        match self.accounts.create_unverified(&account, &record, &mail).await {
            Ok(()) => Ok(()),
            Err(CreateAccountError::EmailTaken) => {
                let notice = account_exists_email(random_uuid(self.random.as_ref()), account.email().clone(), &self.settings.public_url);
                self.outbox.enqueue(&notice, now).await?;
                Ok(())
            }
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
            VerificationTokenState::AlreadyUsed => Ok(VerifyOutcome::AlreadyVerified),
            VerificationTokenState::Expired => Err(VerifyEmailError::Expired),
            VerificationTokenState::Usable => {
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
        let now = self.clock.now();
        let token = LinkToken::generate(self.random.as_ref());
        let record = VerificationTokenRecord::issue(token.hash(), account.id(), now + self.settings.verification_ttl);
        let mail = self.verification_mail(account.email().clone(), &token);
        self.accounts.replace_verification_token(&record, &mail, now).await
    }

    /// The account with identifier `id`, if it still exists.
    ///
    /// # Errors
    /// [`InfraError`] when storage fails.
    pub async fn account(&self, id: AccountId) -> Result<Option<Account>, InfraError> {
        self.accounts.find_by_id(id).await
    }

    fn verification_mail(&self, to: EmailAddress, token: &LinkToken) -> crate::mail::OutgoingEmail {
        verification_email(random_uuid(self.random.as_ref()), to, &self.settings.public_url, token, self.settings.verification_ttl.whole_hours())
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
            let settings = AccountSettings { public_url: "https://auth.example.com".into(), verification_ttl: Duration::hours(24) };
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
    async fn signup_with_a_taken_email_succeeds_and_notifies_the_owner() {
        let mut ports = Ports::new();
        ports.accounts.expect_create_unverified().returning(|_, _, _| Err(CreateAccountError::EmailTaken));
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
        ports.outbox.expect_enqueue().returning(|_, _| Ok(()));
        ports.service().signup(email(), &password()).await.unwrap();
    }

    fn token_record(expires_at: OffsetDateTime, used_at: Option<OffsetDateTime>) -> VerificationTokenRecord {
        VerificationTokenRecord::from_storage(TokenHash::of(b"t"), AccountId::from_uuid(uuid::Uuid::nil()), expires_at, used_at)
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
}
