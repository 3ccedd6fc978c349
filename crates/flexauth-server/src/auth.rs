//! The bearer-credential extractor for protected endpoints.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use flexauth_domain::principal::{LiveSession, Principal};
use futures_util::future::LocalBoxFuture;

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// The caller of a protected endpoint, authenticated by a JWT access token or an API key.
/// Operations reserved to JWT callers are refused by the domain services themselves.
#[derive(Debug, Clone)]
pub struct Authenticated(Principal);

impl std::ops::Deref for Authenticated {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.0
    }
}

/// The credential of an `Authorization: Bearer …` header; `None` without such a header.
///
/// # Errors
/// an `invalid_token` error for an `Authorization` header that is not a bearer credential.
pub fn bearer_token(request: &HttpRequest) -> Result<Option<&str>, ApiError> {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| ApiError::invalid_token("the Authorization header is not valid text"))?;
    let (scheme, token) =
        value.split_once(' ').ok_or(ApiError::invalid_token("the Authorization header must be `Bearer <token>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::invalid_token("the Authorization header must be `Bearer <token>`"));
    }
    Ok(Some(token.trim()))
}

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let state = request.app_data::<web::Data<AppState>>().cloned();
        let credential = bearer_token(request).map(|token| token.map(str::to_owned));
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::unexpected("application state is missing"))?;
            let credential = credential?.ok_or(ApiError::from(ErrorCode::MissingToken))?;
            let outcome = state.bearer.authenticate(&credential).await;
            if flexauth_domain::api_key::ApiKeySecret::looks_like_api_key(&credential) {
                state.metrics.api_key_authentication(&outcome);
            }
            let principal = outcome?;
            // The request's log line names the caller's account (never the credential).
            tracing::Span::current().record("account_id", tracing::field::display(principal.account_id));
            Ok(Authenticated(principal))
        })
    }
}

/// The caller of an endpoint that manages the account (keys, sessions, the password): a JWT
/// whose session was found live in storage during this request.
#[derive(Debug, Clone, Copy)]
pub struct LiveCaller(LiveSession);

impl std::ops::Deref for LiveCaller {
    type Target = LiveSession;

    fn deref(&self) -> &LiveSession {
        &self.0
    }
}

impl FromRequest for LiveCaller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let state = request.app_data::<web::Data<AppState>>().cloned();
        let authenticated = Authenticated::from_request(request, payload);
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::unexpected("application state is missing"))?;
            let Authenticated(principal) = authenticated.await?;
            Ok(LiveCaller(state.sessions.require_live(&principal).await?))
        })
    }
}
