//! What answers a request that no endpoint serves.

use actix_web::HttpResponse;

use crate::error::{ApiError, ErrorCode};

/// A known path asked with a method it does not serve; `Allow` lists the ones it does.
pub async fn method_not_allowed(allow: &'static str) -> HttpResponse {
    let mut response = actix_web::ResponseError::error_response(&ApiError::from(ErrorCode::MethodNotAllowed));
    response
        .headers_mut()
        .insert(actix_web::http::header::ALLOW, actix_web::http::header::HeaderValue::from_static(allow));
    response
}

/// Every unknown path.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::from(ErrorCode::NotFound))
}
