use actix_web::{web, HttpRequest, HttpResponse};
use flexauth_domain::account::{EmailAddress, Password};
use flexauth_domain::session::TokenPair;
use serde::{Deserialize, Serialize};

use super::Data;
use crate::auth::bearer_token;
use crate::error::{json_error, ApiError};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct Credentials {
    email: String,
    password: String,
}

#[derive(Deserialize)]
pub struct RefreshBody {
    refresh_token: String,
}

/// Exactly the login response of the contract.
#[derive(Serialize)]
pub struct TokenResponse {
    access_token: String,
    refresh_token: String,
    token_type: &'static str,
    expires_in: i64,
}

/// Token responses must not be cached (RFC 6749 §5.1).
fn tokens(pair: TokenPair) -> HttpResponse {
    HttpResponse::Ok().insert_header(("cache-control", "no-store")).insert_header(("pragma", "no-cache")).json(Data {
        data: TokenResponse { access_token: pair.access_token, refresh_token: pair.refresh_token, token_type: "bearer", expires_in: pair.expires_in },
    })
}

#[tracing::instrument(skip_all)]
pub async fn login(state: web::Data<AppState>, body: web::Json<Credentials>) -> Result<HttpResponse, ApiError> {
    let Credentials { email, password } = body.into_inner();
    let email = EmailAddress::parse(&email)?;
    let password = Password::parse(password)?;
    Ok(tokens(state.sessions.login(&email, &password).await?))
}

#[tracing::instrument(skip_all)]
pub async fn refresh(state: web::Data<AppState>, body: web::Json<RefreshBody>) -> Result<HttpResponse, ApiError> {
    Ok(tokens(state.sessions.refresh(&body.refresh_token).await?))
}

/// Logs out the session of the bearer access token or, without one, of the refresh token in
/// the body.
#[tracing::instrument(skip_all)]
pub async fn logout(state: web::Data<AppState>, request: HttpRequest, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    if let Some(token) = bearer_token(&request)? {
        let principal = state.sessions.authenticate(token)?;
        state.sessions.logout(&principal).await?;
    } else {
        if body.is_empty() {
            return Err(ApiError::MissingToken);
        }
        let body: RefreshBody = serde_json::from_slice(&body).map_err(|error| json_error(actix_web::error::JsonPayloadError::Deserialize(error)))?;
        state.sessions.logout_with_refresh_token(&body.refresh_token).await?;
    }
    Ok(HttpResponse::NoContent().finish())
}
