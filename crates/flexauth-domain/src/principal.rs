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
    /// Whether the account has a confirmed second factor, read with the session.
    has_second_factor: bool,
    /// When the session last proved a second factor: its login, or a step-up.
    second_factor_at: Option<time::OffsetDateTime>,
}

/// The operation needs a recent second factor: the account has one, and the session has not
/// proved it within the window (`POST /v1/auth/reauthenticate` with a code does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this operation needs a recent second factor; re-authenticate with a code")]
pub struct StepUpRequired;

/// The operation needs a recent authentication: the session must have logged in or re-entered
/// its password within the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this operation needs a recent authentication; re-enter the password")]
pub struct ReauthenticationRequired;

impl LiveSession {
    pub(crate) fn new(account_id: AccountId, session_id: SessionId, authenticated_at: time::OffsetDateTime) -> Self {
        Self { account_id, session_id, authenticated_at, has_second_factor: false, second_factor_at: None }
    }

    /// The same session, of an account that has a second factor or not, which the session
    /// last proved at `proved_at`.
    pub(crate) fn with_second_factor(self, has_second_factor: bool, proved_at: Option<time::OffsetDateTime>) -> Self {
        Self { has_second_factor, second_factor_at: proved_at, ..self }
    }

    /// Whether the account has a confirmed second factor.
    pub fn has_second_factor(&self) -> bool {
        self.has_second_factor
    }

    /// Whether the session proved a second factor within `window` before `now`, when the
    /// account has one; an account without a factor needs none.
    ///
    /// # Errors
    /// [`StepUpRequired`] when it did not.
    pub fn require_recent_second_factor(
        &self,
        now: time::OffsetDateTime,
        window: time::Duration,
    ) -> Result<(), StepUpRequired> {
        match (self.has_second_factor, self.second_factor_at) {
            (false, _) => Ok(()),
            (true, Some(at)) if now - at <= window => Ok(()),
            (true, _) => Err(StepUpRequired),
        }
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

    #[test]
    fn a_second_factor_is_needed_only_by_an_account_that_has_one_and_only_if_not_recent() {
        let at = datetime!(2026-03-01 09:00 UTC);
        let window = time::Duration::minutes(10);
        let live =
            LiveSession::new(AccountId::from_uuid(uuid::Uuid::nil()), SessionId::from_uuid(uuid::Uuid::nil()), at);
        assert_eq!(live.require_recent_second_factor(at + window * 10, window), Ok(()));
        let enrolled = live.with_second_factor(true, None);
        assert_eq!(enrolled.require_recent_second_factor(at, window), Err(StepUpRequired));
        let proved = live.with_second_factor(true, Some(at));
        assert_eq!(proved.require_recent_second_factor(at + window, window), Ok(()));
        assert_eq!(
            proved.require_recent_second_factor(at + window + time::Duration::seconds(1), window),
            Err(StepUpRequired)
        );
    }
}
