use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use flexauth_domain::account::{ConfirmationPage, EmailAddress, NewPassword, VerifyEmailError, VerifyOutcome};
use flexauth_domain::secret::LinkToken;
use serde::{Deserialize, Serialize};

use super::{pages, rfc3339, Data, JsonObject, Message};
use crate::auth::Authenticated;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct EmailBody {
    #[schema(format = "email", max_length = 254, examples("you@company.com"))]
    email: String,
}

/// An email and a new password, under the sign-up policy.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct SignupBody {
    #[schema(format = "email", max_length = 254, examples("you@company.com"))]
    email: String,
    #[schema(min_length = 8, max_length = 256, format = Password)]
    password: String,
}

/// The same words whether or not the address was registered already.
const SIGNUP_ACCEPTED: Message =
    Message { message: "Check your inbox: a link to verify your email address is on its way." };
const RESEND_ACCEPTED: Message =
    Message { message: "If this address belongs to an unverified account, a new verification link is on its way." };

/// Sign up
///
/// Accepts a sign-up: the input is checked (the email address first, then the password, under the sign-up policy: at
/// least 8 characters, at most 256 characters, not a common password), the password is hashed, and flexauth stores one
/// request and answers `202` with the same body for every address, so neither the answer nor its timing tells whether
/// the address has an account; a background worker handles the request a moment later (within milliseconds: the
/// instance that accepted it wakes its worker at once). For an address without an account the worker creates an
/// unverified account with one sign-up attempt and sends a verification email; for an unverified account it adds a
/// sign-up attempt (its own verification link and the password chosen in this sign-up; up to 3 pending attempts, a
/// fourth drops the oldest) and sends its link; for a verified account nothing changes and the owner gets a "You
/// already have an account" email. A login right after the sign-up can briefly answer `401 invalid_credentials` before
/// the account exists.
#[utoipa::path(
    post, path = "/v1/auth/signup", operation_id = "signup", tag = "accounts",
    request_body = SignupBody,
    responses((status = 202, description = "Accepted: the same answer for every address. The account, attempt or \
        email follows a moment later.", body = Data<Message>)),
    extensions(("x-flexauth-errors" = json!(["invalid_json", "payload_too_large", "request_timeout", "unsupported_media_type", "invalid_email", "password_too_short", "password_too_long", "password_too_common", "rate_limited", "overloaded", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all)]
pub async fn signup(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: JsonObject<SignupBody>,
) -> Result<HttpResponse, ApiError> {
    let SignupBody { email, password } = body.into_inner();
    let email = EmailAddress::parse(&email)?;
    let password = NewPassword::parse(password)?;
    state.accounts.signup(email, &password, state.client_address(&request).as_deref()).await?;
    state.wake_worker();
    Ok(HttpResponse::Accepted().json(Data { data: SIGNUP_ACCEPTED }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Verified {
    email_verified: bool,
}

/// A confirmation: the token of the link and, where the link needs one, the password chosen
/// on the page.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ConfirmBody {
    #[schema(pattern = r"^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$")]
    token: String,
    /// The password to set, where the link needs one (the sign-up policy applies).
    #[schema(min_length = 8, max_length = 256, format = Password)]
    password: Option<String>,
}

/// Parses a confirmation's fields into domain types.
fn confirmation(body: ConfirmBody) -> Result<(LinkToken, Option<NewPassword>), ApiError> {
    let token = LinkToken::parse(&body.token).map_err(|_| ApiError::from(ErrorCode::InvalidVerificationToken))?;
    let password = body.password.map(NewPassword::parse).transpose()?;
    Ok((token, password))
}

/// Confirm an email address
///
/// Confirms the address with the token of a verification link: the address becomes verified, the account's
/// password is set, and every other pending sign-up attempt of the address is discarded (their links then get
/// `invalid_verification_token`). The password set is the given `password`, or, without one, the password chosen
/// in the sign-up of this link, which works only when the link came from the only pending sign-up attempt; a
/// resent link, or several pending attempts, need `password` (else `400 password_required`). Idempotent: a used
/// link answers `200` again (a `password` is then ignored). Two forms: `application/json` answers JSON (`200
/// {"data": {"email_verified": true}}` or the error envelope); `application/x-www-form-urlencoded` (the form of
/// the confirmation page) answers an HTML page: `200` "Email verified", `200` "Confirm your email address" with a
/// password field (the link needs a chosen password and none was given), `400` "Confirm your email address" with
/// the reason (the password is refused by the policy), or `400` "Invalid link" (also for a form the server cannot
/// read) or "Link expired". Any other `Content-Type` is treated as JSON and gets `415 unsupported_media_type`.
#[utoipa::path(
    post, path = "/v1/auth/verify", operation_id = "verifyEmail", tag = "accounts",
    request_body(content((ConfirmBody = "application/json"), (ConfirmBody = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, description = "Verified (also when the link was used already). An HTML page for the \
            form.", content((Data<Verified> = "application/json"), (String = "text/html")), headers(("cache-control" = String, description = "`no-store`."), ("referrer-policy" = String, description = "`no-referrer`: the links to these pages carry tokens."), ("x-content-type-options" = String, description = "`nosniff`."), ("content-security-policy" = String, description = "No scripts, no foreign resources, no form targets on other sites, no framing."))),
        (status = 400, description = "An HTML page, for the form: the link or the password cannot be used.", content_type = "text/html", body = String, headers(("cache-control" = String, description = "`no-store`."), ("referrer-policy" = String, description = "`no-referrer`: the links to these pages carry tokens."), ("x-content-type-options" = String, description = "`nosniff`."), ("content-security-policy" = String, description = "No scripts, no foreign resources, no form targets on other sites, no framing."))),
    ),
    extensions(("x-flexauth-errors" = json!(["invalid_json", "payload_too_large", "request_timeout", "unsupported_media_type", "invalid_verification_token", "verification_token_expired", "password_required", "password_too_short", "password_too_long", "password_too_common", "overloaded", "unavailable", "internal_error"])))
)]
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

/// The confirmation page (link in the email)
///
/// The link in the verification email. It verifies nothing: it answers a small HTML page "Confirm your email
/// address" with a form that POSTs (`application/x-www-form-urlencoded`) the token, in a hidden `token` field, to
/// `/v1/auth/verify`, with the button "Confirm my email address". If the link came from the only pending sign-up
/// attempt, the form has only the button; if the link was resent or several sign-up attempts are pending, the
/// form also has a required `password` field (at least 8 characters), and the password typed there becomes the
/// account's password. `GET` changes nothing, so mail scanners that fetch links do no harm; `HEAD` answers as
/// `GET` does, without the body, and changes nothing too. A used link shows "Email verified" (`200`); an expired
/// one "Link expired" (`400`); a missing, malformed or unknown one, or one discarded (by a confirmation with
/// another link, a password reset, or a fourth sign-up attempt), "Invalid link" (`400`). An infrastructure
/// failure answers the JSON error envelope with `500`.
#[utoipa::path(
    get, path = "/v1/auth/verify", operation_id = "verifyEmailLink", tag = "accounts",
    params(("token" = String, Query, description = "The token of the verification link: 43 characters of base64url. Missing or malformed, the page says \"Invalid link\" (`400`).", pattern = r"^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$")),
    responses(
        (status = 200, description = "The page.", content_type = "text/html", body = String, headers(("cache-control" = String, description = "`no-store`."), ("referrer-policy" = String, description = "`no-referrer`: the links to these pages carry tokens."), ("x-content-type-options" = String, description = "`nosniff`."), ("content-security-policy" = String, description = "No scripts, no foreign resources, no form targets on other sites, no framing."))),
        (status = 400, description = "The page of a link that cannot be used.", content_type = "text/html", body = String, headers(("cache-control" = String, description = "`no-store`."), ("referrer-policy" = String, description = "`no-referrer`: the links to these pages carry tokens."), ("x-content-type-options" = String, description = "`nosniff`."), ("content-security-policy" = String, description = "No scripts, no foreign resources, no form targets on other sites, no framing."))),
    ),
    extensions(("x-flexauth-errors" = json!(["unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all)]
pub async fn confirmation_page(
    state: web::Data<AppState>,
    query: Result<web::Query<VerifyQuery>, actix_web::Error>,
) -> HttpResponse {
    let Some(token) = query.ok().and_then(|query| LinkToken::parse(&query.token).ok()) else {
        return link_error_page(VerifyEmailError::InvalidToken);
    };
    match state.accounts.confirmation_page(&token).await {
        Ok(ConfirmationPage::ConfirmButton { signed_up_at }) => {
            pages::confirmation_form(&token, pages::Confirmation::Button { signed_up_at })
        }
        Ok(ConfirmationPage::ChoosePassword) => {
            pages::confirmation_form(&token, pages::Confirmation::ChoosePassword { error: None })
        }
        Ok(ConfirmationPage::AlreadyVerified) => {
            pages::message(StatusCode::OK, "Email verified", "Your email address was already verified. You can log in.")
        }
        Err(error) => link_error_page(error),
    }
}

/// The form of [`confirmation_page`] posts here and gets a page back.
#[tracing::instrument(skip_all)]
pub async fn confirm_from_form(
    state: web::Data<AppState>,
    form: Result<web::Form<ConfirmBody>, actix_web::Error>,
) -> HttpResponse {
    let Ok(body) = form else {
        return link_error_page(VerifyEmailError::InvalidToken);
    };
    let ConfirmBody { token, password } = body.into_inner();
    let Ok(token) = LinkToken::parse(&token) else {
        return link_error_page(VerifyEmailError::InvalidToken);
    };
    // A page without the password field, or with it left empty, sends no password.
    let password = match password.filter(|password| !password.is_empty()).map(NewPassword::parse).transpose() {
        Ok(password) => password,
        Err(reason) => {
            return pages::confirmation_form(
                &token,
                pages::Confirmation::ChoosePassword { error: Some(&reason.to_string()) },
            )
        }
    };
    match state.accounts.confirm_email(&token, password.as_ref()).await {
        Ok(VerifyOutcome::Verified) => pages::message(
            StatusCode::OK,
            "Email verified",
            "Your email address is verified. You can close this page and log in.",
        ),
        Ok(VerifyOutcome::AlreadyVerified) => {
            pages::message(StatusCode::OK, "Email verified", "Your email address was already verified. You can log in.")
        }
        // Another sign-up for the address arrived after the page was shown.
        Err(VerifyEmailError::PasswordRequired) => {
            pages::confirmation_form(&token, pages::Confirmation::ChoosePassword { error: None })
        }
        Err(error) => link_error_page(error),
    }
}

/// The page for a link that cannot confirm. An error that has no page of its own (an overload,
/// a failure of the service) answers as the API does, through the one mapping in `error`.
fn link_error_page(error: VerifyEmailError) -> HttpResponse {
    match error {
        VerifyEmailError::Expired => pages::message(
            StatusCode::BAD_REQUEST,
            "Link expired",
            "This verification link has expired. Ask for a new one from the app you signed up in.",
        ),
        VerifyEmailError::InvalidToken | VerifyEmailError::PasswordRequired => pages::message(
            StatusCode::BAD_REQUEST,
            "Invalid link",
            "This verification link is not valid. Use the newest link you received.",
        ),
        other => actix_web::ResponseError::error_response(&ApiError::from(other)),
    }
}

/// Send a new verification email
///
/// Asks for a new verification link. flexauth stores one request and answers `202` with the same body for every
/// address, so neither the answer nor its timing tells whether the address has an account; a background worker handles
/// the request a moment later (within milliseconds: the instance that accepted it wakes its worker at once). For an
/// unverified account the worker adds a sign-up attempt without a password and sends its link; confirming with that
/// link needs a chosen password. Earlier links keep working (up to 3 pending attempts; a fourth drops the oldest). For
/// an unknown or verified address it does nothing.
#[utoipa::path(
    post, path = "/v1/auth/verify/resend", operation_id = "resendVerification", tag = "accounts",
    request_body = EmailBody,
    responses((status = 202, description = "Accepted: the same answer for every address.", body = Data<Message>)),
    extensions(("x-flexauth-errors" = json!(["invalid_json", "payload_too_large", "request_timeout", "unsupported_media_type", "invalid_email", "rate_limited", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all)]
pub async fn resend_verification(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: JsonObject<EmailBody>,
) -> Result<HttpResponse, ApiError> {
    let email = EmailAddress::parse(&body.email)?;
    state.accounts.resend_verification(email, state.client_address(&request).as_deref()).await?;
    state.wake_worker();
    Ok(HttpResponse::Accepted().json(Data { data: RESEND_ACCEPTED }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Me {
    id: String,
    email: String,
    email_verified: bool,
    #[schema(format = DateTime)]
    created_at: String,
}

/// The caller's account
///
/// The account of the access token. JWT only: 403 jwt_required with an API key. A token whose account no longer
/// exists gets `401 invalid_token` ("the account no longer exists").
#[utoipa::path(
    get, path = "/v1/auth/me", operation_id = "getMe", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, description = "The account.", body = Data<Me>)),
    extensions(("x-flexauth-errors" = json!(["missing_token", "invalid_token", "jwt_required", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all, fields(account_id = %caller.account_id))]
pub async fn me(state: web::Data<AppState>, caller: Authenticated) -> Result<HttpResponse, ApiError> {
    let account = state.accounts.me(&caller).await?;
    Ok(HttpResponse::Ok().json(Data {
        data: Me {
            id: account.id().to_string(),
            email: account.email().as_str().to_owned(),
            email_verified: account.is_email_verified(),
            created_at: rfc3339(account.created_at())?,
        },
    }))
}
