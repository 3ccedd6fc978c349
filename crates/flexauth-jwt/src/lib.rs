//! flexauth's token adapter: Ed25519 signing keys, JWT access and refresh tokens, and the JWKS
//! that lets other services verify access tokens without calling flexauth.
//!
//! It implements the domain's `TokenSigner` port with `jsonwebtoken`. Access tokens are signed
//! with Ed25519 and verifiable by anyone with the JWKS. Refresh tokens are only ever read by
//! flexauth, so they are signed with HMAC-SHA256 under a secret derived from the private
//! signing key: it is never published, no resource server can verify one with the JWKS and
//! mistake it for an access token (RFC 8725, section 3.12), and checking one costs
//! microseconds. Refresh tokens signed with Ed25519 by earlier versions keep working until
//! they expire.
//!
//! Verification pins the algorithm, the `typ` header (`at+jwt` for access tokens, `rt+jwt`
//! for refresh tokens, so neither is accepted as the other), the key id, the issuer and, for
//! access tokens, the audience. Time claims are judged by the domain against its clock. A
//! bounded cache remembers verified access tokens by the digest of the whole token. This
//! crate must not depend on a web framework, a database or an async runtime.

mod cache;
mod claims;
mod keys;
mod provider;
mod ring;
mod sealed;
mod stored;

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use flexauth_domain::account::AccountId;
use flexauth_domain::newtypes::AuthenticationMethods;
use flexauth_domain::session::{AccessClaims, RefreshClaims, RefreshSecret, SessionId, TokenRejection, TokenSigner};
use flexauth_domain::InfraError;
use hmac::{Hmac, Mac};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use sha2::Sha256;
use time::OffsetDateTime;

use cache::VerifiedTokens;

pub use keys::{Jwk, Jwks, KeyError, SigningKeyPair};
pub use provider::install_crypto_provider;
pub use ring::{KeyRing, RingError, RingKey, RingPlan};
pub use sealed::{is_sealed, open as open_sealed, KeyEncryptionKey, SealError, SecretSealing};
pub use stored::{open_stored, KeyLoad, StoredKey, StoredKeyError};

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
    /// How many verified access tokens to remember, so that a client reusing its token does
    /// not pay for a signature check on every request; 0 turns the cache off.
    pub verified_cache_entries: usize,
}

/// The refresh-token secret of one signing key, and the `kid` that names it in refresh-token
/// headers (not a JWKS key id, so no JWKS lookup finds it).
struct RefreshKey {
    kid: String,
    signing: EncodingKey,
    verifying: DecodingKey,
}

impl RefreshKey {
    fn of(key: &SigningKeyPair) -> Self {
        // HMAC as a key-derivation function (HKDF's extract step): the secret is as strong as
        // the private key, and learning it reveals nothing about that key.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.private_pkcs8_der())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"flexauth refresh-token secret v1");
        let secret = mac.finalize().into_bytes();
        Self {
            kid: format!("rt-{}", key.kid()),
            signing: EncodingKey::from_secret(&secret),
            verifying: DecodingKey::from_secret(&secret),
        }
    }
}

/// Signs with one key and verifies with every key it knows (the signing key and any retiring
/// ones), chosen by `kid`.
pub struct JwtTokens {
    signing_kid: String,
    signing_key: EncodingKey,
    verifying_keys: HashMap<String, DecodingKey>,
    /// The same public keys, decoded once: decoding a point costs a fifth of a verification.
    access_keys: HashMap<String, ed25519_dalek::VerifyingKey>,
    refresh_signing: RefreshKey,
    refresh_keys: HashMap<String, RefreshKey>,
    jwks: Jwks,
    settings: JwtSettings,
    refresh_validation: Validation,
    legacy_refresh_validation: Validation,
    verified: Option<VerifiedTokens>,
}

impl std::fmt::Debug for JwtTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtTokens")
            .field("signing_kid", &self.signing_kid)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl JwtTokens {
    /// Signs with `signing` and verifies with it plus `retiring` keys.
    pub fn new(signing: &SigningKeyPair, retiring: &[SigningKeyPair], settings: JwtSettings) -> Self {
        Self::with_keys(signing, retiring, &[], settings)
    }

    /// Signs with `signing`; verifies access and refresh tokens with it and `published` keys
    /// (all in the JWKS: standby keys that will sign soon, and retired keys whose access
    /// tokens may still be live); verifies only refresh tokens with `refresh_only` keys
    /// (retired keys whose access tokens have all expired, which leave the JWKS).
    pub fn with_keys(
        signing: &SigningKeyPair,
        published: &[SigningKeyPair],
        refresh_only: &[SigningKeyPair],
        settings: JwtSettings,
    ) -> Self {
        install_crypto_provider();
        let mut verifying_keys = HashMap::new();
        let mut access_keys = HashMap::new();
        let mut refresh_keys = HashMap::new();
        let mut jwks = Jwks { keys: Vec::new() };
        for key in std::iter::once(signing).chain(published) {
            verifying_keys.insert(key.kid().to_owned(), DecodingKey::from_ed_der(key.public_key()));
            if let Ok(public) = ed25519_dalek::VerifyingKey::from_bytes(key.public_key()) {
                access_keys.insert(key.kid().to_owned(), public);
            }
            jwks.keys.push(key.jwk());
        }
        for key in std::iter::once(signing).chain(published).chain(refresh_only) {
            let refresh = RefreshKey::of(key);
            refresh_keys.insert(refresh.kid.clone(), refresh);
        }

        let refresh_validation = Self::refresh_validation(Algorithm::HS256, &settings.issuer);
        let legacy_refresh_validation = Self::refresh_validation(Algorithm::EdDSA, &settings.issuer);

        Self {
            signing_kid: signing.kid().to_owned(),
            signing_key: EncodingKey::from_ed_der(signing.private_pkcs8_der()),
            verifying_keys,
            access_keys,
            refresh_signing: RefreshKey::of(signing),
            refresh_keys,
            jwks,
            verified: VerifiedTokens::with_capacity(settings.verified_cache_entries),
            settings,
            refresh_validation,
            legacy_refresh_validation,
        }
    }

    /// exp and iat are required here but judged by the domain, which owns the clock.
    fn refresh_validation(algorithm: Algorithm, issuer: &str) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
        validation
    }

    /// The public keys, as served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> &Jwks {
        &self.jwks
    }

    /// The id of the key that signs.
    pub fn signing_kid(&self) -> &str {
        &self.signing_kid
    }

    fn header(algorithm: Algorithm, typ: &str, kid: &str) -> Header {
        let mut header = Header::new(algorithm);
        header.typ = Some(typ.to_owned());
        header.kid = Some(kid.to_owned());
        header
    }

    /// Checks the signature of `token`, whose header was read already, and returns its claims.
    fn decode<T: serde::de::DeserializeOwned>(
        token: &str,
        key: &DecodingKey,
        validation: &Validation,
    ) -> Result<T, TokenRejection> {
        jsonwebtoken::decode::<T>(token, key, validation).map(|data| data.claims).map_err(|error| match error.kind() {
            ErrorKind::InvalidSignature | ErrorKind::InvalidEddsaKey => TokenRejection::BadSignature,
            ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => TokenRejection::WrongParty,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => TokenRejection::WrongType,
            _ => TokenRejection::Malformed,
        })
    }

    /// The JWS check of an access token, done here rather than by `jsonwebtoken::decode` so
    /// that the public key is decoded once, not on every call, and the parts once each. The
    /// checks and their order are the same: the header, the signature over the first two
    /// parts, then the claims (all required, issuer and audience exact).
    fn verify_access_uncached(&self, token: &str) -> Result<AccessClaims, TokenRejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenRejection::Malformed)?;
        if header.alg != Algorithm::EdDSA || header.typ.as_deref() != Some(ACCESS_TOKEN_TYPE) {
            return Err(TokenRejection::WrongType);
        }
        let key = header.kid.as_deref().and_then(|kid| self.access_keys.get(kid)).ok_or(TokenRejection::UnknownKey)?;
        let (signed, signature) = token.rsplit_once('.').ok_or(TokenRejection::Malformed)?;
        let (_, payload) = signed.split_once('.').ok_or(TokenRejection::Malformed)?;
        if payload.contains('.') {
            return Err(TokenRejection::Malformed);
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| TokenRejection::Malformed)?;
        let signature = ed25519_dalek::Signature::from_slice(&signature).map_err(|_| TokenRejection::BadSignature)?;
        key.verify_strict(signed.as_bytes(), &signature).map_err(|_| TokenRejection::BadSignature)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| TokenRejection::Malformed)?;
        let jwt: AccessJwt = serde_json::from_slice(&payload).map_err(|_| TokenRejection::Malformed)?;
        if jwt.iss != self.settings.issuer || jwt.aud != self.settings.audience {
            return Err(TokenRejection::WrongParty);
        }
        Ok(AccessClaims {
            account_id: AccountId::from_uuid(uuid(&jwt.sub)?),
            session_id: SessionId::from_uuid(uuid(&jwt.sid)?),
            token_id: uuid(&jwt.jti)?,
            issued_at: timestamp(jwt.iat)?,
            not_before: timestamp(jwt.nbf)?,
            expires_at: timestamp(jwt.exp)?,
            methods: match AuthenticationMethods::from_stored(&jwt.amr.join(" ")) {
                none if none == AuthenticationMethods::default() => AuthenticationMethods::password(),
                methods => methods,
            },
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
            nbf: claims.not_before.unix_timestamp(),
            jti: claims.token_id.to_string(),
            sid: claims.session_id.to_string(),
            amr: claims.methods.amr().into_iter().map(str::to_owned).collect(),
            acr: claims.methods.acr().to_owned(),
        };
        jsonwebtoken::encode(
            &Self::header(Algorithm::EdDSA, ACCESS_TOKEN_TYPE, &self.signing_kid),
            &jwt,
            &self.signing_key,
        )
        .map_err(InfraError::new)
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
        let header = Self::header(Algorithm::HS256, REFRESH_TOKEN_TYPE, &self.refresh_signing.kid);
        jsonwebtoken::encode(&header, &jwt, &self.refresh_signing.signing).map_err(InfraError::new)
    }

    fn verify_access(&self, token: &str) -> Result<AccessClaims, TokenRejection> {
        let Some(verified) = &self.verified else {
            return self.verify_access_uncached(token);
        };
        // The cache only decides when to forget; whether a token is still valid is the
        // domain's judgement, on every request.
        let now = OffsetDateTime::now_utc();
        let digest = VerifiedTokens::digest(token);
        if let Some(claims) = verified.get(&digest, now) {
            return Ok(claims);
        }
        let claims = self.verify_access_uncached(token)?;
        verified.insert(digest, &claims, now);
        Ok(claims)
    }

    fn verify_refresh(&self, token: &str) -> Result<RefreshClaims, TokenRejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenRejection::Malformed)?;
        if header.typ.as_deref() != Some(REFRESH_TOKEN_TYPE) {
            return Err(TokenRejection::WrongType);
        }
        let kid = header.kid.as_deref().ok_or(TokenRejection::UnknownKey)?;
        let jwt: RefreshJwt = match header.alg {
            Algorithm::HS256 => {
                let key = self.refresh_keys.get(kid).ok_or(TokenRejection::UnknownKey)?;
                Self::decode(token, &key.verifying, &self.refresh_validation)?
            }
            // Issued by an earlier version, before refresh tokens had their own secret; they
            // are accepted until they expire so that the upgrade logs nobody out.
            Algorithm::EdDSA => {
                let key = self.verifying_keys.get(kid).ok_or(TokenRejection::UnknownKey)?;
                Self::decode(token, key, &self.legacy_refresh_validation)?
            }
            _ => return Err(TokenRejection::WrongType),
        };
        let secret: [u8; 32] = URL_SAFE_NO_PAD
            .decode(&jwt.rti)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(TokenRejection::Malformed)?;
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
