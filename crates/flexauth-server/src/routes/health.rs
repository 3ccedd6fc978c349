//! Liveness and readiness.

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::Data;
use flexauth_store::StoreError;

use crate::error::{error_chain, ApiError, ErrorCode};
use crate::state::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Status {
    #[schema(value_type = String)]
    status: &'static str,
}

/// Liveness
///
/// Answers `200` whenever the process answers.
#[utoipa::path(
    get, path = "/healthz", operation_id = "healthz", tag = "health",
    responses((status = 200, description = "The process answers.", body = Data<Status>))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Data { data: Status { status: "ok" } })
}

/// Readiness
///
/// Checks that the database answers and holds every migration this version needs: `200` when it does; `503
/// not_ready` when the database does not answer (within about 1.5 s), when it lacks a migration this version
/// needs (an instance of a newer version must not take traffic on a database not migrated for it), or when the
/// instance is draining for a shutdown (SIGTERM, `FLEXAUTH_SHUTDOWN_DRAIN`), or when the database is reached
/// through a pooler in transaction mode that `FLEXAUTH_DATABASE_POOLER` does not name. The message says which.
#[utoipa::path(
    get, path = "/readyz", operation_id = "readyz", tag = "health",
    responses((status = 200, description = "Ready for traffic.", body = Data<Status>)),
    extensions(("x-flexauth-errors" = json!(["not_ready", "internal_error"])))
)]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.draining.load(std::sync::atomic::Ordering::Acquire) {
        // Shutting down: the load balancer should send this instance nothing new.
        return Err(ApiError::with_message(ErrorCode::NotReady, "the instance is shutting down"));
    }
    match state.store.check_ready().await {
        Ok(()) => Ok(HttpResponse::Ok().json(Data { data: Status { status: "ready" } })),
        Err(error) => {
            tracing::warn!(error.chain = %error_chain(&error), "readiness check failed");
            // Say which of the conditions holds: each has a different remedy.
            let reason = match &error {
                StoreError::MigrationsPending => "the database lacks a migration this version needs",
                StoreError::StatementsLost => {
                    "the database is reached through a pooler in transaction mode: set \
                        FLEXAUTH_DATABASE_POOLER=transaction"
                }
                _ => "the database is not reachable",
            };
            Err(ApiError::with_message(ErrorCode::NotReady, reason))
        }
    }
}
