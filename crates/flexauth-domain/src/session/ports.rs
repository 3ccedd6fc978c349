use async_trait::async_trait;
use time::OffsetDateTime;

use super::{AccessClaims, RefreshClaims, RevocationReason, Rotation, Session, SessionId, TokenRejection};
use crate::audit::AuditEvent;
use crate::mail::OutgoingEmail;
use crate::newtypes::{AccountId, AuthenticationMethods};
use crate::secret::TokenHash;
use crate::InfraError;

/// Storage of sessions.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait SessionRepository: Send + Sync {
    /// Stores a new session, but only if the account's credential version is still
    /// `credential_version`, the one read with the password that was just checked. Returns
    /// false, storing nothing, when the password changed in between (a reset committed during
    /// the login). The check and the insert are one transaction that locks the account row, so
    /// a concurrent reset either sees the new session (and ends it) or makes this return false.
    /// `event` (the successful login) is stored in the same transaction, and the device
    /// whose token has digest `device` is remembered as having logged in to the account (as
    /// [`remember_device`](Self::remember_device) does), only if the session was stored. On
    /// PostgreSQL all of it is one statement.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn create(
        &self,
        session: &Session,
        credential_version: i64,
        event: &AuditEvent,
        device: &TokenHash,
    ) -> Result<bool, InfraError>;

    /// The session with identifier `id`, revoked or not, if it exists.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn find(&self, id: SessionId) -> Result<Option<Session>, InfraError>;

    /// Applies `rotation` if, at the instant of the write, the session is not revoked and its
    /// live token is still `rotation.expected_current` (an atomic compare-and-swap, also across
    /// instances). Returns whether it applied; on success the old live token becomes the
    /// previous one and the nonce is stored.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn rotate(&self, rotation: &Rotation) -> Result<bool, InfraError>;

    /// Revokes session `id` at `now` unless it is revoked already. Returns whether this call
    /// revoked it.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn revoke(&self, id: SessionId, now: OffsetDateTime, reason: RevocationReason) -> Result<bool, InfraError>;

    /// Revokes session `id` like [`SessionRepository::revoke`] and, in the same transaction,
    /// queues `notice` to its owner and stores `event` in the security log. Returns whether this
    /// call revoked it; the notice and the event are stored only then.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails; nothing is written then.
    async fn revoke_with_notice(
        &self,
        id: SessionId,
        now: OffsetDateTime,
        reason: RevocationReason,
        notice: &OutgoingEmail,
        event: &AuditEvent,
    ) -> Result<bool, InfraError>;

    /// Records that session `id` proved the password again at `now`, unless it is revoked.
    /// Returns whether it did.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn mark_authenticated(&self, id: SessionId, now: OffsetDateTime) -> Result<bool, InfraError>;

    /// Records that session `id` proved a second factor at `now`, its login now counting as
    /// made with `methods`, unless it is revoked. Returns whether it did.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn mark_second_factor(
        &self,
        id: SessionId,
        now: OffsetDateTime,
        methods: AuthenticationMethods,
    ) -> Result<bool, InfraError>;

    /// Whether the account logged in from client address `ip` (as stored with its sessions) at
    /// or after `since`: such a client is known to the account.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn logged_in_from(&self, account_id: AccountId, ip: &str, since: OffsetDateTime) -> Result<bool, InfraError>;

    /// Whether the device whose token has digest `device` logged in to the account at or after
    /// `since`.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn device_known(
        &self,
        account_id: AccountId,
        device: &TokenHash,
        since: OffsetDateTime,
    ) -> Result<bool, InfraError>;

    /// Records that the device with digest `device` logged in to the account at `now`.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn remember_device(
        &self,
        account_id: AccountId,
        device: &TokenHash,
        now: OffsetDateTime,
    ) -> Result<(), InfraError>;

    /// The account's sessions that are not revoked and not past their lifetime at `now`,
    /// newest first.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn list_live(&self, account_id: AccountId, now: OffsetDateTime) -> Result<Vec<Session>, InfraError>;

    /// Forgets the clients the account knew: deletes its known devices and sets its
    /// `clients_forgotten_at` to `now`, so that no login from before counts any more (see
    /// [`crate::account::Account::clients_known_since`]).
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn forget_known_clients(&self, account_id: AccountId, now: OffsetDateTime) -> Result<(), InfraError>;

    /// Revokes every live session of the account except `keep`; returns how many it revoked.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn revoke_all(
        &self,
        account_id: AccountId,
        keep: Option<SessionId>,
        now: OffsetDateTime,
        reason: RevocationReason,
    ) -> Result<u64, InfraError>;
}

/// What an instance knows, without a database read, of the sessions that ended recently:
/// the announcements of every revocation (and of every live session deleted with its account),
/// kept for at least an access-token lifetime, so that every endpoint refuses an ended
/// session's access token at once.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait EndedSessions: Send + Sync {
    /// Whether session `id` has ended: `Some(true)` or `Some(false)` when this instance can
    /// vouch for what it knows at this moment, `None` when it cannot (the announcements do not
    /// reach it now) and storage must be asked instead. Answered from memory.
    fn has_ended(&self, id: SessionId) -> Option<bool>;

    /// Whether session `id` was heard to end, however stale the news: the answer while
    /// storage itself cannot be reached.
    fn last_heard_ended(&self, id: SessionId) -> bool;
}

/// Signs and verifies flexauth's tokens. Verification checks the format, algorithm, type,
/// key, signature, issuer and audience; the time claims are left to the domain, which judges
/// them against its own clock.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait TokenSigner: Send + Sync {
    /// Signs an access token. Signing is deterministic: the same claims give the same bytes
    /// under the same key.
    ///
    /// # Errors
    /// [`InfraError`] when the signing backend fails.
    fn sign_access(&self, claims: &AccessClaims) -> Result<String, InfraError>;

    /// Signs a refresh token, deterministically like [`TokenSigner::sign_access`].
    ///
    /// # Errors
    /// [`InfraError`] when the signing backend fails.
    fn sign_refresh(&self, claims: &RefreshClaims) -> Result<String, InfraError>;

    /// Verifies an access token and returns its claims.
    ///
    /// # Errors
    /// A [`TokenRejection`] naming the first check that failed.
    fn verify_access(&self, token: &str) -> Result<AccessClaims, TokenRejection>;

    /// Verifies a refresh token and returns its claims.
    ///
    /// # Errors
    /// A [`TokenRejection`] naming the first check that failed.
    fn verify_refresh(&self, token: &str) -> Result<RefreshClaims, TokenRejection>;
}
