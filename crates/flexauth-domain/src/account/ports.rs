use async_trait::async_trait;
use time::OffsetDateTime;

use super::{Account, AccountId, EmailAddress, LinkTokenRecord, PasswordHash};
use crate::mail::OutgoingEmail;
use crate::secret::TokenHash;
use crate::session::SessionId;
use crate::InfraError;

/// Why an account could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateAccountError {
    /// An account with this email address exists already; nothing was written.
    #[error("an account with this email address exists")]
    EmailTaken,
    /// The store failed; nothing was written.
    #[error(transparent)]
    Unexpected(#[from] InfraError),
}

/// Storage of accounts and their email verification tokens.
///
/// Every method that also takes an [`OutgoingEmail`] writes it to the outbox in the same
/// transaction as the change that caused it: either both are stored or neither is.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AccountRepository: Send + Sync {
    /// Stores a new unverified account, its verification token and the verification email.
    ///
    /// # Errors
    /// [`CreateAccountError::EmailTaken`] when the email address is registered already (a
    /// unique violation, also under concurrent sign-ups); [`CreateAccountError::Unexpected`]
    /// otherwise. Nothing is written in either case.
    async fn create_unverified(&self, account: &Account, token: &LinkTokenRecord, email: &OutgoingEmail) -> Result<(), CreateAccountError>;

    /// The account registered under `email`, if any.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn find_by_email(&self, email: &EmailAddress) -> Result<Option<Account>, InfraError>;

    /// The account with identifier `id`, if any.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn find_by_id(&self, id: AccountId) -> Result<Option<Account>, InfraError>;

    /// Stores a new verification token for its account, deleting the account's earlier unused
    /// tokens (the newest link is the one that works), and queues `email` at `now`.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails; nothing is written then.
    async fn replace_verification_token(&self, token: &LinkTokenRecord, email: &OutgoingEmail, now: OffsetDateTime) -> Result<(), InfraError>;

    /// The verification token stored under `hash`, if any.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn find_verification_token(&self, hash: &TokenHash) -> Result<Option<LinkTokenRecord>, InfraError>;

    /// Marks the token as used and its account as verified at `now`, in one transaction.
    /// Already used tokens and already verified accounts keep their first timestamps.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails; nothing is written then.
    async fn mark_email_verified(&self, hash: &TokenHash, now: OffsetDateTime) -> Result<(), InfraError>;

    /// Stores a password reset token and queues the email that carries it, in one transaction.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails; nothing is written then.
    async fn create_password_reset(&self, token: &LinkTokenRecord, email: &OutgoingEmail, now: OffsetDateTime) -> Result<(), InfraError>;

    /// The password reset token stored under `hash`, if any.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn find_password_reset(&self, hash: &TokenHash) -> Result<Option<LinkTokenRecord>, InfraError>;

    /// In one transaction: spends the reset token (only if still unused), sets the account's
    /// password hash, marks its email verified (the link proved control of it), revokes every
    /// session of the account, and queues `confirmation`. Returns false, writing nothing, when
    /// the token was spent already (a concurrent reset won).
    ///
    /// # Errors
    /// [`InfraError`] when the store fails; nothing is written then.
    async fn reset_password(
        &self,
        hash: &TokenHash,
        password_hash: &PasswordHash,
        now: OffsetDateTime,
        confirmation: &OutgoingEmail,
    ) -> Result<bool, InfraError>;

    /// In one transaction: sets the account's password hash, revokes every session of the
    /// account except `keep`, and queues `confirmation`.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails; nothing is written then.
    async fn change_password(
        &self,
        account_id: AccountId,
        password_hash: &PasswordHash,
        keep: SessionId,
        now: OffsetDateTime,
        confirmation: &OutgoingEmail,
    ) -> Result<(), InfraError>;
}
