use actix_web::{web, HttpResponse};
use serde::Serialize;
use sha2::Digest as _;

use super::Data;
use crate::error::{error_chain, ApiError};
use crate::state::AppState;

#[derive(Serialize)]
pub struct Status {
    status: &'static str,
}

/// The OpenAPI description of this API, the one in `docs/`, compiled in.
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("cache-control", "public, max-age=300"))
        .body(include_str!("../../../../docs/openapi.json"))
}

/// Liveness: the process answers.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Data { data: Status { status: "ok" } })
}

/// Readiness: the database answers and holds every migration this version needs, and the
/// instance is not shutting down.
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

/// The public keys that verify access tokens. Resource servers cache them for
/// `FLEXAUTH_JWKS_MAX_AGE`, which a rotated key waits out before it signs; the `ETag` lets
/// them revalidate for free.
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
