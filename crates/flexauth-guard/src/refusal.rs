use serde_json::json;

/// Why a request is refused, with the answer flexauth itself would give: the status, the RFC
/// 6750 challenge and flexauth's error envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `Authorization: Bearer` header: `401 missing_token`.
    #[error("this endpoint requires a bearer token")]
    Missing,
    /// The credential does not authenticate: `401 invalid_token`, with why.
    #[error("{0}")]
    Invalid(String),
    /// It authenticates but lacks a scope: `403 insufficient_scope`, naming the scopes asked
    /// for (space-separated).
    #[error("the credential lacks a scope this request needs")]
    InsufficientScope(String),
    /// flexauth could not be asked (the JWKS or the introspection did not answer, or refused
    /// the guard's client credentials): `503 unavailable`. The cause is logged.
    #[error("the credential cannot be checked now")]
    Unavailable,
}

impl Refusal {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Self::Missing | Self::Invalid(_) => 401,
            Self::InsufficientScope(_) => 403,
            Self::Unavailable => 503,
        }
    }

    /// flexauth's error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "missing_token",
            Self::Invalid(_) => "invalid_token",
            Self::InsufficientScope(_) => "insufficient_scope",
            Self::Unavailable => "unavailable",
        }
    }

    /// The `WWW-Authenticate` value (RFC 6750 §3), for every status but `503`.
    pub fn challenge(&self) -> Option<String> {
        let quoted = |text: &str| text.replace(['"', '\\'], "'");
        match self {
            Self::Missing => Some(r#"Bearer realm="flexauth""#.to_owned()),
            Self::Invalid(why) => {
                Some(format!(r#"Bearer realm="flexauth", error="invalid_token", error_description="{}""#, quoted(why)))
            }
            Self::InsufficientScope(scopes) => Some(format!(
                r#"Bearer realm="flexauth", error="insufficient_scope", error_description="{}", scope="{}""#,
                quoted(&self.to_string()),
                quoted(scopes)
            )),
            Self::Unavailable => None,
        }
    }

    /// The body: flexauth's error envelope.
    pub fn body(&self) -> String {
        json!({ "error": { "code": self.code(), "message": self.to_string() } }).to_string()
    }
}
