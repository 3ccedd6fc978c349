//! The guard as an actix-web extractor.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};

use crate::{Caller, Guard, Refusal};

impl ResponseError for Refusal {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status()).unwrap_or(StatusCode::UNAUTHORIZED)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CACHE_CONTROL, "no-store"));
        if let Some(challenge) = self.challenge().and_then(|challenge| HeaderValue::from_str(&challenge).ok()) {
            response.insert_header((header::WWW_AUTHENTICATE, challenge));
        }
        response.content_type("application/json").body(self.body())
    }
}

/// A handler that takes a `Caller` runs only for a request that authenticates; any other gets
/// flexauth's answer. The `Guard` must be in the application's data (`App::app_data(guard)` or
/// `web::Data<Guard>`). Check scopes in the handler with [`Caller::require`], whose refusal
/// is an actix-web error too.
impl FromRequest for Caller {
    type Error = Refusal;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Refusal>>>>;

    fn from_request(request: &HttpRequest, _payload: &mut actix_web::dev::Payload) -> Self::Future {
        let guard = request
            .app_data::<Guard>()
            .cloned()
            .or_else(|| request.app_data::<web::Data<Guard>>().map(|data| data.get_ref().clone()));
        let authorization =
            request.headers().get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()).map(str::to_owned);
        Box::pin(async move {
            let Some(guard) = guard else {
                tracing::error!("a handler takes a Caller, but no flexauth Guard is in the application's data");
                return Err(Refusal::Unavailable);
            };
            guard.authenticate_header(authorization.as_deref()).await
        })
    }
}
