//! The JWK set of the keys that verify access tokens.

use actix_web::{web, HttpResponse};
use sha2::Digest as _;

use crate::error::ApiError;
use crate::state::AppState;

/// The public keys that verify access tokens
///
/// The JWK set of the keys that verify access tokens (the signing key, then any retiring keys). No envelope: a
/// bare JWK set.
#[utoipa::path(
    get, path = "/.well-known/jwks.json", operation_id = "getJwks", tag = "keys",
    params(("If-None-Match" = Option<String>, Header, description = "An `ETag` of an earlier answer: `304` if the \
        set is unchanged.")),
    responses(
        (status = 200, description = "The JWK set.", body = JwkSet, headers(("cache-control" = String, description = "`public, max-age=<FLEXAUTH_JWKS_MAX_AGE in seconds>` (300 by default)."), ("etag" = String, description = "The version of the set."))),
        (status = 304, description = "The set is unchanged since the `ETag` given.", headers(("cache-control" = String), ("etag" = String))),
    ),
    extensions(("x-flexauth-errors" = json!(["internal_error"])))
)]
pub async fn jwks(state: web::Data<AppState>, request: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    let body = serde_json::to_vec(state.tokens.current().jwks()).map_err(ApiError::unexpected)?;
    let digest = sha2::Sha256::digest(&body);
    let etag = format!("\"{}\"", digest[..12].iter().map(|byte| format!("{byte:02x}")).collect::<String>());
    let cache_control = format!("public, max-age={}", state.jwks_max_age);
    let matches = request
        .headers()
        .get(actix_web::http::header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"));
    let mut response = if matches { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    response.insert_header(("cache-control", cache_control)).insert_header(("etag", etag));
    Ok(if matches { response.finish() } else { response.content_type("application/json").body(body) })
}

/// The JWK set, as `flexauth-jwt` publishes it: the schema of `GET /.well-known/jwks.json`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct JwkSet {
    keys: Vec<Jwk>,
}

/// One public key: an Ed25519 key (RFC 8037) that verifies EdDSA signatures.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Jwk {
    #[schema(pattern = "^OKP$")]
    kty: String,
    #[schema(pattern = "^Ed25519$")]
    crv: String,
    /// The public key, base64url without padding.
    #[schema(pattern = "^[A-Za-z0-9_-]{43}$")]
    x: String,
    /// The key id that access tokens name in their `kid` header.
    kid: String,
    #[serde(rename = "use")]
    #[schema(pattern = "^sig$")]
    key_use: String,
    #[schema(pattern = "^EdDSA$")]
    alg: String,
}
