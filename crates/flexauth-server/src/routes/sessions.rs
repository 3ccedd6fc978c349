use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use flexauth_domain::account::{EmailAddress, Password};
use flexauth_domain::session::{ClientInfo, LogoutScope, SessionId, TokenPair};
use serde::{Deserialize, Serialize};

use super::{rfc3339, Credentials, Data, JsonAfterCaller, JsonObject};
use crate::auth::{bearer_token, LiveCaller};
use crate::browser::{self, BrowserPolicy};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct RefreshBody {
    refresh_token: String,
}

/// The refresh body of a client that keeps its refresh token in the cookie: it may send none.
#[derive(Deserialize, Default)]
pub struct CookieRefreshBody {
    refresh_token: Option<String>,
}

/// Exactly the login response of the contract. With the cookie transport, `refresh_token` is
/// `null`: the token is in the `Set-Cookie` header only, out of the page's reach.
#[derive(Serialize)]
pub struct TokenResponse {
    access_token: String,
    refresh_token: Option<String>,
    token_type: &'static str,
    expires_in: i64,
}

/// Token responses must not be cached (RFC 6749 §5.1). With `cookie`, the refresh token goes
/// into the refresh cookie instead of the body.
fn tokens(pair: TokenPair, cookie: Option<&BrowserPolicy>) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    response.insert_header(("cache-control", "no-store")).insert_header(("pragma", "no-cache"));
    let refresh_token = match cookie {
        Some(policy) => {
            response.append_header((header::SET_COOKIE, policy.set_cookie(&pair.refresh_token)));
            None
        }
        None => Some(pair.refresh_token),
    };
    response.json(Data { data: TokenResponse { access_token: pair.access_token, refresh_token, token_type: "bearer", expires_in: pair.expires_in } })
}

/// The refresh token of a request: from the body, or, for a client that opted in to the
/// cookie transport, from the refresh cookie.
fn presented_refresh_token(state: &AppState, request: &HttpRequest, body: &[u8], cookie_mode: bool) -> Result<String, ApiError> {
    if !cookie_mode {
        let body: RefreshBody = super::body::json_object(request, body)?;
        return Ok(body.refresh_token);
    }
    let from_body = if body.is_empty() { CookieRefreshBody::default() } else { super::body::json_object::<CookieRefreshBody>(request, body)? };
    if let Some(token) = from_body.refresh_token {
        return Ok(token);
    }
    cookie_refresh_token(state, request)
}

/// The refresh token of the refresh cookie, for a request that opted in to the cookie
/// transport from an acceptable origin.
fn cookie_refresh_token(state: &AppState, request: &HttpRequest) -> Result<String, ApiError> {
    browser::refresh_cookie(request, &state.browser)?.ok_or(ApiError::MissingToken)
}

#[tracing::instrument(skip_all)]
pub async fn login(state: web::Data<AppState>, request: HttpRequest, body: JsonObject<Credentials>) -> Result<HttpResponse, ApiError> {
    let Credentials { email, password } = body.into_inner();
    let email = EmailAddress::parse(&email)?;
    let password = Password::parse(password)?;
    // The peer, or the address trusted proxies forwarded (FLEXAUTH_TRUSTED_PROXIES).
    let user_agent = request.headers().get("user-agent").and_then(|value| value.to_str().ok());
    let mut client = ClientInfo::new(user_agent, state.client_address(&request));
    client.device = device_cookie(&request);
    let outcome = state.sessions.login(&email, &password, client).await;
    state.metrics.login(&outcome);
    let pair = outcome?;
    let new_device = pair.new_device.clone();
    let mut response = tokens(pair, browser::wants_cookie(&request).then_some(&state.browser));
    if let Some(device) = new_device {
        if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&state.device_cookie.set(&device)) {
            response.headers_mut().append(actix_web::http::header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

/// The device token of the `flexauth_device` cookie, if the request carries a well-formed one.
fn device_cookie(request: &HttpRequest) -> Option<flexauth_domain::secret::DeviceToken> {
    browser::cookie_value(request.headers(), crate::state::DEVICE_COOKIE).and_then(|value| flexauth_domain::secret::DeviceToken::parse(&value).ok())
}

/// Rotates a refresh token, taken from the body or, with `Refresh-Token-Transport: cookie`,
/// from the refresh cookie (whose successor then replaces it).
#[tracing::instrument(skip_all)]
pub async fn refresh(state: web::Data<AppState>, request: HttpRequest, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let cookie_mode = browser::wants_cookie(&request);
    let refresh_token = presented_refresh_token(&state, &request, &body, cookie_mode)?;
    let outcome = state.sessions.refresh(&refresh_token, state.client_address(&request).as_deref()).await;
    state.metrics.refresh(&outcome);
    let pair = outcome?;
    Ok(tokens(pair, cookie_mode.then_some(&state.browser)))
}

#[derive(Deserialize, Default)]
pub struct LogoutBody {
    refresh_token: Option<String>,
    scope: Option<String>,
}

fn scope(text: Option<&str>) -> Result<LogoutScope, ApiError> {
    match text {
        None | Some("current") => Ok(LogoutScope::Current),
        Some("others") => Ok(LogoutScope::Others),
        Some("global") => Ok(LogoutScope::Global),
        Some(_) => Err(ApiError::InvalidScope),
    }
}

/// With a bearer access token: ends the caller's session, or with `{"scope": "others"}` /
/// `{"scope": "global"}` the account's other sessions or all of them. Without one: ends the
/// session of the `refresh_token` in the body.
#[tracing::instrument(skip_all)]
pub async fn logout(state: web::Data<AppState>, request: HttpRequest, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let body: LogoutBody = if body.is_empty() {
        LogoutBody::default()
    } else {
        super::body::any_object(&body)?
    };
    let cookie_mode = browser::wants_cookie(&request);
    if cookie_mode && body.refresh_token.is_none() && bearer_token(&request)?.is_none() {
        let refresh_token = cookie_refresh_token(&state, &request)?;
        state.sessions.logout_with_refresh_token(&refresh_token).await?;
        return Ok(HttpResponse::NoContent().insert_header((header::SET_COOKIE, state.browser.clear_cookie())).finish());
    }
    if let Some(token) = bearer_token(&request)? {
        let caller = state.bearer.authenticate(token).await?;
        let scope = scope(body.scope.as_deref())?;
        state.sessions.logout(&caller, scope).await?;
        tracing::info!(target: "flexauth::audit", event = "logout", account_id = %caller.account_id, ?scope, "logged out");
    } else {
        let refresh_token = body.refresh_token.ok_or(ApiError::MissingToken)?;
        state.sessions.logout_with_refresh_token(&refresh_token).await?;
    }
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Serialize)]
pub struct SessionView {
    id: String,
    created_at: String,
    last_refreshed_at: String,
    user_agent: Option<String>,
    ip: Option<String>,
    current: bool,
}

#[tracing::instrument(skip_all, fields(account_id = %caller.0.account_id()))]
pub async fn list(state: web::Data<AppState>, caller: LiveCaller) -> Result<HttpResponse, ApiError> {
    let sessions = state.sessions.list(&caller.0).await?;
    let views = sessions
        .into_iter()
        .map(|summary| {
            let stored = summary.session.stored();
            Ok(SessionView {
                id: stored.id.to_string(),
                created_at: rfc3339(stored.created_at)?,
                last_refreshed_at: rfc3339(stored.current_issued_at)?,
                user_agent: stored.client.user_agent.clone(),
                ip: stored.client.ip.clone(),
                current: summary.current,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(HttpResponse::Ok().json(Data { data: views }))
}

#[tracing::instrument(skip_all, fields(account_id = %caller.0.account_id()))]
pub async fn revoke(state: web::Data<AppState>, caller: LiveCaller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = uuid::Uuid::parse_str(&path).map(SessionId::from_uuid).map_err(|_| ApiError::SessionNotFound)?;
    state.sessions.revoke(&caller.0, id).await?;
    tracing::info!(target: "flexauth::audit", event = "session_revoked", account_id = %caller.0.account_id(), session_id = %id, "session revoked by its owner");
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
pub struct ReauthenticateBody {
    password: String,
}

#[derive(Serialize)]
pub struct Reauthenticated {
    authenticated_at: String,
}

/// Renews the session's recent authentication with the account's password, for the operations
/// that need one (creating an API key).
#[tracing::instrument(skip_all, fields(account_id = %caller.0.account_id()))]
pub async fn reauthenticate(
    state: web::Data<AppState>,
    request: HttpRequest,
    caller: LiveCaller,
    body: JsonAfterCaller<ReauthenticateBody>,
) -> Result<HttpResponse, actix_web::Error> {
    let body = body?.into_inner();
    Ok(reauthenticate_caller(&state, &request, &caller, body).await?)
}

async fn reauthenticate_caller(state: &AppState, request: &HttpRequest, caller: &LiveCaller, body: ReauthenticateBody) -> Result<HttpResponse, ApiError> {
    let password = Password::parse(body.password)?;
    let authenticated_at = state.sessions.reauthenticate(&caller.0, &password, state.client_address(request).as_deref()).await?;
    Ok(HttpResponse::Ok().json(Data { data: Reauthenticated { authenticated_at: rfc3339(authenticated_at)? } }))
}
