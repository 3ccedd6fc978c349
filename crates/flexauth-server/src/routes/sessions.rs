use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use flexauth_domain::account::{EmailAddress, Password};
use flexauth_domain::mfa::SecondFactorProof;
use flexauth_domain::session::{LogoutScope, RefreshError, SessionId, TokenPair};
use serde::{Deserialize, Serialize};

use super::{rfc3339, Credentials, Data, JsonAfterCaller, JsonObject};
use crate::auth::{bearer_token, LiveCaller};
use crate::browser::{self, BrowserPolicy};
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
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
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    access_token: String,
    refresh_token: Option<String>,
    #[schema(value_type = String, pattern = "^bearer$")]
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
    response.json(Data {
        data: TokenResponse {
            access_token: pair.access_token,
            refresh_token,
            token_type: "bearer",
            expires_in: pair.expires_in,
        },
    })
}

/// The refresh token of a request: from the body, or, for a client that opted in to the
/// cookie transport, from the refresh cookie.
fn presented_refresh_token(
    state: &AppState,
    request: &HttpRequest,
    body: &[u8],
    cookie_mode: bool,
) -> Result<String, ApiError> {
    if !cookie_mode {
        let body: RefreshBody = super::body::json_object(request, body)?;
        return Ok(body.refresh_token);
    }
    let from_body: CookieRefreshBody = super::body::optional_json_object(request, body)?;
    if let Some(token) = from_body.refresh_token {
        return Ok(token);
    }
    cookie_refresh_token(state, request)
}

/// The refresh token of the refresh cookie, for a request that opted in to the cookie
/// transport from an acceptable origin.
fn cookie_refresh_token(state: &AppState, request: &HttpRequest) -> Result<String, ApiError> {
    browser::refresh_cookie(request, &state.browser)?.ok_or(ApiError::from(ErrorCode::MissingToken))
}

/// Log in
///
/// Exchanges email and password for an access token and a refresh token, and opens a session. Login applies no
/// password rule other than the 256-character limit. Right after a sign-up, until the worker has created the
/// account (usually within milliseconds; at most 1 s), the answer is `401 invalid_credentials`. On an unverified
/// account, the password of any pending sign-up attempt gets `403 email_not_verified`. On an account an operator
/// disabled (`flexauth accounts disable ID`), the right password gets `403 account_disabled` and opens no
/// session; a wrong password still gets `401 invalid_credentials`. A login counts as a recent authentication (for
/// `POST /v1/api-keys`, `DELETE /v1/auth/account` and `POST /v1/auth/email/change`) during
/// `FLEXAUTH_REAUTHENTICATION_WINDOW`. On an account with a second factor, the right password gets no tokens but
/// `403 mfa_required`, whose error object also holds `mfa_token` (single use, valid `expires_in` = 300 seconds)
/// and `methods` (`totp`, and `recovery_code` while unused ones are left): finish at `POST /v1/auth/login/mfa`. A
/// wrong password answers the same whether or not the account has a factor.
#[utoipa::path(
    post, path = "/v1/auth/login", operation_id = "login", tag = "sessions",
    params(("Refresh-Token-Transport" = Option<String>, Header, description = "`cookie` (any case): keep the \
        refresh token in the `__Host-flexauth_refresh` cookie (Secure, HttpOnly, SameSite=Strict, `Path=/`, no `Domain`; a request carrying two of them gets `401 invalid_refresh_token`) instead of the body, where `refresh_token` is then `null`; refresh and logout then read it from that cookie, only with this header and from flexauth's own origin or one on `FLEXAUTH_CORS_ORIGINS` (else `403 origin_not_allowed`). Any other value, or none, keeps the refresh token in the body.")),
    request_body = Credentials,
    responses((status = 200, description = "A new session's tokens.", body = Data<TokenResponse>, headers(("cache-control" = String, description = "`no-store` (RFC 6749 §5.1)."), ("pragma" = String, description = "`no-cache`."), ("set-cookie" = String, description = "With `Refresh-Token-Transport: cookie`, the refresh cookie; after a login, the `flexauth_device` cookie of a new device.")))),
    extensions(("x-flexauth-errors" = json!(["invalid_json", "payload_too_large", "request_timeout", "unsupported_media_type", "invalid_email", "password_too_long", "invalid_credentials", "mfa_required", "email_not_verified", "account_disabled", "rate_limited", "overloaded", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all)]
pub async fn login(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: JsonObject<Credentials>,
) -> Result<HttpResponse, ApiError> {
    let Credentials { email, password } = body.into_inner();
    let email = EmailAddress::parse(&email)?;
    let password = Password::parse(password)?;
    let mut client = state.client_info(&request);
    client.device = device_cookie(&request);
    let outcome = state.sessions.login(&email, &password, client).await;
    state.metrics.login(&outcome);
    Ok(login_response(&state, &request, outcome?))
}

/// The answer to a login that opened a session: the tokens, in the body or the refresh cookie
/// as the client asked, and the cookie of a new device.
pub(crate) fn login_response(state: &AppState, request: &HttpRequest, pair: TokenPair) -> HttpResponse {
    let new_device = pair.new_device.clone();
    let mut response = tokens(pair, browser::wants_cookie(request).then_some(&state.browser));
    if let Some(device) = new_device {
        if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&state.device_cookie.set(&device)) {
            response.headers_mut().append(actix_web::http::header::SET_COOKIE, value);
        }
    }
    response
}

/// The device token of the `flexauth_device` cookie, if the request carries a well-formed one.
pub(crate) fn device_cookie(request: &HttpRequest) -> Option<flexauth_domain::secret::DeviceToken> {
    browser::cookie_value(request.headers(), crate::state::DEVICE_COOKIE)
        .and_then(|value| flexauth_domain::secret::DeviceToken::parse(&value).ok())
}

/// Rotate a refresh token
///
/// Spends a refresh token and returns a new pair, in the same shape and with the same headers as login. The token
/// just replaced, presented again within the grace window (10 s by default), gets the current pair again; any
/// other spent token revokes the whole session (`401 refresh_token_reused`) and emails the owner "Someone may
/// have a copy of your session". A refresh does not renew the session's recent authentication.
#[utoipa::path(
    post, path = "/v1/auth/refresh", operation_id = "refreshTokens", tag = "sessions",
    params(("Refresh-Token-Transport" = Option<String>, Header, description = "`cookie` (any case): keep the \
        refresh token in the `__Host-flexauth_refresh` cookie (Secure, HttpOnly, SameSite=Strict, `Path=/`, no `Domain`; a request carrying two of them gets `401 invalid_refresh_token`) instead of the body, where `refresh_token` is then `null`; refresh and logout then read it from that cookie, only with this header and from flexauth's own origin or one on `FLEXAUTH_CORS_ORIGINS` (else `403 origin_not_allowed`). Any other value, or none, keeps the refresh token in the body.")),
    request_body(description = "The refresh token; with `Refresh-Token-Transport: cookie` the body may be left out, \
        and the cookie is read.", content((RefreshBody = "application/json"))),
    responses((status = 200, description = "The successor pair.", body = Data<TokenResponse>, headers(("cache-control" = String, description = "`no-store` (RFC 6749 §5.1)."), ("pragma" = String, description = "`no-cache`."), ("set-cookie" = String, description = "With `Refresh-Token-Transport: cookie`, the refresh cookie; after a login, the `flexauth_device` cookie of a new device.")))),
    extensions(("x-flexauth-errors" = json!(["invalid_json", "payload_too_large", "request_timeout", "unsupported_media_type", "invalid_refresh_token", "refresh_token_expired", "session_revoked", "refresh_token_reused", "missing_token", "origin_not_allowed", "rate_limited", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all)]
pub async fn refresh(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let cookie_mode = browser::wants_cookie(&request);
    let refresh_token = presented_refresh_token(&state, &request, &body, cookie_mode)?;
    let outcome = state.sessions.refresh(&refresh_token, state.client_address(&request).as_deref()).await;
    if let Err(RefreshError::Reused { account_id, session_id }) = &outcome {
        // A spent refresh token came back, so someone else may hold the session's tokens.
        tracing::warn!(target: "flexauth::audit", event = "refresh_token_reuse", %account_id, %session_id, "spent refresh token presented; session revoked");
    }
    state.metrics.refresh(&outcome);
    let pair = outcome?;
    Ok(tokens(pair, cookie_mode.then_some(&state.browser)))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct LogoutBody {
    /// Without a bearer: a refresh token of the session to end.
    refresh_token: Option<String>,
    /// With a bearer: which sessions to end (`current` by default).
    #[schema(pattern = "^(current|others|global)$")]
    scope: Option<String>,
}

fn scope(text: Option<&str>) -> Result<LogoutScope, ApiError> {
    match text {
        None | Some("current") => Ok(LogoutScope::Current),
        Some("others") => Ok(LogoutScope::Others),
        Some("global") => Ok(LogoutScope::Global),
        Some(_) => {
            Err(ApiError::with_message(ErrorCode::InvalidScope, "scope must be \"current\", \"others\" or \"global\""))
        }
    }
}

/// End sessions
///
/// Two ways to call it. (1) With `Authorization: Bearer <access_token>` and an optional body `{"scope": "current"
/// | "others" | "global"}`: ends the caller's session (`current`, the default, also with no body), every other
/// session of the account (`others`), or every session (`global`); a `refresh_token` in the body is then ignored.
/// JWT only: 403 jwt_required with an API key. (2) Without an `Authorization` header and with a body
/// `{"refresh_token": "…"}`: ends that token's session (any refresh token of the session works, even a spent or
/// expired one). A body, when there is one, must be a JSON object; it is read whatever its `Content-Type`. Ending
/// a session that has already ended also answers `204` with scope `current` or a refresh token. With scope
/// `others` or `global` the session of the access token is looked up, whatever
/// `FLEXAUTH_VERIFY_SESSION_ON_REQUEST` says: a token of an ended session gets `401 invalid_token` ("the session
/// of the access token has ended").
#[utoipa::path(
    post, path = "/v1/auth/logout", operation_id = "logout", tag = "sessions", security(("bearer" = []), ()),
    params(("Refresh-Token-Transport" = Option<String>, Header, description = "`cookie` (any case): keep the \
        refresh token in the `__Host-flexauth_refresh` cookie (Secure, HttpOnly, SameSite=Strict, `Path=/`, no `Domain`; a request carrying two of them gets `401 invalid_refresh_token`) instead of the body, where `refresh_token` is then `null`; refresh and logout then read it from that cookie, only with this header and from flexauth's own origin or one on `FLEXAUTH_CORS_ORIGINS` (else `403 origin_not_allowed`). Any other value, or none, keeps the refresh token in the body.")),
    request_body(description = "Optional. With a bearer: `scope`. Without one: `refresh_token` (required \
        then).", content = LogoutBody, content_type = "application/json"),
    responses((status = 204, description = "The sessions are ended. No body.", headers(("set-cookie" = String, description = "With `Refresh-Token-Transport: cookie`, the refresh cookie, cleared.")))),
    extensions(("x-flexauth-optional-body" = json!(true)), ("x-flexauth-errors" = json!(["invalid_json", "payload_too_large", "request_timeout", "invalid_scope", "missing_token", "invalid_token", "invalid_refresh_token", "jwt_required", "origin_not_allowed", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all)]
pub async fn logout(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let body: LogoutBody = if body.is_empty() { LogoutBody::default() } else { super::body::any_object(&body)? };
    let cookie_mode = browser::wants_cookie(&request);
    if cookie_mode && body.refresh_token.is_none() && bearer_token(&request)?.is_none() {
        let refresh_token = cookie_refresh_token(&state, &request)?;
        state.sessions.logout_with_refresh_token(&refresh_token).await?;
        return Ok(HttpResponse::NoContent()
            .insert_header((header::SET_COOKIE, state.browser.clear_cookie()))
            .finish());
    }
    if let Some(token) = bearer_token(&request)? {
        let caller = state.bearer.authenticate(token).await?;
        let scope = scope(body.scope.as_deref())?;
        state.sessions.logout(&caller, scope).await?;
        tracing::info!(target: "flexauth::audit", event = "logout", account_id = %caller.account_id, ?scope, "logged out");
    } else {
        let refresh_token = body.refresh_token.ok_or(ApiError::from(ErrorCode::MissingToken))?;
        state.sessions.logout_with_refresh_token(&refresh_token).await?;
    }
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionView {
    id: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    last_refreshed_at: String,
    user_agent: Option<String>,
    ip: Option<String>,
    current: bool,
    /// How the session's login was made (RFC 8176), as its access tokens say: `["pwd"]`, or
    /// `["pwd", "otp", "mfa"]` with a second factor.
    amr: Vec<&'static str>,
}

/// List the account's live sessions
///
/// The account's live sessions, newest first. JWT only: 403 jwt_required with an API key. Account management: the
/// session of the access token is looked up on every call, whatever `FLEXAUTH_VERIFY_SESSION_ON_REQUEST` says; a
/// token of an ended session gets `401 invalid_token` ("the session of the access token has ended").
#[utoipa::path(
    get, path = "/v1/auth/sessions", operation_id = "listSessions", tag = "sessions", security(("bearer" = [])),
    responses((status = 200, description = "The live sessions, newest first.", body = Data<Vec<SessionView>>)),
    extensions(("x-flexauth-errors" = json!(["missing_token", "invalid_token", "jwt_required", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all, fields(account_id = %caller.account_id()))]
pub async fn list(state: web::Data<AppState>, caller: LiveCaller) -> Result<HttpResponse, ApiError> {
    let sessions = state.sessions.list(&caller).await?;
    let views = sessions
        .into_iter()
        .map(|summary| {
            let session = &summary.session;
            Ok(SessionView {
                id: session.id().to_string(),
                created_at: rfc3339(session.created_at())?,
                last_refreshed_at: rfc3339(session.last_refreshed_at())?,
                user_agent: session.client().user_agent.clone(),
                ip: session.client().ip.clone(),
                current: summary.current,
                amr: session.methods().amr(),
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(HttpResponse::Ok().json(Data { data: views }))
}

/// End one session
///
/// Ends one session of the caller's account, the caller's own included; its refresh tokens stop working at once.
/// Answers `204` also when that session had already ended. JWT only: 403 jwt_required with an API key. Account
/// management: the session of the access token is looked up on every call, whatever
/// `FLEXAUTH_VERIFY_SESSION_ON_REQUEST` says; a token of an ended session gets `401 invalid_token` ("the session
/// of the access token has ended").
#[utoipa::path(
    delete, path = "/v1/auth/sessions/{id}", operation_id = "revokeSession", tag = "sessions", security(("bearer" = [])),
    params(("id" = String, Path, description = "A session id (a UUID). Anything else answers `404 \
        session_not_found`.")),
    responses((status = 204, description = "The session is ended. No body.")),
    extensions(("x-flexauth-errors" = json!(["missing_token", "invalid_token", "jwt_required", "session_not_found", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all, fields(account_id = %caller.account_id()))]
pub async fn revoke(
    state: web::Data<AppState>,
    caller: LiveCaller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = SessionId::from_uuid(super::path_id(&path, ErrorCode::SessionNotFound)?);
    state.sessions.revoke(&caller, id).await?;
    tracing::info!(target: "flexauth::audit", event = "session_revoked", account_id = %caller.account_id(), session_id = %id, "session revoked by its owner");
    Ok(HttpResponse::NoContent().finish())
}

/// The account's password.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordProof {
    #[schema(max_length = 256, format = Password)]
    password: String,
}

/// A code of the account's authenticator: a step-up.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeProof {
    #[schema(max_length = 64)]
    code: String,
}

/// One of the account's recovery codes: a step-up.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoveryCodeProof {
    #[schema(max_length = 64)]
    recovery_code: String,
}

/// The password, a code or a recovery code: exactly one.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ReauthenticateBody {
    Password(PasswordProof),
    Code(CodeProof),
    RecoveryCode(RecoveryCodeProof),
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Reauthenticated {
    /// After a password: when the session proved it.
    #[schema(format = DateTime)]
    #[serde(skip_serializing_if = "Option::is_none")]
    authenticated_at: Option<String>,
    /// After a code: when the session proved the second factor.
    #[schema(format = DateTime)]
    #[serde(skip_serializing_if = "Option::is_none")]
    second_factor_at: Option<String>,
}

/// Re-enter the password, or prove the second factor
///
/// With `password`: renews the recent authentication of the caller's session by checking the account's password.
/// With `code` (the authenticator's) or `recovery_code` instead: a step-up, which renews the session's recent second
/// factor; on an account with a factor, the operations that need a recent authentication need one too (`403
/// mfa_step_up_required`), as do a password change and the changes of factors. A wrong code gets `400
/// invalid_code` and counts against the account's limit of wrong codes; a code passes once. Exactly one of the
/// three fields (else `400 invalid_json`). `POST
/// /v1/api-keys`, `DELETE /v1/auth/account`, `GET /v1/auth/account/export` and `POST /v1/auth/email/change` need a
/// session that logged in or re-authenticated within `FLEXAUTH_REAUTHENTICATION_WINDOW` (10 minutes by default).
/// Each check of the password counts, before the hash, against three limits shared with `POST
/// /v1/auth/password/change`: 5 per session, 10 per account and 30 per client address in 15 minutes (`429
/// rate_limited` past one); a right password takes its count back. A wrong password is recorded as
/// `password_check_failed`; the one that uses up the session's five ends the session (`session_ended_for_password_failures`,
/// and the owner gets "A session was ended after wrong passwords"), so the next call gets `401 invalid_token`. JWT only: 403 jwt_required
/// with an API key. Account management: the session of the access token is looked up on every call, whatever
/// `FLEXAUTH_VERIFY_SESSION_ON_REQUEST` says; a token of an ended session gets `401 invalid_token` ("the session
/// of the access token has ended").
#[utoipa::path(
    post, path = "/v1/auth/reauthenticate", operation_id = "reauthenticate", tag = "sessions", security(("bearer" = [])),
    request_body = ReauthenticateBody,
    responses((status = 200, description = "The session's recent authentication is renewed.", body = Data<Reauthenticated>)),
    extensions(("x-flexauth-errors" = json!(["invalid_json", "payload_too_large", "request_timeout", "unsupported_media_type", "missing_token", "invalid_token", "jwt_required", "password_too_long", "invalid_current_password", "invalid_code", "rate_limited", "overloaded", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all, fields(account_id = %caller.account_id()))]
pub async fn reauthenticate(
    state: web::Data<AppState>,
    request: HttpRequest,
    caller: LiveCaller,
    body: JsonAfterCaller<ReauthenticateBody>,
) -> Result<HttpResponse, actix_web::Error> {
    let body = body?.into_inner();
    Ok(reauthenticate_caller(&state, &request, &caller, body).await?)
}

async fn reauthenticate_caller(
    state: &AppState,
    request: &HttpRequest,
    caller: &LiveCaller,
    body: ReauthenticateBody,
) -> Result<HttpResponse, ApiError> {
    let client = state.client_info(request);
    let proof = match body {
        ReauthenticateBody::Password(PasswordProof { password }) => {
            let password = Password::parse(password)?;
            let at = state.sessions.reauthenticate(caller, &password, &client).await?;
            let data = Reauthenticated { authenticated_at: Some(rfc3339(at)?), second_factor_at: None };
            return Ok(HttpResponse::Ok().json(Data { data }));
        }
        ReauthenticateBody::Code(CodeProof { code }) => SecondFactorProof::Code(code),
        ReauthenticateBody::RecoveryCode(RecoveryCodeProof { recovery_code }) => {
            SecondFactorProof::RecoveryCode(recovery_code)
        }
    };
    let at = state.sessions.step_up(caller, &proof, &client).await?;
    let data = Reauthenticated { authenticated_at: None, second_factor_at: Some(rfc3339(at)?) };
    Ok(HttpResponse::Ok().json(Data { data }))
}
