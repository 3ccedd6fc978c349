//! The middlewares that read the application's state: CORS for the allowed origins, and the
//! request metrics. They sit above [`crate::state`], so the value types they use
//! ([`crate::browser`], [`crate::metrics`]) need not know the state.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

use crate::browser;
use crate::state::AppState;

/// Answers CORS preflights and marks the answers for allowed origins; does nothing for
/// others.
///
/// # Errors
/// Whatever the wrapped service returns.
pub async fn cors(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // A clone of the shared state is a reference count; the policy itself is not copied.
    let state = request.app_data::<web::Data<AppState>>().cloned();
    let Some(state) = state.filter(|state| !state.browser.cors_origins.is_empty()) else {
        return Ok(next.call(request).await?.map_into_boxed_body());
    };
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|value| value.to_str().ok())
        .filter(|origin| state.browser.allows_cors(origin))
        .map(str::to_owned);
    let Some(origin) = origin.and_then(|origin| HeaderValue::from_str(&origin).ok()) else {
        // The answer depends on the Origin: caches must not hand it to an allowed one.
        let mut response = next.call(request).await?.map_into_boxed_body();
        response.headers_mut().append(header::VARY, HeaderValue::from_static("Origin"));
        return Ok(response);
    };
    if request.method() == Method::OPTIONS && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        let answer = HttpResponse::NoContent()
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
            .insert_header((header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true"))
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, browser::ALLOWED_METHODS))
            .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, browser::ALLOWED_HEADERS))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, browser::PREFLIGHT_MAX_AGE))
            .insert_header((header::VARY, "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"))
            .finish();
        return Ok(request.into_response(answer));
    }
    let mut response = next.call(request).await?.map_into_boxed_body();
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(browser::EXPOSED_HEADERS));
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    Ok(response)
}

/// Counts every API request by the template of the route it matched (`/v1/api-keys/{id}`, not
/// the id), its method and status class, and times it.
pub async fn count_requests(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let route = request.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
    let method = match *request.method() {
        actix_web::http::Method::GET => "GET",
        actix_web::http::Method::HEAD => "HEAD",
        actix_web::http::Method::POST => "POST",
        actix_web::http::Method::PUT => "PUT",
        actix_web::http::Method::PATCH => "PATCH",
        actix_web::http::Method::DELETE => "DELETE",
        actix_web::http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let state = request.app_data::<web::Data<AppState>>().cloned();
    // A request other than a probe keeps the key cache and the ended sessions answering from
    // memory; probes, which arrive every few seconds, would keep an idle instance busy.
    if let Some(state) = &state {
        if !matches!(route.as_str(), "/healthz" | "/readyz") {
            state.store.note_request();
        }
    }
    let response = next.call(request).await?;
    if let Some(state) = state {
        state.metrics.http_request(&route, method, response.status().as_u16(), started.elapsed());
    }
    Ok(response)
}
