use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{LeaseId, OutboxEntry, OutgoingEmail};
use crate::InfraError;

/// The durable queue of emails waiting for delivery.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Queues `email` for delivery from `now` on.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails; nothing is queued then.
    async fn enqueue(&self, email: &OutgoingEmail, now: OffsetDateTime) -> Result<(), InfraError>;

    /// Claims up to `limit` entries that are due at `now` and not leased by another worker,
    /// leasing each to the caller under `lease` until `lease_until`. Two workers, in this
    /// process or another instance, never claim the same entry while its lease runs.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn claim_due(
        &self,
        now: OffsetDateTime,
        lease: LeaseId,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, InfraError>;

    /// Records the delivery of entry `id` at `now` and forgets its bodies, which hold links
    /// that are secrets. Does nothing if `lease` no longer holds the entry.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn mark_sent(&self, id: Uuid, lease: LeaseId, now: OffsetDateTime) -> Result<(), InfraError>;

    /// Releases entry `id` for another attempt at `next_attempt_at`, counting the failed
    /// attempt and keeping `error` for operators. Does nothing if `lease` no longer holds it.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn schedule_retry(
        &self,
        id: Uuid,
        lease: LeaseId,
        next_attempt_at: OffsetDateTime,
        error: &str,
    ) -> Result<(), InfraError>;

    /// Gives up on entry `id` after a permanent failure, keeping `error` for operators.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn mark_failed(&self, id: Uuid, lease: LeaseId, now: OffsetDateTime, error: &str) -> Result<(), InfraError>;

    /// Deletes entry `id`, recipient and all, once it was sent or given up on: for messages
    /// whose kind says so ([`crate::mail::EmailKind::forgotten_once_sent`]). Does nothing if
    /// `lease` no longer holds it.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn forget(&self, id: Uuid, lease: LeaseId) -> Result<(), InfraError>;
}

/// Why a message was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth retrying: the server is unreachable, busy or answered with a 4xx reply.
    #[error("temporary delivery failure: {0}")]
    Transient(String),
    /// Not worth retrying: the server refused the message for good (a 5xx reply).
    #[error("permanent delivery failure: {0}")]
    Permanent(String),
}

/// Hands a message to the mail system (an SMTP relay, or files in development).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait MailTransport: Send + Sync {
    /// Delivers `email`.
    ///
    /// # Errors
    /// [`SendError::Transient`] or [`SendError::Permanent`]; the message must carry no secret
    /// from the email's bodies.
    async fn send(&self, email: &OutgoingEmail) -> Result<(), SendError>;
}
