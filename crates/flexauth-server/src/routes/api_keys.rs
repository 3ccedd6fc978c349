use actix_web::{web, HttpRequest, HttpResponse};
use std::collections::BTreeSet;

use flexauth_domain::api_key::{ApiKey, ApiKeyId, ApiKeyName};
use flexauth_domain::newtypes::{ClientInfo, Scope};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{optional_rfc3339, rfc3339, Data, JsonAfterCaller};
use crate::auth::LiveCaller;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateBody {
    /// A label to tell keys apart: 1 to 100 characters, no control characters, not only
    /// spaces. Stored trimmed.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    name: String,
    /// An RFC 3339 instant in the future; without it the key does not expire.
    #[schema(format = DateTime, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$")]
    expires_at: Option<String>,
    /// Scopes of the vocabulary the operator declared (`FLEXAUTH_API_KEY_SCOPES`), each 1 to 64
    /// printable ASCII characters without spaces, quotes or backslashes; another is refused
    /// with `400 invalid_scope`. Without it the key carries none.
    #[schema(max_items = 64)]
    scopes: Option<Vec<String>>,
}

/// A key as listed: never the secret.
#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyView {
    id: String,
    name: String,
    prefix: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    last_used_at: Option<String>,
    #[schema(format = DateTime)]
    expires_at: Option<String>,
    /// What the key may do at the operator's API; empty for none.
    scopes: Vec<String>,
}

/// A new key, with its secret shown this once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    view: KeyView,
    key: String,
}

pub(crate) fn view(key: &ApiKey) -> Result<KeyView, ApiError> {
    Ok(KeyView {
        id: key.id().to_string(),
        name: key.name().as_str().to_owned(),
        prefix: key.prefix().to_owned(),
        created_at: rfc3339(key.created_at())?,
        last_used_at: optional_rfc3339(key.last_used_at())?,
        expires_at: optional_rfc3339(key.expires_at())?,
        scopes: key.scopes().iter().map(|scope| scope.as_str().to_owned()).collect(),
    })
}

/// Create an API key
///
/// Creates an API key for the caller's account, with the `scopes` asked for out of the vocabulary the operator
/// declared (`FLEXAUTH_API_KEY_SCOPES`, none by default; another scope gets `400 invalid_scope`). The response
/// holds the secret `key`, shown this once only. It
/// needs a recent authentication: the session must have logged in or re-authenticated (`POST
/// /v1/auth/reauthenticate`) within `FLEXAUTH_REAUTHENTICATION_WINDOW` (10 minutes by default), else `403
/// reauthentication_required`; a refresh does not renew it. Creating a key emails the owner "A new API key was
/// created". JWT only: 403 jwt_required with an API key. An API key cannot create keys. Account management: the
/// session of the access token is looked up on every call, whatever `FLEXAUTH_VERIFY_SESSION_ON_REQUEST` says; a
/// token of an ended session gets `401 invalid_token` ("the session of the access token has ended").
#[utoipa::path(
    post, path = "/v1/api-keys", operation_id = "createApiKey", tag = "api-keys", security(("bearer" = [])),
    request_body = CreateBody,
    responses((status = 201, description = "The key, with its secret, shown this once.", body = Data<CreatedKey>, headers(("cache-control" = String, description = "`no-store`.")))),
    extensions(("x-flexauth-errors" = json!(["invalid_json", "payload_too_large", "request_timeout", "unsupported_media_type", "missing_token", "invalid_token", "jwt_required", "invalid_api_key_name", "invalid_expiry", "invalid_scope", "reauthentication_required", "mfa_step_up_required", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all, fields(account_id = %caller.account_id()))]
pub async fn create(
    state: web::Data<AppState>,
    request: HttpRequest,
    caller: LiveCaller,
    body: JsonAfterCaller<CreateBody>,
) -> Result<HttpResponse, actix_web::Error> {
    let body = body?.into_inner();
    let client = state.client_info(&request);
    Ok(create_key(&state, &caller, body, client).await?)
}

async fn create_key(
    state: &AppState,
    caller: &LiveCaller,
    body: CreateBody,
    client: ClientInfo,
) -> Result<HttpResponse, ApiError> {
    let CreateBody { name, expires_at, scopes } = body;
    let name = ApiKeyName::parse(&name)?;
    let expires_at = expires_at
        .map(|text| OffsetDateTime::parse(&text, &Rfc3339).map_err(|_| ApiError::from(ErrorCode::InvalidExpiry)))
        .transpose()?;
    let scopes = scopes
        .unwrap_or_default()
        .into_iter()
        .map(|text| Scope::parse(&text))
        .collect::<Result<BTreeSet<_>, _>>()
        .map_err(|error| ApiError::with_message(ErrorCode::InvalidScope, error.to_string()))?;
    let (key, secret) = state.api_keys.create(caller, name, expires_at, scopes, client).await?;
    tracing::info!(target: "flexauth::audit", event = "api_key_created", account_id = %key.account_id(), key_id = %key.id(), "API key created");
    Ok(HttpResponse::Created()
        .insert_header(("cache-control", "no-store"))
        .json(Data { data: CreatedKey { view: view(&key)?, key: secret.expose().to_owned() } }))
}

/// List the caller's API keys
///
/// The caller's keys that are not revoked, oldest first, without their secrets. Expired keys stay listed until
/// they are revoked. JWT only: 403 jwt_required with an API key. Account management: the session of the access
/// token is looked up on every call, whatever `FLEXAUTH_VERIFY_SESSION_ON_REQUEST` says; a token of an ended
/// session gets `401 invalid_token` ("the session of the access token has ended").
#[utoipa::path(
    get, path = "/v1/api-keys", operation_id = "listApiKeys", tag = "api-keys", security(("bearer" = [])),
    responses((status = 200, description = "The keys that are not revoked, oldest first.", body = Data<Vec<KeyView>>)),
    extensions(("x-flexauth-errors" = json!(["missing_token", "invalid_token", "jwt_required", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all, fields(account_id = %caller.account_id()))]
pub async fn list(state: web::Data<AppState>, caller: LiveCaller) -> Result<HttpResponse, ApiError> {
    let keys = state.api_keys.list(&caller).await?;
    Ok(HttpResponse::Ok().json(Data { data: keys.iter().map(view).collect::<Result<Vec<_>, _>>()? }))
}

/// Revoke an API key
///
/// Revokes one of the caller's keys; the next request with it is refused, on every instance. JWT only: 403
/// jwt_required with an API key. Account management: the session of the access token is looked up on every call,
/// whatever `FLEXAUTH_VERIFY_SESSION_ON_REQUEST` says; a token of an ended session gets `401 invalid_token` ("the
/// session of the access token has ended").
#[utoipa::path(
    delete, path = "/v1/api-keys/{id}", operation_id = "revokeApiKey", tag = "api-keys", security(("bearer" = [])),
    params(("id" = String, Path, description = "An API key id (a UUID). Anything else answers `404 \
        api_key_not_found`.")),
    responses((status = 204, description = "The key is revoked. No body.")),
    extensions(("x-flexauth-errors" = json!(["missing_token", "invalid_token", "jwt_required", "api_key_not_found", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all, fields(account_id = %caller.account_id()))]
pub async fn revoke(
    state: web::Data<AppState>,
    caller: LiveCaller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = ApiKeyId::from_uuid(super::path_id(&path, ErrorCode::ApiKeyNotFound)?);
    state.api_keys.revoke(&caller, id).await?;
    tracing::info!(target: "flexauth::audit", event = "api_key_revoked", account_id = %caller.account_id(), key_id = %id, "API key revoked");
    Ok(HttpResponse::NoContent().finish())
}
