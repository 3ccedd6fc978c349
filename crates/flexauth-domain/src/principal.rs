//! Who made an authenticated request, and with which credential.

use crate::account::AccountId;
use crate::api_key::ApiKeyId;
use crate::session::SessionId;

/// The credential a request was authenticated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A JWT access token of this session: a person in a browser or an app.
    Session(SessionId),
    /// An API key: a server, a pipeline, a backend service.
    ApiKey(ApiKeyId),
}

/// The caller of a protected endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// The account acting.
    pub account_id: AccountId,
    /// How it authenticated.
    pub method: AuthMethod,
}

/// The operation is reserved to people logged in with a session (JWT): an API key may not
/// manage keys, change the password or manage sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this operation requires a JWT access token, not an API key")]
pub struct SessionRequired;

impl Principal {
    /// The session, when the caller authenticated with a JWT access token.
    ///
    /// # Errors
    /// [`SessionRequired`] for an API key.
    pub fn require_session(&self) -> Result<SessionId, SessionRequired> {
        match self.method {
            AuthMethod::Session(session_id) => Ok(session_id),
            AuthMethod::ApiKey(_) => Err(SessionRequired),
        }
    }
}
