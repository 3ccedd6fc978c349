//! Authentication of `Authorization: Bearer …` credentials, which are either JWT access
//! tokens (people) or API keys (servers).

use std::collections::BTreeSet;

use time::OffsetDateTime;

use crate::api_key::{ApiKeySecret, ApiKeyService};
use crate::newtypes::Scope;
use crate::principal::Principal;
use crate::session::{AuthenticateError, SessionService};

/// A credential checked for a resource server: whose it is, the scopes it holds, and its
/// lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The caller.
    pub principal: Principal,
    /// Every scope it holds, in order: the whole vocabulary for an access token, its own
    /// declared ones for a key.
    pub scopes: Vec<Scope>,
    /// When it was issued (an access token's `iat`, a key's creation).
    pub issued_at: OffsetDateTime,
    /// When it stops working; `None` for a key without expiry.
    pub expires_at: Option<OffsetDateTime>,
}

/// Why a checked credential is refused.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// It does not authenticate.
    #[error(transparent)]
    Authenticate(#[from] AuthenticateError),
    /// It authenticates but lacks some of the scopes asked for.
    #[error("the credential lacks a scope this request needs")]
    InsufficientScope {
        /// Every scope the request asked for, as asked.
        wanted: BTreeSet<Scope>,
    },
}

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

    /// Checks `credential` for a resource server (a gateway, an introspection): it must
    /// authenticate and hold every scope of `wanted`. Touches no storage but what
    /// authentication needs: none for an access token whose session memory can vouch for, the
    /// key cache for a key.
    ///
    /// # Errors
    /// [`CheckError::Authenticate`], or [`CheckError::InsufficientScope`] (also for a scope
    /// the operator never declared, which nobody holds).
    pub async fn check(&self, credential: &str, wanted: &BTreeSet<Scope>) -> Result<Checked, CheckError> {
        let (principal, issued_at, expires_at) = if ApiKeySecret::looks_like_api_key(credential) {
            let key = self.api_keys.verify(credential).await?;
            (key.principal(), key.created_at(), key.expires_at())
        } else {
            let claims = self.sessions.verify_access_token(credential).await?;
            (claims.principal(), claims.issued_at, Some(claims.expires_at))
        };
        let vocabulary = self.api_keys.vocabulary();
        if !wanted.iter().all(|scope| principal.grants.allows(scope, vocabulary)) {
            return Err(CheckError::InsufficientScope { wanted: wanted.clone() });
        }
        let scopes = principal.grants.within(vocabulary).cloned().collect();
        Ok(Checked { principal, scopes, issued_at, expires_at })
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
