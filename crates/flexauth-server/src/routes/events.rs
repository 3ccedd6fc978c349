use actix_web::{web, HttpResponse};
use flexauth_domain::audit::AuditCursor;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{rfc3339, Data};
use crate::auth::LiveCaller;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct EventsQuery {
    /// The `next` of the previous page.
    after: Option<String>,
    limit: Option<u32>,
}

#[derive(Serialize)]
pub struct EventView {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    at: String,
    ip: Option<String>,
    user_agent: Option<String>,
    session_id: Option<String>,
    key_id: Option<String>,
}

#[derive(Serialize)]
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
    let invalid = || ApiError::InvalidCursor;
    let (millis, id) = text.split_once('_').ok_or_else(invalid)?;
    let millis: i64 = millis.parse().map_err(|_| invalid())?;
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).map_err(|_| invalid())?;
    Ok(AuditCursor { at, id: uuid::Uuid::parse_str(id).map_err(|_| invalid())? })
}

fn cursor_text(cursor: &AuditCursor) -> String {
    format!("{}_{}", cursor.at.unix_timestamp_nanos() / 1_000_000, cursor.id)
}

/// The caller's own security log, newest first, a page at a time.
#[tracing::instrument(skip_all, fields(account_id = %caller.0.account_id()))]
pub async fn list(state: web::Data<AppState>, caller: LiveCaller, query: Result<web::Query<EventsQuery>, actix_web::Error>) -> Result<HttpResponse, ApiError> {
    let query = query.map_err(|_| ApiError::InvalidCursor)?.into_inner();
    let after = query.after.as_deref().map(parse_cursor).transpose()?;
    let (events, next) = state.audit.list(&caller.0, after, query.limit.unwrap_or(50)).await?;
    let events = events.into_iter().map(view).collect::<Result<Vec<_>, ApiError>>()?;
    Ok(HttpResponse::Ok().json(Data { data: EventsPage { events, next: next.as_ref().map(cursor_text) } }))
}
