//! The errors of the account use cases.

use crate::limits::RateLimited;
use crate::principal::{AccountGone, SessionEnded, SessionRequired, StepUpRequired};
use crate::InfraError;

/// Why a sign-up (or a resend or forgot request) was not accepted. Only infrastructure can
/// make it fail: a taken address looks like a success to the caller.
#[derive(Debug, thiserror::Error)]
pub enum SignupError {
    /// The password hashing pool is overloaded; nothing was done.
    #[error("the server is overloaded")]
    Overloaded,

    /// Too many such requests from this client address; nothing was stored.
    #[error(transparent)]
    Throttled(#[from] RateLimited),
    /// Storage or hashing failed; nothing was written.
    #[error("the request failed")]
    Unexpected(#[from] InfraError),
}

/// Why a verification link was refused.
#[derive(Debug, thiserror::Error)]
pub enum VerifyEmailError {
    /// The password hashing pool is overloaded; nothing was done.
    #[error("the server is overloaded")]
    Overloaded,

    /// No such token was ever issued, or a confirmation with another link discarded it.
    #[error("the verification token is not valid")]
    InvalidToken,
    /// The token expired before it was used.
    #[error("the verification token has expired")]
    Expired,
    /// This confirmation must choose the password: the link was resent, or other sign-ups for
    /// the address are pending.
    #[error("choose a password to confirm with this link")]
    PasswordRequired,
    /// Storage or hashing failed.
    #[error("verification failed")]
    Unexpected(#[from] InfraError),
}

/// Why a password reset link was refused.
#[derive(Debug, thiserror::Error)]
pub enum ResetPasswordError {
    /// The password hashing pool is overloaded; nothing was done.
    #[error("the server is overloaded")]
    Overloaded,

    /// Never issued, used already, or spent by a later password change or reset.
    #[error("the reset token is not valid")]
    InvalidToken,
    /// The link expired before it was used.
    #[error("the reset token has expired")]
    Expired,
    /// Too many resets from this client address; nothing was checked.
    #[error(transparent)]
    Throttled(#[from] RateLimited),
    #[error("resetting the password failed")]
    Unexpected(#[from] InfraError),
}

/// Why a password change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChangePasswordError {
    /// The password hashing pool is overloaded; nothing was done.
    #[error("the server is overloaded")]
    Overloaded,
    /// The account has a second factor and the session has not proved it recently enough.
    #[error(transparent)]
    StepUpRequired(#[from] StepUpRequired),

    /// The current password given is wrong. The check counted against the session's limit;
    /// the one that reaches it ends the session.
    #[error("the current password is wrong")]
    WrongPassword,
    /// Too many checks of the current password on this session, account or client address;
    /// nothing was checked.
    #[error(transparent)]
    Throttled(#[from] RateLimited),
    /// The caller's session ended (or its account is gone) before the check.
    #[error(transparent)]
    SessionEnded(#[from] SessionEnded),
    /// The password changed (a reset) between the check of the current one and the write;
    /// the reset ended this session too.
    #[error("the password was changed meanwhile")]
    CredentialsChanged,
    #[error("changing the password failed")]
    Unexpected(#[from] InfraError),
}

/// Why the caller's account could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum AccountLookupError {
    #[error(transparent)]
    SessionRequired(#[from] SessionRequired),
    /// The account was deleted after the token was issued.
    #[error(transparent)]
    AccountGone(#[from] AccountGone),
    #[error("looking up the account failed")]
    Unexpected(#[from] InfraError),
}
