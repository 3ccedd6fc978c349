//! Token introspection (RFC 7662), for resource servers that are not behind a gateway: they ask
//! with their OAuth library, authenticated as a client the operator registered.

use actix_web::error::PayloadError;
use actix_web::http::header::{self, CACHE_CONTROL};
use actix_web::{web, HttpMessage as _, HttpRequest, HttpResponse};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use flexauth_domain::bearer::Checked;
use flexauth_domain::introspection::IntrospectError;
use flexauth_domain::newtypes::space_separated;
use flexauth_domain::principal::AuthMethod;
use serde::Serialize;

use super::FORM;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// The form of an introspection request (RFC 7662 §2.1).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Read from the form by hand (one `token`, no other repeats); here for the document.
struct IntrospectionForm {
    /// The access token or API key to introspect: at most 1024 characters (flexauth's are under
    /// 600).
    #[schema(max_length = 1024)]
    token: String,
    /// `access_token`, `api_key` or anything else of at most 64 characters: flexauth tells the
    /// kinds apart by their form and ignores the hint.
    #[schema(max_length = 64)]
    token_type_hint: Option<String>,
}

/// The answer for an active credential (RFC 7662 §2.2). An inactive one is exactly
/// `{"active": false}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Introspection {
    active: bool,
    /// The account id.
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    /// `access_token` or `api_key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, pattern = "^(access_token|api_key)$")]
    token_type: Option<&'static str>,
    /// Every scope the credential holds, space-separated (empty for none).
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    /// Expiry in seconds since the epoch; absent for a key that does not expire.
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    /// Issue (a key: its creation), in seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    /// flexauth's public URL, the `iss` of its access tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    /// `FLEXAUTH_ACCESS_TOKEN_AUDIENCE`, the `aud` of its access tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
    /// The access token's session.
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    /// The API key's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
}

impl Introspection {
    fn inactive() -> Self {
        Self {
            active: false,
            sub: None,
            token_type: None,
            scope: None,
            exp: None,
            iat: None,
            iss: None,
            aud: None,
            sid: None,
            key_id: None,
        }
    }

    fn active(checked: Checked, state: &AppState) -> Self {
        let (token_type, sid, key_id) = match checked.principal.method {
            AuthMethod::Session(session_id) => ("access_token", Some(session_id.to_string()), None),
            AuthMethod::ApiKey(key_id) => ("api_key", None, Some(key_id.to_string())),
        };
        Self {
            active: true,
            sub: Some(checked.principal.account_id.to_string()),
            token_type: Some(token_type),
            scope: Some(space_separated(&checked.scopes)),
            exp: checked.expires_at.map(|at| at.unix_timestamp()),
            iat: Some(checked.issued_at.unix_timestamp()),
            iss: Some(state.token_issuer.clone()),
            aud: Some(state.token_audience.clone()),
            sid,
            key_id,
        }
    }
}

/// The client credentials of an `Authorization: Basic` header: the id and the secret, each
/// form-urlencoded before the encoding (RFC 6749 §2.3.1).
fn basic_credentials(request: &HttpRequest) -> Option<(String, String)> {
    let value = request.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |text: &str| {
        url::form_urlencoded::parse(format!("v={text}").as_bytes()).next().map(|(_, value)| value.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

/// The `token` of the form: exactly one, and at most one `token_type_hint` (RFC 7662 §2.1 says
/// nothing of repeats; a repeat is ambiguous, so it is refused).
fn token_of(body: &[u8]) -> Result<String, ApiError> {
    let (mut token, mut hints) = (None, 0);
    for (name, value) in url::form_urlencoded::parse(body) {
        match name.as_ref() {
            "token" if token.is_none() => token = Some(value.into_owned()),
            "token" => return Err(ApiError::with_message(ErrorCode::InvalidRequest, "`token` was given twice")),
            "token_type_hint" if value.chars().count() > MAX_HINT_CHARS => {
                return Err(ApiError::with_message(
                    ErrorCode::InvalidRequest,
                    "`token_type_hint` is longer than 64 characters",
                ))
            }
            "token_type_hint" => hints += 1,
            _ => {}
        }
    }
    if hints > 1 {
        return Err(ApiError::with_message(ErrorCode::InvalidRequest, "`token_type_hint` was given twice"));
    }
    let token = token.ok_or_else(|| ApiError::with_message(ErrorCode::InvalidRequest, "the form has no `token`"))?;
    if token.chars().count() > MAX_TOKEN_CHARS {
        return Err(ApiError::with_message(ErrorCode::InvalidRequest, "the token is longer than 1024 characters"));
    }
    Ok(token)
}

/// The longest `token` introspected; flexauth's own are under 600 characters. Percent-encoded,
/// the longest form stays within the 16 KiB body limit, so a too long token gets its own
/// answer rather than `413`.
const MAX_TOKEN_CHARS: usize = 1024;
/// The longest `token_type_hint`, for the same reason (the hint is ignored).
const MAX_HINT_CHARS: usize = 64;

/// A body that could not be read: too large, too slow, or cut off.
fn unreadable(error: &actix_web::Error) -> ApiError {
    match error.as_error::<PayloadError>() {
        Some(PayloadError::Overflow) => ErrorCode::PayloadTooLarge.into(),
        Some(cause) if crate::body_deadline::is_body_timeout(cause) => ErrorCode::RequestTimeout.into(),
        _ => ApiError::with_message(ErrorCode::InvalidRequest, "the form could not be read"),
    }
}

/// Introspect a token (RFC 7662)
///
/// Tells a registered resource server whether `token` (an access token or an API key) is active, whose it is and
/// what it may do. The resource server authenticates with HTTP Basic (`client_secret_basic`): the `client_id` and
/// `client_secret` that `flexauth clients create` printed. The form is `application/x-www-form-urlencoded` with
/// `token` and an optional `token_type_hint`, which is ignored. Anything but an active access token or API key (a
/// refresh token, an expired, revoked or unknown credential) is exactly `{"active": false}`. The same caches and
/// the same revocation as `/v1/auth/check`: an ended session's access token and a revoked key are inactive at once.
#[utoipa::path(
    post, path = "/v1/auth/introspect", operation_id = "introspectToken", tag = "gateway",
    security(("client" = [])),
    request_body(content = IntrospectionForm, content_type = "application/x-www-form-urlencoded"),
    responses((
        status = 200, description = "Whether the token is active, and if so whose it is. Not wrapped in `data` (RFC 7662).",
        body = Introspection,
        headers(("cache-control" = String, description = "`no-store`."))
    )),
    extensions(("x-flexauth-errors" = json!(["invalid_request", "payload_too_large", "request_timeout", "unsupported_media_type", "invalid_client", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all, fields(client_id))]
pub async fn introspect(
    request: HttpRequest,
    state: web::Data<AppState>,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    // The client first: whoever is not one learns nothing, not even what is wrong with the form.
    let outcome = match basic_credentials(&request) {
        Some((id, secret)) => state.introspection.authenticate_client(&id, &secret).await,
        None => Err(IntrospectError::InvalidClient),
    };
    let client = outcome.inspect_err(|_| state.metrics.introspection("invalid_client"))?;
    tracing::Span::current().record("client_id", tracing::field::display(client.id));
    let body = body.map_err(|error| unreadable(&error))?;
    if request.content_type() != FORM {
        return Err(ApiError::with_message(
            ErrorCode::UnsupportedMediaType,
            "the request body must be application/x-www-form-urlencoded",
        ));
    }
    let token = token_of(&body)?;
    let answer = match state.introspection.introspect(&token).await? {
        Some(checked) => Introspection::active(checked, &state),
        None => Introspection::inactive(),
    };
    state.metrics.introspection(if answer.active { "active" } else { "inactive" });
    Ok(HttpResponse::Ok().insert_header((CACHE_CONTROL, "no-store")).json(answer))
}
