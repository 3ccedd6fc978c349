//! An API of an operator's own, protected by flexauth: `GET /me` answers any caller that
//! authenticates, `GET /invoices` only one that holds `invoices:read`. People call it with
//! their access tokens (verified from flexauth's JWKS, no call to flexauth), servers with their
//! API keys (introspected, each answer kept five seconds).

use axum::routing::get;
use axum::{Extension, Json, Router};
use flexauth_guard::{Caller, Credential, Guard, GuardLayer, Scopes};
use serde_json::{json, Value};

/// The routes, behind `guard`.
pub fn router(guard: Guard) -> Router {
    Router::new()
        .route("/invoices", get(invoices).layer(GuardLayer::requiring(guard.clone(), ["invoices:read"])))
        .route("/me", get(me))
        .layer(GuardLayer::new(guard))
}

/// Serves the routes on `listener` until the process ends.
///
/// # Errors
/// When the listener fails.
pub async fn serve(listener: tokio::net::TcpListener, guard: Guard) -> std::io::Result<()> {
    axum::serve(listener, router(guard)).await
}

/// Who is calling, as the handlers see it.
fn describe(caller: &Caller) -> Value {
    let (method, session_id, key_id) = match &caller.credential {
        Credential::AccessToken { session_id } => ("jwt", Some(session_id), None),
        Credential::ApiKey { key_id } => ("api_key", None, Some(key_id)),
    };
    let scopes = match &caller.scopes {
        Scopes::Every => json!("every declared scope"),
        Scopes::Only(scopes) => json!(scopes),
    };
    json!({ "account_id": caller.account_id, "auth_method": method, "session_id": session_id, "key_id": key_id, "scopes": scopes })
}

async fn me(Extension(caller): Extension<Caller>) -> Json<Value> {
    Json(describe(&caller))
}

async fn invoices(Extension(caller): Extension<Caller>) -> Json<Value> {
    Json(json!({ "caller": describe(&caller), "invoices": [{ "id": "inv_1", "total_cents": 4200 }] }))
}
