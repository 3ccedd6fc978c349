//! Authentication of `Authorization: Bearer …` credentials, which are either JWT access
//! tokens (people) or API keys (servers).

use crate::api_key::{ApiKeySecret, ApiKeyService};
use crate::principal::Principal;
use crate::session::{AuthenticateError, SessionService};

/// Routes a bearer credential to the service that can check it: API keys by their fixed
/// prefix, anything else as an access token.
#[derive(Debug, Clone)]
pub struct BearerAuthenticator {
    sessions: SessionService,
    api_keys: ApiKeyService,
}

impl BearerAuthenticator {
    /// Combines the two authenticating services.
    pub fn new(sessions: SessionService, api_keys: ApiKeyService) -> Self {
        Self { sessions, api_keys }
    }

    /// Authenticates `credential`.
    ///
    /// # Errors
    /// The [`AuthenticateError`] of whichever check failed.
    pub async fn authenticate(&self, credential: &str) -> Result<Principal, AuthenticateError> {
        if ApiKeySecret::looks_like_api_key(credential) {
            self.api_keys.authenticate(credential).await
        } else {
            self.sessions.authenticate(credential).await
        }
    }
}
