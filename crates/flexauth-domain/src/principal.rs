//! Who made an authenticated request, and with which credential.

use crate::newtypes::{AccountId, ApiKeyId, Grants, SessionId};

/// The credential a request was authenticated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A JWT access token of this session: a person in a browser or an app.
    Session(SessionId),
    /// An API key: a server, a pipeline, a backend service.
    ApiKey(ApiKeyId),
}

/// The caller of a protected endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The account acting.
    pub account_id: AccountId,
    /// How it authenticated.
    pub method: AuthMethod,
    /// The scopes it holds: every declared one for an access token, its own for a key.
    pub grants: Grants,
}

/// The caller's session ended (a logout, a reset, a disable, reuse detection) between the check
/// of its access token and the change it asked for: nothing was changed. Shared by every
/// operation that needs the caller's session alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", SessionEnded::DESCRIPTION)]
pub struct SessionEnded;

impl SessionEnded {
    /// The sentence that tells the client, also in its `WWW-Authenticate` challenge.
    pub const DESCRIPTION: &'static str = "the session of the access token has ended";
}

/// The caller's account was deleted while its credential was still valid: nothing was
/// changed. Shared by every operation on the caller's own account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", AccountGone::DESCRIPTION)]
pub struct AccountGone;

impl AccountGone {
    /// The sentence that tells the client, also in its `WWW-Authenticate` challenge.
    pub const DESCRIPTION: &'static str = "the account no longer exists";
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

/// Proof that the caller's session was found live in storage during this request: not ended
/// by logout, a password reset or reuse detection. Only [`crate::session::SessionService`]
/// makes one, after the lookup; the operations that manage an account take it as an argument,
/// so none of them can run on a signature check alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveSession {
    account_id: AccountId,
    session_id: SessionId,
    authenticated_at: time::OffsetDateTime,
}

/// The operation needs a recent authentication: the session must have logged in or re-entered
/// its password within the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this operation needs a recent authentication; re-enter the password")]
pub struct ReauthenticationRequired;

impl LiveSession {
    pub(crate) fn new(account_id: AccountId, session_id: SessionId, authenticated_at: time::OffsetDateTime) -> Self {
        Self { account_id, session_id, authenticated_at }
    }

    /// The account acting.
    pub fn account_id(&self) -> AccountId {
        self.account_id
    }

    /// The caller's session.
    pub fn session_id(&self) -> SessionId {
        self.session_id
    }

    /// When the session last proved its password (login or re-authentication).
    pub fn authenticated_at(&self) -> time::OffsetDateTime {
        self.authenticated_at
    }

    /// Whether the session proved its password within `window` before `now`.
    ///
    /// # Errors
    /// [`ReauthenticationRequired`] when it did not.
    pub fn require_recent_authentication(
        &self,
        now: time::OffsetDateTime,
        window: time::Duration,
    ) -> Result<(), ReauthenticationRequired> {
        if now - self.authenticated_at <= window {
            Ok(())
        } else {
            Err(ReauthenticationRequired)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_recent_authentication_is_one_within_the_window() {
        let at = datetime!(2026-03-01 09:00 UTC);
        let live =
            LiveSession::new(AccountId::from_uuid(uuid::Uuid::nil()), SessionId::from_uuid(uuid::Uuid::nil()), at);
        let window = time::Duration::minutes(10);
        assert_eq!(live.require_recent_authentication(at + window, window), Ok(()));
        assert_eq!(
            live.require_recent_authentication(at + window + time::Duration::seconds(1), window),
            Err(ReauthenticationRequired)
        );
    }
}
