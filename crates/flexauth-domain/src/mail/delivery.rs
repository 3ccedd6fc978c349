use std::sync::Arc;

use time::Duration;

use super::{LeaseId, MailTransport, Outbox, SendError};
use crate::system::{random_uuid, Clock, SecureRandom};
use crate::InfraError;

/// How the delivery worker paces itself.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// How long a claimed batch stays reserved for one worker. The batch is sent one message
    /// after another, so the lease must exceed `batch_size` times the transport's deadline for
    /// one send; otherwise a slow pass could outlive its lease and another worker could send
    /// the same message again.
    pub lease: Duration,
    /// How many entries one pass claims.
    pub batch_size: u32,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        // With the SMTP transport's 60-second deadline per send: 5 × 60 s < 10 minutes.
        Self { lease: Duration::minutes(10), batch_size: 5 }
    }
}

/// What one delivery pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Messages handed to the transport.
    pub sent: u32,
    /// Messages that failed for now and were rescheduled.
    pub rescheduled: u32,
    /// Messages refused for good.
    pub failed: u32,
}

/// The first retry comes after 2 seconds; each further one waits twice as long, up to 10
/// minutes, so a mail server that comes back is used within seconds but one that stays down is
/// not hammered. Entries are never dropped for being retried often: nothing is lost.
pub fn retry_delay(failed_attempts: u32) -> Duration {
    const FIRST: i64 = 2;
    const CAP: i64 = 600;
    let exponent = failed_attempts.saturating_sub(1).min(20);
    Duration::seconds((FIRST << exponent).min(CAP))
}

/// Delivers queued emails: claims due entries, sends them, and records the outcome.
#[derive(Clone)]
pub struct DeliveryService {
    outbox: Arc<dyn Outbox>,
    transport: Arc<dyn MailTransport>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn SecureRandom>,
    settings: DeliverySettings,
}

impl std::fmt::Debug for DeliveryService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryService").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl DeliveryService {
    /// Wires the service to its ports.
    pub fn new(
        outbox: Arc<dyn Outbox>,
        transport: Arc<dyn MailTransport>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn SecureRandom>,
        settings: DeliverySettings,
    ) -> Self {
        Self { outbox, transport, clock, random, settings }
    }

    /// Runs one pass over the due entries.
    ///
    /// # Errors
    /// [`InfraError`] when the outbox fails; entries already sent in this pass stay sent, and a
    /// claimed entry whose outcome could not be recorded is retried once its lease runs out.
    pub async fn deliver_due(&self) -> Result<DeliveryReport, InfraError> {
        let now = self.clock.now();
        let lease = LeaseId::from_uuid(random_uuid(self.random.as_ref()));
        let entries = self.outbox.claim_due(now, lease, now + self.settings.lease, self.settings.batch_size).await?;
        let mut report = DeliveryReport::default();
        for entry in entries {
            let id = entry.email.id();
            let forget = entry.email.kind().forgotten_once_sent();
            match self.transport.send(&entry.email).await {
                Ok(()) if forget => {
                    self.outbox.forget(id, lease).await?;
                    report.sent += 1;
                }
                Ok(()) => {
                    self.outbox.mark_sent(id, lease, self.clock.now()).await?;
                    report.sent += 1;
                }
                Err(SendError::Transient(reason)) => {
                    let attempts = entry.attempts + 1;
                    let next = self.clock.now() + retry_delay(attempts);
                    self.outbox.schedule_retry(id, lease, next, &reason).await?;
                    report.rescheduled += 1;
                }
                Err(SendError::Permanent(_)) if forget => {
                    self.outbox.forget(id, lease).await?;
                    report.failed += 1;
                }
                Err(SendError::Permanent(reason)) => {
                    self.outbox.mark_failed(id, lease, self.clock.now(), &reason).await?;
                    report.failed += 1;
                }
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::{EmailKind, MockMailTransport, MockOutbox, OutboxEntry, OutgoingEmail};
    use crate::newtypes::EmailAddress;
    use crate::system::{MockClock, MockSecureRandom};
    use mockall::predicate::{always, eq};
    use time::macros::datetime;
    use time::OffsetDateTime;
    use uuid::Uuid;

    const NOW: OffsetDateTime = datetime!(2026-01-01 12:00 UTC);

    fn entry(attempts: u32) -> OutboxEntry {
        let email = OutgoingEmail::new(
            Uuid::from_u128(7),
            EmailKind::Verification,
            EmailAddress::parse("ann@example.com").unwrap(),
            "s".into(),
            "t".into(),
            "h".into(),
        );
        OutboxEntry { email, attempts, lease: LeaseId::from_uuid(Uuid::nil()) }
    }

    fn service(outbox: MockOutbox, transport: MockMailTransport) -> DeliveryService {
        let mut clock = MockClock::new();
        clock.expect_now().return_const(NOW);
        let mut random = MockSecureRandom::new();
        random.expect_fill().returning(|buffer| buffer.fill(9));
        DeliveryService::new(
            Arc::new(outbox),
            Arc::new(transport),
            Arc::new(clock),
            Arc::new(random),
            DeliverySettings::default(),
        )
    }

    #[test]
    fn retry_delay_starts_within_seconds_and_is_capped() {
        assert_eq!(retry_delay(1), Duration::seconds(2));
        assert_eq!(retry_delay(2), Duration::seconds(4));
        assert_eq!(retry_delay(5), Duration::seconds(32));
        assert_eq!(retry_delay(10), Duration::minutes(10));
        assert_eq!(retry_delay(1000), Duration::minutes(10));
    }

    #[tokio::test]
    async fn a_delivered_email_is_marked_sent() {
        let mut outbox = MockOutbox::new();
        outbox
            .expect_claim_due()
            .with(eq(NOW), always(), eq(NOW + Duration::minutes(10)), eq(5))
            .returning(|_, _, _, _| Ok(vec![entry(0)]));
        outbox.expect_mark_sent().with(eq(Uuid::from_u128(7)), always(), eq(NOW)).times(1).returning(|_, _, _| Ok(()));
        let mut transport = MockMailTransport::new();
        transport.expect_send().times(1).returning(|_| Ok(()));
        let report = service(outbox, transport).deliver_due().await.unwrap();
        assert_eq!(report, DeliveryReport { sent: 1, rescheduled: 0, failed: 0 });
    }

    #[tokio::test]
    async fn a_transient_failure_reschedules_with_backoff() {
        let mut outbox = MockOutbox::new();
        outbox.expect_claim_due().returning(|_, _, _, _| Ok(vec![entry(2)]));
        outbox
            .expect_schedule_retry()
            .with(eq(Uuid::from_u128(7)), always(), eq(NOW + Duration::seconds(8)), eq("connection refused"))
            .times(1)
            .returning(|_, _, _, _| Ok(()));
        let mut transport = MockMailTransport::new();
        transport.expect_send().returning(|_| Err(SendError::Transient("connection refused".into())));
        let report = service(outbox, transport).deliver_due().await.unwrap();
        assert_eq!(report.rescheduled, 1);
    }

    #[tokio::test]
    async fn a_permanent_failure_is_not_retried() {
        let mut outbox = MockOutbox::new();
        outbox.expect_claim_due().returning(|_, _, _, _| Ok(vec![entry(0)]));
        outbox.expect_mark_failed().times(1).returning(|_, _, _, _| Ok(()));
        let mut transport = MockMailTransport::new();
        transport.expect_send().returning(|_| Err(SendError::Permanent("550 no such user".into())));
        let report = service(outbox, transport).deliver_due().await.unwrap();
        assert_eq!(report.failed, 1);
    }
}
