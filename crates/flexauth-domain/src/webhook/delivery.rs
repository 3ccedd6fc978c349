use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use time::{Duration, OffsetDateTime};

use super::{
    AttemptResult, DeliveryAttempt, EndpointId, QueuedMessage, SigningSecret, TransportOutcome, WebhookQueue,
    WebhookTransport,
};
use crate::mail::LeaseId;
use crate::mfa::SecretSealer;
use crate::system::{random_array, random_uuid, Clock, SecureRandom};
use crate::InfraError;

/// How the delivery worker paces itself.
#[derive(Debug, Clone)]
pub struct WebhookDeliverySettings {
    /// The waits after each failed attempt; after the last one the message is given up. The
    /// default is Standard Webhooks' suggestion: 5 seconds, 5 minutes, 30 minutes, 2 hours,
    /// 5 hours, 10 hours and 10 hours again, about 28 hours in all.
    pub retry_delays: Vec<Duration>,
    /// How long an endpoint may fail every delivery before flexauth stops delivering to it.
    pub disable_after: Duration,
    /// How long a claimed message stays reserved: longer than the transport's deadline, so a
    /// worker still posting is never overtaken by another.
    pub lease: Duration,
    /// How many messages to one endpoint are in flight at once on this instance (and how many
    /// of each endpoint one pass claims): an endpoint that hangs ties up no more than these,
    /// and the others are delivered beside it.
    pub in_flight_per_endpoint: usize,
}

impl Default for WebhookDeliverySettings {
    fn default() -> Self {
        Self {
            retry_delays: [5, 300, 1800, 7200, 18_000, 36_000, 36_000].map(Duration::seconds).to_vec(),
            disable_after: Duration::days(5),
            lease: Duration::minutes(2),
            in_flight_per_endpoint: 4,
        }
    }
}

impl WebhookDeliverySettings {
    /// The wait before the attempt after `failed_attempts` failures, with a jitter of up to a
    /// fifth either way (so the retries of many messages that failed together spread out), or
    /// `None` when the message is given up.
    pub fn retry_delay(&self, failed_attempts: u32, random: &dyn SecureRandom) -> Option<Duration> {
        let index = usize::try_from(failed_attempts).ok()?.checked_sub(1)?;
        let base = *self.retry_delays.get(index)?;
        let [byte] = random_array::<1>(random);
        // -20 % to +20 % in 256 steps.
        let factor = f64::from(byte) / 255.0 * 0.4 - 0.2;
        Some(base + base * factor)
    }
}

/// Delivers webhook messages: claims due ones, signs and posts them, and records the outcome.
/// Each message is posted on its own task, so a receiver that hangs holds up only its own
/// messages (at most [`WebhookDeliverySettings::in_flight_per_endpoint`] of them), never a
/// request or another endpoint.
#[derive(Clone)]
pub struct WebhookDelivery {
    queue: Arc<dyn WebhookQueue>,
    transport: Arc<dyn WebhookTransport>,
    sealer: Arc<dyn SecretSealer>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn SecureRandom>,
    settings: WebhookDeliverySettings,
    in_flight: Arc<Mutex<HashMap<EndpointId, usize>>>,
}

impl std::fmt::Debug for WebhookDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookDelivery").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// Counts a message in flight to its endpoint until dropped.
struct InFlight {
    endpoint: EndpointId,
    counts: Arc<Mutex<HashMap<EndpointId, usize>>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.counts.lock() {
            if let Some(count) = counts.get_mut(&self.endpoint) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    counts.remove(&self.endpoint);
                }
            }
        }
    }
}

impl WebhookDelivery {
    /// Wires the service to its ports.
    pub fn new(
        queue: Arc<dyn WebhookQueue>,
        transport: Arc<dyn WebhookTransport>,
        sealer: Arc<dyn SecretSealer>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn SecureRandom>,
        settings: WebhookDeliverySettings,
    ) -> Self {
        Self { queue, transport, sealer, clock, random, settings, in_flight: Arc::default() }
    }

    /// Claims the due messages this instance has room for. Each comes with a guard that
    /// counts it in flight until [`WebhookDelivery::deliver`] is done with it.
    ///
    /// # Errors
    /// [`InfraError`] when the queue fails.
    pub async fn claim(&self) -> Result<Vec<ClaimedMessage>, InfraError> {
        let now = self.clock.now();
        let lease = LeaseId::from_uuid(random_uuid(self.random.as_ref()));
        let full: Vec<EndpointId> = self
            .in_flight
            .lock()
            .map_err(|_| InfraError::new("the in-flight counts are poisoned"))?
            .iter()
            .filter(|(_, count)| **count >= self.settings.in_flight_per_endpoint)
            .map(|(endpoint, _)| *endpoint)
            .collect();
        let per_endpoint = u32::try_from(self.settings.in_flight_per_endpoint).unwrap_or(u32::MAX);
        let messages = self.queue.claim_due(now, lease, now + self.settings.lease, per_endpoint, &full).await?;
        let mut claimed = Vec::with_capacity(messages.len());
        let mut overflow = Vec::new();
        {
            let mut counts = self.in_flight.lock().map_err(|_| InfraError::new("the in-flight counts are poisoned"))?;
            for message in messages {
                let count = counts.entry(message.endpoint_id).or_default();
                // A batch may hold more messages of one endpoint than it has room for: those
                // are given back at once, for the next pass or another instance.
                if *count >= self.settings.in_flight_per_endpoint {
                    overflow.push((message.endpoint_id, message.event.id));
                    continue;
                }
                *count += 1;
                claimed.push(ClaimedMessage {
                    guard: InFlight { endpoint: message.endpoint_id, counts: self.in_flight.clone() },
                    message,
                    lease,
                });
            }
        }
        if !overflow.is_empty() {
            self.queue.release(&overflow, lease).await?;
        }
        Ok(claimed)
    }

    /// Signs and posts one claimed message, and records how it went.
    ///
    /// # Errors
    /// [`InfraError`] when the outcome cannot be recorded; the message is tried again once
    /// its lease runs out.
    pub async fn deliver(&self, claimed: ClaimedMessage) -> Result<(AttemptResult, bool), InfraError> {
        let ClaimedMessage { message, lease, guard } = claimed;
        let secrets = self.open_secrets(&message);
        let started = self.clock.now();
        let outcome = match &secrets {
            Ok(secrets) => self.transport.post(&message, secrets, started).await,
            Err(error) => TransportOutcome::Failed(format!("the signing secret does not open: {error}")),
        };
        let now = self.clock.now();
        let failed_attempts = message.attempts + 1;
        let (result, status, error) = match outcome {
            TransportOutcome::Answered { status, .. } if (200..300).contains(&status) => {
                (AttemptResult::Delivered, Some(status), None)
            }
            TransportOutcome::Answered { status, excerpt } => {
                let error =
                    if excerpt.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {excerpt}") };
                (self.after_failure(failed_attempts, now), Some(status), Some(error))
            }
            TransportOutcome::Failed(error) => (self.after_failure(failed_attempts, now), None, Some(error)),
        };
        let delivered = matches!(result, AttemptResult::Delivered);
        // Failing since the first failure in a row; a failure after `disable_after` of them
        // disables the endpoint.
        let failing_since = if delivered { None } else { Some(message.endpoint_failing_since.unwrap_or(started)) };
        let disable = failing_since.is_some_and(|since| {
            message.endpoint_failing_since.is_some() && now - since >= self.settings.disable_after
        });
        let attempt = DeliveryAttempt {
            endpoint_id: message.endpoint_id,
            event_id: message.event.id,
            event_type: message.event.event_type,
            attempt: failed_attempts,
            at: started,
            duration: now - started,
            status,
            error,
            result: result.clone(),
            endpoint_failing_since: failing_since,
            disable_endpoint: disable,
        };
        self.queue.record_attempt(&attempt, lease).await?;
        drop(guard);
        Ok((result, disable))
    }

    fn after_failure(&self, failed_attempts: u32, now: OffsetDateTime) -> AttemptResult {
        match self.settings.retry_delay(failed_attempts, self.random.as_ref()) {
            Some(delay) => AttemptResult::RetryAt(now + delay),
            None => AttemptResult::GivenUp,
        }
    }

    fn open_secrets(&self, message: &QueuedMessage) -> Result<Vec<SigningSecret>, InfraError> {
        let slot = super::secret_slot(message.endpoint_id);
        message.secrets.iter().map(|sealed| self.sealer.open(&slot, sealed).map(SigningSecret::from_storage)).collect()
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &WebhookDeliverySettings {
        &self.settings
    }

    /// The waiting messages, for the metrics.
    ///
    /// # Errors
    /// [`InfraError`] when the queue fails.
    pub async fn backlog(&self) -> Result<super::WebhookBacklog, InfraError> {
        self.queue.backlog().await
    }
}

/// A message this worker holds, counted in flight until delivered.
pub struct ClaimedMessage {
    /// The message.
    pub message: QueuedMessage,
    lease: LeaseId,
    guard: InFlight,
}

impl std::fmt::Debug for ClaimedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedMessage").field("message", &self.message).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mfa::{MockSecretSealer, SealedSecret};
    use crate::newtypes::{AccountId, ClientInfo};
    use crate::system::{MockClock, MockSecureRandom};
    use crate::webhook::{EventType, MockWebhookQueue, MockWebhookTransport, WebhookEvent};
    use time::macros::datetime;
    use uuid::Uuid;

    const NOW: OffsetDateTime = datetime!(2026-12-06 12:00 UTC);
    const ENDPOINT: EndpointId = EndpointId::from_uuid(Uuid::from_u128(9));

    fn message(attempts: u32, failing_since: Option<OffsetDateTime>) -> QueuedMessage {
        QueuedMessage {
            event: WebhookEvent {
                id: Uuid::from_u128(1),
                event_type: EventType::AccountCreated,
                at: NOW,
                account_id: AccountId::from_uuid(Uuid::from_u128(2)),
                email: None,
                session_id: None,
                key_id: None,
                factor_id: None,
                reason: None,
                client: ClientInfo::default(),
            },
            endpoint_id: ENDPOINT,
            url: "https://hooks.example.com/flexauth".into(),
            secrets: vec![SealedSecret("whsec_AAAA".into())],
            attempts,
            endpoint_failing_since: failing_since,
        }
    }

    fn delivery(
        queue: MockWebhookQueue,
        outcome: TransportOutcome,
        settings: WebhookDeliverySettings,
    ) -> WebhookDelivery {
        let mut transport = MockWebhookTransport::new();
        transport.expect_post().returning(move |_, _, _| outcome.clone());
        let mut sealer = MockSecretSealer::new();
        sealer.expect_open().returning(|_, sealed| Ok(sealed.0.clone()));
        let mut clock = MockClock::new();
        clock.expect_now().return_const(NOW);
        let mut random = MockSecureRandom::new();
        // The middle of the jitter range: no jitter.
        random.expect_fill().returning(|buffer| buffer.fill(128));
        WebhookDelivery::new(
            Arc::new(queue),
            Arc::new(transport),
            Arc::new(sealer),
            Arc::new(clock),
            Arc::new(random),
            settings,
        )
    }

    fn claiming(messages: Vec<QueuedMessage>) -> MockWebhookQueue {
        let mut queue = MockWebhookQueue::new();
        queue.expect_claim_due().return_once(move |_, _, _, _, _| Ok(messages));
        queue
    }

    #[tokio::test]
    async fn a_2xx_delivers_and_clears_the_endpoints_failing_since() {
        let mut queue = claiming(vec![message(0, Some(NOW - Duration::hours(1)))]);
        queue
            .expect_record_attempt()
            .withf(|attempt, _| {
                attempt.result == AttemptResult::Delivered
                    && attempt.status == Some(204)
                    && attempt.endpoint_failing_since.is_none()
                    && !attempt.disable_endpoint
            })
            .times(1)
            .returning(|_, _| Ok(true));
        let service = delivery(
            queue,
            TransportOutcome::Answered { status: 204, excerpt: String::new() },
            WebhookDeliverySettings::default(),
        );
        let claimed = service.claim().await.unwrap();
        assert_eq!(service.deliver(claimed.into_iter().next().unwrap()).await.unwrap().0, AttemptResult::Delivered);
    }

    #[tokio::test]
    async fn a_failure_is_retried_on_the_schedule_and_the_last_one_gives_up() {
        let settings = WebhookDeliverySettings::default();
        let mut queue = claiming(vec![message(0, None), message(7, None)]);
        queue
            .expect_record_attempt()
            .withf(|attempt, _| {
                attempt.attempt == 1
                    && attempt.result
                        == AttemptResult::RetryAt(
                            NOW + Duration::seconds(5) + Duration::seconds(5) * (f64::from(128u8) / 255.0 * 0.4 - 0.2),
                        )
                    && attempt.error.as_deref() == Some("HTTP 500: down")
                    && attempt.endpoint_failing_since == Some(NOW)
            })
            .times(1)
            .returning(|_, _| Ok(true));
        queue
            .expect_record_attempt()
            .withf(|attempt, _| attempt.attempt == 8 && attempt.result == AttemptResult::GivenUp)
            .times(1)
            .returning(|_, _| Ok(true));
        let service =
            delivery(queue, TransportOutcome::Answered { status: 500, excerpt: "down".into() }, settings.clone());
        for claimed in service.claim().await.unwrap() {
            service.deliver(claimed).await.unwrap();
        }
        let total: Duration = settings.retry_delays.iter().copied().sum();
        assert!(total > Duration::hours(24) && total < Duration::hours(30), "about a day: {total}");
    }

    #[tokio::test]
    async fn an_endpoint_failing_for_longer_than_allowed_is_disabled() {
        let mut queue = claiming(vec![message(2, Some(NOW - Duration::days(6)))]);
        queue
            .expect_record_attempt()
            .withf(|attempt, _| {
                attempt.disable_endpoint && attempt.endpoint_failing_since == Some(NOW - Duration::days(6))
            })
            .times(1)
            .returning(|_, _| Ok(true));
        let service =
            delivery(queue, TransportOutcome::Failed("connection refused".into()), WebhookDeliverySettings::default());
        let claimed = service.claim().await.unwrap().into_iter().next().unwrap();
        assert!(service.deliver(claimed).await.unwrap().1);
    }

    #[tokio::test]
    async fn an_endpoint_with_its_messages_in_flight_is_skipped_and_freed_when_they_finish() {
        let settings = WebhookDeliverySettings { in_flight_per_endpoint: 1, ..WebhookDeliverySettings::default() };
        let mut queue = MockWebhookQueue::new();
        let mut calls = 0;
        queue.expect_claim_due().returning(move |_, _, _, _, skip| {
            calls += 1;
            match calls {
                // Two of the same endpoint: only one is taken on, the other given back.
                1 => Ok(vec![message(0, None), message(0, None)]),
                2 => {
                    assert_eq!(skip, &[ENDPOINT][..]);
                    Ok(Vec::new())
                }
                _ => {
                    assert!(skip.is_empty());
                    Ok(Vec::new())
                }
            }
        });
        queue.expect_record_attempt().returning(|_, _| Ok(true));
        queue
            .expect_release()
            .withf(|messages, _| messages == [(ENDPOINT, Uuid::from_u128(1))])
            .times(1)
            .returning(|_, _| Ok(()));
        let service = delivery(queue, TransportOutcome::Answered { status: 200, excerpt: String::new() }, settings);
        let first = service.claim().await.unwrap();
        assert_eq!(first.len(), 1);
        assert!(service.claim().await.unwrap().is_empty());
        for claimed in first {
            service.deliver(claimed).await.unwrap();
        }
        assert!(service.claim().await.unwrap().is_empty());
    }
}
