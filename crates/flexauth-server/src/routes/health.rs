use actix_web::{web, HttpResponse};
use serde::Serialize;
use sha2::Digest as _;

use super::Data;
use crate::error::{error_chain, ApiError};
use crate::state::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Status {
    #[schema(value_type = String)]
    status: &'static str,
}

/// This document
///
/// The OpenAPI 3.1 description of this API, generated from the code of the server that answers it.
#[utoipa::path(
    get, path = "/openapi.json", operation_id = "getOpenApi", tag = "health",
    responses((status = 200, description = "This document.", content_type = "application/json", body = Object, headers(("cache-control" = String, description = "`public, max-age=300`."))))
)]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").insert_header(("cache-control", "public, max-age=300")).body(super::openapi::document())
}

/// Liveness
///
/// Answers `200` whenever the process answers.
#[utoipa::path(
    get, path = "/healthz", operation_id = "healthz", tag = "health",
    responses((status = 200, description = "The process answers.", body = Data<Status>))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Data { data: Status { status: "ok" } })
}

/// Readiness
///
/// Checks that the database answers and holds every migration this version needs: `200` when it does; `503
/// not_ready` when the database does not answer (within about 1.5 s), when it lacks a migration this version
/// needs (an instance of a newer version must not take traffic on a database not migrated for it), or when the
/// instance is draining for a shutdown (SIGTERM, `FLEXAUTH_SHUTDOWN_DRAIN`).
#[utoipa::path(
    get, path = "/readyz", operation_id = "readyz", tag = "health",
    responses((status = 200, description = "Ready for traffic.", body = Data<Status>)),
    extensions(("x-flexauth-errors" = json!(["not_ready", "internal_error"])))
)]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.draining.load(std::sync::atomic::Ordering::Acquire) {
        // Shutting down: the load balancer should send this instance nothing new.
        return Err(ApiError::NotReady);
    }
    match state.store.check_ready().await {
        Ok(()) => Ok(HttpResponse::Ok().json(Data { data: Status { status: "ready" } })),
        Err(error) => {
            tracing::warn!(error.chain = %error_chain(&error), "readiness check failed");
            Err(ApiError::NotReady)
        }
    }
}

/// The public keys that verify access tokens
///
/// The JWK set of the keys that verify access tokens (the signing key, then any retiring keys). No envelope: a
/// bare JWK set.
#[utoipa::path(
    get, path = "/.well-known/jwks.json", operation_id = "getJwks", tag = "keys",
    params(("If-None-Match" = Option<String>, Header, description = "An `ETag` of an earlier answer: `304` if the set is unchanged.")),
    responses(
        (status = 200, description = "The JWK set.", body = JwkSet, headers(("cache-control" = String, description = "`public, max-age=<FLEXAUTH_JWKS_MAX_AGE in seconds>` (300 by default)."), ("etag" = String, description = "The version of the set."))),
        (status = 304, description = "The set is unchanged since the `ETag` given.", headers(("cache-control" = String), ("etag" = String))),
    ),
    extensions(("x-flexauth-errors" = json!(["internal_error"])))
)]
pub async fn jwks(state: web::Data<AppState>, request: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    let body = serde_json::to_vec(state.tokens.current().jwks()).map_err(|error| ApiError::Unexpected(Box::new(error)))?;
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

/// A known path asked with a method it does not serve; `Allow` lists the ones it does.
pub async fn method_not_allowed(allow: &'static str) -> HttpResponse {
    let mut response = actix_web::ResponseError::error_response(&ApiError::MethodNotAllowed);
    response.headers_mut().insert(actix_web::http::header::ALLOW, actix_web::http::header::HeaderValue::from_static(allow));
    response
}

/// Every unknown path.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
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
