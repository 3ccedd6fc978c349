//! The owner's lifecycle: moving the account to another address, deleting it, and taking a
//! copy of its data.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use flexauth_domain::account::EmailAddress;
use flexauth_domain::lifecycle::{AccountExport, EmailChangeLinkError};
use flexauth_domain::secret::LinkToken;
use flexauth_domain::session::ClientInfo;
use serde::{Deserialize, Serialize};

use super::{optional_rfc3339, pages, rfc3339, Data, JsonAfterCaller, JsonObject, Message};
use crate::auth::LiveCaller;
use crate::error::ApiError;
use crate::state::AppState;

/// The same words whether or not the new address has an account.
const CHANGE_ACCEPTED: Message = Message {
    message: "Check the new address: a link to confirm the change is on its way. The account moves once it is confirmed; the current address was told.",
};

#[derive(Serialize)]
struct AccountView {
    id: String,
    email: String,
    email_verified: bool,
    created_at: String,
    disabled_at: Option<String>,
}

#[derive(Serialize)]
struct ExportedSession {
    id: String,
    created_at: String,
    last_refreshed_at: String,
    expires_at: String,
    user_agent: Option<String>,
    ip: Option<String>,
}

/// Everything flexauth holds about an account, as one JSON document: the owner's copy and the
/// operator's `flexauth accounts export` print the same shape.
#[derive(Serialize)]
pub struct ExportView {
    account: AccountView,
    sessions: Vec<ExportedSession>,
    api_keys: Vec<super::api_keys::KeyView>,
    security_events: Vec<super::events::EventView>,
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
/// [`ApiError::Unexpected`] if an instant cannot be written (never for stored instants).
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
                let stored = session.stored();
                Ok(ExportedSession {
                    id: stored.id.to_string(),
                    created_at: rfc3339(stored.created_at)?,
                    last_refreshed_at: rfc3339(stored.current_issued_at)?,
                    expires_at: rfc3339(stored.expires_at)?,
                    user_agent: stored.client.user_agent.clone(),
                    ip: stored.client.ip.clone(),
                })
            })
            .collect::<Result<_, ApiError>>()?,
        api_keys: export.api_keys.iter().map(super::api_keys::view).collect::<Result<_, _>>()?,
        security_events: export.security_events.into_iter().map(super::events::view).collect::<Result<_, _>>()?,
    })
}

/// `GET /v1/auth/account/export`: the caller's data, for portability.
#[tracing::instrument(skip_all, fields(account_id = %caller.0.account_id()))]
pub async fn export(state: web::Data<AppState>, caller: LiveCaller) -> Result<HttpResponse, ApiError> {
    let export = state.lifecycle.export_own(&caller.0).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .insert_header(("content-disposition", "attachment; filename=\"flexauth-account.json\""))
        .json(Data { data: export_view(export)? }))
}

/// `DELETE /v1/auth/account`: erases the caller's account after a recent authentication.
#[tracing::instrument(skip_all, fields(account_id = %caller.0.account_id()))]
pub async fn delete(state: web::Data<AppState>, caller: LiveCaller) -> Result<HttpResponse, ApiError> {
    state.lifecycle.delete_own(&caller.0).await?;
    tracing::info!(target: "flexauth::audit", event = "account_deleted", account_id = %caller.0.account_id(), "account deleted by its owner");
    state.wake_worker();
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailChangeBody {
    new_email: String,
}

/// `POST /v1/auth/email/change`: asks to move the account to `new_email`.
#[tracing::instrument(skip_all, fields(account_id = %caller.0.account_id()))]
pub async fn request_change(
    state: web::Data<AppState>,
    request: HttpRequest,
    caller: LiveCaller,
    body: JsonAfterCaller<EmailChangeBody>,
) -> Result<HttpResponse, actix_web::Error> {
    let body = body?.into_inner();
    let new_email = EmailAddress::parse(&body.new_email).map_err(ApiError::from)?;
    let user_agent = request.headers().get("user-agent").and_then(|value| value.to_str().ok());
    let client = ClientInfo::new(user_agent, state.client_address(&request));
    state.lifecycle.request_email_change(&caller.0, new_email, client).await.map_err(ApiError::from)?;
    state.wake_worker();
    Ok(HttpResponse::Accepted().json(Data { data: CHANGE_ACCEPTED }))
}

#[derive(Deserialize)]
pub struct TokenBody {
    token: String,
}

fn link_token(text: &str) -> Result<LinkToken, ApiError> {
    LinkToken::parse(text).map_err(|_| ApiError::InvalidEmailChangeLink)
}

#[derive(Serialize)]
struct EmailNow {
    email: String,
}

/// The page for a link of an address change that does nothing.
fn link_error_page(error: EmailChangeLinkError) -> HttpResponse {
    let (title, text) = match error {
        EmailChangeLinkError::Unknown | EmailChangeLinkError::Used => ("Invalid link", "This link is not valid, or it was used already."),
        EmailChangeLinkError::Expired => ("Link expired", "This link has expired. Nothing was changed."),
        EmailChangeLinkError::AddressTaken => ("Address not available", "This address belongs to another account now. Nothing was changed."),
        EmailChangeLinkError::AccountChanged => ("Address changed since", "The account's address changed after this link was sent. Nothing was changed."),
        EmailChangeLinkError::Overloaded => return actix_web::ResponseError::error_response(&ApiError::Overloaded),
        EmailChangeLinkError::Unexpected(cause) => return actix_web::ResponseError::error_response(&ApiError::from(cause)),
    };
    pages::message(StatusCode::BAD_REQUEST, title, text)
}

#[derive(Deserialize)]
pub struct TokenQuery {
    token: String,
}

/// The confirmation link sent to the new address: a page with the one button.
#[tracing::instrument(skip_all)]
pub async fn confirm_page(state: web::Data<AppState>, query: Result<web::Query<TokenQuery>, actix_web::Error>) -> HttpResponse {
    let Some(token) = query.ok().and_then(|query| LinkToken::parse(&query.token).ok()) else {
        return link_error_page(EmailChangeLinkError::Unknown);
    };
    match state.lifecycle.email_change_to_confirm(&token).await {
        Ok(change) => pages::button_form(
            "Confirm your new email address",
            &format!(
                "Press the button to use {} for your account from now on. If you did not ask for this, close this page: nothing happens without the button.",
                change.new_email.as_str()
            ),
            "confirm",
            &token,
            "Use this email address",
        ),
        Err(error) => link_error_page(error),
    }
}

/// The form of [`confirm_page`] posts here.
#[tracing::instrument(skip_all)]
pub async fn confirm_from_form(state: web::Data<AppState>, form: Result<web::Form<TokenBody>, actix_web::Error>) -> HttpResponse {
    let Some(token) = form.ok().and_then(|form| LinkToken::parse(&form.token).ok()) else {
        return link_error_page(EmailChangeLinkError::Unknown);
    };
    match state.lifecycle.confirm_email_change(&token).await {
        Ok(email) => pages::message(StatusCode::OK, "Email address changed", &format!("Your account now uses {}. Log in with it from now on.", email.as_str())),
        Err(error) => link_error_page(error),
    }
}

/// Confirms an address change, as JSON for single-page apps.
#[tracing::instrument(skip_all)]
pub async fn confirm(state: web::Data<AppState>, body: JsonObject<TokenBody>) -> Result<HttpResponse, ApiError> {
    let email = state.lifecycle.confirm_email_change(&link_token(&body.token)?).await?;
    Ok(HttpResponse::Ok().json(Data { data: EmailNow { email: email.as_str().to_owned() } }))
}

/// The undo link sent to the old address: a page with the one button.
#[tracing::instrument(skip_all)]
pub async fn undo_page(state: web::Data<AppState>, query: Result<web::Query<TokenQuery>, actix_web::Error>) -> HttpResponse {
    let Some(token) = query.ok().and_then(|query| LinkToken::parse(&query.token).ok()) else {
        return link_error_page(EmailChangeLinkError::Unknown);
    };
    match state.lifecycle.email_change_to_undo(&token).await {
        Ok(change) => pages::button_form(
            "Undo the change of address",
            &format!(
                "Someone asked to move your account from {} to {}. Press the button to keep (or get back) {}: every session is logged out, every API key revoked and the password cleared. Then choose a new one with \"forgot password\".",
                change.old_email.as_str(),
                change.new_email.as_str(),
                change.old_email.as_str()
            ),
            "undo",
            &token,
            "Undo the change",
        ),
        Err(error) => link_error_page(error),
    }
}

/// The form of [`undo_page`] posts here.
#[tracing::instrument(skip_all)]
pub async fn undo_from_form(state: web::Data<AppState>, form: Result<web::Form<TokenBody>, actix_web::Error>) -> HttpResponse {
    let Some(token) = form.ok().and_then(|form| LinkToken::parse(&form.token).ok()) else {
        return link_error_page(EmailChangeLinkError::Unknown);
    };
    match state.lifecycle.undo_email_change(&token).await {
        Ok(email) => pages::message(
            StatusCode::OK,
            "Change undone",
            &format!(
                "Your account uses {} and every session was logged out. Choose a new password now: whoever asked for the change may know it.",
                email.as_str()
            ),
        ),
        Err(error) => link_error_page(error),
    }
}

/// Undoes an address change, as JSON.
#[tracing::instrument(skip_all)]
pub async fn undo(state: web::Data<AppState>, body: JsonObject<TokenBody>) -> Result<HttpResponse, ApiError> {
    let email = state.lifecycle.undo_email_change(&link_token(&body.token)?).await?;
    Ok(HttpResponse::Ok().json(Data { data: EmailNow { email: email.as_str().to_owned() } }))
}
