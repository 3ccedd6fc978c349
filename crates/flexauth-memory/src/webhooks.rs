use async_trait::async_trait;
use flexauth_domain::mail::LeaseId;
use flexauth_domain::mfa::SealedSecret;
use flexauth_domain::webhook::{
    AttemptResult, DeliveryAttempt, Endpoint, EndpointId, NewEndpoint, QueuedMessage, WebhookBacklog, WebhookEndpoints,
    WebhookQueue,
};
use flexauth_domain::InfraError;
use time::OffsetDateTime;

use crate::state::EndpointRow;
use crate::{MemoryError, MemoryStore};

#[async_trait]
impl WebhookEndpoints for MemoryStore {
    async fn add(&self, endpoint: &NewEndpoint) -> Result<(), InfraError> {
        let mut state = self.lock()?;
        if state.webhook_endpoints.contains_key(&endpoint.id) {
            return Err(MemoryError::Duplicate("webhook_endpoints").into());
        }
        let row = EndpointRow {
            endpoint: Endpoint {
                id: endpoint.id,
                url: endpoint.url.clone(),
                filter: endpoint.filter.clone(),
                created_at: endpoint.created_at,
                failing_since: None,
                disabled_at: None,
                previous_secret_until: None,
            },
            secret: endpoint.secret.clone(),
            previous_secret: None,
        };
        state.webhook_endpoints.insert(endpoint.id, row);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<Endpoint>, InfraError> {
        let state = self.lock()?;
        let mut endpoints: Vec<Endpoint> = state.webhook_endpoints.values().map(|row| row.endpoint.clone()).collect();
        endpoints.sort_by_key(|endpoint| (endpoint.created_at, endpoint.id.as_uuid()));
        Ok(endpoints)
    }

    async fn remove(&self, id: EndpointId) -> Result<bool, InfraError> {
        let mut state = self.lock()?;
        let removed = state.webhook_endpoints.remove(&id).is_some();
        state.webhook_messages.retain(|(endpoint, _), _| *endpoint != id);
        state.webhook_attempts.retain(|attempt| attempt.endpoint_id != id);
        Ok(removed)
    }

    async fn rotate_secret(
        &self,
        id: EndpointId,
        secret: &SealedSecret,
        previous_until: OffsetDateTime,
    ) -> Result<bool, InfraError> {
        let mut state = self.lock()?;
        let Some(row) = state.webhook_endpoints.get_mut(&id) else { return Ok(false) };
        row.previous_secret = Some(std::mem::replace(&mut row.secret, secret.clone()));
        row.endpoint.previous_secret_until = Some(previous_until);
        Ok(true)
    }

    async fn enable(&self, id: EndpointId, now: OffsetDateTime) -> Result<bool, InfraError> {
        let mut state = self.lock()?;
        let Some(row) = state.webhook_endpoints.get_mut(&id) else { return Ok(false) };
        row.endpoint.disabled_at = None;
        row.endpoint.failing_since = None;
        for ((endpoint, _), message) in &mut state.webhook_messages {
            if *endpoint == id {
                message.next_attempt_at = now;
                message.failed_at = None;
                message.attempts = 0;
            }
        }
        Ok(true)
    }

    async fn attempts(&self, id: EndpointId, limit: u32) -> Result<Vec<DeliveryAttempt>, InfraError> {
        let state = self.lock()?;
        let mut attempts: Vec<DeliveryAttempt> =
            state.webhook_attempts.iter().filter(|attempt| attempt.endpoint_id == id).cloned().collect();
        attempts.sort_by_key(|attempt| std::cmp::Reverse(attempt.at));
        attempts.truncate(limit as usize);
        for attempt in &mut attempts {
            // As the store reads them back: the endpoint's health is not kept per attempt.
            attempt.endpoint_failing_since = None;
            attempt.disable_endpoint = false;
        }
        Ok(attempts)
    }
}

#[async_trait]
impl WebhookQueue for MemoryStore {
    async fn claim_due(
        &self,
        now: OffsetDateTime,
        lease: LeaseId,
        lease_until: OffsetDateTime,
        per_endpoint: u32,
        skip: &[EndpointId],
    ) -> Result<Vec<QueuedMessage>, InfraError> {
        let mut state = self.lock()?;
        let mut due: Vec<(OffsetDateTime, (EndpointId, uuid::Uuid))> = state
            .webhook_messages
            .iter()
            .filter(|((endpoint, _), message)| {
                message.failed_at.is_none()
                    && message.next_attempt_at <= now
                    && message.lease_until.is_none_or(|until| until <= now)
                    && !skip.contains(endpoint)
                    && state.webhook_endpoints.get(endpoint).is_some_and(|row| row.endpoint.disabled_at.is_none())
            })
            .map(|(key, message)| (message.next_attempt_at, *key))
            .collect();
        due.sort_by_key(|(at, (endpoint, event))| (*at, endpoint.as_uuid(), *event));
        // A few of each endpoint, the oldest first.
        let mut taken: std::collections::HashMap<EndpointId, u32> = std::collections::HashMap::new();
        due.retain(|(_, (endpoint, _))| {
            let count = taken.entry(*endpoint).or_default();
            *count += 1;
            *count <= per_endpoint
        });
        let mut claimed = Vec::with_capacity(due.len());
        for (_, key) in due {
            let Some(row) = state.webhook_endpoints.get(&key.0) else { continue };
            let mut secrets = vec![row.secret.clone()];
            if let (Some(previous), Some(until)) = (&row.previous_secret, row.endpoint.previous_secret_until) {
                if until > now {
                    secrets.push(previous.clone());
                }
            }
            let (url, failing_since) = (row.endpoint.url.clone(), row.endpoint.failing_since);
            let Some(message) = state.webhook_messages.get_mut(&key) else { continue };
            message.lease_id = Some(lease);
            message.lease_until = Some(lease_until);
            claimed.push(QueuedMessage {
                event: message.event.clone(),
                endpoint_id: key.0,
                url,
                secrets,
                attempts: message.attempts,
                endpoint_failing_since: failing_since,
            });
        }
        Ok(claimed)
    }

    async fn release(&self, messages: &[(EndpointId, uuid::Uuid)], lease: LeaseId) -> Result<(), InfraError> {
        let mut state = self.lock()?;
        for key in messages {
            if let Some(message) = state.webhook_messages.get_mut(key).filter(|message| message.lease_id == Some(lease))
            {
                message.lease_id = None;
                message.lease_until = None;
            }
        }
        Ok(())
    }

    async fn record_attempt(&self, attempt: &DeliveryAttempt, lease: LeaseId) -> Result<bool, InfraError> {
        let mut state = self.lock()?;
        let key = (attempt.endpoint_id, attempt.event_id);
        let finished = attempt.at + attempt.duration;
        match state.webhook_messages.get_mut(&key) {
            Some(message) if message.lease_id == Some(lease) => match attempt.result {
                AttemptResult::Delivered => {
                    state.webhook_messages.remove(&key);
                }
                AttemptResult::RetryAt(next) => {
                    message.attempts += 1;
                    message.next_attempt_at = next;
                    message.lease_id = None;
                    message.lease_until = None;
                }
                AttemptResult::GivenUp => {
                    message.attempts += 1;
                    message.failed_at = Some(finished);
                    message.lease_id = None;
                    message.lease_until = None;
                }
            },
            _ => return Ok(false),
        }
        let mut stored = attempt.clone();
        stored.error = stored.error.map(|error| error.chars().take(500).collect());
        state.webhook_attempts.push(stored);
        if let Some(row) = state.webhook_endpoints.get_mut(&attempt.endpoint_id) {
            if attempt.disable_endpoint {
                row.endpoint.disabled_at = row.endpoint.disabled_at.or(Some(finished));
            } else if attempt.endpoint_failing_since.is_none() {
                row.endpoint.failing_since = None;
            } else {
                row.endpoint.failing_since = row.endpoint.failing_since.or(attempt.endpoint_failing_since);
            }
        }
        Ok(true)
    }

    async fn backlog(&self) -> Result<WebhookBacklog, InfraError> {
        let state = self.lock()?;
        let pending: Vec<OffsetDateTime> = state
            .webhook_messages
            .values()
            .filter(|message| message.failed_at.is_none())
            .map(|message| message.queued_at)
            .collect();
        Ok(WebhookBacklog {
            pending: pending.len() as u64,
            oldest: pending.iter().min().copied(),
            disabled_endpoints: state
                .webhook_endpoints
                .values()
                .filter(|row| row.endpoint.disabled_at.is_some())
                .count() as u64,
        })
    }
}
