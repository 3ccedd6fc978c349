//! Requests that must cost the same whether or not an address has an account (sign-up,
//! resend, forgot password). The request path only hashes what it must and stores one request;
//! the background worker looks the address up and does the rest, so neither the answer nor its
//! timing depends on the account.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{EmailAddress, PasswordHash};

/// What was asked for an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountRequestKind {
    /// A sign-up with the hash of the chosen password.
    Signup {
        /// The hash of the password chosen in this attempt.
        password_hash: PasswordHash,
    },
    /// A new verification link.
    ResendVerification,
    /// A password reset link.
    ForgotPassword,
}

impl AccountRequestKind {
    /// The stable name stored with the request.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Signup { .. } => "signup",
            Self::ResendVerification => "resend_verification",
            Self::ForgotPassword => "forgot_password",
        }
    }
}

/// A stored request, waiting for the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRequest {
    /// The request's identifier.
    pub id: Uuid,
    /// The address it is about.
    pub email: EmailAddress,
    /// What was asked.
    pub kind: AccountRequestKind,
    /// When it was accepted.
    pub requested_at: OffsetDateTime,
}
