use actix_web::{web, HttpResponse};
use flexauth_domain::api_key::{ApiKey, ApiKeyId, ApiKeyName};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{optional_rfc3339, rfc3339, Data, JsonAfterCaller};
use crate::auth::LiveCaller;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct CreateBody {
    name: String,
    /// RFC 3339; keys do not expire unless this is given.
    expires_at: Option<String>,
}

/// A key as listed: never the secret.
#[derive(Serialize)]
pub struct KeyView {
    id: String,
    name: String,
    prefix: String,
    created_at: String,
    last_used_at: Option<String>,
    expires_at: Option<String>,
}

/// A new key, with its secret shown this once.
#[derive(Serialize)]
pub struct CreatedKey {
    #[serde(flatten)]
    view: KeyView,
    key: String,
}

pub(crate) fn view(key: &ApiKey) -> Result<KeyView, ApiError> {
    Ok(KeyView {
        id: key.id.to_string(),
        name: key.name.as_str().to_owned(),
        prefix: key.prefix.clone(),
        created_at: rfc3339(key.created_at)?,
        last_used_at: optional_rfc3339(key.last_used_at)?,
        expires_at: optional_rfc3339(key.expires_at)?,
    })
}

#[tracing::instrument(skip_all, fields(account_id = %caller.0.account_id()))]
pub async fn create(state: web::Data<AppState>, caller: LiveCaller, body: JsonAfterCaller<CreateBody>) -> Result<HttpResponse, actix_web::Error> {
    let body = body?.into_inner();
    Ok(create_key(&state, &caller, body).await?)
}

async fn create_key(state: &AppState, caller: &LiveCaller, body: CreateBody) -> Result<HttpResponse, ApiError> {
    let CreateBody { name, expires_at } = body;
    let name = ApiKeyName::parse(&name)?;
    let expires_at = expires_at.map(|text| OffsetDateTime::parse(&text, &Rfc3339).map_err(|_| ApiError::InvalidExpiry)).transpose()?;
    let (key, secret) = state.api_keys.create(&caller.0, name, expires_at).await?;
    tracing::info!(target: "flexauth::audit", event = "api_key_created", account_id = %key.account_id, key_id = %key.id, "API key created");
    Ok(HttpResponse::Created()
        .insert_header(("cache-control", "no-store"))
        .json(Data { data: CreatedKey { view: view(&key)?, key: secret.expose().to_owned() } }))
}

#[tracing::instrument(skip_all, fields(account_id = %caller.0.account_id()))]
pub async fn list(state: web::Data<AppState>, caller: LiveCaller) -> Result<HttpResponse, ApiError> {
    let keys = state.api_keys.list(&caller.0).await?;
    Ok(HttpResponse::Ok().json(Data { data: keys.iter().map(view).collect::<Result<Vec<_>, _>>()? }))
}

#[tracing::instrument(skip_all, fields(account_id = %caller.0.account_id()))]
pub async fn revoke(state: web::Data<AppState>, caller: LiveCaller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = uuid::Uuid::parse_str(&path).map(ApiKeyId::from_uuid).map_err(|_| ApiError::ApiKeyNotFound)?;
    state.api_keys.revoke(&caller.0, id).await?;
    tracing::info!(target: "flexauth::audit", event = "api_key_revoked", account_id = %caller.0.account_id(), key_id = %id, "API key revoked");
    Ok(HttpResponse::NoContent().finish())
}
