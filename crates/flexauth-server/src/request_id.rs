//! Request ids: taken from a well-formed incoming `x-request-id` or drawn fresh, attached to
//! the request's tracing span, echoed in the response, and quoted in 500 messages.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument as _;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled, if called while handling one.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Accepts a caller's id only if it is short and plain, so it cannot inject into logs.
fn incoming_id(request: &ServiceRequest) -> Option<String> {
    let value = request.headers().get(&HEADER)?.to_str().ok()?;
    let plain = !value.is_empty()
        && value.len() <= 64
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    plain.then(|| value.to_owned())
}

/// The middleware.
///
/// # Errors
/// Whatever the wrapped service returns.
pub async fn middleware(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = incoming_id(&request).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // The path only: query strings carry tokens (the verification link).
    // account_id is filled in by the bearer extractor once the caller is known.
    let span = tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.path(), account_id = tracing::field::Empty);
    let started = Instant::now();
    let mut response = REQUEST_ID.scope(id.clone(), next.call(request).instrument(span.clone())).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request handled"
        )
    });
    Ok(response)
}
