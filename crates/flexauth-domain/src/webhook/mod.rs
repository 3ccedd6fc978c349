//! Webhooks: what happened in flexauth, told to the operator's application as signed
//! Standard Webhooks messages.
//!
//! An event is written in the same transaction as the change that causes it, one message per
//! endpoint that subscribes to its type, so no event is sent for a change that rolled back and
//! none is lost for one that committed. A worker on every instance claims due messages under a
//! lease, posts each on its own task and retries failures on a schedule of about a day; a
//! receiver that checks the stable `webhook-id` handles each event exactly once.

mod admin;
mod delivery;
mod endpoint;
mod event;
mod ports;

pub use admin::{AddedEndpoint, WebhookAdmin, WebhookAdminError, DEFAULT_SECRET_OVERLAP};
pub use delivery::{ClaimedMessage, WebhookDelivery, WebhookDeliverySettings};
pub use endpoint::{
    is_public, DestinationError, DestinationPolicy, Endpoint, EndpointId, EventFilter, EventFilterError, SigningSecret,
};
pub use event::{ending_announcement, EventType, KeyRevocationReason, WebhookEvent};
#[cfg(any(test, feature = "mocks"))]
pub use ports::{MockWebhookEndpoints, MockWebhookQueue, MockWebhookTransport};
pub use ports::{TransportOutcome, WebhookEndpoints, WebhookQueue, WebhookTransport};

use time::{Duration, OffsetDateTime};

use crate::mfa::SealedSecret;

/// The slot an endpoint's signing secret is sealed for: a sealed secret copied to another
/// endpoint does not open.
pub fn secret_slot(endpoint: EndpointId) -> String {
    format!("webhook:{endpoint}")
}

/// A new endpoint, as stored.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    /// Its identifier.
    pub id: EndpointId,
    /// Where messages are posted.
    pub url: String,
    /// What it receives.
    pub filter: EventFilter,
    /// Its signing secret, sealed for [`secret_slot`].
    pub secret: SealedSecret,
    /// When it was added.
    pub created_at: OffsetDateTime,
}

/// A message claimed for delivery: the event, and the endpoint it goes to.
#[derive(Debug, Clone)]
pub struct QueuedMessage {
    /// What happened.
    pub event: WebhookEvent,
    /// The endpoint.
    pub endpoint_id: EndpointId,
    /// Where to post it.
    pub url: String,
    /// The endpoint's signing secrets, sealed: the current one, and the one it replaced while
    /// that still signs.
    pub secrets: Vec<SealedSecret>,
    /// The attempts made so far.
    pub attempts: u32,
    /// Since when every delivery to the endpoint has failed, if the last one did.
    pub endpoint_failing_since: Option<OffsetDateTime>,
}

/// How an attempt ended for its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// The receiver answered 2xx.
    Delivered,
    /// It failed; the message is due again at this instant.
    RetryAt(OffsetDateTime),
    /// It failed and was the last attempt: the message is kept, marked failed.
    GivenUp,
}

impl AttemptResult {
    /// The stable name shown by `flexauth webhooks deliveries` and in the metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::RetryAt(_) => "retrying",
            Self::GivenUp => "failed",
        }
    }
}

/// One attempt to deliver a message, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    /// The endpoint.
    pub endpoint_id: EndpointId,
    /// The event (the message's `webhook-id`).
    pub event_id: uuid::Uuid,
    /// Its type.
    pub event_type: EventType,
    /// Which attempt this was, from 1.
    pub attempt: u32,
    /// When it started.
    pub at: OffsetDateTime,
    /// How long it took.
    pub duration: Duration,
    /// The receiver's status, if it answered.
    pub status: Option<u16>,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// What became of the message.
    pub result: AttemptResult,
    /// The endpoint's failing-since after this attempt: cleared by a success.
    pub endpoint_failing_since: Option<OffsetDateTime>,
    /// Whether this attempt disables the endpoint (it failed for too long).
    pub disable_endpoint: bool,
}

/// The messages waiting, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WebhookBacklog {
    /// Messages neither delivered nor given up.
    pub pending: u64,
    /// When the oldest of them was queued.
    pub oldest: Option<OffsetDateTime>,
    /// Endpoints disabled after failing for too long.
    pub disabled_endpoints: u64,
}
