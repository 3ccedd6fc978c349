use actix_web::{web, HttpResponse};
use flexauth_domain::principal::AuthMethod;
use serde::Serialize;

use super::Data;
use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Usage {
    account_id: String,
    #[schema(value_type = String, pattern = "^(jwt|api_key)$")]
    auth_method: &'static str,
    session_id: Option<String>,
    key_id: Option<String>,
    #[schema(format = Date)]
    day: String,
    requests_today: u64,
}

/// Who is calling, how, and how much
///
/// The example protected endpoint: the caller's account, how it authenticated, and how many authenticated
/// `/v1/usage` requests the account made today (UTC), this one included. Accepts a JWT access token or an API
/// key.
#[utoipa::path(
    get, path = "/v1/usage", operation_id = "getUsage", tag = "usage", security(("bearer" = [])),
    responses((status = 200, description = "The caller and today's count.", body = Data<Usage>)),
    extensions(("x-flexauth-errors" = json!(["missing_token", "invalid_token", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all, fields(account_id = %caller.account_id))]
pub async fn usage(state: web::Data<AppState>, caller: Authenticated) -> Result<HttpResponse, ApiError> {
    let principal = &*caller;
    let report = state.usage.record(principal.account_id).await?;
    let (auth_method, session_id, key_id) = match principal.method {
        AuthMethod::Session(session_id) => ("jwt", Some(session_id.to_string()), None),
        AuthMethod::ApiKey(key_id) => ("api_key", None, Some(key_id.to_string())),
    };
    Ok(HttpResponse::Ok().json(Data {
        data: Usage {
            account_id: principal.account_id.to_string(),
            auth_method,
            session_id,
            key_id,
            day: report.day.to_string(),
            requests_today: report.requests_today,
        },
    }))
}
