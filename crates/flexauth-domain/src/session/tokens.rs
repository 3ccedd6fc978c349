use time::OffsetDateTime;
use uuid::Uuid;

use super::{RefreshSecret, SessionId};
use crate::newtypes::AccountId;

/// The claims of an access token that the domain decides on. The signer adds the issuer and
/// audience it is configured with, and checks them on the way back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    /// `sub`.
    pub account_id: AccountId,
    /// `sid`.
    pub session_id: SessionId,
    /// `jti`.
    pub token_id: Uuid,
    /// `iat` and `nbf`.
    pub issued_at: OffsetDateTime,
    /// `exp`.
    pub expires_at: OffsetDateTime,
}

/// The claims of a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshClaims {
    /// `sub`.
    pub account_id: AccountId,
    /// `sid`.
    pub session_id: SessionId,
    /// The secret whose digest the session stores.
    pub secret: RefreshSecret,
    /// `iat`.
    pub issued_at: OffsetDateTime,
    /// `exp`.
    pub expires_at: OffsetDateTime,
}

/// An access token and its refresh token, as login and refresh return them.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenPair {
    /// The signed access token.
    pub access_token: String,
    /// The signed refresh token; a secret.
    pub refresh_token: String,
    /// Seconds the access token is valid for.
    pub expires_in: i64,
    /// A device token to hand the client (as a cookie) after a login from a device the account
    /// did not know yet; `None` otherwise, and always after a refresh.
    pub new_device: Option<crate::secret::DeviceToken>,
    /// `true` when a refresh presented the direct parent of the live token within the grace
    /// window and got the live pair again (a second tab, a retried request) rather than a
    /// new one; `false` after a login and a rotation.
    pub replayed: bool,
}

impl std::fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPair")
            .field("expires_in", &self.expires_in)
            .field("replayed", &self.replayed)
            .finish_non_exhaustive()
    }
}

/// Why a token was refused before any rule looked at it. The message is safe to show the
/// client (it goes into `WWW-Authenticate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    /// Not a JWT, or not one of the expected shape.
    #[error("the token is malformed")]
    Malformed,
    /// The header names another type (a refresh token offered as an access token, or the
    /// reverse) or another algorithm.
    #[error("the token is of the wrong type")]
    WrongType,
    /// Signed with a key this server does not know.
    #[error("the token was signed by an unknown key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the token signature is invalid")]
    BadSignature,
    /// Issued by someone else, or for another audience.
    #[error("the token was issued for another party")]
    WrongParty,
}
