//! The wiring of the domain's services to the adapters: one [`Wiring`] holds what they share
//! (the store behind every storage port, the password hasher, the clock, the random source, the
//! settings), and each service is built from it by one named method, so neither the server nor
//! the operator's commands pass ports by position.

use std::sync::Arc;

use flexauth_domain::account::{AccountService, AccountSettings, PasswordHasher};
use flexauth_domain::api_key::{ApiKeyService, ApiKeySettings};
use flexauth_domain::lifecycle::{LifecycleService, LifecycleSettings};
use flexauth_domain::limits::LimitSettings;
use flexauth_domain::mail::Letters;
use flexauth_domain::mfa::{MfaService, MfaSettings};
use flexauth_domain::session::{SessionService, SessionSettings, TokenSigner};
use flexauth_domain::system::{Clock, SecureRandom};
use flexauth_domain::webhook::{WebhookAdmin, WebhookDelivery, WebhookTransport};
use flexauth_store::Store;

use crate::config::Settings;

/// What the services share.
#[derive(Clone)]
pub struct Wiring {
    /// Every storage port.
    pub store: Arc<Store>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn SecureRandom>,
    /// The emails: the public URL and the templates.
    pub letters: Letters,
    /// The passkey ceremonies of the relying party; `None` when passkeys are off.
    pub passkeys: Option<Arc<dyn flexauth_domain::mfa::Passkeys>>,
    pub settings: Settings,
}

impl std::fmt::Debug for Wiring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wiring").field("store", &self.store).finish_non_exhaustive()
    }
}

impl Wiring {
    fn limits(&self) -> LimitSettings {
        LimitSettings { enabled: self.settings.rate_limits, ..LimitSettings::default() }
    }

    /// Sign-up, verification, resends and password resets.
    pub fn accounts(&self) -> AccountService {
        let store = &self.store;
        AccountService::new(
            store.clone(),
            store.clone(),
            store.clone(),
            self.hasher.clone(),
            store.clone(),
            self.clock.clone(),
            self.random.clone(),
            self.letters.clone(),
            AccountSettings {
                limits: self.limits(),
                verification_ttl: self.settings.verification_ttl,
                password_reset_ttl: self.settings.password_reset_ttl,
            },
        )
    }

    /// Second factors: TOTP enrolment, recovery codes, and the proofs a login's second step
    /// and a step-up check.
    pub fn mfa(&self) -> MfaService {
        let settings = &self.settings;
        MfaService::new(
            self.store.clone(),
            self.store.clone(),
            Arc::new(flexauth_totp::Totp),
            Arc::new(flexauth_jwt::SecretSealing::new(settings.key_encryption_key.clone())),
            self.passkeys.clone(),
            self.clock.clone(),
            self.random.clone(),
            self.letters.clone(),
            MfaSettings {
                // What an authenticator app shows beside the account: the site's host.
                issuer: settings.public_url.host_str().unwrap_or("flexauth").to_owned(),
                reauthentication_window: settings.reauthentication_window,
                step_up_window: settings.reauthentication_window,
                ..MfaSettings::default()
            },
        )
    }

    /// Login, refresh, logout, sessions and access tokens, signed by `tokens`.
    pub fn sessions(&self, tokens: Arc<dyn TokenSigner>) -> SessionService {
        let (store, settings) = (&self.store, &self.settings);
        SessionService::new(
            store.clone(),
            store.clone(),
            self.hasher.clone(),
            tokens,
            store.clone(),
            store.clone(),
            store.clone(),
            self.clock.clone(),
            self.random.clone(),
            self.mfa(),
            self.letters.clone(),
            SessionSettings {
                access_ttl: settings.access_token_ttl,
                refresh_ttl: settings.refresh_token_ttl,
                session_lifetime: settings.session_lifetime,
                reuse_grace: settings.refresh_reuse_grace,
                verify_session_on_request: settings.verify_session_on_request,
                limits: self.limits(),
                ..SessionSettings::default()
            },
        )
    }

    /// The transport that posts webhooks, with the operator's destination policy.
    ///
    /// # Errors
    /// When the HTTP client cannot be set up (its TLS backend).
    pub fn webhook_transport(&self) -> Result<Arc<dyn WebhookTransport>, String> {
        let transport = flexauth_webhooks::HttpWebhookTransport::new(
            self.settings.webhook_destinations,
            self.settings.webhook_timeout,
        )?;
        Ok(Arc::new(transport))
    }

    fn webhook_sealer(&self) -> Arc<dyn flexauth_domain::mfa::SecretSealer> {
        Arc::new(flexauth_jwt::SecretSealing::new(self.settings.key_encryption_key.clone()))
    }

    /// The delivery of webhook messages, by the worker of every instance.
    pub fn webhook_delivery(&self, transport: Arc<dyn WebhookTransport>) -> WebhookDelivery {
        WebhookDelivery::new(
            self.store.clone(),
            transport,
            self.webhook_sealer(),
            self.clock.clone(),
            self.random.clone(),
            self.settings.webhook_delivery.clone(),
        )
    }

    /// The operator's management of webhook endpoints.
    pub fn webhook_admin(&self, transport: Arc<dyn WebhookTransport>) -> WebhookAdmin {
        WebhookAdmin::new(self.store.clone(), transport, self.webhook_sealer(), self.clock.clone(), self.random.clone())
    }

    /// API keys.
    pub fn api_keys(&self) -> ApiKeyService {
        ApiKeyService::new(
            self.store.clone(),
            self.store.clone(),
            self.clock.clone(),
            self.random.clone(),
            self.letters.clone(),
            ApiKeySettings {
                reauthentication_window: self.settings.reauthentication_window,
                scopes: self.settings.api_key_scopes.clone(),
            },
        )
    }

    /// The account's life after sign-up: disabling, erasing, export, address changes.
    pub fn lifecycle(&self) -> LifecycleService {
        let store = &self.store;
        LifecycleService::new(
            store.clone(),
            store.clone(),
            store.clone(),
            store.clone(),
            store.clone(),
            store.clone(),
            self.hasher.clone(),
            store.clone(),
            self.clock.clone(),
            self.random.clone(),
            self.letters.clone(),
            LifecycleSettings {
                reauthentication_window: self.settings.reauthentication_window,
                limits: self.limits(),
                ..LifecycleSettings::default()
            },
        )
    }
}
