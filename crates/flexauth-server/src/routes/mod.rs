//! The HTTP API, one file per endpoint group. Handlers parse input into domain types, call
//! one service method and map the result.

mod accounts;
mod health;
mod sessions;
mod usage;

use actix_web::web;
use serde::Serialize;

pub use health::not_found;

/// Registers every endpoint.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/v1/auth/signup", web::post().to(accounts::signup))
        .route("/v1/auth/verify", web::get().to(accounts::verify_link))
        .route("/v1/auth/verify", web::post().to(accounts::verify))
        .route("/v1/auth/verify/resend", web::post().to(accounts::resend_verification))
        .route("/v1/auth/me", web::get().to(accounts::me))
        .route("/v1/auth/login", web::post().to(sessions::login))
        .route("/v1/auth/refresh", web::post().to(sessions::refresh))
        .route("/v1/auth/logout", web::post().to(sessions::logout))
        .route("/v1/usage", web::get().to(usage::usage))
        .route("/.well-known/jwks.json", web::get().to(health::jwks))
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz));
}

/// The success envelope.
#[derive(Debug, Serialize)]
pub struct Data<T> {
    pub data: T,
}

/// A human-readable acknowledgement, for endpoints that must not reveal more.
#[derive(Debug, Serialize)]
pub struct Message {
    pub message: &'static str,
}
