use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use flexauth_domain::account::{EmailAddress, NewPassword, VerifyOutcome};
use flexauth_domain::secret::LinkToken;
use serde::{Deserialize, Serialize};

use super::{pages, rfc3339, Credentials, Data, Message};
use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct EmailBody {
    email: String,
}

#[derive(Deserialize)]
pub struct TokenBody {
    token: String,
}

/// The same words whether or not the address was registered already.
const SIGNUP_ACCEPTED: Message = Message { message: "Check your inbox: a link to verify your email address is on its way." };
const RESEND_ACCEPTED: Message = Message { message: "If this address belongs to an unverified account, a new verification link is on its way." };

#[tracing::instrument(skip_all)]
pub async fn signup(state: web::Data<AppState>, body: web::Json<Credentials>) -> Result<HttpResponse, ApiError> {
    let Credentials { email, password } = body.into_inner();
    let email = EmailAddress::parse(&email)?;
    let password = NewPassword::parse(password)?;
    state.accounts.signup(email, &password).await?;
    Ok(HttpResponse::Accepted().json(Data { data: SIGNUP_ACCEPTED }))
}

#[derive(Serialize)]
pub struct Verified {
    email_verified: bool,
}

#[tracing::instrument(skip_all)]
pub async fn verify(state: web::Data<AppState>, body: web::Json<TokenBody>) -> Result<HttpResponse, ApiError> {
    let token = LinkToken::parse(&body.token).map_err(|_| ApiError::InvalidVerificationToken)?;
    state.accounts.verify_email(&token).await?;
    Ok(HttpResponse::Ok().json(Data { data: Verified { email_verified: true } }))
}

#[derive(Deserialize)]
pub struct VerifyQuery {
    token: String,
}

/// The link in the email: a small page instead of JSON, since a person opens it.
#[tracing::instrument(skip_all)]
pub async fn verify_link(state: web::Data<AppState>, query: Result<web::Query<VerifyQuery>, actix_web::Error>) -> HttpResponse {
    let outcome = match query.ok().and_then(|query| LinkToken::parse(&query.token).ok()) {
        Some(token) => state.accounts.verify_email(&token).await.map_err(ApiError::from),
        None => Err(ApiError::InvalidVerificationToken),
    };
    match outcome {
        Ok(VerifyOutcome::Verified) => pages::message(StatusCode::OK, "Email verified", "Your email address is verified. You can close this page and log in."),
        Ok(VerifyOutcome::AlreadyVerified) => pages::message(StatusCode::OK, "Email verified", "Your email address was already verified. You can log in."),
        Err(ApiError::VerificationTokenExpired) => {
            pages::message(StatusCode::BAD_REQUEST, "Link expired", "This verification link has expired. Ask for a new one from the app you signed up in.")
        }
        Err(ApiError::InvalidVerificationToken) => {
            pages::message(StatusCode::BAD_REQUEST, "Invalid link", "This verification link is not valid. Use the newest link you received.")
        }
        Err(other) => actix_web::ResponseError::error_response(&other),
    }
}

#[tracing::instrument(skip_all)]
pub async fn resend_verification(state: web::Data<AppState>, body: web::Json<EmailBody>) -> Result<HttpResponse, ApiError> {
    let email = EmailAddress::parse(&body.email)?;
    state.accounts.resend_verification(&email).await?;
    Ok(HttpResponse::Accepted().json(Data { data: RESEND_ACCEPTED }))
}

#[derive(Serialize)]
pub struct Me {
    id: String,
    email: String,
    email_verified: bool,
    created_at: String,
}

#[tracing::instrument(skip_all, fields(account_id = %caller.0.account_id))]
pub async fn me(state: web::Data<AppState>, caller: Authenticated) -> Result<HttpResponse, ApiError> {
    let account = state.accounts.me(&caller.0).await?;
    Ok(HttpResponse::Ok().json(Data {
        data: Me {
            id: account.id().to_string(),
            email: account.email().as_str().to_owned(),
            email_verified: account.is_email_verified(),
            created_at: rfc3339(account.created_at())?,
        },
    }))
}
