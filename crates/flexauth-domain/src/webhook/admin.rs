use std::sync::Arc;

use time::Duration;

use super::{
    DeliveryAttempt, DestinationError, Endpoint, EndpointId, EventFilter, NewEndpoint, SigningSecret, WebhookEndpoints,
    WebhookTransport,
};
use crate::mfa::SecretSealer;
use crate::system::{random_uuid, Clock, SecureRandom};
use crate::InfraError;

/// How long a rotated-out secret keeps signing beside the new one unless the operator says
/// otherwise: a day, time to deploy the new secret to every receiver.
pub const DEFAULT_SECRET_OVERLAP: Duration = Duration::hours(24);

/// Why an operator's webhook command was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookAdminError {
    /// The URL may not receive messages.
    #[error("{0}")]
    Destination(#[from] DestinationError),
    /// No endpoint has that id.
    #[error("no such webhook endpoint")]
    NoSuchEndpoint,
    /// The store or the sealing failed.
    #[error(transparent)]
    Unexpected(#[from] InfraError),
}

/// A new endpoint and its secret, shown once.
#[derive(Debug)]
pub struct AddedEndpoint {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Its signing secret (`whsec_…`): shown to the operator this once.
    pub secret: SigningSecret,
}

/// The operator's management of webhook endpoints (`flexauth webhooks …`).
#[derive(Clone)]
pub struct WebhookAdmin {
    endpoints: Arc<dyn WebhookEndpoints>,
    transport: Arc<dyn WebhookTransport>,
    sealer: Arc<dyn SecretSealer>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn SecureRandom>,
}

impl std::fmt::Debug for WebhookAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookAdmin").finish_non_exhaustive()
    }
}

impl WebhookAdmin {
    /// Wires the service to its ports.
    pub fn new(
        endpoints: Arc<dyn WebhookEndpoints>,
        transport: Arc<dyn WebhookTransport>,
        sealer: Arc<dyn SecretSealer>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn SecureRandom>,
    ) -> Self {
        Self { endpoints, transport, sealer, clock, random }
    }

    /// Adds an endpoint at `url` receiving the events `filter` names, with a new secret.
    ///
    /// # Errors
    /// [`WebhookAdminError::Destination`] when the URL may not receive messages (its address
    /// is checked now, and again at every delivery); `Unexpected`.
    pub async fn add(&self, url: &str, filter: EventFilter) -> Result<AddedEndpoint, WebhookAdminError> {
        let url = self.transport.check_destination(url).await?;
        let id = EndpointId::from_uuid(random_uuid(self.random.as_ref()));
        let secret = SigningSecret::generate(self.random.as_ref());
        let sealed = self.sealer.seal(&super::secret_slot(id), secret.expose())?;
        let created_at = self.clock.now();
        let endpoint = NewEndpoint { id, url: url.clone(), filter: filter.clone(), secret: sealed, created_at };
        self.endpoints.add(&endpoint).await?;
        let endpoint = Endpoint {
            id,
            url,
            filter,
            created_at,
            failing_since: None,
            disabled_at: None,
            previous_secret_until: None,
        };
        Ok(AddedEndpoint { endpoint, secret })
    }

    /// Every endpoint.
    ///
    /// # Errors
    /// `Unexpected`.
    pub async fn list(&self) -> Result<Vec<Endpoint>, WebhookAdminError> {
        Ok(self.endpoints.list().await?)
    }

    /// Removes an endpoint with its waiting messages.
    ///
    /// # Errors
    /// [`WebhookAdminError::NoSuchEndpoint`]; `Unexpected`.
    pub async fn remove(&self, id: EndpointId) -> Result<(), WebhookAdminError> {
        if self.endpoints.remove(id).await? {
            Ok(())
        } else {
            Err(WebhookAdminError::NoSuchEndpoint)
        }
    }

    /// Gives an endpoint a new secret; for `overlap` both sign every message, so receivers can
    /// move to the new one without refusing a message.
    ///
    /// # Errors
    /// [`WebhookAdminError::NoSuchEndpoint`]; `Unexpected`.
    pub async fn rotate_secret(&self, id: EndpointId, overlap: Duration) -> Result<SigningSecret, WebhookAdminError> {
        let secret = SigningSecret::generate(self.random.as_ref());
        let sealed = self.sealer.seal(&super::secret_slot(id), secret.expose())?;
        if self.endpoints.rotate_secret(id, &sealed, self.clock.now() + overlap).await? {
            Ok(secret)
        } else {
            Err(WebhookAdminError::NoSuchEndpoint)
        }
    }

    /// Delivers to an endpoint again after flexauth disabled it.
    ///
    /// # Errors
    /// [`WebhookAdminError::NoSuchEndpoint`]; `Unexpected`.
    pub async fn enable(&self, id: EndpointId) -> Result<(), WebhookAdminError> {
        if self.endpoints.enable(id, self.clock.now()).await? {
            Ok(())
        } else {
            Err(WebhookAdminError::NoSuchEndpoint)
        }
    }

    /// The newest `limit` attempts to deliver to an endpoint.
    ///
    /// # Errors
    /// [`WebhookAdminError::NoSuchEndpoint`]; `Unexpected`.
    pub async fn attempts(&self, id: EndpointId, limit: u32) -> Result<Vec<DeliveryAttempt>, WebhookAdminError> {
        if !self.endpoints.list().await?.iter().any(|endpoint| endpoint.id == id) {
            return Err(WebhookAdminError::NoSuchEndpoint);
        }
        Ok(self.endpoints.attempts(id, limit).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mfa::{MockSecretSealer, SealedSecret};
    use crate::system::{MockClock, MockSecureRandom};
    use crate::webhook::{MockWebhookEndpoints, MockWebhookTransport};
    use time::macros::datetime;

    fn admin(endpoints: MockWebhookEndpoints, transport: MockWebhookTransport) -> WebhookAdmin {
        let mut sealer = MockSecretSealer::new();
        sealer.expect_seal().returning(|slot, secret| Ok(SealedSecret(format!("{slot}|{secret}"))));
        let mut clock = MockClock::new();
        clock.expect_now().return_const(datetime!(2026-12-06 12:00 UTC));
        let mut random = MockSecureRandom::new();
        random.expect_fill().returning(|buffer| buffer.fill(1));
        WebhookAdmin::new(Arc::new(endpoints), Arc::new(transport), Arc::new(sealer), Arc::new(clock), Arc::new(random))
    }

    #[tokio::test]
    async fn an_endpoint_is_stored_with_its_secret_sealed_for_its_own_slot() {
        let mut transport = MockWebhookTransport::new();
        transport.expect_check_destination().returning(|url| Ok(url.to_owned()));
        let mut endpoints = MockWebhookEndpoints::new();
        endpoints
            .expect_add()
            .withf(|endpoint| {
                endpoint.secret.0.starts_with(&format!("webhook:{}|whsec_", endpoint.id))
                    && endpoint.url == "https://hooks.example.com/a"
            })
            .times(1)
            .returning(|_| Ok(()));
        let added = admin(endpoints, transport).add("https://hooks.example.com/a", EventFilter::All).await.unwrap();
        assert!(added.secret.expose().starts_with("whsec_"));
    }

    #[tokio::test]
    async fn a_url_the_policy_refuses_stores_nothing() {
        let mut transport = MockWebhookTransport::new();
        let metadata: std::net::IpAddr = "169.254.169.254".parse().unwrap();
        transport.expect_check_destination().returning(move |_| Err(DestinationError::NotPublic(metadata)));
        let endpoints = MockWebhookEndpoints::new();
        let refused = admin(endpoints, transport).add("http://169.254.169.254/latest", EventFilter::All).await;
        assert!(matches!(refused, Err(WebhookAdminError::Destination(DestinationError::NotPublic(_)))));
    }
}
