use async_trait::async_trait;
use time::OffsetDateTime;

use super::{
    DeliveryAttempt, DestinationError, Endpoint, EndpointId, NewEndpoint, QueuedMessage, SigningSecret, WebhookBacklog,
};
use crate::mail::LeaseId;
use crate::mfa::SealedSecret;
use crate::InfraError;

/// Storage of the operator's webhook endpoints.
///
/// The events themselves are queued by the other repositories, in the transaction of the
/// change that causes them: every method that takes an [`crate::audit::AuditEvent`] also
/// queues the event [`super::WebhookEvent::from_audit`] makes of it, every session it ends
/// queues a [`super::WebhookEvent::session_ended`], every API key it revokes a
/// [`super::WebhookEvent::key_revoked`], one message per endpoint that subscribes to the type
/// and is not disabled at that instant.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait WebhookEndpoints: Send + Sync {
    /// Stores a new endpoint; it receives the events queued from now on.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn add(&self, endpoint: &NewEndpoint) -> Result<(), InfraError>;

    /// Every endpoint, oldest first.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn list(&self) -> Result<Vec<Endpoint>, InfraError>;

    /// Deletes endpoint `id` with its undelivered messages and its attempts. Returns whether it
    /// existed.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn remove(&self, id: EndpointId) -> Result<bool, InfraError>;

    /// Makes `secret` the endpoint's signing secret; the one it replaces keeps signing beside it
    /// until `previous_until`. Returns whether the endpoint exists.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn rotate_secret(
        &self,
        id: EndpointId,
        secret: &SealedSecret,
        previous_until: OffsetDateTime,
    ) -> Result<bool, InfraError>;

    /// Delivers to endpoint `id` again after it was disabled: clears `disabled_at` and
    /// `failing_since`; every message kept for it, waiting or given up on, is due at once with
    /// its retry schedule started over. Returns whether it exists.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn enable(&self, id: EndpointId, now: OffsetDateTime) -> Result<bool, InfraError>;

    /// The newest `limit` attempts to deliver to endpoint `id`, newest first.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn attempts(&self, id: EndpointId, limit: u32) -> Result<Vec<DeliveryAttempt>, InfraError>;
}

/// The queue of webhook messages, one per event and endpoint.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait WebhookQueue: Send + Sync {
    /// Claims, for each endpoint with messages due at `now` (at most 100 endpoints a call),
    /// its `per_endpoint` oldest due messages that are not given up on and not leased by
    /// another worker, skipping endpoints that are disabled or in `skip` (the endpoints this
    /// worker has enough messages in flight for), and leases each to the caller until
    /// `lease_until`. Taking a few of each endpoint, not the oldest of all, keeps an endpoint
    /// with a backlog from holding up the others. Two workers, in this process or another
    /// instance, never claim the same message while its lease runs. A message that cannot be
    /// read back (a type of a newer version) is not returned.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn claim_due(
        &self,
        now: OffsetDateTime,
        lease: LeaseId,
        lease_until: OffsetDateTime,
        per_endpoint: u32,
        skip: &[EndpointId],
    ) -> Result<Vec<QueuedMessage>, InfraError>;

    /// Gives back messages this worker claimed under `lease` and will not post now (it has no
    /// room for their endpoint): they are due again at once, for any worker.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails; the messages then wait for their lease to run out.
    async fn release(&self, messages: &[(EndpointId, uuid::Uuid)], lease: LeaseId) -> Result<(), InfraError>;

    /// Records `attempt` of a message this worker holds under `lease`: its outcome, the
    /// message's next state (delivered, due again at a later time, or given up), and the
    /// endpoint's health (failing since when, or disabled). Does nothing, and returns false,
    /// if `lease` no longer holds the message.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn record_attempt(&self, attempt: &DeliveryAttempt, lease: LeaseId) -> Result<bool, InfraError>;

    /// How many messages wait, the oldest of them, and how many endpoints are disabled.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn backlog(&self) -> Result<WebhookBacklog, InfraError>;
}

/// What a delivery attempt got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportOutcome {
    /// The receiver answered with this status (any status: the service judges it).
    Answered {
        /// The HTTP status.
        status: u16,
        /// The start of the body, for operators, when the status was not a success.
        excerpt: String,
    },
    /// No answer: the address was refused, the connection failed, or the deadline passed.
    Failed(String),
}

/// Posts signed messages to receivers (HTTP).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait WebhookTransport: Send + Sync {
    /// Posts `message` to its endpoint, signed with each of `secrets`, with `sent_at` as its
    /// `webhook-timestamp`. Must not follow redirects, read more of an answer than a short
    /// excerpt, or connect to an address the destination policy refuses.
    async fn post(
        &self,
        message: &QueuedMessage,
        secrets: &[SigningSecret],
        sent_at: OffsetDateTime,
    ) -> TransportOutcome;

    /// Checks that messages may be posted to `url` (scheme, no credentials, every address its
    /// host resolves to allowed by the destination policy) and returns it normalised.
    ///
    /// # Errors
    /// The [`DestinationError`] that refuses it.
    async fn check_destination(&self, url: &str) -> Result<String, DestinationError>;
}
