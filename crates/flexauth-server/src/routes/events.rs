use actix_web::{web, HttpResponse};
use flexauth_domain::audit::{AuditCursor, PageSize};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{rfc3339, Data};
use crate::auth::LiveCaller;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct EventsQuery {
    /// The `next` of the previous page.
    after: Option<String>,
    limit: Option<u32>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EventView {
    id: String,
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    kind: &'static str,
    #[schema(format = DateTime)]
    at: String,
    ip: Option<String>,
    user_agent: Option<String>,
    session_id: Option<String>,
    key_id: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EventsPage {
    events: Vec<EventView>,
    /// The cursor of the next page, or null on the last one.
    next: Option<String>,
}

/// An entry as the owner sees it.
pub(crate) fn view(event: flexauth_domain::audit::AuditEvent) -> Result<EventView, ApiError> {
    Ok(EventView {
        id: event.id.to_string(),
        kind: event.kind.as_str(),
        at: rfc3339(event.at)?,
        ip: event.client.ip,
        user_agent: event.client.user_agent,
        session_id: event.session_id.map(|id| id.to_string()),
        key_id: event.key_id.map(|id| id.to_string()),
    })
}

/// A cursor is `<unix milliseconds>_<event id>`; clients pass it back as they got it.
fn parse_cursor(text: &str) -> Result<AuditCursor, ApiError> {
    let invalid = || ApiError::from(ErrorCode::InvalidCursor);
    let (millis, id) = text.split_once('_').ok_or_else(invalid)?;
    // Only the spelling `cursor_text` writes is a cursor: digits, and the id as a lower-case
    // hyphenated UUID (the pattern of the OpenAPI document).
    if millis.is_empty() || millis.len() > 19 || !millis.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(invalid());
    }
    let millis: u64 = millis.parse().map_err(|_| invalid())?;
    // A cursor past the last instant the clock can name pages from the newest event.
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .unwrap_or(time::PrimitiveDateTime::MAX.assume_utc());
    let id =
        uuid::Uuid::try_parse(id).ok().filter(|parsed| parsed.hyphenated().to_string() == id).ok_or_else(invalid)?;
    Ok(AuditCursor { at, id })
}

fn cursor_text(cursor: &AuditCursor) -> String {
    format!("{}_{}", cursor.at.unix_timestamp_nanos() / 1_000_000, cursor.id)
}

/// The caller's security log
///
/// The caller's own security log, newest first: logins, refreshes refused, password and address changes, API keys
/// created and revoked, and the rest (docs/api.md lists every type). Pages of `limit` events (1 to 100, 50 by
/// default); `next` is the cursor of the next page, or `null` on the last. JWT only: 403 jwt_required with an API
/// key. Account management: the session of the access token is looked up on every call, whatever
/// `FLEXAUTH_VERIFY_SESSION_ON_REQUEST` says; a token of an ended session gets `401 invalid_token` ("the session
/// of the access token has ended").
#[utoipa::path(
    get, path = "/v1/auth/events", operation_id = "listEvents", tag = "accounts", security(("bearer" = [])),
    params(
        ("after" = Option<String>, Query, description = "The `next` of the previous page.", pattern = r"^[0-9]{1,19}_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
        ("limit" = Option<u32>, Query, description = "Events per page, 50 by default.", minimum = 1, maximum = 100),
    ),
    responses((status = 200, description = "A page of the security log.", body = Data<EventsPage>)),
    extensions(("x-flexauth-errors" = json!(["missing_token", "invalid_token", "jwt_required", "invalid_cursor", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all, fields(account_id = %caller.account_id()))]
pub async fn list(
    state: web::Data<AppState>,
    caller: LiveCaller,
    query: Result<web::Query<EventsQuery>, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let query = query.map_err(|_| ApiError::from(ErrorCode::InvalidCursor))?.into_inner();
    let after = query.after.as_deref().map(parse_cursor).transpose()?;
    let size = query.limit.map(PageSize::new).transpose().map_err(|_| ApiError::from(ErrorCode::InvalidCursor))?;
    let (events, next) = state.audit.list(&caller, after, size.unwrap_or_default()).await?;
    let events = events.into_iter().map(view).collect::<Result<Vec<_>, ApiError>>()?;
    Ok(HttpResponse::Ok().json(Data { data: EventsPage { events, next: next.as_ref().map(cursor_text) } }))
}
