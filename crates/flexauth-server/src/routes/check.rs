//! The gateway check: a reverse proxy (nginx `auth_request`, Caddy `forward_auth`, Traefik
//! `forwardAuth`, Envoy `ext_authz`) asks it whether the bearer credential of a request to the
//! operator's API may pass, and learns whose it is from the answer's headers.

use std::collections::BTreeSet;

use actix_web::http::header::CACHE_CONTROL;
use actix_web::{web, HttpRequest, HttpResponse};
use flexauth_domain::api_key::ApiKeySecret;
use flexauth_domain::bearer::Checked;
use flexauth_domain::newtypes::{space_separated, Scope};
use flexauth_domain::principal::AuthMethod;

use crate::auth::bearer_token;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// The headers of a passed check, which a gateway copies onto the request it forwards.
pub const ACCOUNT_ID_HEADER: &str = "x-flexauth-account-id";
pub const AUTH_METHOD_HEADER: &str = "x-flexauth-auth-method";
pub const SESSION_ID_HEADER: &str = "x-flexauth-session-id";
pub const KEY_ID_HEADER: &str = "x-flexauth-key-id";
pub const SCOPES_HEADER: &str = "x-flexauth-scopes";

/// The scopes a check asks for: every `scope` parameter of the query, each a space-separated
/// list (`?scope=invoices:read%20invoices:write`, or the parameter repeated).
fn wanted_scopes(query: &str) -> Result<BTreeSet<Scope>, ApiError> {
    let mut wanted = BTreeSet::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if name != "scope" {
            continue;
        }
        for text in value.split(' ').filter(|text| !text.is_empty()) {
            let scope = Scope::parse(text)
                .map_err(|error| ApiError::with_message(ErrorCode::InvalidScope, error.to_string()))?;
            wanted.insert(scope);
        }
    }
    Ok(wanted)
}

/// Checks a bearer credential for a gateway
///
/// Answers `200` with an empty body when the `Authorization: Bearer` credential (a JWT access token or an API key)
/// authenticates and holds every scope the `scope` parameter asks for; the headers name the caller, for the
/// gateway to copy onto the request it forwards. Answers every method (gateways ask with the original request's
/// method or with `GET`) and ignores any body. Reads no database for an access token, nor for an API key on
/// PostgreSQL (the key cache), and counts no usage. An access token holds every scope of
/// `FLEXAUTH_API_KEY_SCOPES`; an API key those it was created with; a scope not declared there is held by nobody.
#[utoipa::path(
    method(get, head, post, put, patch, delete, options),
    path = "/v1/auth/check", operation_id = "checkCredential", tag = "gateway", security(("bearer" = [])),
    params((
        "scope" = Option<String>, Query,
        description = "Scopes the credential must hold, space-separated (the parameter may repeat); each 1 to 64 \
            printable ASCII characters without spaces, quotes or backslashes.",
        pattern = r#"^ *([!#-\[\]-~]{1,64} *)*$"#,
        example = "invoices:read"
    )),
    responses((
        status = 200, description = "The credential may pass. No body.",
        headers(
            ("x-flexauth-account-id" = String, description = "The caller's account id (a UUID)."),
            ("x-flexauth-auth-method" = String, description = "`jwt` (an access token) or `api_key`."),
            ("x-flexauth-session-id" = String, description = "The access token's session id (`sid`); empty for an API key."),
            ("x-flexauth-key-id" = String, description = "The API key's id; empty for an access token."),
            ("x-flexauth-scopes" = String, description = "Every scope the credential holds, space-separated (empty for none)."),
            ("cache-control" = String, description = "`no-store`."),
        )
    )),
    extensions(("x-flexauth-errors" = json!(["invalid_scope", "missing_token", "invalid_token", "insufficient_scope", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all, fields(account_id))]
pub async fn check(request: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let wanted = wanted_scopes(request.query_string())?;
    let credential = bearer_token(&request)?.ok_or(ApiError::from(ErrorCode::MissingToken))?;
    let outcome = state.bearer.check(credential, &wanted).await;
    if ApiKeySecret::looks_like_api_key(credential) {
        state.metrics.api_key_check(&outcome);
    }
    let Checked { principal, scopes, .. } = outcome?;
    tracing::Span::current().record("account_id", tracing::field::display(principal.account_id));
    let mut answer = HttpResponse::Ok();
    answer
        .insert_header((ACCOUNT_ID_HEADER, principal.account_id.to_string()))
        .insert_header((SCOPES_HEADER, space_separated(&scopes)))
        .insert_header((CACHE_CONTROL, "no-store"));
    // Both id headers, the one that does not apply empty: a gateway that copies a header
    // the answer lacks may copy something else in its place (Caddy 2.6 copies its own
    // placeholder text), while an empty one is copied as nothing.
    let (method, session_id, key_id) = match principal.method {
        AuthMethod::Session(session_id) => ("jwt", session_id.to_string(), String::new()),
        AuthMethod::ApiKey(key_id) => ("api_key", String::new(), key_id.to_string()),
    };
    answer
        .insert_header((AUTH_METHOD_HEADER, method))
        .insert_header((SESSION_ID_HEADER, session_id))
        .insert_header((KEY_ID_HEADER, key_id));
    Ok(answer.finish())
}
