//! The owner's lifecycle: moving the account to another address, deleting it, and taking a
//! copy of its data.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use flexauth_domain::account::{EmailAddress, Password};
use flexauth_domain::lifecycle::{AccountExport, EmailChangeLinkError};
use flexauth_domain::secret::LinkToken;
use serde::{Deserialize, Serialize};

use super::{optional_rfc3339, pages, rfc3339, Data, JsonAfterCaller, JsonObject, Message};
use crate::auth::LiveCaller;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// The same words whether or not the new address has an account.
const CHANGE_ACCEPTED: Message = Message {
    message: "Check the new address: a link to confirm the change is on its way. The account moves once it is \
        confirmed; the current address was told.",
};

#[derive(Serialize, utoipa::ToSchema)]
struct AccountView {
    id: String,
    email: String,
    email_verified: bool,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    disabled_at: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ExportedSession {
    id: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    last_refreshed_at: String,
    #[schema(format = DateTime)]
    expires_at: String,
    user_agent: Option<String>,
    ip: Option<String>,
}

/// Everything flexauth holds about an account, as one JSON document: the owner's copy and the
/// operator's `flexauth accounts export` print the same shape.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ExportView {
    account: AccountView,
    sessions: Vec<ExportedSession>,
    api_keys: Vec<super::api_keys::KeyView>,
    security_events: Vec<super::events::EventView>,
    /// The confirmed second factors (never their secrets), oldest first.
    second_factors: Vec<super::mfa::FactorView>,
    recovery_codes_left: u32,
}

impl std::fmt::Debug for ExportView {
    // Personal data (the address, client addresses) stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportView").field("account_id", &self.account.id).finish_non_exhaustive()
    }
}

/// The export document of `export`.
///
/// # Errors
/// an `internal_error` if an instant cannot be written (never for stored instants).
pub fn export_view(export: AccountExport) -> Result<ExportView, ApiError> {
    let account = &export.account;
    Ok(ExportView {
        account: AccountView {
            id: account.id().to_string(),
            email: account.email().as_str().to_owned(),
            email_verified: account.is_email_verified(),
            created_at: rfc3339(account.created_at())?,
            disabled_at: optional_rfc3339(account.disabled_at())?,
        },
        sessions: export
            .sessions
            .iter()
            .map(|session| {
                Ok(ExportedSession {
                    id: session.id().to_string(),
                    created_at: rfc3339(session.created_at())?,
                    last_refreshed_at: rfc3339(session.last_refreshed_at())?,
                    expires_at: rfc3339(session.expires_at())?,
                    user_agent: session.client().user_agent.clone(),
                    ip: session.client().ip.clone(),
                })
            })
            .collect::<Result<_, ApiError>>()?,
        api_keys: export.api_keys.iter().map(super::api_keys::view).collect::<Result<_, _>>()?,
        security_events: export.security_events.into_iter().map(super::events::view).collect::<Result<_, _>>()?,
        second_factors: export.second_factors.iter().map(super::mfa::factor_view).collect::<Result<_, _>>()?,
        recovery_codes_left: export.recovery_codes_left,
    })
}

/// A copy of the caller's data
///
/// Everything flexauth holds about the caller's account, as one JSON document: the account (with `disabled_at`),
/// its live sessions (newest first, with their absolute end `expires_at`), its API keys that are not revoked
/// (oldest first, never a secret), and its whole security log (newest first). Every instant is RFC 3339 in UTC
/// with three fractional digits. The export is recorded first, as a security event of type `account_exported`
/// with the caller's `session_id`, so it is the newest entry of `security_events`; `HEAD` answers as `GET` does,
/// without the body, and is recorded too. It needs a recent authentication, since the copy holds the account's
/// client addresses and whole security log: the session must have logged in or re-authenticated (`POST
/// /v1/auth/reauthenticate`) within `FLEXAUTH_REAUTHENTICATION_WINDOW` (10 minutes by default), else `403
/// reauthentication_required`; a refresh does not renew it. JWT only: 403 jwt_required with an API key. Account
/// management: the session of the access token is looked up on every call, whatever
/// `FLEXAUTH_VERIFY_SESSION_ON_REQUEST` says; a token of an ended session gets `401 invalid_token` ("the session
/// of the access token has ended").
#[utoipa::path(
    get, path = "/v1/auth/account/export", operation_id = "exportAccount", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, description = "Everything flexauth holds about the account.", body = Data<ExportView>, headers(("cache-control" = String, description = "`no-store`."), ("content-disposition" = String, description = "`attachment; filename=\"flexauth-account.json\"`: browsers save the export as a file.")))),
    extensions(("x-flexauth-errors" = json!(["missing_token", "invalid_token", "jwt_required", "reauthentication_required", "mfa_step_up_required", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all, fields(account_id = %caller.account_id()))]
pub async fn export(state: web::Data<AppState>, caller: LiveCaller) -> Result<HttpResponse, ApiError> {
    let export = state.lifecycle.export_own(&caller).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .insert_header(("content-disposition", "attachment; filename=\"flexauth-account.json\""))
        .json(Data { data: export_view(export)? }))
}

/// Delete the caller's account
///
/// Erases the caller's account. In one transaction flexauth deletes the account and everything that names it or
/// one of its addresses (its address now, and the old and new addresses of its address changes): its sessions,
/// API keys, verification and reset links, known devices, usage counters and address changes, the sign-up, resend
/// and reset requests still waiting for the worker, and every email queued or sent to those addresses. Every
/// session and API key stops working at once, on every instance. The security log is kept under a random
/// replacement account id, with an `account_deleted` entry; nobody can read it through the API any more. The same
/// transaction queues a goodbye to the account's address, "Your account was deleted" (kind `account_deleted`),
/// which the outbox deletes once it is sent (or refused for good). The address is free again for a sign-up. It
/// needs a recent authentication: the session must have logged in or re-authenticated (`POST
/// /v1/auth/reauthenticate`) within `FLEXAUTH_REAUTHENTICATION_WINDOW` (10 minutes by default), else `403
/// reauthentication_required`; a refresh does not renew it. A stolen access token alone cannot delete the
/// account. JWT only: 403 jwt_required with an API key. Account management: the session of the access token is
/// looked up on every call, whatever `FLEXAUTH_VERIFY_SESSION_ON_REQUEST` says; a token of an ended session gets
/// `401 invalid_token` ("the session of the access token has ended").
#[utoipa::path(
    delete, path = "/v1/auth/account", operation_id = "deleteAccount", tag = "accounts", security(("bearer" = [])),
    responses((status = 204, description = "The account is erased. No body.")),
    extensions(("x-flexauth-errors" = json!(["missing_token", "invalid_token", "jwt_required", "reauthentication_required", "mfa_step_up_required", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all, fields(account_id = %caller.account_id()))]
pub async fn delete(state: web::Data<AppState>, caller: LiveCaller) -> Result<HttpResponse, ApiError> {
    state.lifecycle.delete_own(&caller).await?;
    tracing::info!(target: "flexauth::audit", event = "account_deleted", account_id = %caller.account_id(), "account deleted by its owner");
    state.wake_worker();
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailChangeBody {
    #[schema(format = "email", max_length = 254, examples("you@company.com"))]
    new_email: String,
}

/// Ask to move the account to another address
///
/// Asks to move the caller's account to `new_email`; nothing moves until the new address confirms. flexauth
/// stores the change and queues two emails in one transaction, and answers `202` with the same body whether or
/// not the new address has an account, so the answer does not tell: a new address without an account gets
/// "Confirm your new email address", with a link to `/v1/auth/email/confirm?token=…` that works once, for 24
/// hours; a new address with an account (verified or not) gets "Someone tried to use your email address" instead,
/// with no link; the current address always gets "Your account's email address is changing", with a link to
/// `/v1/auth/email/undo?token=…` that works once, for 7 days. A newer request ends the confirmation links of the
/// earlier pending ones (they then answer as expired); their undo links keep working. The request is recorded as
/// `email_change_requested`. Unknown fields in the body are refused with `400 invalid_json`. The caller is
/// checked first (an API key gets `403 jwt_required` whatever it sends), then the body, then the address, then
/// the recent authentication, then whether the address is the account's already. It needs a recent
/// authentication: the session must have logged in or re-authenticated (`POST /v1/auth/reauthenticate`) within
/// `FLEXAUTH_REAUTHENTICATION_WINDOW` (10 minutes by default), else `403 reauthentication_required`; a refresh
/// does not renew it. JWT only: 403 jwt_required with an API key. Account management: the session of the access
/// token is looked up on every call, whatever `FLEXAUTH_VERIFY_SESSION_ON_REQUEST` says; a token of an ended
/// session gets `401 invalid_token` ("the session of the access token has ended").
#[utoipa::path(
    post, path = "/v1/auth/email/change", operation_id = "requestEmailChange", tag = "accounts", security(("bearer" = [])),
    request_body = EmailChangeBody,
    responses((status = 202, description = "Accepted: the same answer whether or not the new address has an \
        account.", body = Data<Message>)),
    extensions(("x-flexauth-errors" = json!(["invalid_json", "payload_too_large", "request_timeout", "unsupported_media_type", "missing_token", "invalid_token", "jwt_required", "invalid_email", "email_unchanged", "reauthentication_required", "mfa_step_up_required", "rate_limited", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all, fields(account_id = %caller.account_id()))]
pub async fn request_change(
    state: web::Data<AppState>,
    request: HttpRequest,
    caller: LiveCaller,
    body: JsonAfterCaller<EmailChangeBody>,
) -> Result<HttpResponse, actix_web::Error> {
    let body = body?.into_inner();
    let new_email = EmailAddress::parse(&body.new_email).map_err(ApiError::from)?;
    let client = state.client_info(&request);
    state.lifecycle.request_email_change(&caller, new_email, client).await.map_err(ApiError::from)?;
    state.wake_worker();
    Ok(HttpResponse::Accepted().json(Data { data: CHANGE_ACCEPTED }))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct TokenBody {
    #[schema(pattern = r"^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$")]
    token: String,
}

fn link_token(text: &str) -> Result<LinkToken, ApiError> {
    LinkToken::parse(text).map_err(|_| ApiError::from(ErrorCode::InvalidLink))
}

#[derive(Serialize, utoipa::ToSchema)]
struct EmailNow {
    email: String,
}

/// The page for a link of an address change that does nothing. An error that has no page of its
/// own (an overload, a failure of the service) answers as the API does.
fn link_error_page(error: EmailChangeLinkError) -> HttpResponse {
    let (title, text) = match error {
        EmailChangeLinkError::Unknown | EmailChangeLinkError::Used => {
            ("Invalid link", "This link is not valid, or it was used already.")
        }
        EmailChangeLinkError::Expired => ("Link expired", "This link has expired. Nothing was changed."),
        EmailChangeLinkError::AddressTaken => {
            ("Address not available", "This address belongs to another account now. Nothing was changed.")
        }
        EmailChangeLinkError::AccountChanged => (
            "Address changed since",
            "The account's address or password changed after this link was sent. Nothing was changed.",
        ),
        EmailChangeLinkError::Throttled(limited) => {
            let minutes = (limited.0.reset_after.whole_seconds() + 59) / 60;
            return pages::message(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                &format!("Too many wrong passwords were tried. Nothing was changed; try again in {minutes} minutes."),
            );
        }
        other => return actix_web::ResponseError::error_response(&ApiError::from(other)),
    };
    pages::message(StatusCode::BAD_REQUEST, title, text)
}

#[derive(Deserialize)]
pub struct TokenQuery {
    token: String,
}

/// The body of an address change's confirmation: its link's token and the password of the
/// account that moves.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ConfirmChangeBody {
    #[schema(pattern = r"^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$")]
    token: String,
    #[schema(max_length = 256, format = Password)]
    password: String,
}

/// The form of the confirmation page: the password may be missing from a page saved before
/// it asked for one.
#[derive(Deserialize)]
pub struct ConfirmChangeForm {
    token: String,
    password: Option<String>,
}

const CONFIRM_CHANGE: pages::ButtonForm<'static> = pages::ButtonForm {
    title: "Confirm your new email address",
    explanation: "",
    action: "confirm",
    button: "Use this email address",
};

/// The confirmation page of `change`, with `error` beside the password field after a refusal.
fn confirm_change_page(token: &LinkToken, new_email: &EmailAddress, error: Option<&str>) -> HttpResponse {
    let explanation = format!(
        "Enter the password of your account and press the button to use {} for it from now on. Only whoever asked \
            for the change knows that password. If you did not ask for this, close this page: nothing happens \
            without the button.",
        new_email.as_str()
    );
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    pages::button_form(
        status,
        pages::ButtonForm { explanation: &explanation, ..CONFIRM_CHANGE },
        token,
        &pages::current_password_field(error),
    )
}

/// The confirmation page of an address change (link in the email)
///
/// The link in the "Confirm your new email address" email. It changes nothing: it answers a small HTML page
/// "Confirm your new email address", naming the new address, with a password field ("Password of the account")
/// and one button, "Use this email address", in a form that POSTs (`application/x-www-form-urlencoded`) the token,
/// in a hidden `token` field, and the `password` to `confirm`, relative to the page (so `/v1/auth/email/confirm`
/// under the public URL's path). The password is that of the account that moves: whoever asked for the change
/// knows it, whoever merely reads the new mailbox does not, so nobody can be made to adopt an account somebody
/// else controls. `GET` changes nothing, so mail scanners that fetch links do no harm; `HEAD` answers as `GET`
/// does, without the body, and changes nothing too. A missing, malformed or unknown token, a used link or one whose
/// change was undone shows "Invalid link" (`400`); a link past its 24 hours, or ended by a newer request or an
/// undo, "Link expired" (`400`). An infrastructure failure answers the JSON error envelope with `500`.
#[utoipa::path(
    get, path = "/v1/auth/email/confirm", operation_id = "confirmEmailChangeLink", tag = "accounts",
    params(("token" = String, Query, description = "The token of the confirmation link: 43 characters of base64url. Missing or malformed, the page says \"Invalid link\" (`400`).", pattern = r"^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$")),
    responses(
        (status = 200, description = "The page.", content_type = "text/html", body = String, headers(("cache-control" = String, description = "`no-store`."), ("referrer-policy" = String, description = "`no-referrer`: the links to these pages carry tokens."), ("x-content-type-options" = String, description = "`nosniff`."), ("content-security-policy" = String, description = "No scripts, no foreign resources, no form targets on other sites, no framing."))),
        (status = 400, description = "The page of a link that cannot be used.", content_type = "text/html", body = String, headers(("cache-control" = String, description = "`no-store`."), ("referrer-policy" = String, description = "`no-referrer`: the links to these pages carry tokens."), ("x-content-type-options" = String, description = "`nosniff`."), ("content-security-policy" = String, description = "No scripts, no foreign resources, no form targets on other sites, no framing."))),
    ),
    extensions(("x-flexauth-errors" = json!(["unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all)]
pub async fn confirm_page(
    state: web::Data<AppState>,
    query: Result<web::Query<TokenQuery>, actix_web::Error>,
) -> HttpResponse {
    let Some(token) = query.ok().and_then(|query| LinkToken::parse(&query.token).ok()) else {
        return link_error_page(EmailChangeLinkError::Unknown);
    };
    match state.lifecycle.email_change_to_confirm(&token).await {
        Ok(change) => confirm_change_page(&token, &change.new_email, None),
        Err(error) => link_error_page(error),
    }
}

/// The confirmation page once more, with `error` beside the password field, if the link still
/// works.
async fn confirm_page_again(state: &AppState, token: &LinkToken, error: &str) -> HttpResponse {
    match state.lifecycle.email_change_to_confirm(token).await {
        Ok(change) => confirm_change_page(token, &change.new_email, Some(error)),
        Err(error) => link_error_page(error),
    }
}

/// The form of [`confirm_page`] posts here.
#[tracing::instrument(skip_all)]
pub async fn confirm_from_form(
    state: web::Data<AppState>,
    request: HttpRequest,
    form: Result<web::Form<ConfirmChangeForm>, actix_web::Error>,
) -> HttpResponse {
    let Some((token, password)) =
        form.ok().and_then(|form| LinkToken::parse(&form.token).ok().map(|token| (token, form.into_inner().password)))
    else {
        return link_error_page(EmailChangeLinkError::Unknown);
    };
    let Some(password) = password.and_then(|password| Password::parse(password).ok()) else {
        return confirm_page_again(&state, &token, "Enter the password of the account.").await;
    };
    match state.lifecycle.confirm_email_change(&token, &password, &state.client_info(&request)).await {
        Ok(email) => pages::message(
            StatusCode::OK,
            "Email address changed",
            &format!("Your account now uses {}. Log in with it from now on.", email.as_str()),
        ),
        Err(EmailChangeLinkError::WrongPassword) => {
            let error = "Wrong password: enter the password of the account that asked for this change.";
            confirm_page_again(&state, &token, error).await
        }
        Err(error) => link_error_page(error),
    }
}

/// Confirm an address change
///
/// Moves the account to the new address with the token of a confirmation link and the account's password. The
/// password proves that whoever confirms is whoever asked (reading the new mailbox is not enough, or anyone could
/// be made to adopt an account another person controls). It is checked like a re-authentication's, against the
/// account's and the client address's counters (10 per account and 30 per client address in 15 minutes, counted
/// before the hash and shared with `POST /v1/auth/reauthenticate` and `POST /v1/auth/password/change`; `429
/// rate_limited` past one); a wrong one answers `400 invalid_current_password` and is recorded as
/// `password_check_failed`. In one transaction it spends the link, deletes an account that holds the new address
/// without ever having confirmed it (a sign-up nobody confirmed), sets the account's address to the new one, marked
/// verified, spends every unused password reset link of the account and discards its unused sign-up
/// (verification) links, and records `email_changed`. Sessions and API keys are not touched; the undo link sent to
/// the old address keeps working. Nothing changes, and the answer is `409 email_change_conflict`, if a verified
/// account has the new address now, or the account's address or password changed since. Two forms:
/// `application/json` answers JSON (`200 {"data": {"email": "<the new address>"}}` or the error envelope);
/// `application/x-www-form-urlencoded`, with or without a charset (the form of the confirmation page), answers an
/// HTML page: `200` "Email address changed", the confirmation page again with the error beside the password field
/// (`400`, a wrong or missing password), `400` "Invalid link" (also for a form the server cannot read), "Link
/// expired", "Address not available" (a verified account has the new address now) or "Address changed since" (the
/// account's address or password changed after the link was sent), or `429` "Too many attempts". Any other
/// `Content-Type` is treated as JSON and gets `415 unsupported_media_type`.
#[utoipa::path(
    post, path = "/v1/auth/email/confirm", operation_id = "confirmEmailChange", tag = "accounts",
    request_body(content((ConfirmChangeBody = "application/json"), (ConfirmChangeBody = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, description = "The account uses the new address. An HTML page for the form.", content((Data<EmailNow> = "application/json"), (String = "text/html")), headers(("cache-control" = String, description = "`no-store`."), ("referrer-policy" = String, description = "`no-referrer`: the links to these pages carry tokens."), ("x-content-type-options" = String, description = "`nosniff`."), ("content-security-policy" = String, description = "No scripts, no foreign resources, no form targets on other sites, no framing."))),
        (status = 400, description = "An HTML page, for the form: the link or the password cannot be used.", content_type = "text/html", body = String, headers(("cache-control" = String, description = "`no-store`."), ("referrer-policy" = String, description = "`no-referrer`: the links to these pages carry tokens."), ("x-content-type-options" = String, description = "`nosniff`."), ("content-security-policy" = String, description = "No scripts, no foreign resources, no form targets on other sites, no framing."))),
        (status = 429, description = "An HTML page, for the form: too many password checks.", content_type = "text/html", body = String, headers(("cache-control" = String, description = "`no-store`."), ("referrer-policy" = String, description = "`no-referrer`: the links to these pages carry tokens."), ("x-content-type-options" = String, description = "`nosniff`."), ("content-security-policy" = String, description = "No scripts, no foreign resources, no form targets on other sites, no framing."))),
    ),
    extensions(("x-flexauth-errors" = json!(["invalid_json", "payload_too_large", "request_timeout", "unsupported_media_type", "invalid_link", "link_expired", "password_too_long", "invalid_current_password", "email_change_conflict", "rate_limited", "overloaded", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all)]
pub async fn confirm(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: JsonObject<ConfirmChangeBody>,
) -> Result<HttpResponse, ApiError> {
    let ConfirmChangeBody { token, password } = body.into_inner();
    let (token, password) = (link_token(&token)?, Password::parse(password)?);
    let email = state.lifecycle.confirm_email_change(&token, &password, &state.client_info(&request)).await?;
    Ok(HttpResponse::Ok().json(Data { data: EmailNow { email: email.as_str().to_owned() } }))
}

/// The undo page of an address change (link in the email)
///
/// The link in the "Your account's email address is changing" email, sent to the address the account had when the
/// change was asked for. It changes nothing: it answers a small HTML page "Undo the change of address", naming
/// the old and the new address, with one button, "Undo the change", in a form that POSTs
/// (`application/x-www-form-urlencoded`) the token, in a hidden `token` field, to `undo`, relative to the page (so
/// `/v1/auth/email/undo` under the public URL's path). `GET` changes nothing, so mail scanners that fetch links
/// do no harm; `HEAD` answers as `GET` does, without the body, and changes nothing too. A missing, malformed or
/// unknown token, or a used link, shows "Invalid link" (`400`); a link past its 7 days "Link expired" (`400`). An
/// infrastructure failure answers the JSON error envelope with `500`.
#[utoipa::path(
    get, path = "/v1/auth/email/undo", operation_id = "undoEmailChangeLink", tag = "accounts",
    params(("token" = String, Query, description = "The token of the undo link: 43 characters of base64url. Missing or malformed, the page says \"Invalid link\" (`400`).", pattern = r"^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$")),
    responses(
        (status = 200, description = "The page.", content_type = "text/html", body = String, headers(("cache-control" = String, description = "`no-store`."), ("referrer-policy" = String, description = "`no-referrer`: the links to these pages carry tokens."), ("x-content-type-options" = String, description = "`nosniff`."), ("content-security-policy" = String, description = "No scripts, no foreign resources, no form targets on other sites, no framing."))),
        (status = 400, description = "The page of a link that cannot be used.", content_type = "text/html", body = String, headers(("cache-control" = String, description = "`no-store`."), ("referrer-policy" = String, description = "`no-referrer`: the links to these pages carry tokens."), ("x-content-type-options" = String, description = "`nosniff`."), ("content-security-policy" = String, description = "No scripts, no foreign resources, no form targets on other sites, no framing."))),
    ),
    extensions(("x-flexauth-errors" = json!(["unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all)]
pub async fn undo_page(
    state: web::Data<AppState>,
    query: Result<web::Query<TokenQuery>, actix_web::Error>,
) -> HttpResponse {
    let Some(token) = query.ok().and_then(|query| LinkToken::parse(&query.token).ok()) else {
        return link_error_page(EmailChangeLinkError::Unknown);
    };
    match state.lifecycle.email_change_to_undo(&token).await {
        Ok(change) => pages::button_form(
            StatusCode::OK,
            pages::ButtonForm {
                title: "Undo the change of address",
                explanation: &format!(
                    "Someone asked to move your account from {} to {}. Press the button to keep (or get back) {}: \
                        every session is logged out, every API key revoked and the password cleared. Then choose a \
                        new one with \"forgot password\".",
                    change.old_email.as_str(),
                    change.new_email.as_str(),
                    change.old_email.as_str()
                ),
                action: "undo",
                button: "Undo the change",
            },
            &token,
            "",
        ),
        Err(error) => link_error_page(error),
    }
}

/// The form of [`undo_page`] posts here.
#[tracing::instrument(skip_all)]
pub async fn undo_from_form(
    state: web::Data<AppState>,
    form: Result<web::Form<TokenBody>, actix_web::Error>,
) -> HttpResponse {
    let Some(token) = form.ok().and_then(|form| LinkToken::parse(&form.token).ok()) else {
        return link_error_page(EmailChangeLinkError::Unknown);
    };
    match state.lifecycle.undo_email_change(&token).await {
        Ok(email) => pages::message(
            StatusCode::OK,
            "Change undone",
            &format!(
                "Your account uses {} and every session was logged out. Choose a new password now: whoever asked \
                    for the change may know it.",
                email.as_str()
            ),
        ),
        Err(error) => link_error_page(error),
    }
}

/// Undo an address change
///
/// Undoes an address change with the token of its undo link. It works once, before or after the confirmation. In
/// one transaction it spends the link, ends the confirmation link of any pending change and the undo links of
/// every later change of the account, deletes an unverified account squatting the old address, gives the account
/// its old address back (or keeps it there if the change was not confirmed), replaces the password by the hash of
/// a random secret (the owner then uses `POST /v1/auth/password/forgot`) and moves the credential version on (a
/// login under way opens no session), ends every session of the account (their refresh tokens then get `401
/// session_revoked`), revokes every API key of the account, spends every unused password reset link of the
/// account, and records `email_change_undone`. Nothing changes, and the answer is `409 email_change_conflict`, if
/// another account holds the old address now. Two forms: `application/json` answers JSON (`200 {"data": {"email":
/// "<the old address>"}}` or the error envelope); `application/x-www-form-urlencoded`, with or without a charset
/// (the form of the undo page), answers an HTML page: `200` "Change undone", or `400` "Invalid link" (also for a
/// form the server cannot read), "Link expired" or "Address not available" (another account holds the old address
/// now). Any other `Content-Type` is treated as JSON and gets `415 unsupported_media_type`.
#[utoipa::path(
    post, path = "/v1/auth/email/undo", operation_id = "undoEmailChange", tag = "accounts",
    request_body(content((TokenBody = "application/json"), (TokenBody = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, description = "The account has its old address. An HTML page for the form.", content((Data<EmailNow> = "application/json"), (String = "text/html")), headers(("cache-control" = String, description = "`no-store`."), ("referrer-policy" = String, description = "`no-referrer`: the links to these pages carry tokens."), ("x-content-type-options" = String, description = "`nosniff`."), ("content-security-policy" = String, description = "No scripts, no foreign resources, no form targets on other sites, no framing."))),
        (status = 400, description = "An HTML page, for the form: the link or the password cannot be used.", content_type = "text/html", body = String, headers(("cache-control" = String, description = "`no-store`."), ("referrer-policy" = String, description = "`no-referrer`: the links to these pages carry tokens."), ("x-content-type-options" = String, description = "`nosniff`."), ("content-security-policy" = String, description = "No scripts, no foreign resources, no form targets on other sites, no framing."))),
    ),
    extensions(("x-flexauth-errors" = json!(["invalid_json", "payload_too_large", "request_timeout", "unsupported_media_type", "invalid_link", "link_expired", "email_change_conflict", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all)]
pub async fn undo(state: web::Data<AppState>, body: JsonObject<TokenBody>) -> Result<HttpResponse, ApiError> {
    let email = state.lifecycle.undo_email_change(&link_token(&body.token)?).await?;
    Ok(HttpResponse::Ok().json(Data { data: EmailNow { email: email.as_str().to_owned() } }))
}
