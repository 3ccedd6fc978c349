use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::{RefreshSecret, SessionId};
use crate::newtypes::{AccountId, AuthenticationMethods, Grants};
use crate::principal::{AuthMethod, Principal};

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
    /// `iat`.
    pub issued_at: OffsetDateTime,
    /// `nbf`: flexauth signs it equal to `iat`, and refuses a token before it all the same,
    /// as every other verifier of the token does.
    pub not_before: OffsetDateTime,
    /// `exp`.
    pub expires_at: OffsetDateTime,
    /// `amr` and `acr`: how the session's login was made.
    pub methods: AuthenticationMethods,
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

impl AccessClaims {
    /// The caller a request made with the token is: its owner, holding every declared scope.
    pub fn principal(&self) -> Principal {
        Principal { account_id: self.account_id, method: AuthMethod::Session(self.session_id), grants: Grants::Every }
    }

    /// Checks the token's times at `now`: it is expired from `exp` on, and not valid yet while
    /// `nbf` or `iat` lies more than `leeway` ahead (a server whose clock runs fast issued it,
    /// or whoever signed it set `nbf` later).
    ///
    /// # Errors
    /// [`TokenTimeError::Expired`] or [`TokenTimeError::NotYetValid`].
    pub fn check(&self, now: OffsetDateTime, leeway: Duration) -> Result<(), TokenTimeError> {
        if now >= self.expires_at {
            return Err(TokenTimeError::Expired);
        }
        if now + leeway < self.issued_at.max(self.not_before) {
            return Err(TokenTimeError::NotYetValid);
        }
        Ok(())
    }
}

impl RefreshClaims {
    /// Whether the token is expired at `now`: from its `exp` on. Its session may end sooner;
    /// [`Session::decide`](super::Session::decide) says so.
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        now >= self.expires_at
    }
}

/// Why an access token's times refuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenTimeError {
    /// `exp` is past.
    #[error("the token has expired")]
    Expired,
    /// `nbf` or `iat` is ahead of the clock by more than the leeway.
    #[error("the token is not valid yet")]
    NotYetValid,
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

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const T0: OffsetDateTime = datetime!(2026-05-01 10:00 UTC);

    fn access(issued_at: OffsetDateTime) -> AccessClaims {
        AccessClaims {
            account_id: AccountId::from_uuid(Uuid::nil()),
            session_id: SessionId::from_uuid(Uuid::nil()),
            token_id: Uuid::nil(),
            issued_at,
            not_before: issued_at,
            expires_at: issued_at + Duration::hours(1),
            methods: AuthenticationMethods::password(),
        }
    }

    #[test]
    fn an_access_token_expires_at_its_exp() {
        let leeway = Duration::seconds(30);
        assert_eq!(access(T0).check(T0 + Duration::minutes(59), leeway), Ok(()));
        assert_eq!(access(T0).check(T0 + Duration::hours(1), leeway), Err(TokenTimeError::Expired));
    }

    #[test]
    fn an_access_token_from_a_fast_clock_is_accepted_within_the_leeway_only() {
        let leeway = Duration::seconds(30);
        assert_eq!(access(T0 + Duration::seconds(30)).check(T0, leeway), Ok(()));
        assert_eq!(access(T0 + Duration::seconds(31)).check(T0, leeway), Err(TokenTimeError::NotYetValid));
    }

    #[test]
    fn an_access_token_is_not_valid_before_its_nbf_whatever_its_iat() {
        let leeway = Duration::seconds(30);
        let later = AccessClaims { not_before: T0 + Duration::minutes(10), ..access(T0) };
        assert_eq!(later.check(T0, leeway), Err(TokenTimeError::NotYetValid));
        assert_eq!(later.check(T0 + Duration::minutes(10) - leeway, leeway), Ok(()));
    }
}
