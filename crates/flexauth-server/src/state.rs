//! What every handler can reach.

use std::sync::Arc;

use flexauth_domain::account::AccountService;
use flexauth_domain::api_key::ApiKeyService;
use flexauth_domain::bearer::BearerAuthenticator;
use flexauth_domain::session::SessionService;
use flexauth_domain::usage::UsageService;
use flexauth_jwt::KeyRing;
use flexauth_store::Store;

/// The services the handlers call, and the few adapters they read directly.
#[derive(Debug, Clone)]
pub struct AppState {
    pub accounts: AccountService,
    pub sessions: SessionService,
    pub mfa: flexauth_domain::mfa::MfaService,
    pub api_keys: ApiKeyService,
    pub bearer: BearerAuthenticator,
    pub introspection: flexauth_domain::introspection::IntrospectionService,
    /// The `iss` and `aud` of access tokens, which introspection reports for every credential.
    pub token_issuer: String,
    pub token_audience: String,
    pub usage: UsageService,
    pub audit: flexauth_domain::audit::AuditService,
    pub lifecycle: flexauth_domain::lifecycle::LifecycleService,
    /// The signing keys, for the JWKS endpoint.
    pub tokens: Arc<KeyRing>,
    /// The JWKS's `Cache-Control: max-age`, in seconds.
    pub jwks_max_age: i64,
    /// For the readiness probe.
    pub store: Store,
    /// Wakes this instance's background worker after a request it must handle was stored.
    pub worker_wakeup: Arc<tokio::sync::Notify>,
    /// The proxies whose forwarding headers name the client.
    pub trusted_proxies: Arc<[crate::client::Network]>,
    /// The forwarding header those proxies write.
    pub forwarded_header: crate::client::ForwardedHeader,
    /// How the device cookie is set.
    pub device_cookie: DeviceCookie,
    /// CORS origins and the refresh cookie.
    pub browser: crate::browser::BrowserPolicy,
    /// This application's metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Set when a graceful shutdown began: `/readyz` answers 503 from then on.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

/// The name of the cookie that lets the account recognise a device it logged in from.
pub const DEVICE_COOKIE: &str = "flexauth_device";

/// The attributes of the device cookie: sent only to the login endpoint, never readable by
/// scripts, never sent cross-site, `Secure` whenever the public URL is https.
#[derive(Debug, Clone)]
pub struct DeviceCookie {
    /// `Path`: the login endpoint under the public URL's path.
    pub path: String,
    /// `Secure`.
    pub secure: bool,
    /// `Max-Age` in seconds: as long as a device stays known.
    pub max_age: i64,
}

impl DeviceCookie {
    /// The `Set-Cookie` value that hands `device` to the client.
    pub fn set(&self, device: &flexauth_domain::secret::DeviceToken) -> String {
        format!(
            "{DEVICE_COOKIE}={}; Path={}; Max-Age={}; HttpOnly; SameSite=Strict{}",
            device.expose(),
            self.path,
            self.max_age,
            if self.secure { "; Secure" } else { "" }
        )
    }
}

impl AppState {
    /// The address of the client that made `request`, as text for the domain.
    pub fn client_address(&self, request: &actix_web::HttpRequest) -> Option<String> {
        crate::client::client_address(request, &self.trusted_proxies, self.forwarded_header)
            .map(|address| address.to_string())
    }

    /// The client of `request` as the security log and the session list name it: its address
    /// (the peer, or what trusted proxies forwarded) and its `User-Agent`.
    pub fn client_info(&self, request: &actix_web::HttpRequest) -> flexauth_domain::newtypes::ClientInfo {
        let user_agent = request.headers().get("user-agent").and_then(|value| value.to_str().ok());
        flexauth_domain::newtypes::ClientInfo::new(user_agent, self.client_address(request))
    }

    /// Lets the background worker handle a just-stored account request now rather than at
    /// its next poll.
    pub fn wake_worker(&self) {
        self.worker_wakeup.notify_one();
    }
}
