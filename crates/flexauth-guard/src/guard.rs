use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use crate::introspection::Introspection;
use crate::jwks::Jwks;
use crate::{Caller, Credential, Refusal, Scopes};

/// Every flexauth API key starts with this.
const API_KEY_PREFIX: &str = "fo_live_";

/// The credentials of a resource server that flexauth's operator registered with
/// `flexauth clients create`. `Debug` shows the id only.
#[derive(Clone)]
pub struct ClientCredentials {
    /// `client_id`.
    pub id: String,
    /// `client_secret`.
    pub secret: String,
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials").field("id", &self.id).field("secret", &"<redacted>").finish()
    }
}

/// How the guard reaches flexauth and what it accepts.
#[derive(Debug, Clone)]
pub struct GuardSettings {
    /// flexauth's public URL (`FLEXAUTH_PUBLIC_URL`), without a trailing slash: the `iss` of its
    /// access tokens, and the base of its JWKS and introspection URLs.
    pub issuer: String,
    /// Where to reach flexauth, when not at `issuer` (a private address, say); by default
    /// `issuer`.
    pub base_url: Option<String>,
    /// The `aud` of the access tokens (`FLEXAUTH_ACCESS_TOKEN_AUDIENCE`, `flexauth` by default).
    pub audience: String,
    /// The resource server's introspection credentials. Without them API keys are refused.
    pub client: Option<ClientCredentials>,
    /// How long an introspection answer is kept (5 s): a revoked key is refused at most that
    /// much later, and a busy key costs one introspection per this.
    pub key_answers_kept_for: Duration,
    /// Also introspect access tokens (needs `client`), so that a session that ended is
    /// refused within `key_answers_kept_for` rather than at the token's `exp`. Off by default:
    /// an access token is then verified offline, with no call to flexauth.
    pub introspect_access_tokens: bool,
    /// How often a `kid` missing from the keys in hand may make the JWKS be fetched again (a
    /// minute).
    pub unknown_kid_refetch_after: Duration,
    /// Clock leeway for `exp` and `nbf` (a minute).
    pub leeway: Duration,
    /// Timeout of each request to flexauth (5 s).
    pub timeout: Duration,
}

impl GuardSettings {
    /// The defaults for the flexauth at `issuer`.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into().trim_end_matches('/').to_owned(),
            base_url: None,
            audience: "flexauth".to_owned(),
            client: None,
            key_answers_kept_for: Duration::from_secs(5),
            introspect_access_tokens: false,
            unknown_kid_refetch_after: Duration::from_secs(60),
            leeway: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
        }
    }

    /// With the introspection credentials `flexauth clients create` printed.
    #[must_use]
    pub fn with_client(mut self, id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.client = Some(ClientCredentials { id: id.into(), secret: secret.into() });
        self
    }
}

/// A guard that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// `introspect_access_tokens` needs client credentials.
    #[error("introspecting access tokens needs the client credentials of `flexauth clients create`")]
    NoClient,
    /// The HTTP client could not be built.
    #[error("the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// The claims the guard reads from an access token.
#[derive(Deserialize)]
struct AccessClaims {
    sub: String,
    sid: String,
}

/// Checks bearer credentials against one flexauth. Cheap to clone: clones share the JWKS and
/// the introspection answers.
#[derive(Clone)]
pub struct Guard {
    inner: Arc<Inner>,
}

struct Inner {
    settings: GuardSettings,
    jwks: Jwks,
    introspection: Option<Introspection>,
    validation: Validation,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard").field("settings", &self.inner.settings).finish_non_exhaustive()
    }
}

impl Guard {
    /// A guard for the flexauth `settings` name. Nothing is fetched until the first request.
    ///
    /// # Errors
    /// [`GuardError`].
    pub fn new(settings: GuardSettings) -> Result<Self, GuardError> {
        if settings.introspect_access_tokens && settings.client.is_none() {
            return Err(GuardError::NoClient);
        }
        flexauth_jwt::install_crypto_provider();
        let http = reqwest::Client::builder().timeout(settings.timeout).build()?;
        let base = settings.base_url.clone().unwrap_or_else(|| settings.issuer.clone());
        let base = base.trim_end_matches('/');
        let jwks = Jwks::new(format!("{base}/.well-known/jwks.json"), http.clone(), settings.unknown_kid_refetch_after);
        let introspection = settings.client.clone().map(|client| {
            Introspection::new(format!("{base}/v1/auth/introspect"), http, client, settings.key_answers_kept_for)
        });
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = settings.leeway.as_secs();
        Ok(Self { inner: Arc::new(Inner { settings, jwks, introspection, validation }) })
    }

    /// The caller of a request whose `Authorization` header is `authorization`.
    ///
    /// # Errors
    /// [`Refusal::Missing`] without a bearer credential, else as
    /// [`authenticate`](Self::authenticate).
    pub async fn authenticate_header(&self, authorization: Option<&str>) -> Result<Caller, Refusal> {
        let value = authorization.ok_or(Refusal::Missing)?;
        let (scheme, credential) = value.split_once(' ').ok_or(Refusal::Missing)?;
        let credential = credential.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || credential.is_empty() {
            return Err(Refusal::Missing);
        }
        self.authenticate(credential).await
    }

    /// The caller `credential` (an access token or an API key) is.
    ///
    /// # Errors
    /// [`Refusal::Invalid`] for a credential that does not authenticate;
    /// [`Refusal::Unavailable`] when flexauth could not be asked.
    pub async fn authenticate(&self, credential: &str) -> Result<Caller, Refusal> {
        if credential.starts_with(API_KEY_PREFIX) {
            return match &self.inner.introspection {
                Some(introspection) => introspection.caller(credential).await,
                None => Err(Refusal::Invalid("this service takes no API keys".into())),
            };
        }
        let caller = self.verify_access_token(credential).await?;
        match (&self.inner.introspection, self.inner.settings.introspect_access_tokens) {
            // The signature and claims were checked offline; flexauth says whether the
            // session still lives and lists the scopes.
            (Some(introspection), true) => introspection.caller(credential).await,
            _ => Ok(caller),
        }
    }

    async fn verify_access_token(&self, token: &str) -> Result<Caller, Refusal> {
        let invalid = |why: &str| Refusal::Invalid(why.to_owned());
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("the access token is malformed"))?;
        // The type first: a refresh token is refused before any key is looked up.
        if header.typ.as_deref() != Some("at+jwt") {
            return Err(invalid("the token is not an access token"));
        }
        if header.alg != Algorithm::EdDSA {
            return Err(invalid("the access token is not signed with EdDSA"));
        }
        let kid = header.kid.ok_or_else(|| invalid("the access token names no key"))?;
        let key = self.inner.jwks.key(&kid).await?;
        let data = jsonwebtoken::decode::<AccessClaims>(token, &key, &self.inner.validation).map_err(|error| {
            use jsonwebtoken::errors::ErrorKind;
            match error.kind() {
                ErrorKind::ExpiredSignature => invalid("the credential has expired"),
                ErrorKind::ImmatureSignature => invalid("the access token is not valid yet"),
                ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => {
                    invalid("the access token was issued for another party")
                }
                ErrorKind::InvalidSignature => invalid("the access token signature is invalid"),
                _ => invalid("the access token is malformed"),
            }
        })?;
        Ok(Caller {
            account_id: data.claims.sub,
            credential: Credential::AccessToken { session_id: data.claims.sid },
            scopes: Scopes::Every,
        })
    }
}
