//! The errors of the session use cases.

use super::{SessionId, TokenRejection};
use crate::limits::RateLimited;
use crate::newtypes::AccountId;
use crate::principal::{SessionEnded, SessionRequired};
use crate::InfraError;

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The password hashing pool is overloaded; nothing was done.
    #[error("the server is overloaded")]
    Overloaded,

    /// Unknown email or wrong password; the two are indistinguishable, timing included.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// The password is right but the email address is not verified yet.
    #[error("the email address is not verified")]
    EmailNotVerified,
    /// The password is right but an operator disabled the account.
    #[error("the account is disabled")]
    AccountDisabled,
    /// The password is right and the account has a second factor: no tokens yet, but a
    /// challenge for the second step (`SessionService::login_second_step`).
    #[error("a second factor is required")]
    SecondFactorRequired(crate::mfa::ChallengeIssued),
    /// Too many failed logins from this address, or on this account from clients it does not
    /// know; nothing was checked.
    #[error(transparent)]
    Throttled(#[from] RateLimited),
    /// Storage, hashing or signing failed.
    #[error("login failed")]
    Unexpected(#[from] InfraError),
}

/// Why a refresh (or a logout by refresh token) failed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// Not a refresh token this server issued.
    #[error("the refresh token is invalid: {0}")]
    InvalidToken(TokenRejection),
    /// A refresh token flexauth signed whose session is not stored (erased with its account,
    /// or purged), or belongs to another account.
    #[error("the session of the refresh token is unknown")]
    UnknownSession,
    /// The token or its session is past its lifetime.
    #[error("the refresh token has expired")]
    Expired,
    /// The session was revoked (logout, or an earlier reuse).
    #[error("the session was revoked")]
    Revoked,
    /// The session refreshes too often.
    #[error(transparent)]
    Throttled(#[from] RateLimited),
    /// A spent token was presented: the session is now revoked. An audit event.
    #[error("a spent refresh token was presented; the session is revoked")]
    Reused {
        /// The account whose session was revoked.
        account_id: AccountId,
        /// The revoked session.
        session_id: SessionId,
    },
    /// Storage or signing failed.
    #[error("refresh failed")]
    Unexpected(#[from] InfraError),
}

/// Why a bearer credential does not authenticate a request.
#[derive(Debug, thiserror::Error)]
pub enum AuthenticateError {
    /// The access token failed a format, type, key, signature or party check.
    #[error(transparent)]
    Rejected(#[from] TokenRejection),
    /// The access token is past its `exp`, or the API key past its expiry.
    #[error("the credential has expired")]
    Expired,
    /// The token's `nbf` lies in the future.
    #[error("the access token is not valid yet")]
    NotYetValid,
    /// The session of the access token has ended (revoked, or deleted with its account).
    #[error("the session was revoked")]
    SessionRevoked,
    /// Not of the API key format, or its checksum is wrong.
    #[error("the API key is malformed")]
    MalformedApiKey,
    /// No live API key has this secret (never issued, revoked, or its account is gone).
    #[error("the API key is not valid")]
    UnknownApiKey,
    /// Storage failed.
    #[error("authentication failed")]
    Unexpected(#[from] InfraError),
}

/// Why an operation that manages the account cannot run for this caller.
#[derive(Debug, thiserror::Error)]
pub enum LiveSessionError {
    /// The caller used an API key; managing the account needs a person's JWT.
    #[error(transparent)]
    SessionRequired(#[from] SessionRequired),
    /// The access token's signature is fine, but its session has ended (logout, password
    /// reset or change, reuse detection) or expired.
    #[error(transparent)]
    SessionEnded(#[from] SessionEnded),
    #[error("looking up the session failed")]
    Unexpected(#[from] InfraError),
}

/// Why a re-authentication failed.
#[derive(Debug, thiserror::Error)]
pub enum ReauthenticateError {
    /// The password hashing pool is overloaded; nothing was done.
    #[error("the server is overloaded")]
    Overloaded,

    /// The password is not the account's.
    #[error("the password is wrong")]
    WrongPassword,
    /// The session ended meanwhile.
    #[error(transparent)]
    SessionEnded(#[from] SessionEnded),
    /// Too many re-authentications of this session.
    #[error(transparent)]
    Throttled(#[from] RateLimited),
    #[error("re-authentication failed")]
    Unexpected(#[from] InfraError),
}

/// Why listing or revoking sessions failed.
#[derive(Debug, thiserror::Error)]
pub enum ManageSessionsError {
    /// Sessions are managed with a JWT only.
    #[error(transparent)]
    SessionRequired(#[from] SessionRequired),
    /// The caller's own session has ended.
    #[error(transparent)]
    SessionEnded(#[from] SessionEnded),
    /// No such session belongs to the caller.
    #[error("no such session")]
    NotFound,
    #[error("managing sessions failed")]
    Unexpected(#[from] InfraError),
}
