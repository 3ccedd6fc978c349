use async_trait::async_trait;
use time::OffsetDateTime;

use super::{ApiKey, ApiKeyId};
use crate::audit::AuditEvent;
use crate::mail::OutgoingEmail;
use crate::newtypes::{AccountId, SessionId};
use crate::secret::TokenHash;
use crate::InfraError;

/// Storage of API keys, by the SHA-256 of their secret.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ApiKeyRepository: Send + Sync {
    /// Stores a new key under the digest of its secret and queues `notice` to its owner, in
    /// one transaction, if session `created_by` is still unrevoked at the instant of the write
    /// (a reset that ends the session a moment earlier stops the key), with `event` in the
    /// security log. Returns false, writing nothing, when the session was revoked.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails; nothing is written then.
    async fn create(
        &self,
        key: &ApiKey,
        hash: &TokenHash,
        notice: &OutgoingEmail,
        created_by: SessionId,
        event: &AuditEvent,
    ) -> Result<bool, InfraError>;

    /// The key whose secret has digest `hash`, unless it was revoked or its account is gone.
    /// One indexed lookup, never cached, so a revocation takes effect on the next request on
    /// every instance.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn find_active_by_hash(&self, hash: &TokenHash) -> Result<Option<ApiKey>, InfraError>;

    /// The account's keys that are not revoked, oldest first.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn list(&self, account_id: AccountId) -> Result<Vec<ApiKey>, InfraError>;

    /// Revokes key `id` of `account_id` at `now`, storing `event` in the security log in the
    /// same transaction; returns whether such a live key existed (the event is stored only
    /// then).
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn revoke(
        &self,
        account_id: AccountId,
        id: ApiKeyId,
        now: OffsetDateTime,
        event: &AuditEvent,
    ) -> Result<bool, InfraError>;

    /// Records that key `id` was used at `now`.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn touch(&self, id: ApiKeyId, now: OffsetDateTime) -> Result<(), InfraError>;
}
