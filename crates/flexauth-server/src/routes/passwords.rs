use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use flexauth_domain::account::{EmailAddress, NewPassword, Password};
use flexauth_domain::secret::LinkToken;
use serde::{Deserialize, Serialize};

use super::{pages, Data, JsonAfterCaller, JsonObject, Message};
use crate::auth::LiveCaller;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct ForgotBody {
    email: String,
}

#[derive(Deserialize)]
pub struct ResetBody {
    token: String,
    password: String,
}

#[derive(Deserialize)]
pub struct ResetQuery {
    token: String,
}

#[derive(Deserialize)]
pub struct ChangeBody {
    current_password: String,
    new_password: String,
}

#[derive(Serialize)]
pub struct Reset {
    password_reset: bool,
}

/// The same words whether or not the address has an account.
const FORGOT_ACCEPTED: Message = Message { message: "If this address has an account, a link to reset its password is on its way." };

#[tracing::instrument(skip_all)]
pub async fn forgot(state: web::Data<AppState>, request: HttpRequest, body: JsonObject<ForgotBody>) -> Result<HttpResponse, ApiError> {
    let email = EmailAddress::parse(&body.email)?;
    state.accounts.forgot_password(email, state.client_address(&request).as_deref()).await?;
    state.wake_worker();
    Ok(HttpResponse::Accepted().json(Data { data: FORGOT_ACCEPTED }))
}

fn reset_token(text: &str) -> Result<LinkToken, ApiError> {
    LinkToken::parse(text).map_err(|_| ApiError::InvalidResetToken)
}

/// The page behind the link: a form, if the link still works. Opening it spends nothing, so
/// mail scanners that prefetch links do no harm.
#[tracing::instrument(skip_all)]
pub async fn reset_form(state: web::Data<AppState>, query: Result<web::Query<ResetQuery>, actix_web::Error>) -> HttpResponse {
    let token = query.map_err(|_| ApiError::InvalidResetToken).and_then(|query| reset_token(&query.token));
    let checked = match &token {
        Ok(token) => state.accounts.check_password_reset(token).await.map_err(ApiError::from),
        Err(_) => Err(ApiError::InvalidResetToken),
    };
    match (checked, token) {
        (Ok(()), Ok(token)) => reset_form_page(&token, None),
        (Err(error), _) => error_page(error),
        (Ok(()), Err(error)) => error_page(error),
    }
}

/// The form behind a reset link; after a refused password, with the reason beside the field.
fn reset_form_page(token: &LinkToken, error: Option<&str>) -> HttpResponse {
    pages::page(
        if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK },
        "Choose a new password",
        &format!(
            "<p>Choose the new password of your account. Every session is logged out once it is set.</p>\
             <form method=\"post\" action=\"reset\"><input type=\"hidden\" name=\"token\" value=\"{}\">{}\
             <button type=\"submit\">Set password</button></form>",
            pages::escape(&token.expose()),
            pages::new_password_field(error)
        ),
    )
}

fn error_page(error: ApiError) -> HttpResponse {
    match error {
        ApiError::ResetTokenExpired => pages::message(StatusCode::BAD_REQUEST, "Link expired", "This reset link has expired. Ask for a new one."),
        ApiError::InvalidResetToken => {
            pages::message(StatusCode::BAD_REQUEST, "Invalid link", "This reset link is not valid or was used already. Ask for a new one.")
        }
        ApiError::InvalidPassword(reason) => pages::message(StatusCode::BAD_REQUEST, "Password refused", &format!("{reason}. Go back and choose another.")),
        other => actix_web::ResponseError::error_response(&other),
    }
}

#[tracing::instrument(skip_all)]
pub async fn reset(state: web::Data<AppState>, request: HttpRequest, body: JsonObject<ResetBody>) -> Result<HttpResponse, ApiError> {
    let ResetBody { token, password } = body.into_inner();
    let token = reset_token(&token)?;
    let password = NewPassword::parse(password)?;
    state.accounts.reset_password(&token, &password, state.client_address(&request).as_deref()).await?;
    Ok(HttpResponse::Ok().json(Data { data: Reset { password_reset: true } }))
}

/// The form of [`reset_form`] posts here and gets a page back.
#[tracing::instrument(skip_all)]
pub async fn reset_from_form(state: web::Data<AppState>, request: HttpRequest, form: Result<web::Form<ResetBody>, actix_web::Error>) -> HttpResponse {
    let Ok(form) = form else {
        return error_page(ApiError::InvalidResetToken);
    };
    let ResetBody { token, password } = form.into_inner();
    let Ok(token) = reset_token(&token) else {
        return error_page(ApiError::InvalidResetToken);
    };
    let password = match NewPassword::parse(password) {
        Ok(password) => password,
        // The same form again, the reason beside the field.
        Err(reason) => return reset_form_page(&token, Some(&format!("{reason}."))),
    };
    match state.accounts.reset_password(&token, &password, state.client_address(&request).as_deref()).await {
        Ok(()) => pages::message(StatusCode::OK, "Password changed", "Your password is changed and every session was logged out. You can log in now."),
        Err(error) => error_page(ApiError::from(error)),
    }
}

#[tracing::instrument(skip_all, fields(account_id = %caller.0.account_id()))]
pub async fn change(state: web::Data<AppState>, caller: LiveCaller, body: JsonAfterCaller<ChangeBody>) -> Result<HttpResponse, actix_web::Error> {
    let body = body?.into_inner();
    Ok(change_password(&state, &caller, body).await?)
}

async fn change_password(state: &AppState, caller: &LiveCaller, body: ChangeBody) -> Result<HttpResponse, ApiError> {
    let ChangeBody { current_password, new_password } = body;
    let current = Password::parse(current_password)?;
    let new = NewPassword::parse(new_password)?;
    state.accounts.change_password(&caller.0, &current, &new).await?;
    tracing::info!(target: "flexauth::audit", event = "password_changed", account_id = %caller.0.account_id(), "password changed; other sessions revoked");
    Ok(HttpResponse::NoContent().finish())
}
