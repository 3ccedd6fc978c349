use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use flexauth_domain::account::{EmailAddress, NewPassword, Password, ResetPasswordError};
use flexauth_domain::secret::LinkToken;
use serde::{Deserialize, Serialize};

use super::{pages, Data, JsonAfterCaller, JsonObject, Message};
use crate::auth::LiveCaller;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ForgotBody {
    #[schema(format = "email", max_length = 254, examples("you@company.com"))]
    email: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ResetBody {
    #[schema(pattern = r"^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$")]
    token: String,
    #[schema(min_length = 8, max_length = 256, format = Password)]
    password: String,
}

#[derive(Deserialize)]
pub struct ResetQuery {
    token: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ChangeBody {
    #[schema(max_length = 256, format = Password)]
    current_password: String,
    #[schema(min_length = 8, max_length = 256, format = Password)]
    new_password: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PasswordReset {
    password_reset: bool,
}

/// The same words whether or not the address has an account.
const FORGOT_ACCEPTED: Message =
    Message { message: "If this address has an account, a link to reset its password is on its way." };

/// Send a password reset link
///
/// Asks for a password reset link. flexauth stores one request and answers `202` with the same body for every address,
/// so neither the answer nor its timing tells whether the address has an account; a background worker handles the
/// request a moment later (within milliseconds: the instance that accepted it wakes its worker at once). If the address
/// has an account (verified or not), the worker sends it a reset link, which works once and expires after
/// `FLEXAUTH_PASSWORD_RESET_TTL` (1 hour by default). Earlier links keep working until one of them is used (a reset
/// spends them all), the password is changed, or they expire.
#[utoipa::path(
    post, path = "/v1/auth/password/forgot", operation_id = "forgotPassword", tag = "passwords",
    request_body = ForgotBody,
    responses((status = 202, description = "Accepted: the same answer for every address.", body = Data<Message>)),
    extensions(("x-flexauth-errors" = json!(["invalid_json", "payload_too_large", "request_timeout", "unsupported_media_type", "invalid_email", "rate_limited", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all)]
pub async fn forgot(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: JsonObject<ForgotBody>,
) -> Result<HttpResponse, ApiError> {
    let email = EmailAddress::parse(&body.email)?;
    state.accounts.forgot_password(email, state.client_address(&request).as_deref()).await?;
    state.wake_worker();
    Ok(HttpResponse::Accepted().json(Data { data: FORGOT_ACCEPTED }))
}

fn reset_token(text: &str) -> Result<LinkToken, ApiError> {
    LinkToken::parse(text).map_err(|_| ApiError::from(ErrorCode::InvalidResetToken))
}

/// The password reset page (link in the email)
///
/// The link in the reset email. It answers a small HTML page: `200` "Choose a new password", a form that posts to
/// this path as `application/x-www-form-urlencoded`, or `400` "Invalid link" (missing, malformed, unknown or used
/// token) or "Link expired". Opening the page does not spend the token. An infrastructure failure answers the
/// JSON error envelope with `500`.
#[utoipa::path(
    get, path = "/v1/auth/password/reset", operation_id = "passwordResetForm", tag = "passwords",
    params(("token" = String, Query, description = "The token of the reset link: 43 characters of base64url. Missing or malformed, the page says \"Invalid link\" (`400`).", pattern = r"^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$")),
    responses(
        (status = 200, description = "The page.", content_type = "text/html", body = String, headers(("cache-control" = String, description = "`no-store`."), ("referrer-policy" = String, description = "`no-referrer`: the links to these pages carry tokens."), ("x-content-type-options" = String, description = "`nosniff`."), ("content-security-policy" = String, description = "No scripts, no foreign resources, no form targets on other sites, no framing."))),
        (status = 400, description = "The page of a link that cannot be used.", content_type = "text/html", body = String, headers(("cache-control" = String, description = "`no-store`."), ("referrer-policy" = String, description = "`no-referrer`: the links to these pages carry tokens."), ("x-content-type-options" = String, description = "`nosniff`."), ("content-security-policy" = String, description = "No scripts, no foreign resources, no form targets on other sites, no framing."))),
    ),
    extensions(("x-flexauth-errors" = json!(["unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all)]
pub async fn reset_form(
    state: web::Data<AppState>,
    query: Result<web::Query<ResetQuery>, actix_web::Error>,
) -> HttpResponse {
    let Some(token) = query.ok().and_then(|query| LinkToken::parse(&query.token).ok()) else {
        return error_page(ResetPasswordError::InvalidToken);
    };
    match state.accounts.check_password_reset(&token).await {
        Ok(()) => reset_form_page(&token, None),
        Err(error) => error_page(error),
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

/// The page for a reset that cannot go on; failures of the service itself answer as the API
/// does.
fn error_page(error: ResetPasswordError) -> HttpResponse {
    match error {
        ResetPasswordError::Expired => {
            pages::message(StatusCode::BAD_REQUEST, "Link expired", "This reset link has expired. Ask for a new one.")
        }
        ResetPasswordError::InvalidToken => pages::message(
            StatusCode::BAD_REQUEST,
            "Invalid link",
            "This reset link is not valid or was used already. Ask for a new one.",
        ),
        other => actix_web::ResponseError::error_response(&ApiError::from(other)),
    }
}

/// Set a new password with a reset token
///
/// Sets a new password with the token of a reset link (the sign-up password policy applies), marks the address
/// verified, spends this and every other unused reset token of the account, discards the address's pending
/// sign-up attempts (their links stop working), ends every session of the account and queues a "Your password was
/// reset" email (kind `password_was_reset`). API keys are not touched. Two forms: `application/json` answers JSON
/// (`200 {"data": {"password_reset": true}}` or the error envelope); `application/x-www-form-urlencoded`, with or
/// without a charset (the form of the reset page), answers an HTML page: `200` "Password changed", or `400`
/// "Password refused" (the page says why), "Invalid link" (also for a form the server cannot read) or "Link
/// expired". Any other `Content-Type` is treated as JSON and gets `415 unsupported_media_type`.
#[utoipa::path(
    post, path = "/v1/auth/password/reset", operation_id = "resetPassword", tag = "passwords",
    request_body(content((ResetBody = "application/json"), (ResetBody = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, description = "The password is set. An HTML page for the form.", content((Data<PasswordReset> = "application/json"), (String = "text/html")), headers(("cache-control" = String, description = "`no-store`."), ("referrer-policy" = String, description = "`no-referrer`: the links to these pages carry tokens."), ("x-content-type-options" = String, description = "`nosniff`."), ("content-security-policy" = String, description = "No scripts, no foreign resources, no form targets on other sites, no framing."))),
        (status = 400, description = "An HTML page, for the form: the link or the password cannot be used.", content_type = "text/html", body = String, headers(("cache-control" = String, description = "`no-store`."), ("referrer-policy" = String, description = "`no-referrer`: the links to these pages carry tokens."), ("x-content-type-options" = String, description = "`nosniff`."), ("content-security-policy" = String, description = "No scripts, no foreign resources, no form targets on other sites, no framing."))),
    ),
    extensions(("x-flexauth-errors" = json!(["invalid_json", "payload_too_large", "request_timeout", "unsupported_media_type", "invalid_reset_token", "reset_token_expired", "password_too_short", "password_too_long", "password_too_common", "rate_limited", "overloaded", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all)]
pub async fn reset(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: JsonObject<ResetBody>,
) -> Result<HttpResponse, ApiError> {
    let ResetBody { token, password } = body.into_inner();
    let token = reset_token(&token)?;
    let password = NewPassword::parse(password)?;
    state.accounts.reset_password(&token, &password, state.client_address(&request).as_deref()).await?;
    Ok(HttpResponse::Ok().json(Data { data: PasswordReset { password_reset: true } }))
}

/// The form of [`reset_form`] posts here and gets a page back.
#[tracing::instrument(skip_all)]
pub async fn reset_from_form(
    state: web::Data<AppState>,
    request: HttpRequest,
    form: Result<web::Form<ResetBody>, actix_web::Error>,
) -> HttpResponse {
    let Ok(form) = form else {
        return error_page(ResetPasswordError::InvalidToken);
    };
    let ResetBody { token, password } = form.into_inner();
    let Ok(token) = LinkToken::parse(&token) else {
        return error_page(ResetPasswordError::InvalidToken);
    };
    let password = match NewPassword::parse(password) {
        Ok(password) => password,
        // The same form again, the reason beside the field.
        Err(reason) => return reset_form_page(&token, Some(&format!("{reason}."))),
    };
    match state.accounts.reset_password(&token, &password, state.client_address(&request).as_deref()).await {
        Ok(()) => pages::message(
            StatusCode::OK,
            "Password changed",
            "Your password is changed and every session was logged out. You can log in now.",
        ),
        Err(error) => error_page(error),
    }
}

/// Change the caller's password
///
/// Changes the caller's password. The caller's session stays; every other session of the account ends, and every
/// outstanding reset link of the account is spent. API keys are not touched. The owner gets a "Your password was
/// changed" email. The current password is checked like a re-authentication's (`POST /v1/auth/reauthenticate`),
/// against the same limits: 5 checks per session, 10 per account and 30 per client address in 15 minutes, counted
/// before the hash (`429 rate_limited` past one); a wrong one is recorded as `password_check_failed`, and the one
/// that uses up the session's five ends the session. If a password reset committed between the check of the current password and the write, nothing
/// changes and the answer is `401 session_revoked` (the reset ended this session too). JWT only: 403 jwt_required
/// with an API key. Account management: the session of the access token is looked up on every call, whatever
/// `FLEXAUTH_VERIFY_SESSION_ON_REQUEST` says; a token of an ended session gets `401 invalid_token` ("the session
/// of the access token has ended").
#[utoipa::path(
    post, path = "/v1/auth/password/change", operation_id = "changePassword", tag = "passwords", security(("bearer" = [])),
    request_body = ChangeBody,
    responses((status = 204, description = "The password is changed. No body.")),
    extensions(("x-flexauth-errors" = json!(["invalid_json", "payload_too_large", "request_timeout", "unsupported_media_type", "missing_token", "invalid_token", "jwt_required", "password_too_short", "password_too_long", "password_too_common", "invalid_current_password", "mfa_step_up_required", "session_revoked", "rate_limited", "overloaded", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all, fields(account_id = %caller.account_id()))]
pub async fn change(
    state: web::Data<AppState>,
    request: HttpRequest,
    caller: LiveCaller,
    body: JsonAfterCaller<ChangeBody>,
) -> Result<HttpResponse, actix_web::Error> {
    let body = body?.into_inner();
    Ok(change_password(&state, &request, &caller, body).await?)
}

async fn change_password(
    state: &AppState,
    request: &HttpRequest,
    caller: &LiveCaller,
    body: ChangeBody,
) -> Result<HttpResponse, ApiError> {
    let ChangeBody { current_password, new_password } = body;
    let current = Password::parse(current_password)?;
    let new = NewPassword::parse(new_password)?;
    state.sessions.change_password(caller, &current, &new, &state.client_info(request)).await?;
    tracing::info!(target: "flexauth::audit", event = "password_changed", account_id = %caller.account_id(), "password changed; other sessions revoked");
    Ok(HttpResponse::NoContent().finish())
}
