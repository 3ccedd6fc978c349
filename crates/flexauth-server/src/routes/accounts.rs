use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use flexauth_domain::account::{ConfirmationPage, EmailAddress, NewPassword, VerifyEmailError, VerifyOutcome};
use flexauth_domain::secret::LinkToken;
use serde::{Deserialize, Serialize};

use super::{pages, rfc3339, Credentials, Data, JsonObject, Message};
use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct EmailBody {
    email: String,
}

/// The same words whether or not the address was registered already.
const SIGNUP_ACCEPTED: Message = Message { message: "Check your inbox: a link to verify your email address is on its way." };
const RESEND_ACCEPTED: Message = Message { message: "If this address belongs to an unverified account, a new verification link is on its way." };

#[tracing::instrument(skip_all)]
pub async fn signup(state: web::Data<AppState>, request: HttpRequest, body: JsonObject<Credentials>) -> Result<HttpResponse, ApiError> {
    let Credentials { email, password } = body.into_inner();
    let email = EmailAddress::parse(&email)?;
    let password = NewPassword::parse(password)?;
    state.accounts.signup(email, &password, state.client_address(&request).as_deref()).await?;
    state.wake_worker();
    Ok(HttpResponse::Accepted().json(Data { data: SIGNUP_ACCEPTED }))
}

#[derive(Serialize)]
pub struct Verified {
    email_verified: bool,
}

/// A confirmation: the token of the link and, where the link needs one, the password chosen
/// on the page.
#[derive(Deserialize)]
pub struct ConfirmBody {
    token: String,
    password: Option<String>,
}

/// Parses a confirmation's fields into domain types.
fn confirmation(body: ConfirmBody) -> Result<(LinkToken, Option<NewPassword>), ApiError> {
    let token = LinkToken::parse(&body.token).map_err(|_| ApiError::InvalidVerificationToken)?;
    let password = body.password.filter(|password| !password.is_empty()).map(NewPassword::parse).transpose()?;
    Ok((token, password))
}

/// Confirms an address, as JSON for single-page apps.
#[tracing::instrument(skip_all)]
pub async fn verify(state: web::Data<AppState>, body: JsonObject<ConfirmBody>) -> Result<HttpResponse, ApiError> {
    let (token, password) = confirmation(body.into_inner())?;
    state.accounts.confirm_email(&token, password.as_ref()).await?;
    Ok(HttpResponse::Ok().json(Data { data: Verified { email_verified: true } }))
}

#[derive(Deserialize)]
pub struct VerifyQuery {
    token: String,
}

/// The link in the email: a page with the one button that confirms (and a password field
/// where the confirmation must choose the password). Opening it, as a mail scanner does,
/// changes nothing.
#[tracing::instrument(skip_all)]
pub async fn confirmation_page(state: web::Data<AppState>, query: Result<web::Query<VerifyQuery>, actix_web::Error>) -> HttpResponse {
    let Some(token) = query.ok().and_then(|query| LinkToken::parse(&query.token).ok()) else {
        return link_error_page(VerifyEmailError::InvalidToken);
    };
    match state.accounts.confirmation_page(&token).await {
        Ok(ConfirmationPage::ConfirmButton { signed_up_at }) => pages::confirmation_form(&token, pages::Confirmation::Button { signed_up_at }),
        Ok(ConfirmationPage::ChoosePassword) => pages::confirmation_form(&token, pages::Confirmation::ChoosePassword { error: None }),
        Ok(ConfirmationPage::AlreadyVerified) => pages::message(StatusCode::OK, "Email verified", "Your email address was already verified. You can log in."),
        Err(error) => link_error_page(error),
    }
}

/// The form of [`confirmation_page`] posts here and gets a page back.
#[tracing::instrument(skip_all)]
pub async fn confirm_from_form(state: web::Data<AppState>, form: Result<web::Form<ConfirmBody>, actix_web::Error>) -> HttpResponse {
    let Ok(body) = form else {
        return link_error_page(VerifyEmailError::InvalidToken);
    };
    let token_text = body.token.clone();
    let (token, password) = match confirmation(body.into_inner()) {
        Ok(parsed) => parsed,
        Err(ApiError::InvalidPassword(reason)) => {
            return match LinkToken::parse(&token_text) {
                Ok(token) => pages::confirmation_form(&token, pages::Confirmation::ChoosePassword { error: Some(&reason.to_string()) }),
                Err(_) => link_error_page(VerifyEmailError::InvalidToken),
            };
        }
        Err(_) => return link_error_page(VerifyEmailError::InvalidToken),
    };
    match state.accounts.confirm_email(&token, password.as_ref()).await {
        Ok(VerifyOutcome::Verified) => pages::message(StatusCode::OK, "Email verified", "Your email address is verified. You can close this page and log in."),
        Ok(VerifyOutcome::AlreadyVerified) => pages::message(StatusCode::OK, "Email verified", "Your email address was already verified. You can log in."),
        // Another sign-up for the address arrived after the page was shown.
        Err(VerifyEmailError::PasswordRequired) => pages::confirmation_form(&token, pages::Confirmation::ChoosePassword { error: None }),
        Err(error) => link_error_page(error),
    }
}

/// The page for a link that cannot confirm.
fn link_error_page(error: VerifyEmailError) -> HttpResponse {
    match error {
        VerifyEmailError::Expired => {
            pages::message(StatusCode::BAD_REQUEST, "Link expired", "This verification link has expired. Ask for a new one from the app you signed up in.")
        }
        VerifyEmailError::InvalidToken | VerifyEmailError::PasswordRequired => {
            pages::message(StatusCode::BAD_REQUEST, "Invalid link", "This verification link is not valid. Use the newest link you received.")
        }
        VerifyEmailError::Overloaded => actix_web::ResponseError::error_response(&ApiError::Overloaded),
        VerifyEmailError::Unexpected(cause) => actix_web::ResponseError::error_response(&ApiError::from(cause)),
    }
}

#[tracing::instrument(skip_all)]
pub async fn resend_verification(state: web::Data<AppState>, request: HttpRequest, body: JsonObject<EmailBody>) -> Result<HttpResponse, ApiError> {
    let email = EmailAddress::parse(&body.email)?;
    state.accounts.resend_verification(email, state.client_address(&request).as_deref()).await?;
    state.wake_worker();
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
