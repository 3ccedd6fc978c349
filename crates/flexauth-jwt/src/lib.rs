//! flexauth's token adapter: Ed25519 signing keys, JWT access and refresh tokens, and the JWKS
//! that lets other services verify access tokens without calling flexauth.
//!
//! It implements the domain's `TokenSigner` port with `jsonwebtoken`. Verification pins the
//! algorithm (EdDSA only), the `typ` header (`at+jwt` for access tokens, `rt+jwt` for refresh
//! tokens, so neither is accepted as the other), the key id, the issuer and, for access tokens,
//! the audience. Time claims are judged by the domain against its clock. This crate must not
//! depend on a web framework, a database or an async runtime.

mod claims;
mod keys;

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use flexauth_domain::account::AccountId;
use flexauth_domain::session::{AccessClaims, RefreshClaims, RefreshSecret, SessionId, TokenRejection, TokenSigner};
use flexauth_domain::InfraError;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use time::OffsetDateTime;

pub use keys::{Jwk, Jwks, KeyError, SigningKeyPair};

use claims::{AccessJwt, RefreshJwt};

/// The `typ` header of access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";
/// The `typ` header of refresh tokens; flexauth's own, so no access-token verifier accepts one.
pub const REFRESH_TOKEN_TYPE: &str = "rt+jwt";

/// Who issues the tokens and for whom.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// `iss`: flexauth's public URL.
    pub issuer: String,
    /// `aud` of access tokens: the services that accept them.
    pub audience: String,
}

/// Signs with one key and verifies with every key it knows (the signing key and any retiring
/// ones), chosen by `kid`.
pub struct JwtTokens {
    signing_kid: String,
    signing_key: EncodingKey,
    verifying_keys: HashMap<String, DecodingKey>,
    jwks: Jwks,
    settings: JwtSettings,
    access_validation: Validation,
    refresh_validation: Validation,
}

impl std::fmt::Debug for JwtTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtTokens").field("signing_kid", &self.signing_kid).field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl JwtTokens {
    /// Signs with `signing` and verifies with it plus `retiring` keys.
    pub fn new(signing: &SigningKeyPair, retiring: &[SigningKeyPair], settings: JwtSettings) -> Self {
        let mut verifying_keys = HashMap::new();
        let mut jwks = Jwks { keys: Vec::new() };
        for key in std::iter::once(signing).chain(retiring) {
            verifying_keys.insert(key.kid().to_owned(), DecodingKey::from_ed_der(key.public_key()));
            jwks.keys.push(key.jwk());
        }

        // exp and nbf are required here but judged by the domain, which owns the clock.
        let mut access_validation = Validation::new(Algorithm::EdDSA);
        access_validation.validate_exp = false;
        access_validation.validate_nbf = false;
        access_validation.set_issuer(&[&settings.issuer]);
        access_validation.set_audience(&[&settings.audience]);
        access_validation.set_required_spec_claims(&["exp", "iat", "nbf", "iss", "aud", "sub"]);

        let mut refresh_validation = Validation::new(Algorithm::EdDSA);
        refresh_validation.validate_exp = false;
        refresh_validation.validate_nbf = false;
        refresh_validation.validate_aud = false;
        refresh_validation.set_issuer(&[&settings.issuer]);
        refresh_validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);

        Self {
            signing_kid: signing.kid().to_owned(),
            signing_key: EncodingKey::from_ed_der(signing.private_pkcs8_der()),
            verifying_keys,
            jwks,
            settings,
            access_validation,
            refresh_validation,
        }
    }

    /// The public keys, as served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> &Jwks {
        &self.jwks
    }

    fn header(&self, typ: &str) -> Header {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(typ.to_owned());
        header.kid = Some(self.signing_kid.clone());
        header
    }

    /// Checks the header and signature of `token` and returns its claims.
    fn verify<T: serde::de::DeserializeOwned>(&self, token: &str, typ: &str, validation: &Validation) -> Result<T, TokenRejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenRejection::Malformed)?;
        if header.alg != Algorithm::EdDSA || header.typ.as_deref() != Some(typ) {
            return Err(TokenRejection::WrongType);
        }
        let key = header.kid.as_deref().and_then(|kid| self.verifying_keys.get(kid)).ok_or(TokenRejection::UnknownKey)?;
        jsonwebtoken::decode::<T>(token, key, validation).map(|data| data.claims).map_err(|error| match error.kind() {
            ErrorKind::InvalidSignature | ErrorKind::InvalidEddsaKey => TokenRejection::BadSignature,
            ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => TokenRejection::WrongParty,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => TokenRejection::WrongType,
            _ => TokenRejection::Malformed,
        })
    }
}

fn timestamp(seconds: i64) -> Result<OffsetDateTime, TokenRejection> {
    OffsetDateTime::from_unix_timestamp(seconds).map_err(|_| TokenRejection::Malformed)
}

fn uuid(text: &str) -> Result<uuid::Uuid, TokenRejection> {
    uuid::Uuid::parse_str(text).map_err(|_| TokenRejection::Malformed)
}

impl TokenSigner for JwtTokens {
    fn sign_access(&self, claims: &AccessClaims) -> Result<String, InfraError> {
        let jwt = AccessJwt {
            iss: self.settings.issuer.clone(),
            sub: claims.account_id.to_string(),
            aud: self.settings.audience.clone(),
            exp: claims.expires_at.unix_timestamp(),
            iat: claims.issued_at.unix_timestamp(),
            nbf: claims.issued_at.unix_timestamp(),
            jti: claims.token_id.to_string(),
            sid: claims.session_id.to_string(),
        };
        jsonwebtoken::encode(&self.header(ACCESS_TOKEN_TYPE), &jwt, &self.signing_key).map_err(InfraError::new)
    }

    fn sign_refresh(&self, claims: &RefreshClaims) -> Result<String, InfraError> {
        let jwt = RefreshJwt {
            iss: self.settings.issuer.clone(),
            sub: claims.account_id.to_string(),
            exp: claims.expires_at.unix_timestamp(),
            iat: claims.issued_at.unix_timestamp(),
            sid: claims.session_id.to_string(),
            rti: URL_SAFE_NO_PAD.encode(claims.secret.expose()),
        };
        jsonwebtoken::encode(&self.header(REFRESH_TOKEN_TYPE), &jwt, &self.signing_key).map_err(InfraError::new)
    }

    fn verify_access(&self, token: &str) -> Result<AccessClaims, TokenRejection> {
        let jwt: AccessJwt = self.verify(token, ACCESS_TOKEN_TYPE, &self.access_validation)?;
        Ok(AccessClaims {
            account_id: AccountId::from_uuid(uuid(&jwt.sub)?),
            session_id: SessionId::from_uuid(uuid(&jwt.sid)?),
            token_id: uuid(&jwt.jti)?,
            issued_at: timestamp(jwt.iat)?,
            expires_at: timestamp(jwt.exp)?,
        })
    }

    fn verify_refresh(&self, token: &str) -> Result<RefreshClaims, TokenRejection> {
        let jwt: RefreshJwt = self.verify(token, REFRESH_TOKEN_TYPE, &self.refresh_validation)?;
        let secret: [u8; 32] = URL_SAFE_NO_PAD.decode(&jwt.rti).ok().and_then(|bytes| bytes.try_into().ok()).ok_or(TokenRejection::Malformed)?;
        Ok(RefreshClaims {
            account_id: AccountId::from_uuid(uuid(&jwt.sub)?),
            session_id: SessionId::from_uuid(uuid(&jwt.sid)?),
            secret: RefreshSecret::from_bytes(secret),
            issued_at: timestamp(jwt.iat)?,
            expires_at: timestamp(jwt.exp)?,
        })
    }
}

#[cfg(test)]
mod tests;
