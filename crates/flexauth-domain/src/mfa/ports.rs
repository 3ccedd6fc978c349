use async_trait::async_trait;
use time::OffsetDateTime;

use uuid::Uuid;

use super::{
    CeremonyId, FactorConfirmation, FactorId, MfaChallenge, NewPasskey, PasskeyAddition, PasskeyCeremony,
    PasskeyRefusal, PasskeyUse, PresentedPasskey, SealedSecret, StoredFactor, TotpSecret,
};
use crate::audit::AuditEvent;
use crate::mail::OutgoingEmail;
use crate::newtypes::AccountId;
use crate::secret::TokenHash;
use crate::InfraError;

/// Where second factors, recovery codes and login challenges are kept.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait FactorRepository: Send + Sync {
    /// Every factor of the account, confirmed or not, oldest first.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn factors(&self, account_id: AccountId) -> Result<Vec<StoredFactor>, InfraError>;

    /// Whether the account has a confirmed factor: one read, for every login and every
    /// operation that guards the account.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn has_confirmed_factor(&self, account_id: AccountId) -> Result<bool, InfraError>;

    /// Stores an unconfirmed factor, and deletes the account's unconfirmed factors created
    /// before `stale_before` (enrolments never finished).
    ///
    /// # Errors
    /// [`InfraError`] when the store fails; nothing is stored then.
    async fn add_factor(&self, factor: &StoredFactor, stale_before: OffsetDateTime) -> Result<(), InfraError>;

    /// Confirms the factor of `confirmation` with its first code's step, if it is the
    /// account's and not confirmed yet; unless its `recovery_codes` are empty, replaces the
    /// account's recovery codes by them. Records the event and queues the notice, all in one
    /// transaction. Says whether it confirmed.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails; nothing is written then.
    async fn confirm_factor(&self, confirmation: &FactorConfirmation) -> Result<bool, InfraError>;

    /// Spends TOTP time `step` of confirmed factor `id`: a compare-and-swap that succeeds only
    /// if every step accepted before was earlier, so that one code passes once, whatever the
    /// instance or the race. Says whether it was spent.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn spend_step(&self, id: FactorId, step: i64, at: OffsetDateTime) -> Result<bool, InfraError>;

    /// Removes factor `id` of `account_id`, and the recovery codes with the last confirmed
    /// factor; records `event` and queues `notice` in the same transaction. Says whether
    /// there was such a factor.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails; nothing is written then.
    async fn remove_factor(
        &self,
        account_id: AccountId,
        id: FactorId,
        event: &AuditEvent,
        notice: &OutgoingEmail,
    ) -> Result<bool, InfraError>;

    /// Removes every factor, recovery code and challenge of the account (an operator's reset),
    /// recording `event` and queueing `notice` in the same transaction.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails; nothing is written then.
    async fn remove_all(
        &self,
        account_id: AccountId,
        event: &AuditEvent,
        notice: &OutgoingEmail,
    ) -> Result<(), InfraError>;

    /// Replaces the account's recovery codes by `codes` (the old set dies), recording `event`
    /// and queueing `notice` in the same transaction.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails; nothing is written then.
    async fn replace_recovery_codes(
        &self,
        account_id: AccountId,
        codes: &[TokenHash],
        at: OffsetDateTime,
        event: &AuditEvent,
        notice: &OutgoingEmail,
    ) -> Result<(), InfraError>;

    /// How many unused recovery codes the account has.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn recovery_codes_left(&self, account_id: AccountId) -> Result<u32, InfraError>;

    /// Spends the account's unused recovery code `code`: a compare-and-swap, so a code passes
    /// once. When spent, records `event` and queues `notice` in the same transaction. Says
    /// whether it was spent.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails; nothing is written then.
    async fn spend_recovery_code(
        &self,
        account_id: AccountId,
        code: &TokenHash,
        at: OffsetDateTime,
        event: &AuditEvent,
        notice: &OutgoingEmail,
    ) -> Result<bool, InfraError>;

    /// Stores a login challenge.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn create_challenge(&self, challenge: &MfaChallenge) -> Result<(), InfraError>;

    /// The challenge whose token has digest `hash`, if it exists (expired or not).
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn find_challenge(&self, hash: &TokenHash) -> Result<Option<MfaChallenge>, InfraError>;

    /// Counts a wrong code against the challenge, and deletes it once `max_failures` are
    /// reached. Returns the failures counted, `None` if the challenge is gone.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn fail_challenge(&self, hash: &TokenHash, max_failures: u32) -> Result<Option<u32>, InfraError>;

    /// Spends the challenge: deletes it if it exists. Says whether this call deleted it, so
    /// that of two requests with one challenge only one goes on.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn spend_challenge(&self, hash: &TokenHash) -> Result<bool, InfraError>;

    /// Stores a confirmed passkey, with the account's new recovery codes when it brings
    /// them, the event and the notice, in one transaction.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails (also when the credential id is taken); nothing
    /// is written then.
    async fn add_passkey(&self, addition: &PasskeyAddition) -> Result<(), InfraError>;

    /// The passkey whose credential id is `credential_id`, if one is stored.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn factor_by_credential(&self, credential_id: &str) -> Result<Option<StoredFactor>, InfraError>;

    /// Records a use of passkey `id` at `at`, with its new stored form when its counter moved.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn record_passkey_use(
        &self,
        id: FactorId,
        stored: Option<String>,
        at: OffsetDateTime,
    ) -> Result<(), InfraError>;

    /// Stores a passkey ceremony in progress.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn create_ceremony(&self, ceremony: &PasskeyCeremony) -> Result<(), InfraError>;

    /// Takes ceremony `id` out of storage: of two requests that finish one ceremony, only one
    /// gets it. Expired or not: the caller checks.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn take_ceremony(&self, id: CeremonyId) -> Result<Option<PasskeyCeremony>, InfraError>;
}

/// The WebAuthn ceremonies of passkeys: options for the browser, and the verification of
/// what it answers. The state between the two steps is text the caller keeps.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Passkeys: Send + Sync {
    /// The `publicKey` creation options (JSON) for registering a passkey of account `user`
    /// named `user_name`, excluding the credentials it has already, and the state to keep.
    ///
    /// # Errors
    /// [`InfraError`] when the options cannot be made.
    fn start_registration(
        &self,
        user: Uuid,
        user_name: &str,
        exclude: &[String],
    ) -> Result<(String, String), InfraError>;

    /// Verifies the browser's answer (`credential`, the JSON of `PublicKeyCredential`) to the
    /// registration whose state is `state`.
    ///
    /// # Errors
    /// [`PasskeyRefusal`] when it does not verify.
    fn finish_registration(&self, credential: &str, state: &str) -> Result<NewPasskey, PasskeyRefusal>;

    /// The `publicKey` request options (JSON) for an authentication with one of `passkeys`
    /// (their stored forms), or, with none, with any discoverable passkey of this relying
    /// party; and the state to keep.
    ///
    /// # Errors
    /// [`InfraError`] when the options cannot be made.
    fn start_authentication(&self, passkeys: &[String]) -> Result<(String, String), InfraError>;

    /// The credential id and user handle of a presented credential, before it is verified.
    ///
    /// # Errors
    /// [`PasskeyRefusal::Invalid`] when it cannot be read.
    fn presented(&self, credential: &str) -> Result<PresentedPasskey, PasskeyRefusal>;

    /// Verifies `credential` against the authentication whose state is `state`, for the
    /// stored passkey `passkey`.
    ///
    /// # Errors
    /// [`PasskeyRefusal`] when it does not verify.
    fn finish_authentication(&self, credential: &str, state: &str, passkey: &str)
        -> Result<PasskeyUse, PasskeyRefusal>;
}

/// Computes the codes of a TOTP authenticator (RFC 6238: HMAC-SHA-1, 6 digits, 30-second
/// steps, what every authenticator app reads) and describes it for enrolment.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait OneTimeCodes: Send + Sync {
    /// The code of `secret` for time step `step` (seconds since the epoch over 30).
    fn code_at(&self, secret: &TotpSecret, step: u64) -> String;

    /// The secret in base32, the `otpauth://` URI naming `issuer` and `account`, and that URI
    /// as an SVG QR code.
    fn describe(&self, secret: &TotpSecret, issuer: &str, account: &str) -> (String, String, String);
}

/// Seals the secrets of second factors for storage (with the key-encryption key, when the
/// operator set one) and opens them.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait SecretSealer: Send + Sync {
    /// `secret`, sealed for storage in `slot` (a sealed value copied elsewhere does not open).
    ///
    /// # Errors
    /// [`InfraError`] when sealing fails.
    fn seal(&self, slot: &str, secret: &str) -> Result<SealedSecret, InfraError>;

    /// The secret stored in `slot`.
    ///
    /// # Errors
    /// [`InfraError`] when the value does not open (another key, damaged, or no key set).
    fn open(&self, slot: &str, sealed: &SealedSecret) -> Result<String, InfraError>;
}
