//! The JSON payloads of flexauth's tokens. Field order is the serialisation order, which keeps
//! signing deterministic.

use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct AccessJwt {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub sid: String,
    /// RFC 8176 methods of the session's login; absent from tokens signed before flexauth
    /// wrote it, which were password logins.
    #[serde(default)]
    pub amr: Vec<String>,
    /// `aal1` or `aal2`.
    #[serde(default)]
    pub acr: String,
}

/// `rti` carries the refresh secret; only its digest is stored server-side.
#[derive(Serialize, Deserialize)]
pub(crate) struct RefreshJwt {
    pub iss: String,
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    pub sid: String,
    pub rti: String,
}
