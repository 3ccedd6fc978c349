use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::plan::{CredentialChange, EmailConfirmation};
use super::{
    Account, AccountId, AccountRequest, EmailAddress, HashError, LinkTokenRecord, Password, PasswordHash, SignupAttempt,
};
use crate::mail::{LeaseId, OutgoingEmail};
use crate::secret::TokenHash;
use crate::InfraError;

/// An account a login names, with what the login decides on besides the password.
#[derive(Debug, Clone)]
pub struct LoginCandidate {
    /// The account.
    pub account: Account,
    /// Whether it has a confirmed second factor (the login then asks for it).
    pub has_second_factor: bool,
    /// When the device the client presented last logged in to this account; `None` for no
    /// device, one it never logged in to, or one another account holds.
    pub device_last_seen_at: Option<OffsetDateTime>,
}

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

/// Storage of accounts, their sign-up attempts and their reset links.
///
/// Every method that also takes an [`OutgoingEmail`] writes it to the outbox in the same
/// transaction as the change that caused it: either both are stored or neither is.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AccountRepository: Send + Sync {
    /// Stores a new unverified account, its first sign-up attempt and the verification email.
    ///
    /// # Errors
    /// [`CreateAccountError::EmailTaken`] when the email address is registered already (a
    /// unique violation, also under concurrent sign-ups); [`CreateAccountError::Unexpected`]
    /// otherwise. Nothing is written in either case.
    async fn create_unverified(
        &self,
        account: &Account,
        attempt: &SignupAttempt,
        email: &OutgoingEmail,
    ) -> Result<(), CreateAccountError>;

    /// The account registered under `email`, if any.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn find_by_email(&self, email: &EmailAddress) -> Result<Option<Account>, InfraError>;

    /// The account registered under `email`, if any, with what a login decides on besides
    /// the password, read together (one statement on the store): whether it has a confirmed
    /// second factor, and when the device whose token has digest `device` last logged in to
    /// it.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn find_for_login(
        &self,
        email: &EmailAddress,
        device: Option<TokenHash>,
    ) -> Result<Option<LoginCandidate>, InfraError>;

    /// The account with identifier `id`, if any.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn find_by_id(&self, id: AccountId) -> Result<Option<Account>, InfraError>;

    /// Stores one more sign-up attempt for its account and queues `email` at `now`, if the
    /// account is still unverified at the instant of the write. Of the account's unused
    /// attempts only the newest `keep` stay; older ones are deleted. Returns false, writing
    /// nothing, when the address was verified meanwhile.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails; nothing is written then.
    async fn add_signup_attempt(
        &self,
        attempt: &SignupAttempt,
        email: &OutgoingEmail,
        now: OffsetDateTime,
        keep: u32,
    ) -> Result<bool, InfraError>;

    /// The sign-up attempt whose link has digest `hash`, used or not, if it exists.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn find_signup_attempt(&self, hash: &TokenHash) -> Result<Option<SignupAttempt>, InfraError>;

    /// The account's attempts whose links are unused and unexpired at `now`, newest first.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn pending_signup_attempts(
        &self,
        account_id: AccountId,
        now: OffsetDateTime,
    ) -> Result<Vec<SignupAttempt>, InfraError>;

    /// In one transaction, if the attempt's link is still unused: spends it, sets the account's
    /// password, marks the address verified (keeping an earlier verification time), moves the
    /// credential version on, and deletes every other unused attempt of the account. Returns
    /// false, writing nothing, when the link was spent already.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails; nothing is written then.
    async fn confirm_email(&self, confirmation: &EmailConfirmation) -> Result<bool, InfraError>;

    /// Stores a password reset link and queues the email that carries it, in one transaction.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails; nothing is written then.
    async fn create_password_reset(
        &self,
        token: &LinkTokenRecord,
        email: &OutgoingEmail,
        now: OffsetDateTime,
    ) -> Result<(), InfraError>;

    /// The password reset link stored under `hash`, if any.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn find_password_reset(&self, hash: &TokenHash) -> Result<Option<LinkTokenRecord>, InfraError>;

    /// Carries out `change` in one transaction: checks its guards (the reset link still
    /// unused, the credential version unchanged), sets the password and moves the credential
    /// version on, verifies the address if asked, spends every unused reset link and deletes
    /// every unused sign-up attempt of the account (so no link from before the change can set
    /// a password afterwards), ends the sessions it names, revokes the API keys made before
    /// `revoke_keys_made_before`, forgets the clients the account knew (deletes its known
    /// devices and sets its `clients_forgotten_at` to `at`), and queues its notice. Returns
    /// false, writing nothing, when a guard failed.
    ///
    /// The account row is written before the sessions, so that a login that checked the old
    /// credential either commits its session first (and the change ends it) or finds the
    /// version moved and commits nothing.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails; nothing is written then.
    async fn apply_credential_change(&self, change: &CredentialChange) -> Result<bool, InfraError>;
}

/// Slow, salted password hashing.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PasswordHasher: Send + Sync {
    /// Hashes `password` with a fresh salt.
    ///
    /// # Errors
    /// [`HashError::Overloaded`] when the pool is full; [`HashError::Unexpected`] when it fails.
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashError>;

    /// Whether `password` matches `hash`.
    ///
    /// # Errors
    /// [`HashError::Overloaded`] when the pool is full; [`HashError::Unexpected`] when `hash` is
    /// not a PHC string this hasher understands, or the pool fails.
    async fn verify(&self, password: &Password, hash: &PasswordHash) -> Result<bool, HashError>;

    /// Spends the same time as [`PasswordHasher::verify`] against a hash that matches no
    /// password, so that a login for an unknown email cannot be told apart by its timing.
    ///
    /// # Errors
    /// [`HashError::Overloaded`] when the pool is full; [`HashError::Unexpected`] when it fails.
    async fn verify_against_dummy(&self, password: &Password) -> Result<(), HashError>;
}

/// The durable queue of account requests.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AccountRequestQueue: Send + Sync {
    /// Stores `request`. One insert, whatever the address.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails; nothing is stored then.
    async fn submit(&self, request: &AccountRequest) -> Result<(), InfraError>;

    /// Claims up to `limit` requests not leased by another worker at `now`, leasing them under
    /// `lease` until `lease_until`, oldest first.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn claim(
        &self,
        now: OffsetDateTime,
        lease: LeaseId,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<AccountRequest>, InfraError>;

    /// Deletes request `id` once handled, if `lease` still holds it.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails; the request is handled again after its lease.
    async fn complete(&self, id: Uuid, lease: LeaseId) -> Result<(), InfraError>;
}
